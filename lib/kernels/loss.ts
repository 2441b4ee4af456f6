// The fused loss kernel API: lossAndGrad (sync) and lossAndGradAsync (off the event loop).
// Math: docs/design.md §1.2 — every method's logits gradient is w_t·(softmax(z_t) − onehot(y_t)).
import { addon, localError, NativeLossResult } from '../native';
import { DeviceTensor } from './device';
import {
  checkArray,
  checkedProduct,
  checkEnum,
  checkFiniteNumber,
  checkInteger,
  describe,
  rangeError,
  typeError,
} from '../util/validate';

/**
 * The fused loss kernel's methods, in the native Method enum's order (native/core/loss.h; test/loss.test.ts checks
 * them against the addon's `enums`). 'naive' = −r·log π on every sample (the unbounded baseline); 'logprob' computes
 * log-probs only. Training methods are a different list: TRAIN_METHODS (train/examples.ts) adds 'rft' (SFT on the
 * rewarded samples) and has no 'logprob'.
 */
export const METHODS = ['sft', 'dft', 'rift', 'dpo', 'logprob', 'naive'] as const;
export const NEGATIVE_FORMS = ['token', 'sequence'] as const;
export const REDUCTIONS = ['token-mean', 'sequence-mean', 'sum'] as const;
export type Method = (typeof METHODS)[number];
export type NegativeForm = (typeof NEGATIVE_FORMS)[number];
export type Reduction = (typeof REDUCTIONS)[number];

/**
 * The largest DPO β accepted. The loss is softplus(−β·Δ) and each sequence's gradient weight is up to β, so a huge β
 * overflows them (β·Δ past the double range gives an infinite loss, a weight past the float range ±Inf gradients);
 * useful values are 0.01 – 1, and beyond ~100 DPO is a hard-margin classifier already.
 */
export const DPO_BETA_MAX = 1000;

/** DPO β: a finite number in (0, DPO_BETA_MAX]; `arg` names it in the TypeError / RangeError. */
export function checkDpoBeta(arg: string, v: unknown): number {
  const beta = checkFiniteNumber(arg, v);
  if (!(beta > 0) || beta > DPO_BETA_MAX) throw rangeError(arg, `must be in (0, ${DPO_BETA_MAX}], got ${beta}`);
  return beta;
}

/** Logits or gradient: fp32 (Float32Array), bf16 bit patterns (Uint16Array), or a CUDA DeviceTensor. */
export type LogitsBuffer = Float32Array | Uint16Array | DeviceTensor;

export interface DpoOptions {
  /** Reference-model log-probability of each sequence, S_ref(i), length S (required; or the deprecated refLogps). */
  refLogprobs?: Float32Array | Float64Array;
  /** @deprecated spelled `refLogprobs` (still accepted; giving both is a TypeError). */
  refLogps?: Float32Array | Float64Array;
  /** Flat (chosen, rejected) pairs of sequence indices, length 2·P. */
  pairs: Int32Array;
  /** DPO temperature β > 0 (default 0.1). */
  beta?: number;
}

export interface LossOptions {
  /** Row-major (rows, vocab) logits. Only rows whose target is not −100 are read. */
  logits: LogitsBuffer;
  /**
   * N, the number of logit rows (one per position; docs/design.md notation). Not the Model's B/T on purpose: the
   * kernel sees a flat (N, V) matrix whose sequences are delimited by `offsets` and may differ in length (packed, no
   * padding), so it has no batch shape. A Model batch B × T flattens to rows = B·T (Model.lossAndBackward does it).
   */
  rows: number;
  /** V, the vocabulary size (the logits' row length; a Model's config.vocab_size). */
  vocab: number;
  /** Target token of each row, or −100 to ignore the row (prompt, padding). Length rows. */
  targets: Int32Array;
  /** Sequence i owns rows offsets[i] .. offsets[i+1]−1. Length S+1, offsets[0] = 0, offsets[S] = rows. */
  offsets: Int32Array;
  /** Scalar reward per sequence (length S); required for 'rift' and 'naive'. */
  rewards?: Float32Array;
  method: Method;
  /** RIFT negative-sample surrogate: per-token −r·p_t (default) or per-sequence −r·exp(S_i). */
  negative?: NegativeForm;
  /** Default 'token-mean'. For 'dpo', 'sum' sums the pair losses and the others average over pairs. */
  reduction?: Reduction;
  /** Explicit normaliser (> 0), e.g. the response-token count of the whole global batch for exact accumulation. */
  normalizer?: number;
  dpo?: DpoOptions;
  /** Where to write ∂loss/∂logits (same kind, dtype and length as logits; may be logits itself). Omit for no gradient. */
  grad?: LogitsBuffer;
  /** Also return the per-token log-probs ℓ_t (0 on ignored rows) as `tokenLogprobs`. */
  tokenLogprobs?: boolean;
  /** @deprecated spelled `tokenLogprobs` (still accepted). */
  tokenLogps?: boolean;
  /** Also return the per-token entropies H_t (0 on ignored rows). */
  entropy?: boolean;
}

