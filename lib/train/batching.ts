// Micro-batches by token budget, and the optimizer steps they form.
//
// Row layout (what Model.lossAndBackward expects, lib/engine/model.ts): one example per row b of ids (B, T):
//   ids[b, 0 .. P+R−1] = prompt ++ response, then padId up to T (T = the longest row of the micro-batch)
//   targets[b·T + t]  = ids[b, t+1] for t in [P−1, P+R−2] (each response token is predicted from the position
//                       before it), −100 on every other position (prompt, last token, padding)
//   offsets[b] = b·T: sequence b owns its whole row (its response rows are contiguous; its prompt and padding
//                rows inside the span are −100 and ignored by the loss)
//   rewards[b] = the example's reward; DPO pairs (2k, 2k+1) = (chosen, rejected) rows of the k-th pair.
// A micro-batch holds B rows with B × T ≤ tokenBudget; a DPO pair is one unit and never split.
//
// Gradient accumulation is exact when every micro-batch of an optimizer step passes the step's GLOBAL normaliser
// (globalNormalizer): response tokens of the whole step (token-mean), its sequences (sequence-mean), its pairs
// (DPO, any reduction but 'sum'); 'sum' needs none. Then Σ over micro-batches of loss and gradient equals the
// loss and gradient of the step's examples as one batch.
//
// Steps (planEpoch): each epoch shuffles the units with a seeded RNG (a function of (seed, epoch) only, so a resumed
// run rebuilds the same order), then either
//   examplesPerStep E   cuts the order into groups of E units (a DPO unit is a pair), sorts each group by length
//                       (less padding; the result does not depend on the packing) and packs it by the budget, or
//   microBatchesPerStep M  packs the whole order by the budget and takes M consecutive micro-batches per step.
// An epoch's last step may be smaller. Steps never span two epochs.
//
// The public API (lib/train/pack.ts: packSamples, packPairs) packs one optimizer step's samples with the
// same code the Trainer uses (packUnits → buildMicroBatch → globalNormalizer) for hand-written training loops.
import { mixSeed, mulberry32 } from '../util/rng';
import { checkInteger, rangeError, typeError } from '../util/validate';
import { Example } from './examples';
import type { Reduction } from '../kernels/loss';

export const IGNORE_INDEX = -100;

/**
 * What batching reads of a sample: its prompt and response token ids and its reward. Example
 * (lib/train/examples.ts) is one; problemId and sampleIndex, when present, only name the sample in errors.
 */
export interface BatchSample {
  promptIds: Int32Array;
  responseIds: Int32Array;
  reward: number;
  problemId?: string;
  sampleIndex?: number;
}

/** Examples that stay in one micro-batch: one example, or a DPO pair [chosen, rejected]. */
export type Unit<E extends BatchSample = Example> = readonly E[];

export interface MicroBatch<E extends BatchSample = Example> {
  B: number;
  T: number;
  /** (B, T) token ids. */
  ids: Int32Array;
  /** (B·T) next-token targets, −100 = no target. */
  targets: Int32Array;
  /** (B + 1) row offsets: sequence b = rows b·T .. (b+1)·T − 1. */
  offsets: Int32Array;
  /** (B) the examples' rewards. */
  rewards: Float32Array;
  /** Row b holds examples[b]. */
  examples: E[];
  /** DPO: (chosen, rejected) row pairs, 2 entries per pair; absent for other methods. */
  pairs?: Int32Array;
  /** Rows with a target (the response tokens). */
  tokens: number;
}

export interface PackOptions {
  /** Most tokens B × T of one micro-batch (padding included). */
  tokenBudget: number;
  /** Token id of padding positions (default 0; never a target). */
  padId?: number;
  /** Units are DPO pairs: set `pairs` on each micro-batch. */
  pairs?: boolean;
}

/** Prompt + response tokens of one example (its row length). */
export const exampleLength = (e: BatchSample): number => e.promptIds.length + e.responseIds.length;
const unitLength = (u: Unit<BatchSample>): number => u.reduce((m, e) => Math.max(m, exampleLength(e)), 0);

/** One micro-batch from units, rows in order. */
export function buildMicroBatch<E extends BatchSample = Example>(
  units: readonly Unit<E>[],
  opts: { padId?: number; pairs?: boolean } = {},
): MicroBatch<E> {
  const padId = opts.padId ?? 0;
  const examples = units.flat();
  if (!examples.length) throw rangeError('units', 'a micro-batch needs at least one example');
  const B = examples.length;
  const T = unitLength(examples);
  const ids = new Int32Array(B * T).fill(padId);
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  const offsets = new Int32Array(B + 1);
  const rewards = new Float32Array(B);
  let tokens = 0;
  examples.forEach((e, b) => {
    const P = e.promptIds.length,
      R = e.responseIds.length,
      row = b * T;
    ids.set(e.promptIds, row);
    ids.set(e.responseIds, row + P);
    for (let j = 0; j < R; j++) targets[row + P - 1 + j] = e.responseIds[j];
    tokens += R;
    offsets[b + 1] = row + T;
    rewards[b] = e.reward;
  });
  const mb: MicroBatch<E> = { B, T, ids, targets, offsets, rewards, examples, tokens };
  if (opts.pairs) {
    const pairs = new Int32Array(B);
    let row = 0,
      k = 0;
    for (const u of units) {
      if (u.length !== 2) throw rangeError('units', `a DPO unit must be [chosen, rejected], got ${u.length} examples`);
      pairs[k++] = row;
      pairs[k++] = row + 1;
      row += 2;
    }
    mb.pairs = pairs;
  }
  return mb;
}

