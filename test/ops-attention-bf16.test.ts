// The bf16 attention of the BF16 backend instances (precision 'bf16'): cpu/ops_attention_bf16.cc and its CUDA
// twin cuda/cuda_attention_gemm.cu (chunked tensor-core GEMMs), on every usable device:
// (a) against a float64 emulation of the documented roundings (q, k, v, P̃ and dout, dS̃ rounded to bf16; fp32
//     sums stand in as float64 sums) — tight: this pins where the roundings are;
// (b) against exact float64 attention — loose (bf16 keeps 8 significant bits) but bounded;
// (c) different from the fp32 instance: the bf16 path is really taken.
// Shapes: GQA, a decode step with past > 0 and a KV capacity beyond past + Tq, D not a power of two.
import { bf16ToF32, f32ToBf16 } from '../lib/kernels/bf16';
import { attentionBackwardRef, attentionRef, ops, OpsDevice, rand32, rng } from './helpers/ops-reference';

const { exp, log, max, sqrt, abs } = Math;
const DEVICES = ops.devices() as OpsDevice[];
const bf = (x: ArrayLike<number>) => bf16ToF32(f32ToBf16(Float32Array.from(x)));
const bf1 = (x: number) => bf([x])[0];

function maxErr(got: ArrayLike<number>, want: ArrayLike<number>): { err: number; scale: number } {
  let err = 0,
    scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = max(err, abs(got[i] - want[i]));
    scale = max(scale, abs(want[i]));
  }
  return { err, scale };
}

/** Float64 forward with the bf16 roundings of the kernels (see the file comment). */
function emulateForward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  Tq: number,
  Tkv: number,
  past: number,
  Hq: number,
  Hkv: number,
  D: number,
) {
  const qb = bf(q),
    kb = bf(k),
    vb = bf(v),
    G = Hq / Hkv,
    sc = 1 / sqrt(D);
  const out = new Float64Array(B * Tq * Hq * D),
    lse = new Float64Array(B * Hq * Tq);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Tq; i++) {
        const n = past + i + 1,
          g = Math.floor(h / G),
          s = new Float64Array(n);
        let m = -Infinity;
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let d = 0; d < D; d++)
            acc += qb[((b * Tq + i) * Hq + h) * D + d] * kb[((b * Tkv + j) * Hkv + g) * D + d];
          s[j] = acc * sc;
          m = max(m, s[j]);
        }
        let z = 0;
        for (let j = 0; j < n; j++) z += exp(s[j] - m);
        const l = m + log(z);
        lse[(b * Hq + h) * Tq + i] = l;
        for (let j = 0; j < n; j++) {
          const p = bf1(exp(s[j] - l));
          for (let d = 0; d < D; d++) out[((b * Tq + i) * Hq + h) * D + d] += p * vb[((b * Tkv + j) * Hkv + g) * D + d];
        }
      }
  return { out, lse };
}

/** Float64 backward with the kernels' roundings, from the kernel's own out / lse (as the engine passes them). */
function emulateBackward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  dout: Float32Array,
  out: Float32Array,
  lse: Float32Array,
  B: number,
  T: number,
  Hq: number,
  Hkv: number,
  D: number,
) {
  const qb = bf(q),
    kb = bf(k),
    vb = bf(v),
    dob = bf(dout),
    G = Hq / Hkv,
    sc = 1 / sqrt(D);
  const dq = new Float64Array(q.length),
    dk = new Float64Array(k.length),
    dv = new Float64Array(v.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < T; i++) {
        const g = Math.floor(h / G),
          qi = ((b * T + i) * Hq + h) * D;
        let di = 0;
        for (let d = 0; d < D; d++) di += dout[qi + d] * out[qi + d];
        for (let j = 0; j <= i; j++) {
          const kj = ((b * T + j) * Hkv + g) * D;
          let s = 0,
            dp = 0;
          for (let d = 0; d < D; d++) {
            s += qb[qi + d] * kb[kj + d];
            dp += dob[qi + d] * vb[kj + d];
          }
          const p = bf1(exp(s * sc - lse[(b * Hq + h) * T + i]));
          const ds = bf1(sc * p * (dp - di));
          for (let d = 0; d < D; d++) {
            dq[qi + d] += ds * kb[kj + d];
            dk[kj + d] += ds * qb[qi + d];
            dv[kj + d] += p * dob[qi + d];
          }
        }
      }
  return { dq, dk, dv };
}

