// The device / precision options of Model (lib/engine/model.ts → native/napi/model.cc → OpsBackend):
// (a) the host-copy API every device shares (readBuffer / writeBuffer through params(), tensor(), setParams(),
//     setTensor(), optimizerState() / setOptimizerState(), editParams()), run on every usable device;
// (b) precision 'bf16' (GEMM operands rounded to bfloat16, fp32 accumulation) against the fp32 model: close, but
//     measurably different — so the bf16 path is really taken;
// (c) CUDA against its CPU twin (only where Model.devices() lists 'cuda'): forward, loss, every gradient, an AdamW
//     step and KV-cache decoding, in fp32 and in bf16;
// (d) typed errors for bad options, and a clear error for device 'cuda' where no GPU is usable.
// test/model.test.ts runs the whole engine suite once per usable device as well.
import { parseConfig } from '../lib/engine/checkpoint';
import { Device, Model, Precision } from '../lib/engine/model';
import { defaultChunkRows } from '../lib/profile/memory';
import { adamwRef } from './helpers/ops-reference';
import { maxAbs } from './helpers/parity';

const QWEN = parseConfig({
  model_type: 'qwen2',
  vocab_size: 48,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
});
const DEVICES = Model.devices();
/** The memory report's categories of a device (host at the top level, GPU under .device). */
const space = (r: ReturnType<typeof Model.memory>, device: Device) => (device === 'cuda' ? r.device : r);
const B = 2,
  T = 12,
  N = B * T;

function ids(seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from(
    { length: N },
    () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % QWEN.vocab_size,
  );
}
const IDS = ids(5);
const TARGETS = Int32Array.from({ length: N }, (_, i) => (i % T >= 2 && i % T < T - 1 ? IDS[i + 1] : -100));
const OFFSETS = new Int32Array([0, T, N]);
const REWARDS = new Float32Array([1, -0.5]);

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The embedding's values reversed (a different but same-scale table) and its offset in the flat buffer. */
function m0Embedding(m: Model): { data: Float32Array; offset: number } {
  const t = m.tensorTable().find((e) => e.name === 'model.embed_tokens.weight')!;
  return { data: Float32Array.from(m.tensor(t.name)).reverse(), offset: t.offset };
}

function make(device: Device, precision: Precision): Model {
  return Model.fromConfig(QWEN, { device, precision, seed: 3, std: 0.2, normStd: 0.1, chunkRows: 7 });
}

/** One RIFT training step; returns what a comparison needs. */
function run(m: Model) {
  const logits = m.forward({ ids: IDS, B, T });
  const r = m.lossAndBackward({
    ids: IDS,
    B,
    T,
    targets: TARGETS,
    offsets: OFFSETS,
    method: 'rift',
    rewards: REWARDS,
    negative: 'sequence',
  });
  const grads = m.grads();
  // The AdamW step against a float64 reference fed with this device's own gradients: across devices the first
  // step lr·g/(|g| + eps) amplifies gradient rounding noise by up to lr/eps where |g| is near 0, so parameters are
  // compared to what this device's gradients must give, and the gradients across devices.
  const p0 = Float64Array.from(m.params());
  const hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const { clipScale } = m.step({ ...hyper, maxGradNorm: 1 });
  adamwRef(
    p0,
    Float64Array.from(grads, (x) => x * clipScale),
    new Float64Array(p0.length),
    new Float64Array(p0.length),
    1,
    hyper,
  );
  const stepped = m.params();
  let adamwErr = 0;
  for (let i = 0; i < p0.length; i++)
    adamwErr = Math.max(adamwErr, Math.abs(stepped[i] - p0[i]) / (1e-6 + 1e-5 * Math.abs(p0[i])));
  const cache = m.newKvCache(B, T + 2);
  m.prefill(cache, IDS, B, T);
  const decoded = m.decode(cache, new Int32Array([1, 2]));
  return { logits, loss: r.loss, seq: Array.from(r.seqLogps), grads, adamwErr, opt: m.optimizerState(), decoded };
}