export interface LossResult {
  loss: number;
  /** What the summed terms were divided by (1 for 'sum'). */
  normalizer: number;
  /** Rows with a target. */
  tokens: number;
  /** S_i = Σ_t ℓ_t per sequence. */
  seqLogprobs: Float64Array;
  /** ℓ_t per row, when asked for (`tokenLogprobs: true`). */
  tokenLogprobs?: Float32Array;
  entropy?: Float32Array;
  /** @deprecated spelled `seqLogprobs` (the same array). */
  seqLogps: Float64Array;
  /** @deprecated spelled `tokenLogprobs` (the same array). */
  tokenLogps?: Float32Array;
}

function checkBuffer(arg: string, v: unknown): LogitsBuffer {
  if (v instanceof Float32Array || v instanceof Uint16Array || v instanceof DeviceTensor) return v;
  throw typeError(arg, `must be a Float32Array, a Uint16Array (bf16 bits) or a DeviceTensor, got ${describe(v)}`);
}

function bufferLength(b: LogitsBuffer): number {
  return b.length;
}
function bufferDtype(b: LogitsBuffer): 'fp32' | 'bf16' {
  if (b instanceof DeviceTensor) return b.dtype;
  return b instanceof Float32Array ? 'fp32' : 'bf16';
}
function nativeBuffer(b: LogitsBuffer): unknown {
  return b instanceof DeviceTensor ? b.native : b;
}

/** The loss options every caller shares (lossAndGrad, Model.lossAndBackward): everything but the logits. */
export type LossSpecOptions = Omit<LossOptions, 'logits' | 'grad' | 'rows' | 'vocab'>;

/**
 * Validates the method, targets (rows, each in [0, vocab) or −100 unless `targetValues` is false: the caller's
 * native side checks them), offsets, rewards, normaliser and DPO options, and returns them as the fields the
 * native loss/model bindings take. Throws TypeError/RangeError naming the argument; `rowsName` is how the errors
 * name the row count: 'rows' for the kernel API, 'B × T' for a Model batch (its rows flattened).
 */
export function lossSpecArgs(
  o: LossSpecOptions,
  rows: number,
  vocab: number,
  { targetValues = true, rowsName = 'rows' }: { targetValues?: boolean; rowsName?: 'rows' | 'B × T' } = {},
): { method: Method; args: Record<string, unknown> } {
  const method = checkEnum('method', o.method, METHODS);
  const negative = checkEnum('negative', o.negative ?? 'token', NEGATIVE_FORMS);
  const reduction = checkEnum('reduction', o.reduction ?? 'token-mean', REDUCTIONS);
  const targets = checkArray('targets', o.targets, Int32Array);
  if (targets.length !== rows)
    throw rangeError('targets', `length must be ${rowsName} = ${rows}, got ${targets.length}`);
  for (let t = 0; targetValues && t < rows; t++) {
    const y = targets[t];
    if (y !== -100 && (y < 0 || y >= vocab))
      throw rangeError('targets', `targets[${t}] = ${y} is outside [0, ${vocab}) and not -100`);
  }
  const offsets = checkArray('offsets', o.offsets, Int32Array);
  if (offsets.length < 1) throw rangeError('offsets', 'must hold S + 1 entries (at least one)');
  if (offsets[0] !== 0) throw rangeError('offsets', `offsets[0] must be 0, got ${offsets[0]}`);
  for (let i = 1; i < offsets.length; i++) {
    if (offsets[i] < offsets[i - 1])
      throw rangeError(
        'offsets',
        `must be non-decreasing: offsets[${i}] = ${offsets[i]} < offsets[${i - 1}] = ${offsets[i - 1]}`,
      );
  }
  const S = offsets.length - 1;
  if (offsets[S] !== rows)
    throw rangeError('offsets', `last offset must equal ${rowsName} = ${rows}, got ${offsets[S]}`);
  let rewards: Float32Array | undefined;
  if (o.rewards !== undefined) {
    rewards = checkArray('rewards', o.rewards, Float32Array, S);
    for (let i = 0; i < S; i++)
      if (!Number.isFinite(rewards[i])) throw rangeError('rewards', `rewards[${i}] = ${rewards[i]} is not finite`);
  }
  if ((method === 'rift' || method === 'naive') && rewards === undefined)
    throw typeError('rewards', `a Float32Array of length S is required for method '${method}'`);
  let normalizer = 0;
  if (o.normalizer !== undefined) {
    normalizer = checkFiniteNumber('normalizer', o.normalizer);
    if (normalizer <= 0) throw rangeError('normalizer', `must be > 0, got ${normalizer}`);
  }
  const args: Record<string, unknown> = {
    targets,
    offsets,
    rewards,
    method: METHODS.indexOf(method),
    negative: NEGATIVE_FORMS.indexOf(negative),
    reduction: REDUCTIONS.indexOf(reduction),
    normalizer,
    tokenLogps: !!(o.tokenLogprobs ?? o.tokenLogps),
    entropy: !!o.entropy,
  };
  if (method === 'dpo') {
    const d = o.dpo;
    if (d === null || typeof d !== 'object')
      throw typeError('dpo', "an object {refLogprobs, pairs, beta?} is required for method 'dpo'");
    if (d.refLogprobs !== undefined && d.refLogps !== undefined)
      throw typeError('refLogprobs', 'give refLogprobs or the deprecated refLogps, not both');
    const arg = d.refLogprobs === undefined && d.refLogps !== undefined ? 'refLogps' : 'refLogprobs';
    const given = d.refLogprobs ?? d.refLogps;
    if (!(given instanceof Float64Array || given instanceof Float32Array))
      throw typeError(arg, `must be a Float64Array or Float32Array, got ${describe(given)}`);
    if (given.length !== S) throw rangeError(arg, `length must be S = ${S}, got ${given.length}`);
    const ref = given instanceof Float64Array ? given : Float64Array.from(given);
    for (let i = 0; i < S; i++)
      if (!Number.isFinite(ref[i])) throw rangeError(arg, `${arg}[${i}] = ${ref[i]} is not finite`);
    const pairs = checkArray('pairs', d.pairs, Int32Array);
    if (pairs.length % 2 !== 0)
      throw rangeError('pairs', `length must be even (chosen, rejected), got ${pairs.length}`);
    for (let k = 0; k < pairs.length; k++) {
      if (pairs[k] < 0 || pairs[k] >= S)
        throw rangeError('pairs', `pairs[${k}] = ${pairs[k]} is not a sequence index in [0, ${S})`);
    }
    const beta = d.beta === undefined ? 0.1 : checkDpoBeta('beta', d.beta);
    Object.assign(args, { refLogps: ref, pairs, beta });
  }
  return { method, args };
}

