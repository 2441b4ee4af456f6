// rift/tfjs (lib/tfjs.ts): riftLoss as a tf.customGrad. Its value and gradient equal tf.grad of the same loss
// written in plain tf ops (test/helpers/tfjs-reference.ts) on random cases for every method and reduction; the
// gradient flows through other ops; one fused kernel call per forward; no tensor leaks; bad input → typed errors.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as loss from '../lib/kernels/loss';
import { riftLoss, RiftLossOptions } from '../lib/tfjs';
import { registerExampleGradients } from '../examples/tfjs-grads';
import { plainTfLoss, PlainCase } from './helpers/tfjs-reference';
import { maxAbs, maxAbsDiff, rng } from './helpers/reference';

tf.env().set('IS_TEST', true); // no "install tfjs-node" banner
registerExampleGradients(tf); // tfjs-core's CommonJS build has no kernel gradients: the plain-tf reference needs them

interface Case extends PlainCase {
  logits: Float32Array;
  N: number;
  V: number;
}

/** S sequences of 1–6 rows, ~25% of rows ignored (−100), rewards mixed (+, −, 0), logits ~ U(−3, 3). */
function randomCase(seed: number, method: PlainCase['method'], extra: Partial<PlainCase> = {}): Case {
  const r = rng(seed);
  const V = 5 + Math.floor(r() * 20),
    S = 2 + Math.floor(r() * 5);
  const offsets = new Int32Array(S + 1);
  for (let i = 0; i < S; i++) offsets[i + 1] = offsets[i] + 1 + Math.floor(r() * 6);
  const N = offsets[S];
  const targets = Int32Array.from({ length: N }, () => (r() < 0.25 ? -100 : Math.floor(r() * V)));
  const choices = [1, -0.5, 0.7, -1, 0, 0.3];
  const rewards = Float32Array.from({ length: S }, (_, i) => choices[(i + seed) % choices.length]);
  const logits = Float32Array.from({ length: N * V }, () => 6 * r() - 3);
  const c: Case = { logits, N, V, targets, offsets, rewards, method, ...extra };
  if (method === 'dpo') {
    const pairs = new Int32Array(2 * Math.floor(S / 2));
    for (let k = 0; k < pairs.length; k += 2) [pairs[k], pairs[k + 1]] = [k, k + 1];
    c.dpo = { refLogps: Float64Array.from({ length: S }, () => -2 - 5 * r()), pairs, beta: 0.5 };
  }
  return c;
}

function adapterOptions(c: Case): RiftLossOptions {
  return { method: c.method, negative: c.negative, reduction: c.reduction, normalizer: c.normalizer, dpo: c.dpo };
}

/** Value and gradient of f at the case's logits, as host arrays. */
function valueAndGrad(c: Case, f: (x: tf.Tensor2D) => tf.Scalar): { value: number; grad: Float32Array } {
  return tf.tidy(() => {
    const { value, grad } = tf.valueAndGrad(f)(tf.tensor2d(c.logits, [c.N, c.V]));
    return { value: value.dataSync()[0], grad: Float32Array.from(grad.dataSync()) };
  });
}

const CONFIGS: [string, PlainCase['method'], Partial<PlainCase>][] = [
  ['sft', 'sft', {}],
  ['rft', 'rft', {}],
  ['dft', 'dft', {}],
  ['rift token', 'rift', { negative: 'token' }],
  ['rift sequence', 'rift', { negative: 'sequence' }],
  ['dpo', 'dpo', {}],
];
const REDUCTIONS: Partial<PlainCase>[] = [{}, { reduction: 'sequence-mean' }, { reduction: 'sum' }, { normalizer: 7 }];

describe('riftLoss == tf.grad of the same loss in plain tf ops', () => {
  test.each(CONFIGS)('%s: value and gradient on random cases, every reduction', (_name, method, extra) => {
    let checked = 0;
    for (let seed = 1; seed <= 6; seed++)
      for (const red of REDUCTIONS) {
        const c = randomCase(seed * 31 + checked, method, { ...extra, ...red });
        const a = valueAndGrad(c, (x) => riftLoss(x, c.targets, c.offsets, c.rewards, adapterOptions(c)));
        const b = valueAndGrad(c, (x) => plainTfLoss(tf, x, c));
        expect(Number.isFinite(a.value)).toBe(true);
        expect(Math.abs(a.value - b.value)).toBeLessThanOrEqual(2e-5 * Math.max(1, Math.abs(b.value)));
        expect(maxAbsDiff(a.grad, b.grad)).toBeLessThanOrEqual(2e-5 * Math.max(maxAbs(b.grad), 1e-3));
        checked++;
      }
    expect(checked).toBe(24);
  });

  test('rft keeps only the positive sequences: equal to sft on targets with the others ignored', () => {
    const c = randomCase(5, 'rft');
    const masked = Int32Array.from(c.targets);
    for (let i = 0; i + 1 < c.offsets.length; i++)
      if (!(c.rewards![i] > 0)) masked.fill(-100, c.offsets[i], c.offsets[i + 1]);
    const a = valueAndGrad(c, (x) => riftLoss(x, c.targets, c.offsets, c.rewards, { method: 'rft' }));
    const b = valueAndGrad(c, (x) => riftLoss(x, masked, c.offsets, undefined, { method: 'sft' }));
    expect(a.value).toBe(b.value);
    expect(maxAbsDiff(a.grad, b.grad)).toBe(0);
    expect(masked.some((y, t) => y !== c.targets[t])).toBe(true); // the case has non-positive sequences with targets
  });
});

