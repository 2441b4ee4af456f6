// The N-API argument layer (native/napi/args.h, loss_args.h): every key of an options object is read before any
// data pointer is taken, one LossSpec parser (same messages from lossAndGrad and Model.lossAndBackward), and
// arrays backed by a SharedArrayBuffer are accepted by every binding.
import { addon } from '../lib/native';
import { f32ToBf16, lossAndGrad } from '../lib';
import { Model } from '../lib/engine/model';
import { makeCase } from './helpers/cases';
import { detach, shared } from './helpers/memory-race';
import { ops } from './helpers/ops-reference';

const QWEN = {
  model_type: 'qwen2',
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

/** A native-level loss call (numeric enums) over 256 KB of logits. */
function lossArgs() {
  const c = makeCase({ method: 'rift', seed: 5, V: 1024, lengths: [20, 12, 32] });
  const o = c.opts;
  return {
    logits: Float32Array.from(c.logits32),
    grad: new Float32Array(c.logits32.length),
    rows: o.rows,
    vocab: o.vocab,
    targets: o.targets,
    offsets: o.offsets,
    rewards: o.rewards,
    method: 2,
    negative: 0,
    reduction: 0,
    tokenLogps: true,
  };
}

describe('options are read before any data pointer is taken', () => {
  test.each(['grad', 'targets', 'offsets', 'rewards', 'pairs'])(
    'a getter on %s that detaches the logits leaves lossAndGrad with zero-length logits (RangeError), not freed memory',
    (key) => {
      const a: Record<string, unknown> = lossArgs();
      const value = a[key];
      Object.defineProperty(a, key, {
        enumerable: true,
        get() {
          detach((a.logits as Float32Array).buffer);
          return value;
        },
      });
      expect(() => addon.lossAndGrad(a)).toThrow(/^logits: length must be rows × vocab/);
    },
  );

  test('a getter on the model loss options runs before ids are read', () => {
    const model = Model.fromConfig(QWEN, { seed: 1 });
    const B = 2,
      T = 8;
    const ids = new Int32Array(B * T).fill(3);
    const o: Record<string, unknown> = {
      B,
      T,
      targets: new Int32Array(B * T).fill(4),
      offsets: new Int32Array([0, 8, 16]),
      method: 0,
      backward: false,
    };
    Object.defineProperty(o, 'ids', { enumerable: true, get: () => ids });
    Object.defineProperty(o, 'entropy', { enumerable: true, get: () => (detach(ids.buffer), false) });
    expect(() => model.native.lossAndBackward(o)).toThrow(/^ids: length must be B × T = 16 \(got 0\)/);
  });
});

describe('one LossSpec parser: lossAndGrad and Model.lossAndBackward say the same', () => {
  const model = Model.fromConfig(QWEN, { seed: 2 });
  const B = 1,
    T = 6;
  const modelArgs = {
    ids: new Int32Array(B * T).fill(1),
    B,
    T,
    targets: new Int32Array(B * T).fill(2),
    offsets: new Int32Array([0, 2, 6]),
    method: 0,
    backward: false,
  };
  const lossBase = () => ({
    logits: new Float32Array(T * 40),
    rows: T,
    vocab: 40,
    targets: modelArgs.targets,
    offsets: modelArgs.offsets,
    method: 0,
  });
  test.each([
    [
      'rewards',
      { method: 2, rewards: new Float32Array(3) },
      /^rewards: length must be the number of sequences S = 2 \(got 3\)$/,
    ],
    ['offsets', { offsets: new Int32Array(0) }, /^offsets: must hold S \+ 1 entries \(at least one\)$/],
    [
      'refLogps',
      { method: 3, refLogps: new Float64Array(1), pairs: new Int32Array([0, 1]) },
      /^refLogps: length must be the number of sequences S = 2 \(got 1\)$/,
    ],
    ['pairs', { method: 3, refLogps: new Float64Array(2), pairs: new Int32Array([0]) }, /^pairs: length must be even/],
    ['normalizer', { normalizer: -1 }, /^normalizer: must be > 0 \(or 0: derived from the batch\)$/],
    ['normalizer NaN', { normalizer: NaN }, /^normalizer: must be a finite number$/],
    ['tokenLogps', { tokenLogps: 1 }, /^tokenLogps: must be a boolean$/],
    ['method', { method: 7 }, /^method: must be an integer in \[0, 5\]$/],
  ])('%s', (_name, bad, message) => {
    expect(() => addon.lossAndGrad({ ...lossBase(), ...bad })).toThrow(message);
    expect(() => model.native.lossAndBackward({ ...modelArgs, ...bad })).toThrow(message);
  });
});

describe('SharedArrayBuffer-backed arrays are accepted by every binding', () => {
  test('lossAndGrad (logits, grad, targets, offsets, rewards)', () => {
    const a = lossArgs();
    const want = addon.lossAndGrad({ ...a, logits: a.logits.slice(), grad: new Float32Array(a.grad.length) });
    const s = {
      ...a,
      logits: shared(a.logits),
      grad: shared(a.grad),
      targets: shared(a.targets),
      offsets: shared(a.offsets),
      rewards: shared(a.rewards!),
    };
    const got = addon.lossAndGrad(s);
    expect(got.loss).toBe(want.loss);
    expect(Array.from(got.tokenLogps!)).toEqual(Array.from(want.tokenLogps!));
    expect(Array.from(s.grad)).toEqual(Array.from(lossAndGradRef(a)));
  });

  test('the TypeScript lossAndGrad with SharedArrayBuffer-backed bf16 logits', () => {
    const c = makeCase({ method: 'sft', seed: 8, bf16: true });
    const logits = f32ToBf16(c.logits32);
    const want = lossAndGrad({ ...c.opts, logits, tokenLogps: true });
    const got = lossAndGrad({ ...c.opts, logits: shared(logits), tokenLogps: true });
    expect(got.loss).toBe(want.loss);
    expect(Array.from(got.tokenLogps!)).toEqual(Array.from(want.tokenLogps!));
  });

  test('Model forward / lossAndBackward / prefill, ops and the sampler', () => {
    const model = Model.fromConfig(QWEN, { seed: 3 });
    const B = 2,
      T = 5;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 40);
    expect(Array.from(model.forward(shared(ids), B, T))).toEqual(Array.from(model.forward(ids, B, T)));
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -100 : (i * 3) % 40));
    const offsets = new Int32Array([0, T, 2 * T]);
    const opts = { ids, B, T, targets, offsets, method: 'sft' as const, backward: false };
    const want = model.lossAndBackward(opts);
    const got = model.lossAndBackward({
      ...opts,
      ids: shared(ids),
      targets: shared(targets),
      offsets: shared(offsets),
    });
    expect(got.loss).toBe(want.loss);
    const c1 = model.newKvCache(B, 8),
      c2 = model.newKvCache(B, 8);
    expect(Array.from(model.prefill(c1, shared(ids), B, T))).toEqual(Array.from(model.prefill(c2, ids, B, T)));

    const x = Float32Array.from({ length: 12 }, (_, i) => i - 5);
    const out1 = new Float32Array(12),
      out2 = shared(new Float32Array(12));
    ops.add({ out: out1, a: x, b: x });
    ops.add({ out: out2, a: shared(x), b: shared(x) });
    expect(Array.from(out2)).toEqual(Array.from(out1));

    const z = Float32Array.from({ length: 8 }, (_, i) => Math.sin(i));
    const u = new Float64Array([0.25, 0.75]);
    expect(addon.sampleRows(shared(z), 2, 4, 1, 0, 1, shared(u))).toEqual(addon.sampleRows(z, 2, 4, 1, 0, 1, u));
  });
});

/** The gradient lossAndGrad writes for these arguments, into a fresh ordinary array. */
function lossAndGradRef(a: ReturnType<typeof lossArgs>): Float32Array {
  const grad = new Float32Array(a.grad.length);
  addon.lossAndGrad({ ...a, logits: a.logits.slice(), grad });
  return grad;
}