/** Validates the options and builds the object the native addon takes. Exported for tests. */
export function toNative(o: LossOptions): Record<string, unknown> {
  if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
  checkEnum('method', o.method, METHODS);
  const rows = checkInteger('rows', o.rows, 0, 2 ** 31 - 1);
  const vocab = checkInteger('vocab', o.vocab, 1, 2 ** 31 - 1);
  const logits = checkBuffer('logits', o.logits);
  const n = checkedProduct('logits', [
    ['rows', rows],
    ['vocab', vocab],
  ]);
  if (bufferLength(logits) !== n)
    throw rangeError('logits', `length must be rows × vocab = ${n}, got ${bufferLength(logits)}`);
  let grad: LogitsBuffer | undefined;
  if (o.grad !== undefined) {
    grad = checkBuffer('grad', o.grad);
    if (grad instanceof DeviceTensor !== logits instanceof DeviceTensor)
      throw typeError('grad', 'must live where logits live (host array or DeviceTensor)');
    if (bufferDtype(grad) !== bufferDtype(logits))
      throw typeError('grad', `must have the logits' dtype (${bufferDtype(logits)})`);
    if (bufferLength(grad) !== bufferLength(logits))
      throw rangeError('grad', `length must equal the logits' length ${bufferLength(logits)}`);
    if (o.method === 'logprob') throw typeError('grad', "method 'logprob' computes no gradient: omit grad");
  }
  const { args } = lossSpecArgs(o, rows, vocab);
  return {
    logits: nativeBuffer(logits),
    grad: grad === undefined ? undefined : nativeBuffer(grad),
    rows,
    vocab,
    ...args,
  };
}

/** A native result under the public names, with the deprecated Logps aliases (the same arrays). */
export function publicResult(r: NativeLossResult): LossResult {
  const { seqLogps, tokenLogps, ...rest } = r;
  const out: LossResult = { ...rest, seqLogprobs: seqLogps, seqLogps };
  if (tokenLogps) Object.assign(out, { tokenLogprobs: tokenLogps, tokenLogps });
  return out;
}
const wrap = publicResult;

/** Computes the loss (and, when `grad` is given, ∂loss/∂logits) on the calling thread. */
export function lossAndGrad(options: LossOptions): LossResult {
  const args = toNative(options);
  try {
    return wrap(addon.lossAndGrad(args));
  } catch (e) {
    throw localError(e);
  }
}

/**
 * Same as lossAndGrad, run on a libuv worker thread. The call owns what it reads: the small arrays are copied at
 * call time, and so are host logits unless a SharedArrayBuffer backs them (then they are read in place — no copy,
 * but changes made meanwhile are seen). A host gradient not backed by one is written into the caller's `grad` when
 * the promise settles; if that array was detached (transferred) or resized meanwhile, the promise rejects with an
 * Error naming grad. A failed call (NaN/Inf logits) leaves those arrays untouched.
 * Argument errors throw synchronously; errors found while running (NaN/Inf logits) reject the promise.
 */
export function lossAndGradAsync(options: LossOptions): Promise<LossResult> {
  const args = toNative(options);
  let p: Promise<NativeLossResult>;
  try {
    p = addon.lossAndGradAsync(args);
  } catch (e) {
    throw localError(e);
  }
  return p.then(wrap, (e) => Promise.reject(localError(e)));
}
