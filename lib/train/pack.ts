// Public batch packing for hand-written training loops: samples (or DPO pairs) → token-budget micro-batches in
// the layout Model.lossAndBackward takes, plus the step's exact global normaliser. The same code as the Trainer
// (lib/train/batching.ts: packUnits → buildMicroBatch → globalNormalizer), with argument checks.
//
//   const step = packSamples(samples, { tokenBudget: 4096 });          // one optimizer step's samples
//   model.zeroGrad();
//   for (const mb of step.microBatches)
//     model.lossAndBackward({ ...mb, method: 'rift', normalizer: step.normalizer });
//   model.step({ lr: 1e-5 });
//
// Σ over the micro-batches of loss and gradient (each divided by step.normalizer) equals the loss and gradient of
// all samples as one batch, whatever the budget. For DPO, packPairs keeps each (chosen, rejected) pair in one
// micro-batch and sets `pairs`; the reference log-probs are the caller's (one per row of each micro-batch).
import { checkEnum, checkInteger, describe, rangeError, typeError } from '../util/validate';
import {
  BatchSample,
  buildMicroBatch,
  globalNormalizer,
  longestFirst,
  MicroBatch,
  packUnits,
  Reduction,
  Unit,
} from './batching';

export interface PackSamplesOptions {
  /** Most tokens B × T of one micro-batch (padding included). */
  tokenBudget: number;
  /** Token id of padding positions (default 0; never a target). */
  padId?: number;
  /** The loss's reduction, for the normaliser: 'token-mean' (default), 'sequence-mean' or 'sum'. */
  reduction?: Reduction;
  /** Pack the longest samples first (less padding; the step's loss and gradient are the same). Default false. */
  sortByLength?: boolean;
  /** When given, every token id must be < vocab (and padId too). */
  vocab?: number;
}

export interface PackedBatches<E extends BatchSample> {
  /** Rows in input order (longest first with sortByLength); pass each to Model.lossAndBackward. */
  microBatches: MicroBatch<E>[];
  /**
   * The global normaliser to pass with every micro-batch (undefined for 'sum'): the response tokens of all samples
   * (token-mean), the samples (sequence-mean), or the pairs (DPO, any reduction but 'sum').
   */
  normalizer: number | undefined;
  /** Response tokens (rows with a target) over all micro-batches. */
  tokens: number;
  /** Samples (rows) over all micro-batches. */
  sequences: number;
  /** DPO pairs (packPairs; 0 for packSamples). */
  pairs: number;
}

export interface SamplePair<E extends BatchSample> {
  chosen: E;
  rejected: E;
}

const isTyped = (v: unknown, tag: string) =>
  ArrayBuffer.isView(v) && Object.prototype.toString.call(v) === `[object ${tag}]`;

/** Checks one sample (`arg` names it in errors, e.g. "samples[3]"). */
function checkSample(arg: string, s: unknown, vocab: number | undefined): void {
  if (s === null || typeof s !== 'object')
    throw typeError(arg, `must be an object {promptIds, responseIds, reward}, got ${describe(s)}`);
  const x = s as BatchSample;
  for (const k of ['promptIds', 'responseIds'] as const) {
    const ids = x[k];
    if (!isTyped(ids, 'Int32Array')) throw typeError(`${arg}.${k}`, `must be an Int32Array, got ${describe(ids)}`);
    if (ids.length < 1) throw rangeError(`${arg}.${k}`, 'must hold at least one token');
    for (let j = 0; j < ids.length; j++)
      if (ids[j] < 0 || (vocab !== undefined && ids[j] >= vocab))
        throw rangeError(`${arg}.${k}`, `${k}[${j}] = ${ids[j]} is not a token id in [0, ${vocab ?? '∞'})`);
  }
  if (typeof x.reward !== 'number') throw typeError(`${arg}.reward`, `must be a number, got ${describe(x.reward)}`);
  if (!Number.isFinite(x.reward)) throw rangeError(`${arg}.reward`, `must be finite, got ${x.reward}`);
}

