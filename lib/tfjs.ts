// rift/tfjs: the fused loss kernels as a TensorFlow.js op (subpath export "rift/tfjs"; needs the optional peer
// dependency @tensorflow/tfjs-core and a registered backend, e.g. @tensorflow/tfjs-backend-cpu or tfjs-node).
//
//   import * as tf from '@tensorflow/tfjs-core';
//   import { riftLoss } from 'rift/tfjs';
//   const loss = riftLoss(logits, targets, offsets, rewards, { method: 'rift', negative: 'token' });
//   const { value, grads } = tf.variableGrads(() => riftLoss(model(x), targets, offsets, rewards, { method: 'rift' }));
//
// riftLoss is a tf.customGrad: its forward reads the logits out of the backend once (dataSync), runs one fused
// lossAndGrad call that returns the loss AND ∂loss/∂logits, and keeps that gradient on the host; the backward only
// scales it by the upstream scalar and hands it to the backend. No second pass over the logits. When no gradient is being recorded
// (outside tf.grad / variableGrads / optimizer.minimize) the kernel runs without a gradient.
//
// Methods: 'sft', 'dft', 'rift' (token or sequence negatives), 'dpo', and 'rft' — SFT on the sequences whose
// reward is > 0 (at the loss level RFT is SFT with the other sequences' rows ignored; the normaliser counts only
// the kept rows/sequences). Layout and semantics of targets/offsets/rewards/normalizer/dpo: lossAndGrad's (README,
// "The loss API"); packSamples (lib/train/pack.ts) builds them from samples.
import type * as tfc from '@tensorflow/tfjs-core';
import {
  lossAndGrad,
  lossSpecArgs,
  type DpoOptions,
  type LossResult,
  type NegativeForm,
  type Reduction,
} from './kernels/loss';
import { describe, rangeError, typeError } from './util/validate';

type Tf = typeof tfc;

export const TFJS_METHODS = ['sft', 'rft', 'dft', 'rift', 'dpo'] as const;
export type TfjsMethod = (typeof TFJS_METHODS)[number];

export interface RiftLossOptions {
  method: TfjsMethod;
  /** RIFT negatives: 'token' (default) or 'sequence'. */
  negative?: NegativeForm;
  /** 'token-mean' (default), 'sequence-mean' or 'sum'; DPO averages over pairs unless 'sum'. */
  reduction?: Reduction;
  /** Explicit normaliser (> 0): the global batch's count, for exact accumulation over micro-batches. */
  normalizer?: number;
  /** Required for 'dpo': {refLogprobs, pairs, beta?}. */
  dpo?: DpoOptions;
  /** Called after every forward with the kernel's result (seqLogprobs, tokens, normalizer, loss). */
  onResult?: (result: LossResult) => void;
}

/** An index/reward argument: a host typed array, or a rank-1 tfjs tensor of the matching dtype. */
export type IntArg = Int32Array | tfc.Tensor;
export type FloatArg = Float32Array | tfc.Tensor;

let tfModule: Tf | undefined;

/** The @tensorflow/tfjs-core module (the one the caller's tensors belong to: tfjs keeps one global engine). */
function tf(): Tf {
  if (tfModule === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      tfModule = require('@tensorflow/tfjs-core') as Tf;
    } catch (e) {
      if ((e as { code?: string }).code !== 'MODULE_NOT_FOUND') throw e;
      throw new Error(
        'rift/tfjs: @tensorflow/tfjs-core is not installed; install it and a backend (e.g. npm install @tensorflow/tfjs-core @tensorflow/tfjs-backend-cpu)',
      );
    }
  }
  return tfModule;
}

const tag = (v: unknown) => Object.prototype.toString.call(v);

/** A live tensor (not disposed) of `rank` and `dtype`; TypeError/RangeError naming `arg` otherwise. */
function checkTensor(arg: string, v: unknown, rank: number, dtype: string): tfc.Tensor {
  if (!(v instanceof tf().Tensor)) throw typeError(arg, `must be a tf.Tensor, got ${describe(v)}`);
  if (v.isDisposed) throw typeError(arg, 'the tensor is disposed');
  if (v.rank !== rank)
    throw rangeError(arg, `must be a rank-${rank} tensor, got rank ${v.rank} (shape [${v.shape.join(', ')}])`);
  if (v.dtype !== dtype) throw typeError(arg, `must be a tensor of dtype ${dtype}, got ${v.dtype}`);
  return v;
}