describe.each(DEVICES)('host-copy API on device %s', (device) => {
  test('params / tensor / setParams / setTensor / editParams / optimizer state round-trip', () => {
    const m = make(device, 'fp32');
    expect(m.device).toBe(device);
    expect(m.precision).toBe('fp32');
    const p = Float32Array.from(m.params());
    expect(p.length).toBe(m.numParams);
    const name = 'model.layers.1.mlp.up_proj.weight';
    const t = m.tensorTable().find((e) => e.name === name)!;
    expect(Array.from(m.tensor(name))).toEqual(Array.from(p.subarray(t.offset, t.offset + 64 * 32)));
    const w = Float32Array.from({ length: 64 * 32 }, (_, i) => i / 7);
    m.setTensor(name, w);
    expect(Array.from(m.tensor(name))).toEqual(Array.from(w));
    m.setParams(new Float32Array([9, 8]), 3);
    expect(Array.from(m.params().subarray(2, 6))).toEqual([p[2], 9, 8, p[5]]);
    m.editParams((tensor) => tensor('model.norm.weight')!.fill(2));
    expect(Array.from(new Set(m.tensor('model.norm.weight')))).toEqual([2]);
    expect(Array.from(m.tensor(name))).toEqual(Array.from(w)); // tensors fn did not touch keep their values
    const n = m.numParams;
    const mm = Float32Array.from({ length: n }, (_, i) => i % 5),
      vv = Float32Array.from({ length: n }, (_, i) => i % 3);
    m.setOptimizerState({ m: mm, v: vv });
    m.setOptimizerSteps(4);
    const s = m.optimizerState();
    expect(Buffer.from(s.m.buffer, s.m.byteOffset, s.m.byteLength).equals(Buffer.from(mm.buffer))).toBe(true);
    expect(Buffer.from(s.v.buffer, s.v.byteOffset, s.v.byteLength).equals(Buffer.from(vv.buffer))).toBe(true);
    expect(m.optimizerSteps).toBe(4);
  });

  test('bad arguments are typed errors naming the argument', () => {
    const m = make(device, 'fp32');
    expect(() => m.setParams(new Float64Array(2) as unknown as Float32Array)).toThrow(/^data: /);
    expect(() => m.setParams(new Float32Array(2), m.numParams - 1)).toThrow(RangeError);
    expect(() => m.setParams(new Float32Array(2), -1)).toThrow(/^offset: /);
    expect(() => m.setTensor('nope', new Float32Array(1))).toThrow(/^name: /);
    expect(() => m.setTensor('model.norm.weight', new Float32Array(3))).toThrow(/^data: length must be 32/);
    expect(() => m.setOptimizerState({ m: new Float32Array(1), v: new Float32Array(1) })).toThrow(/^m: length/);
    expect(() => m.native.readBuffer('x' as 'm')).toThrow(/^which: /);
    expect(() => m.native.readBuffer('params', 0, m.numParams + 1)).toThrow(/^n: /);
    expect(() => m.native.writeBuffer('grads', new Float32Array(4), m.numParams - 3)).toThrow(/^data: /);
  });
});