function checkOptions(o: PackSamplesOptions): { padId: number; reduction: Reduction; vocab?: number } {
  if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
  if (o.tokenBudget === undefined) throw typeError('tokenBudget', 'is required (most tokens B × T of one micro-batch)');
  checkInteger('tokenBudget', o.tokenBudget, 1);
  const vocab = o.vocab === undefined ? undefined : checkInteger('vocab', o.vocab, 1, 2 ** 31 - 1);
  const padId = o.padId === undefined ? 0 : checkInteger('padId', o.padId, 0, (vocab ?? 2 ** 31) - 1);
  const reduction = checkEnum('reduction', o.reduction ?? 'token-mean', [
    'token-mean',
    'sequence-mean',
    'sum',
  ] as const);
  if (o.sortByLength !== undefined && typeof o.sortByLength !== 'boolean')
    throw typeError('sortByLength', `must be a boolean, got ${describe(o.sortByLength)}`);
  return { padId, reduction, vocab };
}

function pack<E extends BatchSample>(
  units: Unit<E>[],
  o: PackSamplesOptions,
  padId: number,
  dpo: boolean,
  reduction: Reduction,
): PackedBatches<E> {
  const order = o.sortByLength ? longestFirst(units) : units;
  const microBatches = packUnits(order, { tokenBudget: o.tokenBudget, padId }).map((g) =>
    buildMicroBatch(g, { padId, pairs: dpo }),
  );
  return {
    microBatches,
    normalizer: globalNormalizer(microBatches, dpo ? 'dpo' : 'sft', reduction),
    tokens: microBatches.reduce((a, m) => a + m.tokens, 0),
    sequences: microBatches.reduce((a, m) => a + m.B, 0),
    pairs: dpo ? units.length : 0,
  };
}

/**
 * One optimizer step's samples → micro-batches of at most tokenBudget tokens (B × T) each and the step's
 * normaliser, for the token-level methods ('sft', 'dft', 'rift'). Every sample is kept (the Trainer's per-method
 * selection — positives for RFT, non-zero rewards for RIFT — is selectExamples'). Throws TypeError/RangeError
 * naming the bad argument (e.g. "samples[2].responseIds: …", "tokenBudget: 64 is too small for an example …").
 */
export function packSamples<E extends BatchSample>(
  samples: readonly E[],
  options: PackSamplesOptions,
): PackedBatches<E> {
  const { padId, reduction, vocab } = checkOptions(options);
  if (!Array.isArray(samples))
    throw typeError('samples', `must be an array of {promptIds, responseIds, reward}, got ${describe(samples)}`);
  if (samples.length === 0) throw rangeError('samples', 'nothing to pack (an empty array)');
  samples.forEach((s, i) => checkSample(`samples[${i}]`, s, vocab));
  return pack(
    samples.map((s) => [s]),
    options,
    padId,
    false,
    reduction,
  );
}

/**
 * One optimizer step's DPO pairs → micro-batches (a pair is never split; rows 2k, 2k+1 of a micro-batch are its
 * k-th pair's chosen and rejected, listed in `pairs`) and the step's normaliser (the pair count; undefined for
 * 'sum'). Rewards are carried but DPO does not read them.
 */
export function packPairs<E extends BatchSample>(
  pairs: readonly SamplePair<E>[],
  options: PackSamplesOptions,
): PackedBatches<E> {
  const { padId, reduction, vocab } = checkOptions(options);
  if (!Array.isArray(pairs)) throw typeError('pairs', `must be an array of {chosen, rejected}, got ${describe(pairs)}`);
  if (pairs.length === 0) throw rangeError('pairs', 'nothing to pack (an empty array)');
  pairs.forEach((p, i) => {
    if (p === null || typeof p !== 'object')
      throw typeError(`pairs[${i}]`, `must be an object {chosen, rejected}, got ${describe(p)}`);
    checkSample(`pairs[${i}].chosen`, p.chosen, vocab);
    checkSample(`pairs[${i}].rejected`, p.rejected, vocab);
  });
  return pack(
    pairs.map((p) => [p.chosen, p.rejected]),
    options,
    padId,
    true,
    reduction,
  );
}