const SHAPES = [
  { name: 'GQA training shape', B: 2, Tq: 19, Tkv: 19, past: 0, Hq: 4, Hkv: 2, D: 16 },
  { name: 'decode with past and spare capacity', B: 2, Tq: 3, Tkv: 40, past: 30, Hq: 6, Hkv: 2, D: 24 },
  { name: 'MHA, odd length', B: 1, Tq: 33, Tkv: 33, past: 0, Hq: 2, Hkv: 2, D: 10 },
];

describe.each(DEVICES)('bf16 attention on %s', (device) => {
  test.each(SHAPES)('forward: $name', ({ B, Tq, Tkv, past, Hq, Hkv, D }) => {
    const r = rng(11 + Tq);
    const q = rand32(B * Tq * Hq * D, r, 1.5),
      k = rand32(B * Tkv * Hkv * D, r, 1.5),
      v = rand32(B * Tkv * Hkv * D, r);
    const run = (precision: 'fp32' | 'bf16') => {
      const out = new Float32Array(q.length),
        lse = new Float32Array(B * Hq * Tq);
      ops.attentionForward({ out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D, device, precision });
      return { out, lse };
    };
    const got = run('bf16'),
      f32 = run('fp32');
    const emu = emulateForward(q, k, v, B, Tq, Tkv, past, Hq, Hkv, D);
    const exact = attentionRef(q, k, v, B, Tq, Tkv, past, Hq, Hkv, D);
    const e1 = maxErr(got.out, emu.out);
    // Measured on the CPU: ~1e-7 of the scale (summation order only). Leaving P̃ unrounded costs 2e-3 here, so 5e-4
    // pins the rounding; a GPU exp a few ulps off may move one P̃ near a tie by one bf16 step (~2e-4·p).
    expect(e1.err).toBeLessThanOrEqual(5e-4 * e1.scale);
    expect(maxErr(got.lse, emu.lse).err).toBeLessThanOrEqual(1e-4 * maxErr(got.lse, emu.lse).scale + 1e-5);
    const e2 = maxErr(got.out, exact.out);
    expect(e2.err).toBeLessThanOrEqual(3e-2 * e2.scale);
    expect(maxErr(got.out, f32.out).err).toBeGreaterThan(1e-5 * e2.scale);
  });

  test('forward on a batched KV cache: rows at their own past and slot equal each row alone and the emulation', () => {
    const Hq = 4,
      Hkv = 2,
      D = 16,
      cap = 48,
      Bkv = 4,
      kd = Hkv * D,
      qd = Hq * D,
      Tq = 2;
    const rowPast = Int32Array.of(40, 0, 9),
      rowSlot = Int32Array.of(3, 0, 1),
      B = 3;
    const r = rng(77);
    // positions beyond each row's past + Tq hold huge values: a path that read them would blow up
    const k = new Float32Array(Bkv * cap * kd).fill(3e38),
      v = new Float32Array(Bkv * cap * kd).fill(3e38);
    for (let b = 0; b < B; b++) {
      const n = (rowPast[b] + Tq) * kd;
      k.set(rand32(n, r, 1.5), rowSlot[b] * cap * kd);
      v.set(rand32(n, r), rowSlot[b] * cap * kd);
    }
    const q = rand32(B * Tq * qd, r, 1.5);
    const out = new Float32Array(q.length),
      lse = new Float32Array(B * Hq * Tq);
    ops.attentionForward({
      out,
      lse,
      q,
      k,
      v,
      B,
      Tq,
      Tkv: cap,
      rowPast,
      rowSlot,
      Hq,
      Hkv,
      D,
      device,
      precision: 'bf16',
    });
    for (let b = 0; b < B; b++) {
      const L = rowPast[b] + Tq,
        kb = k.subarray(rowSlot[b] * cap * kd, rowSlot[b] * cap * kd + L * kd),
        vb = v.subarray(rowSlot[b] * cap * kd, rowSlot[b] * cap * kd + L * kd);
      const qb = q.subarray(b * Tq * qd, (b + 1) * Tq * qd);
      const alone = new Float32Array(qb.length);
      ops.attentionForward({
        out: alone,
        q: qb,
        k: kb,
        v: vb,
        B: 1,
        Tq,
        Tkv: L,
        past: rowPast[b],
        Hq,
        Hkv,
        D,
        device,
        precision: 'bf16',
      });
      const got = out.subarray(b * Tq * qd, (b + 1) * Tq * qd);
      const e0 = maxErr(got, alone);
      // the same products: bitwise on the CPU; the GPU's GEMMs over more (zeroed) keys may sum in another order
      expect(e0.err).toBeLessThanOrEqual(1e-5 * e0.scale);
      const emu = emulateForward(qb, kb, vb, 1, Tq, L, rowPast[b], Hq, Hkv, D);
      const e1 = maxErr(got, emu.out);
      expect(e1.err).toBeLessThanOrEqual(5e-4 * e1.scale);
    }
  });

  test.each(SHAPES.filter((s) => s.past === 0))(
    'backward (accumulate off and on): $name',
    ({ B, Tq: T, Hq, Hkv, D }) => {
      const r = rng(5 + T);
      const q = rand32(B * T * Hq * D, r, 1.5),
        k = rand32(B * T * Hkv * D, r, 1.5),
        v = rand32(B * T * Hkv * D, r),
        dout = rand32(B * T * Hq * D, r);
      const out = new Float32Array(q.length),
        lse = new Float32Array(B * Hq * T);
      ops.attentionForward({ out, lse, q, k, v, B, Tq: T, Hq, Hkv, D, device, precision: 'bf16' });
      const back = (precision: 'fp32' | 'bf16', accumulate: boolean, init = 0) => {
        const g = {
          dq: new Float32Array(q.length).fill(init),
          dk: new Float32Array(k.length).fill(init),
          dv: new Float32Array(v.length).fill(init),
        };
        ops.attentionBackward({ ...g, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate, device, precision });
        return g;
      };
      const got = back('bf16', false, NaN); // not accumulating: NaN in the outputs must not survive
      const emu = emulateBackward(q, k, v, dout, out, lse, B, T, Hq, Hkv, D);
      const exact = attentionBackwardRef(q, k, v, dout, B, T, Hq, Hkv, D);
      const f32 = back('fp32', false);
      for (const name of ['dq', 'dk', 'dv'] as const) {
        const e1 = maxErr(got[name], emu[name]);
        expect([name, e1.err <= 1e-3 * e1.scale]).toEqual([name, true]); // CPU: ~1e-7 (see the forward)
        const e2 = maxErr(got[name], exact[name]);
        expect([name, e2.err <= 6e-2 * e2.scale]).toEqual([name, true]);
        expect([name, maxErr(got[name], f32[name]).err > 1e-5 * e2.scale]).toEqual([name, true]);
      }
      const acc = back('bf16', true, 0.5);
      for (const name of ['dq', 'dk', 'dv'] as const) {
        const shifted = Float64Array.from(got[name], (x) => x + 0.5);
        expect([name, maxErr(acc[name], shifted).err <= 1e-5 * (1 + maxErr(acc[name], shifted).scale)]).toEqual([
          name,
          true,
        ]);
      }
    },
  );

  // dk / dv of a kv head: ONE fp32 sum over the group's query heads' rows stacked head after head (the GPU's single
  // GEMM with K = G·r), then one addition to the output. Large groups (G = 4, 6) against the emulation; on the CPU
  // the grouping itself is pinned: accumulating onto x gives exactly fround(x + the non-accumulating result).
  test.each([
    { name: 'G = 4', B: 2, T: 21, Hq: 8, Hkv: 2, D: 12 },
    { name: 'G = 6, one kv head', B: 1, T: 26, Hq: 6, Hkv: 1, D: 16 },
  ])('backward with large query groups: $name', ({ B, T, Hq, Hkv, D }) => {
    const r = rng(41 + T);
    const q = rand32(B * T * Hq * D, r, 1.5),
      k = rand32(B * T * Hkv * D, r, 1.5),
      v = rand32(B * T * Hkv * D, r),
      dout = rand32(B * T * Hq * D, r);
    const out = new Float32Array(q.length),
      lse = new Float32Array(B * Hq * T);
    ops.attentionForward({ out, lse, q, k, v, B, Tq: T, Hq, Hkv, D, device, gemmDtype: 'bf16' });
    const init = rand32(k.length, r);
    const back = (accumulate: boolean) => {
      const g = {
        dq: new Float32Array(q.length),
        dk: accumulate ? init.slice() : new Float32Array(k.length).fill(NaN),
        dv: accumulate ? init.slice() : new Float32Array(v.length).fill(NaN),
      };
      ops.attentionBackward({ ...g, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate, device, gemmDtype: 'bf16' });
      return g;
    };
    const got = back(false),
      acc = back(true);
    const emu = emulateBackward(q, k, v, dout, out, lse, B, T, Hq, Hkv, D);
    for (const name of ['dk', 'dv'] as const) {
      const e1 = maxErr(got[name], emu[name]);
      expect([name, e1.err <= 1e-3 * e1.scale]).toEqual([name, true]);
      const shifted = Float32Array.from(got[name], (x, i) => x + init[i]);
      const e2 = maxErr(acc[name], shifted);
      if (device === 'cpu') expect([name, e2.err]).toEqual([name, 0]);
      else expect([name, e2.err <= 1e-5 * (1 + e2.scale)]).toEqual([name, true]);
    }
  });
});