describe.each(DEVICES)('activation recomputation on device %s', (device) => {
  test('the same loss, log-probs and gradients as saving every activation, with fewer activation bytes', () => {
    const grads = (recompute: boolean) => {
      const m = Model.fromConfig(QWEN, {
        device,
        precision: 'fp32',
        recompute,
        seed: 3,
        std: 0.2,
        normStd: 0.1,
        chunkRows: 7,
      });
      expect(m.recompute).toBe(recompute);
      const before = space(Model.memory(), device).activations.current;
      const r = m.lossAndBackward({
        ids: IDS,
        B,
        T,
        targets: TARGETS,
        offsets: OFFSETS,
        method: 'rift',
        rewards: REWARDS,
        negative: 'sequence',
      });
      const acts = space(Model.memory(), device).activations.current - before;
      return { loss: r.loss, seq: Array.from(r.seqLogps), g: m.grads(), acts };
    };
    const a = grads(false),
      b = grads(true);
    expect(b.loss).toBe(a.loss);
    expect(b.seq).toEqual(a.seq);
    // CPU: the same deterministic ops in the same order, bit for bit; CUDA: allow cuBLAS a different algorithm.
    const tol = device === 'cpu' ? 0 : 1e-6 * maxAbs(a.g);
    expect(maxDiff(b.g, a.g)).toBeLessThanOrEqual(tol);
    expect(b.acts).toBeLessThan(a.acts);
    expect(() => Model.fromConfig(QWEN, { device, recompute: 1 as unknown as boolean })).toThrow(
      /^recompute: must be a boolean/,
    );
  });
});

describe.each(DEVICES)('bf16 activation storage on device %s', (device) => {
  test('the same forward and loss; gradients within bf16 rounding of the fp32-stored ones; about half the bytes', () => {
    const run1 = (activationDtype: Precision) => {
      const deep = parseConfig({ ...QWEN.raw, num_hidden_layers: 6 }); // L bf16 copies + one fp32 set: ~(L/2 + 1) sets
      const m = Model.fromConfig(deep, {
        device,
        precision: 'fp32',
        activationDtype,
        seed: 3,
        std: 0.2,
        normStd: 0.1,
        chunkRows: 7,
      });
      expect(m.activationDtype).toBe(activationDtype);
      const before = space(Model.memory(), device).activations.current;
      const r = m.lossAndBackward({
        ids: IDS,
        B,
        T,
        targets: TARGETS,
        offsets: OFFSETS,
        method: 'rift',
        rewards: REWARDS,
        negative: 'sequence',
        tokenLogps: true,
      });
      return { r, g: m.grads(), acts: space(Model.memory(), device).activations.current - before };
    };
    const a = run1('fp32'),
      b = run1('bf16');
    expect(b.r.loss).toBe(a.r.loss); // the forward is fp32 either way; only the saved copies are rounded
    expect(Array.from(b.r.tokenLogps!)).toEqual(Array.from(a.r.tokenLogps!));
    const d = maxDiff(b.g, a.g),
      s = maxAbs(a.g);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(2e-2 * s);
    expect(b.acts).toBeLessThan(0.8 * a.acts);
    expect(Model.fromConfig(QWEN, { device, precision: 'bf16' }).activationDtype).toBe('bf16'); // follows the precision
    expect(() => Model.fromConfig(QWEN, { device, activationDtype: 'fp16' as Precision })).toThrow(
      /^activationDtype: /,
    );
  });
});

describe.each(DEVICES)('the no-gradient forward on device %s', (device) => {
  test("'logprob' and backward:false: the training path's log-probs and loss, one temporary scratch, gradients untouched", () => {
    const m = Model.fromConfig(QWEN, { device, precision: 'fp32', seed: 3, std: 0.2, normStd: 0.1, chunkRows: 7 });
    const batch = { ids: IDS, B, T, targets: TARGETS, offsets: OFFSETS, tokenLogps: true };
    Model.resetPeaks();
    const before = space(Model.memory(), device).activations;
    const lp = m.lossAndBackward({ ...batch, method: 'logprob' });
    const sft = m.lossAndBackward({ ...batch, method: 'sft', backward: false });
    const after = space(Model.memory(), device).activations;
    expect(after.current).toBe(before.current); // the scratch is freed; no training activations were allocated
    const N_ = N,
      n16 = (x: number) => Math.ceil(x / 16) * 16,
      { hidden_size: C, intermediate_size: I } = QWEN;
    const QD = QWEN.num_attention_heads * QWEN.head_dim,
      KD = QWEN.num_key_value_heads * QWEN.head_dim;
    expect(after.peak - before.current).toBe(
      4 * (2 * n16(N_ * C) + n16(N_) + 2 * n16(N_ * QD) + 2 * n16(N_ * KD) + 2 * n16(N_ * I)),
    );
    expect(m.native.info().hasGrads).toBe(false);
    const train = m.lossAndBackward({ ...batch, method: 'sft' }); // the training path (saves activations)
    const tol = 2e-6 * maxAbs(train.tokenLogps!);
    expect(maxDiff(lp.tokenLogps!, train.tokenLogps!)).toBeLessThanOrEqual(tol);
    expect(maxDiff(sft.tokenLogps!, train.tokenLogps!)).toBeLessThanOrEqual(tol);
    expect(Math.abs(sft.loss - train.loss)).toBeLessThanOrEqual(2e-6 * Math.abs(train.loss));
    expect(maxDiff(lp.seqLogps, train.seqLogps)).toBeLessThanOrEqual(1e-5 * maxAbs(train.seqLogps));
  });
});