/** A host copy-free view of a typed array from this or another realm (tfjs and addons may make their own). */
function hostArray<T extends Int32Array | Float32Array>(
  arg: string,
  v: unknown,
  ctor: { new (b: ArrayBufferLike, o: number, n: number): T; name: string },
  dtype: string,
): unknown {
  if (v instanceof ctor) return v;
  if (ArrayBuffer.isView(v) && tag(v) === `[object ${ctor.name}]`) {
    const a = v as unknown as T;
    return new ctor(a.buffer, a.byteOffset, a.length);
  }
  if (v instanceof tf().Tensor) return hostArray(arg, checkTensor(arg, v, 1, dtype).dataSync(), ctor, dtype);
  return v; // not an array: lossSpecArgs names the argument in its TypeError
}

/** The rows of sequences with reward ≤ 0 set to −100 (RFT at the loss level), on a copy. */
function positivesOnly(targets: Int32Array, offsets: Int32Array, rewards: Float32Array): Int32Array {
  const out = Int32Array.from(targets);
  for (let i = 0; i + 1 < offsets.length; i++) if (!(rewards[i] > 0)) out.fill(-100, offsets[i], offsets[i + 1]);
  return out;
}

/**
 * The fused loss of `options.method` on (rows, vocab) float32 logits, as a scalar tfjs tensor whose gradient
 * (through tf.grad, tf.variableGrads, optimizer.minimize) is the kernel's ∂loss/∂logits. Bad arguments throw a
 * TypeError/RangeError naming them ("logits: the tensor is disposed", "targets: targets[3] = 40 is outside …").
 */
export function riftLoss(
  logits: tfc.Tensor2D,
  targets: IntArg,
  offsets: IntArg,
  rewards: FloatArg | null | undefined,
  options: RiftLossOptions,
): tfc.Scalar {
  const t = tf();
  if (options === null || typeof options !== 'object')
    throw typeError('options', `must be an object, got ${describe(options)}`);
  const method = options.method;
  if (typeof method !== 'string' || !(TFJS_METHODS as readonly string[]).includes(method))
    throw (typeof method === 'string' ? rangeError : typeError)(
      'method',
      `must be one of ${TFJS_METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(method)}`,
    );
  if (options.onResult !== undefined && typeof options.onResult !== 'function')
    throw typeError('onResult', `must be a function, got ${describe(options.onResult)}`);
  checkTensor('logits', logits, 2, 'float32');
  const [rows, vocab] = logits.shape;
  let tg = hostArray('targets', targets, Int32Array, 'int32') as Int32Array;
  const off = hostArray('offsets', offsets, Int32Array, 'int32') as Int32Array;
  const rw =
    rewards === null || rewards === undefined
      ? undefined
      : (hostArray('rewards', rewards, Float32Array, 'float32') as Float32Array);
  const spec = {
    targets: tg,
    offsets: off,
    rewards: rw,
    method: method === 'rft' ? ('sft' as const) : method,
    negative: options.negative,
    reduction: options.reduction,
    normalizer: options.normalizer,
    dpo: options.dpo,
  };
  lossSpecArgs(spec, rows, vocab); // every check, before the logits leave the backend
  if (method === 'rft') {
    if (rw === undefined)
      throw typeError(
        'rewards',
        "a Float32Array of length S is required for method 'rft' (it keeps the sequences with reward > 0)",
      );
    tg = positivesOnly(tg, off, rw);
  }
  const wantGrad = t.engine().isTapeOn();
  const op = t.customGrad((...args: (tfc.Tensor | tfc.GradSaveFunc)[]) => {
    // the logits leave the backend: the one copy (none on the CPU backend, which hands out its own array)
    const read: ArrayBufferView = (args[0] as tfc.Tensor).dataSync();
    const data =
      read instanceof Float32Array ? read : new Float32Array(read.buffer, read.byteOffset, read.byteLength / 4);
    const grad = wantGrad ? new Float32Array(data.length) : undefined;
    const r = lossAndGrad({ ...spec, targets: tg, logits: data, rows, vocab, grad });
    options.onResult?.(r);
    return {
      value: t.scalar(r.loss),
      gradFunc: (dy: tfc.Tensor) => {
        if (grad === undefined)
          throw new Error('riftLoss: the gradient was not recorded (call riftLoss inside tf.grad / variableGrads)');
        // dy is the upstream scalar (1 for the loss itself): scale on the host, then the gradient enters the backend
        const s = dy.dataSync()[0];
        return t.tensor2d(s === 1 ? grad : grad.map((g) => g * s), [rows, vocab]);
      },
    };
  });
  return op(logits) as tfc.Scalar;
}
