// bf16 activations written by their producers (model/ops.h *_bf16 ops, model/decoder_bf16.cc):
// (a) each op equals the fp32 op composed with toBf16 / fromBf16, bit for bit, on every usable device and both
//     precisions (the CUDA BF16 instance feeds the bf16 input to cuBLAS as it is: the same bits by construction of
//     the rounding; the CPU instances widen it where they used to round);
// (b) a Model with bf16 GEMMs and bf16 activations takes the direct path (info().bf16Direct) and gives the same
//     loss, log-probs, gradients and AdamW steps, bit for bit, as the store-then-widen path (bf16Direct: false),
//     in less activation memory: its shared fp32 set leaves out ln1, ln2 and h (2·r(N·C) + r(N·I) floats);
// (c) bad arguments are typed errors naming them.
import { parseConfig } from '../lib/engine/checkpoint';
import { Device, Model } from '../lib/engine/model';
import { ops, rand32, rng } from './helpers/ops-reference';

const seeded = (n: number, seed: number, scale: number) => rand32(n, rng(seed), scale);

const PRECISIONS = ['fp32', 'bf16'] as const;

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  const x = a instanceof Float32Array ? a : Float32Array.from(a);
  const y = b instanceof Float32Array ? b : Float32Array.from(b);
  return (
    x.length === y.length &&
    Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength))
  );
}

function bf16Of(x: Float32Array, device: Device): Uint16Array {
  const out = new Uint16Array(x.length);
  ops.toBf16({ out, x, device });
  return out;
}

function widen(x: Uint16Array, device: Device): Float32Array {
  const out = new Float32Array(x.length);
  ops.fromBf16({ out, x, device });
  return out;
}

describe.each(ops.devices())('bf16-activation ops on %s', (device) => {
  test.each(PRECISIONS)('rmsnorm and swiglu write the bf16 of the fp32 op (precision %s)', (precision) => {
    const T = 37,
      C = 72;
    const inp = seeded(T * C, 1, 2),
      weight = seeded(C, 2, 1);
    const out = new Float32Array(T * C),
      rstd = new Float32Array(T);
    ops.rmsnormForward({ out, rstd, inp, weight, T, C, eps: 1e-6, device, precision });
    const out16 = new Uint16Array(T * C),
      rstd16 = new Float32Array(T);
    ops.rmsnormForwardBf16({ out: out16, rstd: rstd16, inp, weight, T, C, eps: 1e-6, device, precision });
    expect(same(rstd16, rstd)).toBe(true);
    expect(Array.from(out16)).toEqual(Array.from(bf16Of(out, device)));

    const n = 4099; // not a multiple of 4: the vector path's tail
    const gate = seeded(n, 3, 4),
      up = seeded(n, 4, 2);
    const h = new Float32Array(n);
    ops.swigluForward({ out: h, gate, up, device, precision });
    const h16 = new Uint16Array(n);
    ops.swigluForwardBf16({ out: h16, gate, up, device, precision });
    expect(Array.from(h16)).toEqual(Array.from(bf16Of(h, device)));
  });

  test.each(PRECISIONS)('a linear layer on a bf16 input equals it on the widened input (precision %s)', (precision) => {
    const M = 29,
      N = 23,
      K = 40;
    const inp16 = bf16Of(seeded(M * K, 5, 1), device);
    const inp = widen(inp16, device);
    const weight = seeded(N * K, 6, 0.3),
      bias = seeded(N, 7, 0.1),
      dout = seeded(M * N, 8, 1);
    for (const accumulate of [false, true]) {
      const a = seeded(M * N, 9, 1),
        b = Float32Array.from(a);
      ops.matmulForward({ out: a, inp, weight, bias, M, N, K, accumulate, device, precision });
      ops.matmulForwardBf16({ out: b, inp: inp16, weight, bias, M, N, K, accumulate, device, precision });
      expect(same(b, a)).toBe(true);
      const g = () => ({ dinp: seeded(M * K, 10, 1), dweight: seeded(N * K, 11, 1), dbias: seeded(N, 12, 1) });
      const x = g(),
        y = g();
      ops.matmulBackward({ ...x, dout, inp, weight, M, N, K, accumulate, device, precision });
      ops.matmulBackwardBf16({ ...y, dout, inp: inp16, weight, M, N, K, accumulate, device, precision });
      expect([same(y.dinp, x.dinp), same(y.dweight, x.dweight), same(y.dbias, x.dbias)]).toEqual([true, true, true]);
    }
    // dweight only (no weight needed), dinp only (no inp needed)
    const dw1 = new Float32Array(N * K),
      dw2 = new Float32Array(N * K);
    ops.matmulBackward({ dweight: dw1, dout, inp, M, N, K, device, precision });
    ops.matmulBackwardBf16({ dweight: dw2, dout, inp: inp16, M, N, K, device, precision });
    expect(same(dw2, dw1)).toBe(true);
    const di = new Float32Array(M * K);
    ops.matmulBackwardBf16({ dinp: di, dout, weight, M, N, K, device, precision });
    const di1 = new Float32Array(M * K);
    ops.matmulBackward({ dinp: di1, dout, weight, M, N, K, device, precision });
    expect(same(di, di1)).toBe(true);
  });

  test('bad arguments are typed errors naming them', () => {
    const f = (n: number) => new Float32Array(n),
      u = (n: number) => new Uint16Array(n);
    expect(() =>
      ops.matmulForwardBf16({ out: f(6), inp: f(6) as unknown as Uint16Array, weight: f(9), M: 2, N: 3, K: 3, device }),
    ).toThrow(/^inp: must be a Uint16Array/);
    expect(() => ops.matmulForwardBf16({ out: f(6), inp: u(5), weight: f(9), M: 2, N: 3, K: 3, device })).toThrow(
      /^inp: /,
    );
    expect(() => ops.matmulBackwardBf16({ dweight: f(9), dout: f(6), M: 2, N: 3, K: 3, device })).toThrow(
      /^inp: must be a Uint16Array/,
    );
    expect(() =>
      ops.rmsnormForwardBf16({ out: u(5), rstd: f(2), inp: f(6), weight: f(3), T: 2, C: 3, eps: 1e-6, device }),
    ).toThrow(/^out: /);
    expect(() => ops.swigluForwardBf16({ out: u(4), gate: f(4), up: f(3), device })).toThrow(/^up: /);
    expect(() => ops.matmulForwardBf16({ out: f(6), inp: u(6), weight: f(9), M: -1, N: 3, K: 3, device })).toThrow(
      /^M: /,
    );
  });
});