describe.each(DEVICES)('precision bf16 on device %s', (device) => {
  test('close to fp32, but not equal: the bf16 GEMMs are in use', () => {
    const a = run(make(device, 'fp32'));
    const b = run(make(device, 'bf16'));
    const scale = maxAbs(a.logits);
    const d = maxDiff(a.logits, b.logits);
    // bf16 keeps 8 significant bits: relative rounding 2^-9 per operand; through 2 layers a few 1e-3 of the scale.
    expect(d).toBeGreaterThan(1e-6 * scale);
    expect(d).toBeLessThan(3e-2 * scale);
    expect(Math.abs(a.loss - b.loss)).toBeLessThan(2e-2 * Math.abs(a.loss));
    const gd = maxDiff(a.grads, b.grads),
      gs = maxAbs(a.grads);
    expect(gd).toBeGreaterThan(0);
    expect(gd).toBeLessThan(5e-2 * gs);
    expect(a.adamwErr).toBeLessThanOrEqual(1); // the optimizer is fp32 at either precision
    expect(b.adamwErr).toBeLessThanOrEqual(1);
  });
});

const cudaOnly = DEVICES.includes('cuda') ? describe : describe.skip;
cudaOnly.each(['fp32', 'bf16'] as const)('CUDA against its CPU twin, precision %s', (precision) => {
  // fp32: the same math in another summation order (cuBLAS, warp reductions, fast-math exp in attention);
  // bf16: both round the GEMM / attention operands by the same rule, so only the summation order differs — but an
  // fp32 value within ~1e-6 of a bf16 rounding tie may round the other way (one bf16 step, 2^-8 relative, on one
  // operand element), which moves an output by up to ~1e-3 of its scale in this 32-wide model.
  const tol = precision === 'fp32' ? 1e-4 : 5e-3;
  test('forward, loss, every gradient, one AdamW step and KV-cache decoding agree', () => {
    const c = run(make('cpu', precision));
    const g = run(make('cuda', precision));
    expect(maxDiff(g.logits, c.logits)).toBeLessThanOrEqual(tol * maxAbs(c.logits));
    expect(Math.abs(g.loss - c.loss)).toBeLessThanOrEqual(tol * Math.abs(c.loss));
    expect(maxDiff(g.seq, c.seq)).toBeLessThanOrEqual(tol * maxAbs(c.seq));
    expect(maxDiff(g.grads, c.grads)).toBeLessThanOrEqual(10 * tol * maxAbs(c.grads));
    expect(c.adamwErr).toBeLessThanOrEqual(1); // each device's step is AdamW of its own gradients (see run())
    expect(g.adamwErr).toBeLessThanOrEqual(1);
    expect(maxDiff(g.opt.m, c.opt.m)).toBeLessThanOrEqual(10 * tol * maxAbs(c.opt.m));
    expect(maxDiff(g.decoded, c.decoded)).toBeLessThanOrEqual(tol * maxAbs(c.decoded) * 4);
  });

  test('memory lives on the device: params, grads, optimizer, activations under memory().device', () => {
    const before = Model.memory().device;
    const m = make('cuda', precision);
    run(m);
    const after = Model.memory().device;
    for (const k of ['params', 'grads', 'optimizer'] as const)
      expect(after[k].current - before[k].current).toBeGreaterThanOrEqual(
        m.numParams * 4 * (k === 'optimizer' ? 2 : 1),
      );
    // bf16 keeps a bf16 copy of the weights for its GEMMs, under params (lib/profile/memory.ts predicts it)
    expect(after.params.current - before.params.current).toBe(m.numParams * (precision === 'bf16' ? 6 : 4));
    expect(after.activations.peak).toBeGreaterThan(0);
  });

  test("the GEMMs see every write to the weights (bf16: the weights' bf16 copy follows them)", () => {
    const c = make('cpu', precision),
      g = make('cuda', precision);
    const check = (what: string) => {
      const a = c.forward({ ids: IDS, B, T }),
        b = g.forward({ ids: IDS, B, T });
      expect([what, maxDiff(b, a) <= tol * maxAbs(a)]).toEqual([what, true]);
    };
    check('initial');
    const name = 'model.layers.0.mlp.up_proj.weight';
    const w = Float32Array.from({ length: 64 * 32 }, (_, i) => Math.sin(i) / 4);
    for (const m of [c, g]) m.setTensor(name, w);
    check('setTensor');
    const emb = m0Embedding(c);
    for (const m of [c, g]) m.setParams(emb.data, emb.offset);
    check('setParams');
    for (const m of [c, g])
      m.editParams((tensor) => tensor('model.layers.1.self_attn.q_proj.weight')!.forEach((x, i, t) => (t[i] = -2 * x)));
    check('editParams');
    for (const m of [c, g]) {
      m.lossAndBackward({ ids: IDS, B, T, targets: TARGETS, offsets: OFFSETS, method: 'sft' });
      m.step({ lr: 5e-2 });
    }
    check('step');
  });
});