describe('riftLoss inside a tfjs model', () => {
  test('the gradient flows through other ops (variableGrads of a linear layer), upstream dy is applied', () => {
    const c = randomCase(9, 'rift', { negative: 'token' });
    const D = 6,
      r = rng(3);
    const h = tf.tensor2d(
      Float32Array.from({ length: c.N * D }, () => r() - 0.5),
      [c.N, D],
    );
    const W = tf.variable(
      tf.tensor2d(
        Float32Array.from({ length: D * c.V }, () => r() - 0.5),
        [D, c.V],
      ),
    );
    const grads = (f: (z: tf.Tensor2D) => tf.Scalar) => {
      const { value, grads } = tf.variableGrads(() => tf.mul(f(tf.matMul(h, W)), 3) as tf.Scalar, [W]);
      const out = { value: value.dataSync()[0], g: Float32Array.from(grads[W.name].dataSync()) };
      tf.dispose([value, grads[W.name]]);
      return out;
    };
    const a = grads((z) => riftLoss(z, c.targets, c.offsets, c.rewards, adapterOptions(c)));
    const b = grads((z) => plainTfLoss(tf, z, c));
    expect(Math.abs(a.value - b.value)).toBeLessThanOrEqual(2e-5 * Math.max(1, Math.abs(b.value)));
    expect(maxAbs(b.g)).toBeGreaterThan(0);
    expect(maxAbsDiff(a.g, b.g)).toBeLessThanOrEqual(2e-5 * maxAbs(b.g));
    tf.dispose([h, W]);
  });

  test('one fused kernel call per forward: with the gradient under tf.grad, without it otherwise', () => {
    const c = randomCase(2, 'sft');
    const spy = jest.spyOn(loss, 'lossAndGrad');
    try {
      const x = tf.tensor2d(c.logits, [c.N, c.V]);
      tf.dispose(
        tf.grad((z: tf.Tensor) => riftLoss(z as tf.Tensor2D, c.targets, c.offsets, undefined, { method: 'sft' }))(x),
      );
      expect(spy).toHaveBeenCalledTimes(1);
      expect(spy.mock.calls[0][0].grad).toBeInstanceOf(Float32Array);
      const value = riftLoss(x, c.targets, c.offsets, undefined, { method: 'sft' });
      expect(spy).toHaveBeenCalledTimes(2);
      expect(spy.mock.calls[1][0].grad).toBeUndefined();
      tf.dispose([x, value]);
    } finally {
      spy.mockRestore();
    }
  });

  test('no tensors leak (forward alone, and value + gradient); onResult gets the kernel result; tensor arguments work', () => {
    const c = randomCase(4, 'rift', { negative: 'sequence' });
    const x = tf.tensor2d(c.logits, [c.N, c.V]);
    const tgt = tf.tensor1d(c.targets, 'int32'),
      off = tf.tensor1d(c.offsets, 'int32'),
      rew = tf.tensor1d(c.rewards!);
    const before = tf.memory().numTensors;
    const seen: loss.LossResult[] = [];
    const onResult = (r: loss.LossResult) => void seen.push(r);
    tf.dispose(riftLoss(x, tgt, off, rew, { method: 'rift', negative: 'sequence', onResult }));
    const { value, grad } = tf.valueAndGrad((z: tf.Tensor) =>
      riftLoss(z as tf.Tensor2D, tgt, off, rew, { method: 'rift', negative: 'sequence', onResult }),
    )(x);
    const arrays = valueAndGrad(c, (z) => riftLoss(z, c.targets, c.offsets, c.rewards, adapterOptions(c)));
    expect(value.dataSync()[0]).toBe(arrays.value);
    expect(maxAbsDiff(grad.dataSync(), arrays.grad)).toBe(0);
    tf.dispose([value, grad]);
    expect(tf.memory().numTensors).toBe(before);
    expect(seen.length).toBe(2);
    expect(seen[0].seqLogps.length).toBe(c.offsets.length - 1);
    expect(seen[0].loss).toBeCloseTo(arrays.value, 5);
    tf.dispose([x, tgt, off, rew]);
  });
});