const CFG = parseConfig({
  model_type: 'qwen2',
  vocab_size: 48,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
});
const B = 2,
  T = 12,
  NT = B * T;
const IDS = Int32Array.from({ length: NT }, (_, i) => (i * 7 + 3) % 48);
const TARGETS = Int32Array.from({ length: NT }, (_, i) => (i % T >= 2 && i % T < T - 1 ? IDS[i + 1] : -100));
const BATCH = {
  ids: IDS,
  B,
  T,
  targets: TARGETS,
  offsets: new Int32Array([0, T, NT]),
  method: 'rift' as const,
  rewards: new Float32Array([1, -0.5]),
  negative: 'sequence' as const,
  tokenLogps: true,
};

describe.each(Model.devices())('the direct bf16 path of a Model on %s', (device) => {
  function train(direct: boolean) {
    const m = Model.fromConfig(CFG, {
      device,
      precision: 'bf16',
      activationDtype: 'bf16',
      bf16Direct: direct,
      seed: 4,
      std: 0.2,
      normStd: 0.1,
      chunkRows: 7,
    });
    const path = m.native.info().bf16Direct;
    const mem = () => (device === 'cuda' ? Model.memory().device! : Model.memory()).activations.current;
    const before = mem();
    const steps = [];
    for (let s = 0; s < 3; s++) {
      m.zeroGrad();
      const r = m.lossAndBackward(BATCH);
      steps.push({ loss: r.loss, logps: Array.from(r.tokenLogps!), grads: Float32Array.from(m.grads()) });
      m.step({ lr: 1e-2, maxGradNorm: 1 });
    }
    const out = { path, steps, params: Float32Array.from(m.params()), acts: mem() - before };
    m.dispose();
    return out;
  }

  test('bit for bit the store-then-widen path, without the fp32 ln1, ln2 and h', () => {
    const a = train(false),
      b = train(true);
    expect([a.path, b.path]).toEqual([false, true]);
    for (let s = 0; s < a.steps.length; s++) {
      expect(b.steps[s].loss).toBe(a.steps[s].loss);
      expect(same(b.steps[s].logps, a.steps[s].logps)).toBe(true);
      expect(same(b.steps[s].grads, a.steps[s].grads)).toBe(true);
    }
    expect(same(b.params, a.params)).toBe(true);
    const r16 = (n: number) => Math.ceil(n / 16) * 16;
    const N = B * T;
    expect(a.acts - b.acts).toBe(4 * (2 * r16(N * CFG.hidden_size) + r16(N * CFG.intermediate_size)));
    // fp32 GEMMs, or recomputation: no direct path
    const f = Model.fromConfig(CFG, { device, precision: 'fp32', activationDtype: 'bf16' });
    const r = Model.fromConfig(CFG, { device, precision: 'bf16', recompute: true });
    expect([f.native.info().bf16Direct, r.native.info().bf16Direct]).toEqual([false, false]);
    f.dispose();
    r.dispose();
    expect(() => Model.fromConfig(CFG, { device, bf16Direct: 'yes' as unknown as boolean })).toThrow(/^bf16Direct: /);
  });
});