describe('options', () => {
  test('bad device / precision are typed errors; cuda without a usable GPU is a clear TypeError', () => {
    expect(() => Model.fromConfig(QWEN, { device: 'tpu' as Device })).toThrow(
      /^device: must be one of 'cpu', 'cuda', got 'tpu'/,
    );
    expect(() => Model.fromConfig(QWEN, { precision: 'fp16' as Precision })).toThrow(
      /^precision: must be one of 'fp32', 'bf16', got 'fp16'/,
    );
    expect(() => new (Object.getPrototypeOf(make('cpu', 'fp32').native).constructor)(QWEN.raw, { device: 3 })).toThrow(
      /^device: /,
    );
    if (!DEVICES.includes('cuda')) {
      let err: unknown;
      try {
        Model.fromConfig(QWEN, { device: 'cuda' });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TypeError);
      expect((err as Error).message).toMatch(/^device: is 'cuda' but no CUDA device/);
    }
    expect(DEVICES[0]).toBe('cpu');
  });

  test.each(DEVICES)(
    'default lm_head chunk rows on %s follow defaultChunkRows (the memory prediction relies on it)',
    (device) => {
      for (const vocab of [48, 5000, 151936]) {
        const cfg = parseConfig({ ...QWEN.raw, vocab_size: vocab, num_hidden_layers: 1 });
        expect([vocab, Model.fromConfig(cfg, { device, std: 0 }).native.info().chunkRows]).toEqual([
          vocab,
          defaultChunkRows(vocab, device),
        ]);
      }
      expect(defaultChunkRows(151936, 'cpu')).toBe(110);
      expect(defaultChunkRows(151936, 'cuda')).toBe(1766);
    },
  );

  test("defaults: fp32 on the CPU; a CPU model's params() is a zero-copy view", () => {
    const m = Model.fromConfig(QWEN, { seed: 1 });
    expect([m.device, m.precision]).toEqual(['cpu', 'fp32']);
    m.params()[0] = 42;
    expect(m.params()[0]).toBe(42);
  });
});