describe('riftLoss: bad input names the argument', () => {
  const c = randomCase(7, 'rift');
  const ok = () => tf.tensor2d(c.logits, [c.N, c.V]);
  const call =
    (over: { logits?: unknown; targets?: unknown; offsets?: unknown; rewards?: unknown; options?: unknown }) => () => {
      const x = 'logits' in over ? over.logits : ok();
      try {
        return riftLoss(
          x as tf.Tensor2D,
          ('targets' in over ? over.targets : c.targets) as Int32Array,
          ('offsets' in over ? over.offsets : c.offsets) as Int32Array,
          ('rewards' in over ? over.rewards : c.rewards) as Float32Array,
          ('options' in over ? over.options : { method: 'rift' }) as RiftLossOptions,
        );
      } finally {
        if (!('logits' in over)) tf.dispose(x as tf.Tensor);
      }
    };
  const disposed = () => {
    const t = ok();
    t.dispose();
    return t;
  };
  test.each([
    ['logits not a tensor', { logits: c.logits }, TypeError, /^logits: must be a tf.Tensor, got Float32Array/],
    ['logits disposed', { logits: disposed() }, TypeError, /^logits: the tensor is disposed/],
    [
      'logits rank 3',
      { logits: tf.zeros([2, 3, 4]) },
      RangeError,
      /^logits: must be a rank-2 tensor, got rank 3 \(shape \[2, 3, 4\]\)/,
    ],
    [
      'logits int32',
      { logits: tf.zeros([c.N, c.V], 'int32') },
      TypeError,
      /^logits: must be a tensor of dtype float32, got int32/,
    ],
    ['logits rows ≠ targets', { logits: tf.zeros([c.N + 1, c.V]) }, RangeError, /^targets: length must be/],
    [
      'target outside the vocabulary',
      { targets: Int32Array.from(c.targets, (y, t) => (t === 0 ? c.V : y)) },
      RangeError,
      /^targets: targets\[0\] = \d+ is outside \[0, \d+\) and not -100/,
    ],
    [
      'targets a float tensor',
      { targets: tf.tensor1d(Float32Array.from(c.targets)) },
      TypeError,
      /^targets: must be a tensor of dtype int32, got float32/,
    ],
    [
      'targets a disposed tensor',
      {
        targets: (() => {
          const t = tf.tensor1d(c.targets, 'int32');
          t.dispose();
          return t;
        })(),
      },
      TypeError,
      /^targets: the tensor is disposed/,
    ],
    [
      'targets rank 2',
      { targets: tf.tensor2d(c.targets, [1, c.N], 'int32') },
      RangeError,
      /^targets: must be a rank-1 tensor/,
    ],
    [
      'targets a plain array',
      { targets: Array.from(c.targets) },
      TypeError,
      /^targets: must be a Int32Array, got Array/,
    ],
    [
      'offsets not ending at rows',
      { offsets: Int32Array.from(c.offsets, (o, i) => (i === c.offsets.length - 1 ? o - 1 : o)) },
      RangeError,
      /^offsets: last offset must equal rows/,
    ],
    [
      'rewards missing for rift',
      { rewards: undefined },
      TypeError,
      /^rewards: a Float32Array of length S is required for method 'rift'/,
    ],
    [
      'rewards missing for rft',
      { rewards: null, options: { method: 'rft' } },
      TypeError,
      /^rewards: a Float32Array of length S is required for method 'rft'/,
    ],
    ['rewards wrong length', { rewards: new Float32Array(1) }, RangeError, /^rewards: length must be/],
    [
      'unknown method',
      { options: { method: 'ppo' } },
      RangeError,
      /^method: must be one of 'sft', 'rft', 'dft', 'rift', 'dpo', got 'ppo'/,
    ],
    ['logprob is not a loss', { options: { method: 'logprob' } }, RangeError, /^method: must be one of/],
    [
      'dpo without pairs',
      { options: { method: 'dpo' } },
      TypeError,
      /^dpo: an object \{refLogprobs, pairs, beta\?\} is required/,
    ],
    ['options not an object', { options: 3 }, TypeError, /^options: must be an object/],
  ] as [string, Record<string, unknown>, ErrorConstructor, RegExp][])('%s', (_name, over, Ctor, message) => {
    const before = tf.memory().numTensors;
    let err: unknown;
    try {
      call(over)();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Ctor);
    expect((err as Error).message).toMatch(message);
    expect(tf.memory().numTensors).toBe(before); // nothing left behind
  });
});