/** The largest tokenBudget: a micro-batch's B × T rows must stay below 2^31 (the engine's int32 row indices). */
export const MAX_TOKEN_BUDGET = 2 ** 31 - 1;

function checkPack(o: PackOptions): { budget: number; padId: number } {
  if (o === null || typeof o !== 'object') throw typeError('options', 'must be an object');
  const budget = checkInteger('tokenBudget', o.tokenBudget, 1, MAX_TOKEN_BUDGET);
  const padId = o.padId === undefined ? 0 : checkInteger('padId', o.padId, 0, 2 ** 31 - 1);
  return { budget, padId };
}

/** Groups units (in order) into micro-batches with B × T ≤ tokenBudget; returns the unit groups. */
export function packUnits<E extends BatchSample = Example>(units: readonly Unit<E>[], opts: PackOptions): Unit<E>[][] {
  const { budget } = checkPack(opts);
  const out: Unit<E>[][] = [];
  let cur: Unit<E>[] = [],
    rows = 0,
    T = 0;
  for (const [i, u] of units.entries()) {
    const len = unitLength(u);
    if (u.length * len > budget) {
      const where =
        u[0].problemId !== undefined ? `of problem "${u[0].problemId}" (sample ${u[0].sampleIndex})` : `at index ${i}`;
      throw rangeError(
        'tokenBudget',
        `${budget} is too small for ${u.length > 1 ? 'a DPO pair' : 'an example'} ${where}: ${u.length} × ${len} tokens`,
      );
    }
    if (cur.length && (rows + u.length) * Math.max(T, len) > budget) {
      out.push(cur);
      cur = [];
      rows = 0;
      T = 0;
    }
    cur.push(u);
    rows += u.length;
    T = Math.max(T, len);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** packUnits + buildMicroBatch. */
export function packMicroBatches<E extends BatchSample = Example>(
  units: readonly Unit<E>[],
  opts: PackOptions,
): MicroBatch<E>[] {
  const { padId } = checkPack(opts);
  return packUnits(units, opts).map((g) => buildMicroBatch(g, { padId, pairs: opts.pairs }));
}

export type LossMethod = 'sft' | 'dft' | 'rift' | 'dpo' | 'naive';
export type { Reduction } from '../kernels/loss'; // one declaration, shared with the loss API

/**
 * The normaliser N of one optimizer step over all its micro-batches (what the kernel would use for the whole step
 * as one batch, core/loss_plan.cc): undefined for 'sum' (N = 1), the pair count for DPO, the response tokens for
 * token-mean, the sequences with a target for sequence-mean.
 */
export function globalNormalizer(
  microBatches: readonly MicroBatch<BatchSample>[],
  method: LossMethod,
  reduction: Reduction,
): number | undefined {
  if (reduction === 'sum') return undefined;
  if (method === 'dpo') return microBatches.reduce((s, m) => s + (m.pairs ? m.pairs.length / 2 : 0), 0);
  if (reduction === 'token-mean') return microBatches.reduce((s, m) => s + m.tokens, 0);
  return microBatches.reduce((s, m) => s + m.examples.filter((e) => e.responseIds.length > 0).length, 0);
}

// ---- steps ------------------------------------------------------------------------------------------------

export interface StepPlanOptions {
  tokenBudget: number;
  seed: number;
  examplesPerStep?: number;
  microBatchesPerStep?: number;
  /** false: keep the input order (default true). */
  shuffle?: boolean;
}

/** mulberry32 with a seed mixed from (seed, epoch): the epoch's shuffle RNG. */
export function epochRng(seed: number, epoch: number): () => number {
  return mulberry32(mixSeed(seed, epoch));
}

/** The units of one epoch in training order (Fisher–Yates with epochRng). */
export function epochOrder<T>(units: readonly T[], seed: number, epoch: number, shuffle = true): T[] {
  const out = [...units];
  if (!shuffle) return out;
  const rand = epochRng(seed, epoch);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Units longest first, stable (less padding; a step's loss and gradient do not depend on the packing). */
export function longestFirst<U extends Unit<BatchSample>>(units: readonly U[]): U[] {
  const keyed = units.map((u, k) => ({ u, k, len: unitLength(u) }));
  keyed.sort((a, b) => b.len - a.len || a.k - b.k);
  return keyed.map((g) => g.u);
}

/** One epoch's optimizer steps: steps → micro-batches → units. */
export function planEpoch(units: readonly Unit[], epoch: number, o: StepPlanOptions): Unit[][][] {
  if (o.examplesPerStep !== undefined && o.microBatchesPerStep !== undefined)
    throw rangeError('examplesPerStep', 'give examplesPerStep or microBatchesPerStep, not both');
  const order = epochOrder(units, o.seed, epoch, o.shuffle ?? true);
  const steps: Unit[][][] = [];
  if (o.examplesPerStep !== undefined) {
    const E = checkInteger('examplesPerStep', o.examplesPerStep, 1);
    for (let i = 0; i < order.length; i += E) steps.push(packUnits(longestFirst(order.slice(i, i + E)), o));
  } else {
    const M = o.microBatchesPerStep === undefined ? 1 : checkInteger('microBatchesPerStep', o.microBatchesPerStep, 1);
    const mbs = packUnits(order, o);
    for (let i = 0; i < mbs.length; i += M) steps.push(mbs.slice(i, i + M));
  }
  return steps;
}
