// The decoder ops (addon.ops → native/model/ops.h) against float64 references written in
// test/helpers/ops-reference.ts, on every backend this machine can run: the CPU backend always, its CUDA twin
// (device: 'cuda', every array staged to device memory by the binding) when a CUDA device with cuBLAS is usable.
// The CUDA variant uses the same references and the same tolerances as the CPU one: none is loosened (the CUDA
// kernels' fast-math exp / log are ~1e-6 relative, inside the fp32 bounds below). It has not run on a GPU yet;
// a CUDA-only miss is a finding to investigate (the op-by-op self-test, native/cuda/selftest/), not a bound to widen.
// Then the bf16-GEMM instances (precision: 'bf16') against float64 references on bf16-rounded operands, and the
// backend-selection errors.
//
// Tolerances (fp32 kernels vs float64 math):
// - forward values: |got − ref| <= atol + rtol·|ref| with rtol 1e-5 (elementwise ops), atol ~1e-6 at O(1) data;
// - gemm: |got − ref| <= 1e-6·(sqrt(K) + 2)·Σ|alpha·a·b| + |beta·c| per element (blocked fp32 sums);
// - gradients: every backward is compared with central differences (h = 1e-5) of the float64 reference loss
//   L = Σ out·R for a random R, evaluated at the same fp32 inputs: FD error ~1e-10, so the bound
//   (atol 2e-5, rtol 2e-4) measures the fp32 backward itself. Large attention shapes use the analytic float64
//   backward, which is itself FD-checked on the small shapes.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { setNumThreads } from '../lib';
import {
  adamwRef,
  attentionBackwardRef,
  attentionRef,
  dot,
  embeddingRef,
  f64,
  fdGrad,
  gemmRef,
  linearRef,
  ops as addonOps,
  opsOn,
  rand32,
  rmsnormRef,
  rng,
  ropeRef,
  roundBf16,
  roundBf16All,
  silu,
  swigluRef,
  type NativeOps,
  type OpsDevice,
} from './helpers/ops-reference';

const { abs, sqrt } = Math; // bound once (see ops-reference.ts)

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, label: string): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = abs(got[i] - want[i]) / (atol + rtol * abs(want[i]));
    if (!(e <= worst)) {
      worst = Number.isNaN(e) ? Infinity : e;
      at = i;
    }
  }
  if (worst > 1)
    throw new Error(
      `${label}: element ${at}: got ${got[at]}, want ${want[at]} (error ${worst.toFixed(2)}× the tolerance)`,
    );
}

const GA = 2e-5; // gradient tolerances (see header)
const GR = 2e-4;

function expectError(fn: () => unknown, name: 'TypeError' | 'RangeError', arg: string): void {
  let err: Error | undefined;
  try {
    fn();
  } catch (e) {
    err = e as Error;
  }
  if (!err) throw new Error(`expected a ${name} naming ${arg}, nothing was thrown`);
  expect(`${err.name}: ${err.message}`).toMatch(new RegExp(`^${name}: ${arg}: `));
}

const nanFilled = (n: number) => new Float32Array(n).fill(NaN);

const cudaUsable = addonOps.devices().includes('cuda');
const devices: OpsDevice[] = cudaUsable ? ['cpu', 'cuda'] : ['cpu'];

test("backends under test: cpu always; 'cuda' listed exactly when selecting it works", () => {
  expect(addonOps.info({ device: 'cpu' }).backend).toBe('cpu');
  let cudaSelectable = true;
  try {
    expect(addonOps.info({ device: 'cuda' }).backend).toBe('cuda');
  } catch {
    cudaSelectable = false;
  }
  expect(addonOps.devices()).toEqual(cudaSelectable ? ['cpu', 'cuda'] : ['cpu']);
});
(cudaUsable ? test : test.skip)('the CUDA twin ran: the op suite below ran on device cuda', () => {
  expect(addonOps.info({ device: 'cuda' }).backend).toBe('cuda');
});

// =========================================================================================================
// The op suite, once per usable backend (same references, same tolerances). On a machine without a CUDA device
// (or without cuBLAS, or with an addon built without nvcc) only 'cpu' runs; the test 'the CUDA twin ran'
// above is then reported as skipped, so a run records which backends were covered.
describe.each(devices)('device %s', (device) => {
  const ops = opsOn({ device });

  // ---------------------------------------------------------------------------------------------------------
  describe('gemm', () => {
    const info = ops.info();
    // fp32 implementations checked at fp32 tolerance: CPU builtin (+ OpenBLAS when loadable); CUDA cublasSgemm
    // ('cublas-tf32' has 10-bit operands: not an fp32 GEMM, so not run against these bounds).
    const impls: string[] = device === 'cuda' ? ['cublas'] : info.blasAvailable ? ['builtin', 'openblas'] : ['builtin'];
    afterAll(() => ops.setGemm(info.gemm));

    test('info reports the backend, the implementation and thread count', () => {
      expect(info.backend).toBe(device);
      expect(info.precision).toBe('fp32');
      expect(info.threads).toBeGreaterThanOrEqual(1);
      if (device === 'cuda') {
        expect(['cublas', 'cublas-tf32']).toContain(info.gemm);
        expect(ops.setGemm('cublas-tf32')).toBe(true);
        expect(ops.info().gemm).toBe('cublas-tf32');
        expect(ops.setGemm('cublas')).toBe(true);
        expect(ops.info().gemm).toBe('cublas');
        return;
      }
      expect(['builtin', 'openblas']).toContain(info.gemm);
      expect(ops.setGemm('builtin')).toBe(true);
      expect(ops.info().gemm).toBe('builtin');
      expect(ops.setGemm('openblas')).toBe(info.blasAvailable);
      ops.setGemm(info.gemm);
    });

    // (M, N, K): the odd sizes 1, 7, 33, 130, the M <= 4 path, K past one K block (256), M past a row tile,
    // N past a column tile (576 with AVX-512).
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [1, 7, 33],
      [7, 1, 130],
      [33, 130, 7],
      [130, 33, 1],
      [130, 130, 33],
      [7, 33, 130],
      [33, 7, 7],
      [130, 1, 33],
      [3, 130, 130],
      [40, 50, 600],
      [200, 600, 20],
    ];
    for (const impl of impls) {
      test(`${impl}: 4 transpose combos × odd shapes × alpha/beta × leading dimensions`, () => {
        expect(ops.setGemm(impl)).toBe(true);
        const r = rng(impl === 'builtin' ? 1 : 2);
        let n = 0;
        for (const [M, N, K] of shapes)
          for (const ta of [false, true])
            for (const tb of [false, true]) {
              const pad = n++ % 2 ? 3 : 0; // every other case: leading dimensions larger than the row length
              const lda = (ta ? M : K) + pad,
                ldb = (tb ? K : N) + pad,
                ldc = N + pad;
              const A = rand32(((ta ? K : M) - 1) * lda + (ta ? M : K), r);
              const B = rand32(((tb ? N : K) - 1) * ldb + (tb ? K : N), r);
              const variants: [number, number][] = [
                [1, 0],
                [-0.75, 0.5],
                [2, 1],
              ];
              for (const [alpha, beta] of variants) {
                const C = beta === 0 ? nanFilled((M - 1) * ldc + N) : rand32((M - 1) * ldc + N, r); // beta = 0: C is not read
                const { c, mag } = gemmRef(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                const C0 = C.slice();
                ops.gemm({ transA: ta, transB: tb, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc });
                const tol = 1e-6 * (sqrt(K) + 2);
                for (let i = 0; i < c.length; i++) {
                  const inside = i % ldc < N;
                  if (!inside) {
                    if (!Object.is(C[i], C0[i]))
                      throw new Error(`${impl} ${M}x${N}x${K} ta=${ta} tb=${tb}: padding element ${i} was written`);
                    continue;
                  }
                  if (!(abs(C[i] - c[i]) <= tol * mag[i] + 1e-30))
                    throw new Error(
                      `${impl} ${M}x${N}x${K} ta=${ta} tb=${tb} alpha=${alpha} beta=${beta}: C[${i}] = ${C[i]}, want ${c[i]}`,
                    );
                }
              }
            }
      });
    }

    test('K = 0 and alpha = 0 scale C by beta; M or N = 0 is a no-op', () => {
      for (const impl of impls) {
        ops.setGemm(impl);
        const C = Float32Array.from([1, 2, 3, 4]);
        ops.gemm({ M: 2, N: 2, K: 0, A: new Float32Array(0), B: new Float32Array(0), C, beta: 0.5 });
        expect(Array.from(C)).toEqual([0.5, 1, 1.5, 2]);
        ops.gemm({ M: 2, N: 2, K: 3, alpha: 0, A: new Float32Array(6).fill(NaN), B: new Float32Array(6), C, beta: 0 });
        expect(Array.from(C)).toEqual([0, 0, 0, 0]);
        ops.gemm({ M: 0, N: 2, K: 3, A: new Float32Array(0), B: new Float32Array(6), C: new Float32Array(0) });
      }
    });

    (device === 'cpu' ? test : test.skip)('RIFT_BLAS=off forces the builtin kernel', () => {
      const file = process.env.RIFT_ADDON ?? path.resolve(__dirname, '..', 'build', 'Release', 'rift.node');
      const script = `const o = require(${JSON.stringify(file)}).ops; process.stdout.write(JSON.stringify(o.info()))`;
      const res = spawnSync(process.execPath, ['-e', script], {
        env: { ...process.env, RIFT_BLAS: 'off' },
        encoding: 'utf8',
      });
      expect(res.status).toBe(0);
      const i = JSON.parse(res.stdout);
      expect(i.gemm).toBe('builtin');
      expect(i.blasAvailable).toBe(false);
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('matmul (Linear layout)', () => {
    const M = 5,
      N = 7,
      K = 6;
    const r = rng(3);
    const inp = rand32(M * K, r),
      w = rand32(N * K, r),
      bias = rand32(N, r),
      R = rand32(M * N, r);

    test('forward: out = inp·Wᵀ + b, and accumulate', () => {
      const out = nanFilled(M * N);
      ops.matmulForward({ out, inp, weight: w, bias, M, N, K });
      expectClose(out, linearRef(inp, w, bias, M, N, K), 1e-6, 1e-5, 'out');
      const base = rand32(M * N, r);
      const acc = base.slice();
      ops.matmulForward({ out: acc, inp, weight: w, M, N, K, accumulate: true });
      const want = linearRef(inp, w, null, M, N, K).map((x, i) => x + base[i]);
      expectClose(acc, want, 1e-6, 1e-5, 'out (accumulate)');
    });

    test('backward vs finite differences; parameter gradients accumulate, dinp writes or adds', () => {
      const L = (x: Float64Array, ww: Float64Array, bb: Float64Array) => dot(linearRef(x, ww, bb, M, N, K), R);
      const dinp = nanFilled(M * K),
        dweight = rand32(N * K, r),
        dbias = rand32(N, r);
      const w0 = dweight.slice(),
        b0 = dbias.slice();
      ops.matmulBackward({ dinp, dweight, dbias, dout: R, inp, weight: w, M, N, K });
      expectClose(
        dinp,
        fdGrad((x) => L(x, f64(w), f64(bias)), inp),
        GA,
        GR,
        'dinp',
      );
      expectClose(
        dweight,
        fdGrad((x) => L(f64(inp), x, f64(bias)), w).map((g, i) => g + w0[i]),
        GA,
        GR,
        'dweight',
      );
      expectClose(
        dbias,
        fdGrad((x) => L(f64(inp), f64(w), x), bias).map((g, i) => g + b0[i]),
        GA,
        GR,
        'dbias',
      );
      const again = dinp.slice();
      ops.matmulBackward({ dinp: again, dout: R, weight: w, M, N, K, accumulate: true });
      expectClose(
        again,
        Array.from(dinp, (x) => 2 * x),
        1e-6,
        1e-5,
        'dinp (accumulate)',
      );
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('embedding', () => {
    test('forward gathers rows; backward scatter-adds (repeated ids) into dwte', () => {
      const V = 6,
        C = 5,
        r = rng(4);
      const ids = Int32Array.from([3, 0, 3, 5, 3, 1, 0]);
      const T = ids.length;
      const wte = rand32(V * C, r),
        R = rand32(T * C, r);
      const out = nanFilled(T * C);
      ops.embeddingForward({ out, ids, wte, T, V, C });
      expect(Array.from(out)).toEqual(Array.from(embeddingRef(ids, wte, C)));
      const dwte = rand32(V * C, r);
      const d0 = dwte.slice();
      ops.embeddingBackward({ dwte, dout: R, ids, T, V, C });
      const fd = fdGrad((x) => dot(embeddingRef(ids, x, C), R), wte);
      expectClose(
        dwte,
        fd.map((g, i) => g + d0[i]),
        GA,
        GR,
        'dwte',
      );
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('rmsnorm', () => {
    const T = 6,
      C = 37,
      eps = 1e-6,
      r = rng(5);
    const x = rand32(T * C, r, 2),
      w = rand32(C, r),
      R = rand32(T * C, r);

    test('forward matches HF RMSNorm; in place', () => {
      const out = nanFilled(T * C),
        rstd = nanFilled(T);
      ops.rmsnormForward({ out, rstd, inp: x, weight: w, T, C, eps });
      const ref = rmsnormRef(x, w, T, C, eps);
      expectClose(out, ref.out, 1e-6, 1e-5, 'out');
      expectClose(rstd, ref.rstd, 0, 1e-6, 'rstd');
      const inplace = x.slice();
      ops.rmsnormForward({ out: inplace, rstd, inp: inplace, weight: w, T, C, eps });
      expect(Array.from(inplace)).toEqual(Array.from(out));
    });

    test('backward vs finite differences (dinp written / added / in place over dout, dweight accumulated)', () => {
      const out = new Float32Array(T * C),
        rstd = new Float32Array(T);
      ops.rmsnormForward({ out, rstd, inp: x, weight: w, T, C, eps });
      const dinp = nanFilled(T * C),
        dweight = rand32(C, r);
      const dw0 = dweight.slice();
      ops.rmsnormBackward({ dinp, dweight, dout: R, inp: x, weight: w, rstd, T, C });
      expectClose(
        dinp,
        fdGrad((v) => dot(rmsnormRef(v, w, T, C, eps).out, R), x),
        GA,
        GR,
        'dinp',
      );
      const fdw = fdGrad((v) => dot(rmsnormRef(x, v, T, C, eps).out, R), w);
      expectClose(
        dweight,
        fdw.map((g, i) => g + dw0[i]),
        GA,
        GR,
        'dweight',
      );
      const acc = dinp.slice();
      ops.rmsnormBackward({ dinp: acc, dout: R, inp: x, weight: w, rstd, T, C, accumulate: true });
      expectClose(
        acc,
        Array.from(dinp, (v) => 2 * v),
        1e-6,
        1e-5,
        'dinp (accumulate)',
      );
      const inplace = R.slice();
      const dw2 = new Float32Array(C);
      ops.rmsnormBackward({ dinp: inplace, dweight: dw2, dout: inplace, inp: x, weight: w, rstd, T, C });
      expect(Array.from(inplace)).toEqual(Array.from(dinp));
      expectClose(dw2, fdw, GA, GR, 'dweight (dinp aliasing dout)');
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('rope', () => {
    const H = 3,
      D = 8,
      theta = 10000,
      r = rng(6);
    const positions = Int32Array.from([0, 1, 2, 7, 3, 500, 4097, 70000]); // 70000: past the cached table
    const T = positions.length;
    const x = rand32(T * H * D, r),
      R = rand32(T * H * D, r);

    test('forward: HF rotate-half with fp32 angles; close to exact angles at small positions; in place', () => {
      const out = nanFilled(T * H * D);
      ops.ropeForward({ out, inp: x, positions, T, H, D, theta });
      expectClose(out, ropeRef(x, positions, T, H, D, theta), 2e-6, 1e-5, 'out');
      const small = 5 * H * D; // positions 0..7: fp32 angles are within 1e-6 of exact ones
      expectClose(
        out.subarray(0, small),
        ropeRef(x, positions, T, H, D, theta, false).subarray(0, small),
        5e-6,
        1e-5,
        'out (exact angles)',
      );
      const inplace = x.slice();
      ops.ropeForward({ out: inplace, inp: inplace, positions, T, H, D, theta: 1e6 });
      expectClose(inplace, ropeRef(x, positions, T, H, D, 1e6), 2e-6, 1e-5, 'out (in place, theta 1e6)');
    });

    test('backward vs finite differences; accumulate; in place', () => {
      const dinp = nanFilled(T * H * D);
      ops.ropeBackward({ dinp, dout: R, positions, T, H, D, theta });
      expectClose(
        dinp,
        fdGrad((v) => dot(ropeRef(v, positions, T, H, D, theta), R), x),
        GA,
        GR,
        'dinp',
      );
      const acc = dinp.slice();
      ops.ropeBackward({ dinp: acc, dout: R, positions, T, H, D, theta, accumulate: true });
      expectClose(
        acc,
        Array.from(dinp, (v) => 2 * v),
        1e-6,
        1e-5,
        'dinp (accumulate)',
      );
      const inplace = R.slice();
      ops.ropeBackward({ dinp: inplace, dout: inplace, positions, T, H, D, theta });
      expect(Array.from(inplace)).toEqual(Array.from(dinp));
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('attention', () => {
    interface Shape {
      B: number;
      T: number;
      Hq: number;
      Hkv: number;
      D: number;
    }
    function data(s: Shape, seed: number) {
      const r = rng(seed);
      return {
        q: rand32(s.B * s.T * s.Hq * s.D, r, 1.5),
        k: rand32(s.B * s.T * s.Hkv * s.D, r, 1.5),
        v: rand32(s.B * s.T * s.Hkv * s.D, r),
        R: rand32(s.B * s.T * s.Hq * s.D, r),
      };
    }
    function forward(s: Shape, q: Float32Array, k: Float32Array, v: Float32Array) {
      const out = nanFilled(s.B * s.T * s.Hq * s.D),
        lse = nanFilled(s.B * s.Hq * s.T);
      ops.attentionForward({ out, lse, q, k, v, B: s.B, Tq: s.T, Hq: s.Hq, Hkv: s.Hkv, D: s.D });
      return { out, lse };
    }

    // T = 1; T not a multiple of the 64-key tile nor the 32-row query block; GQA groups 1, 2, 3.
    const fwdShapes: Shape[] = [
      { B: 1, T: 1, Hq: 2, Hkv: 1, D: 4 },
      { B: 2, T: 33, Hq: 4, Hkv: 2, D: 16 },
      { B: 1, T: 130, Hq: 6, Hkv: 2, D: 8 },
      { B: 2, T: 70, Hq: 3, Hkv: 3, D: 5 },
    ];
    test.each(fwdShapes)('forward vs naive softmax(QKᵀ)V: %o', (s) => {
      const { q, k, v } = data(s, 7 + s.T);
      const { out, lse } = forward(s, q, k, v);
      const ref = attentionRef(q, k, v, s.B, s.T, s.T, 0, s.Hq, s.Hkv, s.D);
      expectClose(out, ref.out, 2e-6, 2e-5, 'out');
      expectClose(lse, ref.lse, 2e-6, 2e-6, 'lse');
    });

    test('decode step: queries at [past, past + n) against a KV cache of larger capacity (unused rows not read)', () => {
      const s = { B: 2, T: 75, Hq: 4, Hkv: 2, D: 8 };
      const { q, k, v } = data(s, 8);
      const full = forward(s, q, k, v);
      const cap = 90;
      for (const [past, n] of [
        [74, 1],
        [60, 15],
        [0, 1],
        [64, 3],
      ]) {
        const kc = nanFilled(s.B * cap * s.Hkv * s.D),
          vc = nanFilled(s.B * cap * s.Hkv * s.D);
        const qs = new Float32Array(s.B * n * s.Hq * s.D);
        const row = s.Hkv * s.D,
          qrow = s.Hq * s.D;
        for (let b = 0; b < s.B; b++) {
          kc.set(k.subarray(b * s.T * row, (b * s.T + past + n) * row), b * cap * row);
          vc.set(v.subarray(b * s.T * row, (b * s.T + past + n) * row), b * cap * row);
          qs.set(q.subarray((b * s.T + past) * qrow, (b * s.T + past + n) * qrow), b * n * qrow);
        }
        const out = nanFilled(qs.length),
          lse = nanFilled(s.B * s.Hq * n);
        ops.attentionForward({
          out,
          lse,
          q: qs,
          k: kc,
          v: vc,
          B: s.B,
          Tq: n,
          Tkv: cap,
          past,
          Hq: s.Hq,
          Hkv: s.Hkv,
          D: s.D,
        });
        const want = new Float32Array(qs.length);
        for (let b = 0; b < s.B; b++)
          want.set(full.out.subarray((b * s.T + past) * qrow, (b * s.T + past + n) * qrow), b * n * qrow);
        expectClose(out, want, 1e-6, 1e-5, `out (past ${past}, n ${n})`);
        for (let b = 0; b < s.B; b++)
          for (let h = 0; h < s.Hq; h++)
            for (let i = 0; i < n; i++)
              expect(abs(lse[(b * s.Hq + h) * n + i] - full.lse[(b * s.Hq + h) * s.T + past + i])).toBeLessThan(1e-5);
      }
      const kv = new Float32Array(s.B * 3 * s.Hkv * s.D);
      const one = s.B * s.Hq * s.D;
      ops.attentionForward({
        out: new Float32Array(one),
        q: new Float32Array(one),
        k: kv,
        v: kv.slice(),
        B: s.B,
        Tq: 1,
        Tkv: 3,
        past: 2,
        Hq: s.Hq,
        Hkv: s.Hkv,
        D: s.D,
      }); // lse optional
    });

    test('batched KV cache: per-row past (rowPast) and k/v row (rowSlot) equal each row alone; positions past a row are not read', () => {
      // 3 query rows on a 5-row cache of capacity 40: rows sit at pasts 0, 37, 12 in slots 4, 1, 2 (slots 0 and 3
      // and every position past past + Tq stay NaN: a read would show).
      const Hq = 6,
        Hkv = 2,
        D = 12,
        cap = 40,
        Bkv = 5,
        kd = Hkv * D,
        qd = Hq * D;
      const r = rng(21);
      for (const Tq of [1, 3]) {
        const rowPast = Int32Array.of(0, 37, 12),
          rowSlot = Int32Array.of(4, 1, 2),
          B = 3;
        const k = nanFilled(Bkv * cap * kd),
          v = nanFilled(Bkv * cap * kd);
        for (let b = 0; b < B; b++) {
          const n = (rowPast[b] + Tq) * kd;
          k.set(rand32(n, r, 1.5), rowSlot[b] * cap * kd);
          v.set(rand32(n, r), rowSlot[b] * cap * kd);
        }
        const q = rand32(B * Tq * qd, r, 1.5);
        const out = nanFilled(q.length),
          lse = nanFilled(B * Hq * Tq);
        ops.attentionForward({ out, lse, q, k, v, B, Tq, Tkv: cap, rowPast, rowSlot, Hq, Hkv, D });
        for (let b = 0; b < B; b++) {
          const kb = k.subarray(rowSlot[b] * cap * kd, (rowSlot[b] + 1) * cap * kd),
            vb = v.subarray(rowSlot[b] * cap * kd, (rowSlot[b] + 1) * cap * kd);
          const qb = q.subarray(b * Tq * qd, (b + 1) * Tq * qd);
          const alone = nanFilled(qb.length),
            lseAlone = nanFilled(Hq * Tq);
          ops.attentionForward({
            out: alone,
            lse: lseAlone,
            q: qb,
            k: kb,
            v: vb,
            B: 1,
            Tq,
            Tkv: cap,
            past: rowPast[b],
            Hq,
            Hkv,
            D,
          });
          expectClose(out.subarray(b * Tq * qd, (b + 1) * Tq * qd), alone, 1e-6, 1e-5, `row ${b} (Tq ${Tq})`);
          expectClose(lse.subarray(b * Hq * Tq, (b + 1) * Hq * Tq), lseAlone, 1e-6, 1e-6, `lse of row ${b}`);
          const ref = attentionRef(
            qb,
            kb.subarray(0, (rowPast[b] + Tq) * kd),
            vb.subarray(0, (rowPast[b] + Tq) * kd),
            1,
            Tq,
            rowPast[b] + Tq,
            rowPast[b],
            Hq,
            Hkv,
            D,
          );
          expectClose(alone, ref.out, 2e-6, 2e-5, `row ${b} vs float64`);
        }
        // rowPast alone (slot b = row b) and rowSlot alone (every row at `past`)
        const k3 = k.subarray(0, 3 * cap * kd),
          v3 = v.subarray(0, 3 * cap * kd);
        ops.attentionForward({
          out,
          q,
          k: k3.map((x) => (Number.isNaN(x) ? 0 : x)),
          v: v3.map((x) => (Number.isNaN(x) ? 0 : x)),
          B,
          Tq,
          Tkv: cap,
          rowPast: Int32Array.of(3, 0, 7),
          Hq,
          Hkv,
          D,
        });
        expect(out.every(Number.isFinite)).toBe(true);
      }
    });

    test('kvWrite scatters rows to (slot, position) of the cache and leaves the rest', () => {
      const B = 3,
        T = 2,
        Tmax = 5,
        W = 6,
        rows = 4;
      const r = rng(22);
      const cache = rand32(rows * Tmax * W, r),
        x = rand32(B * T * W, r);
      const slot = Int32Array.of(2, 0, 3),
        positions = Int32Array.of(0, 1, 4, 3, 2, 3);
      const want = cache.slice();
      for (let b = 0; b < B; b++)
        for (let t = 0; t < T; t++)
          want.set(x.subarray((b * T + t) * W, (b * T + t + 1) * W), (slot[b] * Tmax + positions[b * T + t]) * W);
      ops.kvWrite({ cache, x, slot, positions, B, T, Tmax, width: W });
      expect(Array.from(cache)).toEqual(Array.from(want));
    });

    function backward(
      s: Shape,
      d: ReturnType<typeof data>,
      fwd: { out: Float32Array; lse: Float32Array },
      accumulate = false,
      init?: Float32Array[],
    ) {
      const [dq, dk, dv] = init ?? [nanFilled(d.q.length), nanFilled(d.k.length), nanFilled(d.v.length)];
      ops.attentionBackward({
        dq,
        dk,
        dv,
        dout: d.R,
        q: d.q,
        k: d.k,
        v: d.v,
        out: fwd.out,
        lse: fwd.lse,
        B: s.B,
        T: s.T,
        Hq: s.Hq,
        Hkv: s.Hkv,
        D: s.D,
        accumulate,
      });
      return { dq, dk, dv };
    }

    // Small shapes: finite differences. B·Hkv >= 2·threads takes the (b, kv head) path, fewer the per-head scratch.
    const fdShapes: Shape[] = [
      { B: 2, T: 5, Hq: 4, Hkv: 2, D: 4 },
      { B: 1, T: 6, Hq: 2, Hkv: 1, D: 3 },
      { B: 1, T: 1, Hq: 3, Hkv: 3, D: 2 },
      { B: 1, T: 67, Hq: 2, Hkv: 1, D: 2 }, // crosses a 64-key tile
    ];
    test.each(fdShapes)('backward vs finite differences: %o', (s) => {
      const d = data(s, 9 + s.T);
      const g = backward(s, d, forward(s, d.q, d.k, d.v));
      const L = (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>) =>
        dot(attentionRef(q, k, v, s.B, s.T, s.T, 0, s.Hq, s.Hkv, s.D).out, d.R);
      const fq = fdGrad((x) => L(x, d.k, d.v), d.q),
        fk = fdGrad((x) => L(d.q, x, d.v), d.k),
        fv = fdGrad((x) => L(d.q, d.k, x), d.v);
      expectClose(g.dq, fq, GA, GR, 'dq');
      expectClose(g.dk, fk, GA, GR, 'dk');
      expectClose(g.dv, fv, GA, GR, 'dv');
      const ref = attentionBackwardRef(d.q, d.k, d.v, d.R, s.B, s.T, s.Hq, s.Hkv, s.D); // the reference used below
      expectClose(ref.dq, fq, 1e-7, 1e-6, 'reference dq');
      expectClose(ref.dk, fk, 1e-7, 1e-6, 'reference dk');
    });

    const bigShapes: Shape[] = [
      { B: 2, T: 130, Hq: 4, Hkv: 2, D: 16 }, // (b, kv head) tasks
      { B: 1, T: 97, Hq: 6, Hkv: 2, D: 8 }, // per-head scratch + group sum
    ];
    test.each(bigShapes)('backward vs the float64 analytic backward, and accumulate: %o', (s) => {
      const d = data(s, 10 + s.T);
      const fwd = forward(s, d.q, d.k, d.v);
      const g = backward(s, d, fwd);
      const ref = attentionBackwardRef(d.q, d.k, d.v, d.R, s.B, s.T, s.Hq, s.Hkv, s.D);
      expectClose(g.dq, ref.dq, GA, GR, 'dq');
      expectClose(g.dk, ref.dk, GA, GR, 'dk');
      expectClose(g.dv, ref.dv, GA, GR, 'dv');
      const twice = backward(s, d, fwd, true, [g.dq.slice(), g.dk.slice(), g.dv.slice()]);
      expectClose(
        twice.dq,
        Array.from(g.dq, (x) => 2 * x),
        1e-6,
        1e-5,
        'dq (accumulate)',
      );
      expectClose(
        twice.dk,
        Array.from(g.dk, (x) => 2 * x),
        1e-6,
        1e-5,
        'dk (accumulate)',
      );
      expectClose(
        twice.dv,
        Array.from(g.dv, (x) => 2 * x),
        1e-6,
        1e-5,
        'dv (accumulate)',
      );
    });

    // With one thread this shape takes the (b, kv head) path with a group of 2; with more, the scratch path.
    test('the backward does not depend on the thread count', () => {
      const s = { B: 1, T: 40, Hq: 4, Hkv: 2, D: 8 };
      const d = data(s, 11);
      const fwd = forward(s, d.q, d.k, d.v);
      const two = backward(s, d, fwd);
      expectClose(two.dk, attentionBackwardRef(d.q, d.k, d.v, d.R, s.B, s.T, s.Hq, s.Hkv, s.D).dk, GA, GR, 'dk');
      setNumThreads(1);
      try {
        const one = backward(s, d, fwd);
        expect(Array.from(one.dk)).toEqual(Array.from(two.dk));
        expect(Array.from(one.dq)).toEqual(Array.from(two.dq));
      } finally {
        setNumThreads(0);
      }
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('swiglu', () => {
    const n = 53,
      r = rng(12);
    const gate = rand32(n, r, 6),
      up = rand32(n, r, 2),
      R = rand32(n, r);
    gate[0] = 95; // exp(−x) underflow / overflow ends
    gate[1] = -95;

    test('forward: silu(gate)·up; in place over gate', () => {
      const out = nanFilled(n);
      ops.swigluForward({ out, gate, up });
      expectClose(out, swigluRef(gate, up), 1e-6, 1e-5, 'out');
      const g2 = gate.slice();
      ops.swigluForward({ out: g2, gate: g2, up });
      expect(Array.from(g2)).toEqual(Array.from(out));
    });

    test('backward vs finite differences; accumulate', () => {
      const dgate = nanFilled(n),
        dup = nanFilled(n);
      ops.swigluBackward({ dgate, dup, dout: R, gate, up });
      expectClose(
        dgate,
        fdGrad((g) => dot(swigluRef(g, up), R), gate),
        GA,
        GR,
        'dgate',
      );
      expectClose(
        dup,
        fdGrad((u) => dot(swigluRef(gate, u), R), up),
        GA,
        GR,
        'dup',
      );
      const a = dgate.slice(),
        b = dup.slice();
      ops.swigluBackward({ dgate: a, dup: b, dout: R, gate, up, accumulate: true });
      expectClose(
        a,
        Array.from(dgate, (x) => 2 * x),
        1e-6,
        1e-5,
        'dgate (accumulate)',
      );
      expectClose(
        b,
        Array.from(dup, (x) => 2 * x),
        1e-6,
        1e-5,
        'dup (accumulate)',
      );
      expect(silu(0)).toBe(0);
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('elementwise, sumsq, adamw', () => {
    test('add (in place), scale, zero', () => {
      const r = rng(13);
      const a = rand32(40000, r),
        b = rand32(40000, r);
      const out = new Float32Array(a.length);
      ops.add({ out, a, b });
      expect(out.every((v, i) => v === Math.fround(a[i] + b[i]))).toBe(true);
      const x = a.slice();
      ops.add({ out: x, a: x, b });
      expect(Array.from(x)).toEqual(Array.from(out));
      ops.scale({ x, s: -0.5 });
      expect(x.every((v, i) => v === Math.fround(out[i] * -0.5))).toBe(true);
      ops.zero({ x });
      expect(x.every((v) => v === 0)).toBe(true);
    });

    test('sumsq: Σx² in double over a large buffer, independent of the thread count', () => {
      const r = rng(14);
      const x = rand32(100003, r, 3);
      let want = 0;
      for (const v of x) want += v * v;
      const got = ops.sumsq({ x });
      expect(abs(got - want) / want).toBeLessThan(1e-12);
      setNumThreads(1);
      try {
        expect(ops.sumsq({ x })).toBe(got);
      } finally {
        setNumThreads(0);
      }
      expect(ops.sumsq({ x: new Float32Array(0) })).toBe(0);
    });

    test('adamw: 3 steps match torch.optim.AdamW (float64 reference), with weight decay and a grad scale', () => {
      const n = 1000,
        r = rng(15);
      const h = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      const param = rand32(n, r),
        m = new Float32Array(n),
        v = new Float32Array(n);
      const p64 = f64(param),
        m64 = new Float64Array(n),
        v64 = new Float64Array(n);
      for (let t = 1; t <= 3; t++) {
        const grad = rand32(n, r, t === 2 ? 1e-3 : 1); // step 2: small gradients (eps matters more)
        const gradScale = t === 3 ? 0.25 : 1;
        ops.adamw({ param, grad, m, v, ...h, step: t, gradScale });
        adamwRef(
          p64,
          Array.from(grad, (g) => Math.fround(g * gradScale)),
          m64,
          v64,
          t,
          h,
        );
        expectClose(m, m64, 1e-7, 1e-6, `m after step ${t}`); // atol: m is a difference of O(|g|) terms
        expectClose(v, v64, 1e-12, 1e-6, `v after step ${t}`);
        expectClose(param, p64, 1e-7, 1e-6, `param after step ${t}`);
      }
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('bad input: TypeError / RangeError naming the argument', () => {
    const f = (n: number) => new Float32Array(n);
    test('gemm', () => {
      const ok = { M: 2, N: 3, K: 4, A: f(8), B: f(12), C: f(6) };
      expectError(() => (ops.gemm as (o: unknown) => void)(undefined), 'TypeError', 'options');
      expectError(() => ops.gemm({ ...ok, A: new Float64Array(8) as unknown as Float32Array }), 'TypeError', 'A');
      expectError(() => ops.gemm({ ...ok, B: f(11) }), 'RangeError', 'B');
      expectError(() => ops.gemm({ ...ok, C: f(5) }), 'RangeError', 'C');
      expectError(() => ops.gemm({ ...ok, M: -1 }), 'RangeError', 'M');
      expectError(() => ops.gemm({ ...ok, K: 1.5 }), 'RangeError', 'K');
      expectError(() => ops.gemm({ ...ok, lda: 3 }), 'RangeError', 'lda');
      expectError(() => ops.gemm({ ...ok, alpha: NaN }), 'RangeError', 'alpha');
      expectError(() => ops.gemm({ ...ok, transA: 1 as unknown as boolean }), 'TypeError', 'transA');
      const buf = f(20);
      expectError(() => ops.gemm({ ...ok, A: buf.subarray(0, 8), C: buf.subarray(4, 10) }), 'RangeError', 'C');
    });
    test('embedding, rmsnorm, rope', () => {
      const e = { T: 2, V: 3, C: 2, out: f(4), ids: Int32Array.from([0, 2]), wte: f(6) };
      expectError(() => ops.embeddingForward({ ...e, ids: Int32Array.from([0, 3]) }), 'RangeError', 'ids');
      expectError(() => ops.embeddingForward({ ...e, ids: Int32Array.from([-1, 0]) }), 'RangeError', 'ids');
      expectError(
        () => ops.embeddingBackward({ T: 2, V: 3, C: 2, dwte: f(6), dout: f(4), ids: Int32Array.from([5, 0]) }),
        'RangeError',
        'ids',
      );
      expectError(
        () => ops.embeddingForward({ ...e, ids: Float32Array.from([0, 2]) as unknown as Int32Array }),
        'TypeError',
        'ids',
      );
      expectError(() => ops.embeddingForward({ ...e, wte: f(5) }), 'RangeError', 'wte');
      const n = { T: 2, C: 3, eps: 1e-6, out: f(6), rstd: f(2), inp: f(6), weight: f(3) };
      expectError(() => ops.rmsnormForward({ ...n, rstd: f(3) }), 'RangeError', 'rstd');
      expectError(() => ops.rmsnormForward({ ...n, C: 0 }), 'RangeError', 'C');
      expectError(() => ops.rmsnormForward({ ...n, eps: -1 }), 'RangeError', 'eps');
      expectError(
        () => ops.rmsnormBackward({ T: 2, C: 3, dinp: f(6), dout: f(6), inp: f(6), weight: f(3) } as never),
        'TypeError',
        'rstd',
      );
      const inp = f(12);
      expectError(
        () => ops.rmsnormForward({ ...n, inp: inp.subarray(0, 6), out: inp.subarray(3, 9) }),
        'RangeError',
        'out',
      );
      const ro = { T: 2, H: 1, D: 4, theta: 1e4, out: f(8), inp: f(8), positions: Int32Array.from([0, 1]) };
      expectError(() => ops.ropeForward({ ...ro, D: 3, out: f(6), inp: f(6) }), 'RangeError', 'D');
      expectError(() => ops.ropeForward({ ...ro, positions: Int32Array.from([0, -4]) }), 'RangeError', 'positions');
      expectError(() => ops.ropeForward({ ...ro, positions: Int32Array.from([0]) }), 'RangeError', 'positions');
      const x = f(8);
      expectError(() => ops.ropeBackward({ ...ro, dinp: x, dout: x, accumulate: true }), 'RangeError', 'dinp');
    });
    test('attention, swiglu, adamw', () => {
      const a = { B: 1, Tq: 3, Hq: 4, Hkv: 2, D: 2, out: f(24), q: f(24), k: f(12), v: f(12) };
      expectError(() => ops.attentionForward({ ...a, Hkv: 3, k: f(18), v: f(18) }), 'RangeError', 'Hq');
      expectError(() => ops.attentionForward({ ...a, past: 1, Tkv: 3 }), 'RangeError', 'Tkv');
      expectError(() => ops.attentionForward({ ...a, lse: f(11) }), 'RangeError', 'lse');
      expectError(() => ops.attentionForward({ ...a, v: f(11) }), 'RangeError', 'v');
      expectError(() => ops.attentionForward({ ...a, out: a.q }), 'RangeError', 'out');
      // batched KV cache arguments
      const kv = { ...a, Tkv: 4, k: f(32), v: f(32) }; // 2 rows of 4 positions × Hkv·D = 4
      expectError(() => ops.attentionForward({ ...kv, rowSlot: Int32Array.of(2) }), 'RangeError', 'rowSlot');
      expectError(() => ops.attentionForward({ ...kv, rowSlot: Int32Array.of(0, 1) }), 'RangeError', 'rowSlot');
      expectError(
        () => ops.attentionForward({ ...kv, rowSlot: Int32Array.of(1), k: f(30), v: f(30) }),
        'RangeError',
        'k',
      );
      expectError(() => ops.attentionForward({ ...kv, rowSlot: Int32Array.of(1), v: f(16) }), 'RangeError', 'v');
      expectError(
        () => ops.attentionForward({ ...kv, k: f(16), v: f(16), rowPast: Int32Array.of(2) }),
        'RangeError',
        'rowPast',
      );
      expectError(
        () => ops.attentionForward({ ...kv, k: f(16), v: f(16), rowPast: Int32Array.of(-1) }),
        'RangeError',
        'rowPast',
      );
      expectError(
        () => ops.attentionForward({ ...kv, k: f(16), v: f(16), rowPast: Int32Array.of(0), past: 0 }),
        'RangeError',
        'rowPast',
      );
      expectError(() => ops.attentionForward({ ...kv, rowSlot: [0] as unknown as Int32Array }), 'TypeError', 'rowSlot');
      const w = {
        B: 1,
        T: 2,
        Tmax: 3,
        width: 2,
        cache: f(12),
        x: f(4),
        slot: Int32Array.of(1),
        positions: Int32Array.of(0, 2),
      };
      ops.kvWrite(w);
      expectError(() => ops.kvWrite({ ...w, slot: Int32Array.of(2) }), 'RangeError', 'slot');
      expectError(() => ops.kvWrite({ ...w, positions: Int32Array.of(0, 3) }), 'RangeError', 'positions');
      expectError(() => ops.kvWrite({ ...w, positions: Int32Array.of(1, 1) }), 'RangeError', 'positions');
      expectError(() => ops.kvWrite({ ...w, cache: f(13) }), 'RangeError', 'cache');
      expectError(() => ops.kvWrite({ ...w, x: f(5) }), 'RangeError', 'x');
      expectError(() => ops.kvWrite({ ...w, x: w.cache.subarray(0, 4) }), 'RangeError', 'cache');
      const b = {
        B: 1,
        T: 3,
        Hq: 4,
        Hkv: 2,
        D: 2,
        dq: f(24),
        dk: f(12),
        dv: f(12),
        dout: f(24),
        q: f(24),
        k: f(12),
        v: f(12),
        out: f(24),
        lse: f(12),
      };
      expectError(() => ops.attentionBackward({ ...b, lse: f(3) }), 'RangeError', 'lse');
      expectError(() => ops.attentionBackward({ ...b, dk: b.dv }), 'RangeError', 'dk');
      expectError(() => ops.swigluForward({ out: f(3), gate: f(3), up: f(4) }), 'RangeError', 'up');
      expectError(
        () =>
          ops.swigluBackward({
            dgate: f(3),
            dup: f(3),
            dout: f(3),
            gate: [1, 2, 3] as unknown as Float32Array,
            up: f(3),
          }),
        'TypeError',
        'gate',
      );
      expectError(() => ops.add({ out: f(3), a: f(3), b: f(2) }), 'RangeError', 'b');
      expectError(() => ops.adamw({ param: f(3), grad: f(3), m: f(3), v: f(2), step: 1 }), 'RangeError', 'v');
      expectError(() => ops.adamw({ param: f(3), grad: f(3), m: f(3), v: f(3), step: 0 }), 'RangeError', 'step');
      expectError(
        () => ops.adamw({ param: f(3), grad: f(3), m: f(3), v: f(3), step: 1, beta1: 1 }),
        'RangeError',
        'beta1',
      );
      const p = f(3);
      expectError(() => ops.adamw({ param: p, grad: f(3), m: p, v: f(3), step: 1 }), 'RangeError', 'param');
      expectError(() => ops.setGemm('mkl'), 'RangeError', 'impl');
    });
  });
});

// =========================================================================================================
// The bf16-GEMM instances (precision: 'bf16'): gemm / matmulForward / matmulBackward round BOTH operands to
// bfloat16 (ties to even), multiply-accumulate in fp32 and write fp32. The references are float64 sums over
// roundBf16(operands) (helpers/ops-reference.ts, written from the format, not from the kernels' bit trick), with
// the fp32 gemm's bound 1e-6·(√K + 2)·Σ|a·b|: a product of two bf16 values is exact in fp32, so only the fp32
// summation differs. Every case also requires the result to differ from the fp32 instance's by more than that
// bound on most elements (random data is never bf16-exact), so the tests fail when the operands are not rounded.
// Bias and dbias stay fp32 (bias rounded to bf16 would miss the bound by ~100×).
describe.each(devices)('bf16 GEMM instance, device %s', (device) => {
  const ops = opsOn({ device, precision: 'bf16' });
  const f32 = opsOn({ device, precision: 'fp32' });

  // |got − ref| <= tol·mag per element; returns the fraction of elements where other (the fp32 instance's result)
  // is further than that from got.
  function check(
    got: ArrayLike<number>,
    ref: ArrayLike<number>,
    mag: ArrayLike<number>,
    tol: number,
    other: ArrayLike<number>,
    label: string,
  ): number {
    expect(got.length).toBe(ref.length);
    let apart = 0;
    for (let i = 0; i < ref.length; i++) {
      if (!(abs(got[i] - ref[i]) <= tol * mag[i] + 1e-30))
        throw new Error(`${label}: [${i}] = ${got[i]}, want ${ref[i]} (bound ${tol * mag[i]})`);
      if (abs(got[i] - other[i]) > tol * mag[i]) apart++;
    }
    return apart / ref.length;
  }

  /** C (rows, cols) = Σ_k a(r, k)·b(k, c) in float64, and Σ|a·b| (+|init|). */
  function prod(
    rows: number,
    cols: number,
    inner: number,
    a: (r: number, k: number) => number,
    b: (k: number, c: number) => number,
    init?: ArrayLike<number>,
  ) {
    const c = new Float64Array(rows * cols),
      mag = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        let s = init ? init[i * cols + j] : 0;
        let m = abs(s);
        for (let k = 0; k < inner; k++) {
          const p = a(i, k) * b(k, j);
          s += p;
          m += abs(p);
        }
        c[i * cols + j] = s;
        mag[i * cols + j] = m;
      }
    return { c, mag };
  }

  test('info: precision bf16 on this instance, fp32 on the default one', () => {
    expect(ops.info()).toMatchObject({ backend: device, precision: 'bf16' });
    expect(f32.info()).toMatchObject({ backend: device, precision: 'fp32' });
  });

  test('operand rounding: ties to even, above-tie up, NaN and ±Infinity kept, fp32 max overflows to Infinity', () => {
    // value → its bf16 (8 significant bits): 1 + 2^-8 is the tie between 1 and 1 + 2^-7 (even: 1); 1 + 3·2^-8 the
    // tie between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6); truncation would give 1 + 2^-7 for both of the last two.
    const cases: [number, number][] = [
      [1 + 2 ** -8, 1],
      [1 + 3 * 2 ** -8, 1 + 2 ** -6],
      [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7],
      [-(1 + 2 ** -8), -1],
      [Math.fround(0.1), 0.10009765625],
      [-Math.fround(1 / 3), -0.333984375],
      [3.4028234663852886e38, Infinity],
      [Infinity, Infinity],
      [-Infinity, -Infinity],
      [NaN, NaN],
      [2 ** 100 * (1 + 2 ** -9), 2 ** 100],
      [1.5, 1.5],
    ];
    const vals = Float32Array.from(cases, ([v]) => v);
    for (const [v, want] of cases) expect(roundBf16(Math.fround(v))).toBe(want); // the reference agrees
    const n = vals.length;
    const one = Float32Array.from([1]);
    // A rounded: C (n, 1) = A (n, 1) · [1]; B rounded: C (1, n) = [1] · B (1, n).
    const ca = nanFilled(n),
      cb = nanFilled(n);
    ops.gemm({ M: n, N: 1, K: 1, A: vals, B: one, C: ca });
    ops.gemm({ M: 1, N: n, K: 1, A: one, B: vals, C: cb });
    for (let i = 0; i < n; i++) {
      expect(ca[i]).toBe(cases[i][1]);
      expect(cb[i]).toBe(cases[i][1]);
    }
    // The fp32 instance keeps the values (the test above would fail if bf16 were not applied).
    const cf = nanFilled(n);
    f32.gemm({ M: n, N: 1, K: 1, A: vals, B: one, C: cf });
    expect(Array.from(cf)).toEqual(Array.from(vals));
  });

  test('gemm: 4 transpose combos × shapes × alpha/beta × padded leading dimensions vs float64 on rounded operands', () => {
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [7, 33, 130],
      [33, 7, 7],
      [40, 50, 300],
      [130, 33, 65],
    ];
    const r = rng(21);
    let n = 0,
      apart = 0,
      cases = 0;
    for (const [M, N, K] of shapes)
      for (const ta of [false, true])
        for (const tb of [false, true]) {
          const pad = n++ % 2 ? 3 : 0;
          const lda = (ta ? M : K) + pad,
            ldb = (tb ? K : N) + pad,
            ldc = N + pad;
          const A = rand32(((ta ? K : M) - 1) * lda + (ta ? M : K), r);
          const B = rand32(((tb ? N : K) - 1) * ldb + (tb ? K : N), r);
          const Ar = roundBf16All(A),
            Br = roundBf16All(B);
          for (const [alpha, beta] of [
            [1, 0],
            [-0.75, 0.5],
            [2, 1],
          ]) {
            const C = beta === 0 ? nanFilled((M - 1) * ldc + N) : rand32((M - 1) * ldc + N, r);
            const { c, mag } = gemmRef(ta, tb, M, N, K, alpha, Ar, lda, Br, ldb, beta, C, ldc);
            const C0 = C.slice(),
              Cf = C.slice();
            ops.gemm({ transA: ta, transB: tb, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc });
            f32.gemm({ transA: ta, transB: tb, M, N, K, alpha, beta, A, lda, B, ldb, C: Cf, ldc });
            const tol = 1e-6 * (sqrt(K) + 2);
            const label = `${M}x${N}x${K} ta=${ta} tb=${tb} alpha=${alpha} beta=${beta}`;
            const inside = (i: number) => i % ldc < N;
            for (let i = 0; i < C.length; i++)
              if (!inside(i) && !Object.is(C[i], C0[i])) throw new Error(`${label}: padding element ${i} was written`);
            const idx = Array.from({ length: C.length }, (_, i) => i).filter(inside);
            const pick = (a: ArrayLike<number>) => idx.map((i) => a[i]);
            apart += check(pick(C), pick(c), pick(mag), tol, pick(Cf), label);
            cases++;
          }
        }
    expect(apart / cases).toBeGreaterThan(0.9); // bf16 and fp32 results apart on > 90% of the elements
  });

  test('matmulForward: round(inp)·round(W)ᵀ + fp32 bias; accumulate', () => {
    const M = 13,
      N = 11,
      K = 37,
      r = rng(22);
    const inp = rand32(M * K, r),
      w = rand32(N * K, r),
      bias = rand32(N, r);
    const ri = roundBf16All(inp),
      rw = roundBf16All(w);
    const tol = 1e-6 * (sqrt(K) + 2);
    const out = nanFilled(M * N),
      outF = nanFilled(M * N);
    ops.matmulForward({ out, inp, weight: w, bias, M, N, K });
    f32.matmulForward({ out: outF, inp, weight: w, bias, M, N, K });
    const ref = prod(
      M,
      N,
      K,
      (m, k) => ri[m * K + k],
      (k, n) => rw[n * K + k],
      Float64Array.from({ length: M * N }, (_, i) => bias[i % N]),
    );
    expect(check(out, ref.c, ref.mag, tol, outF, 'out')).toBeGreaterThan(0.8);
    const base = rand32(M * N, r);
    const acc = base.slice(),
      accF = base.slice();
    ops.matmulForward({ out: acc, inp, weight: w, M, N, K, accumulate: true });
    f32.matmulForward({ out: accF, inp, weight: w, M, N, K, accumulate: true });
    const refAcc = prod(
      M,
      N,
      K,
      (m, k) => ri[m * K + k],
      (k, n) => rw[n * K + k],
      base,
    );
    expect(check(acc, refAcc.c, refAcc.mag, tol, accF, 'out (accumulate)')).toBeGreaterThan(0.8);
  });

  test('matmulBackward: dinp = round(dout)·round(W), dweight += round(dout)ᵀ·round(inp), dbias += fp32 column sums', () => {
    const M = 13,
      N = 11,
      K = 37,
      r = rng(23);
    const inp = rand32(M * K, r),
      w = rand32(N * K, r),
      dout = rand32(M * N, r);
    const ri = roundBf16All(inp),
      rw = roundBf16All(w),
      rd = roundBf16All(dout);
    const dinp = nanFilled(M * K),
      dweight = rand32(N * K, r),
      dbias = rand32(N, r);
    const dinpF = nanFilled(M * K),
      dweightF = dweight.slice(),
      dbiasF = dbias.slice(),
      w0 = dweight.slice();
    ops.matmulBackward({ dinp, dweight, dbias, dout, inp, weight: w, M, N, K });
    f32.matmulBackward({ dinp: dinpF, dweight: dweightF, dbias: dbiasF, dout, inp, weight: w, M, N, K });
    const rdinp = prod(
      M,
      K,
      N,
      (m, n) => rd[m * N + n],
      (n, k) => rw[n * K + k],
    );
    expect(check(dinp, rdinp.c, rdinp.mag, 1e-6 * (sqrt(N) + 2), dinpF, 'dinp')).toBeGreaterThan(0.8);
    const rdw = prod(
      N,
      K,
      M,
      (n, m) => rd[m * N + n],
      (m, k) => ri[m * K + k],
      w0,
    );
    expect(check(dweight, rdw.c, rdw.mag, 1e-6 * (sqrt(M) + 2), dweightF, 'dweight')).toBeGreaterThan(0.8);
    expect(Array.from(dbias)).toEqual(Array.from(dbiasF)); // dbias: the fp32 path, from the unrounded dout
    const again = dinp.slice();
    ops.matmulBackward({ dinp: again, dout, weight: w, M, N, K, accumulate: true });
    expectClose(
      again,
      Array.from(dinp, (x) => 2 * x),
      1e-6,
      1e-5,
      'dinp (accumulate)',
    );
  });

  test('rmsnorm, swiglu and sumsq are the fp32 ops (bitwise equal to the f32 instance)', () => {
    const T = 4,
      C = 19,
      r = rng(24);
    const x = rand32(T * C, r),
      w = rand32(C, r);
    const [o1, o2, s1, s2] = [nanFilled(T * C), nanFilled(T * C), nanFilled(T), nanFilled(T)];
    ops.rmsnormForward({ out: o1, rstd: s1, inp: x, weight: w, T, C, eps: 1e-6 });
    f32.rmsnormForward({ out: o2, rstd: s2, inp: x, weight: w, T, C, eps: 1e-6 });
    expect(Array.from(o1)).toEqual(Array.from(o2));
    expect(Array.from(s1)).toEqual(Array.from(s2));
    const g1 = nanFilled(T * C),
      g2 = nanFilled(T * C);
    ops.swigluForward({ out: g1, gate: x, up: o1 });
    f32.swigluForward({ out: g2, gate: x, up: o1 });
    expect(Array.from(g1)).toEqual(Array.from(g2));
    expect(ops.sumsq({ x })).toBe(f32.sumsq({ x }));
  });
});

// =========================================================================================================
describe('backend selection (device, precision; gemmDtype its deprecated name)', () => {
  const f = (n: number) => new Float32Array(n);
  const g = () => ({ M: 2, N: 3, K: 4, A: f(8), B: f(12), C: f(6) });
  // The ops with untyped options, to pass values the typings rule out.
  const loose = addonOps as unknown as Record<keyof NativeOps, (o?: unknown, s?: unknown) => unknown>;

  test('bad values: TypeError / RangeError naming the key, before any other argument is judged', () => {
    expectError(() => loose.gemm({ ...g(), device: 'gpu' }), 'RangeError', 'device');
    expectError(() => loose.gemm({ ...g(), device: 1 }), 'TypeError', 'device');
    expectError(() => loose.gemm({ ...g(), precision: 'fp16' }), 'RangeError', 'precision');
    expectError(() => loose.gemm({ ...g(), precision: 'f32' }), 'RangeError', 'precision'); // only the old key took 'f32'
    expectError(() => loose.gemm({ ...g(), precision: true }), 'TypeError', 'precision');
    expectError(() => loose.gemm({ ...g(), precision: 'bf16', gemmDtype: 'f32' }), 'RangeError', 'gemmDtype');
    expectError(() => loose.gemm({ ...g(), gemmDtype: 'fp16' }), 'RangeError', 'gemmDtype');
    expectError(() => loose.gemm({ ...g(), gemmDtype: true }), 'TypeError', 'gemmDtype');
    expectError(() => loose.gemm({ ...g(), M: -1, device: 'CPU' }), 'RangeError', 'device');
    expectError(() => loose.sumsq({ x: f(3), device: 'cpu0' }), 'RangeError', 'device');
    expectError(
      () => loose.adamw({ param: f(3), grad: f(3), m: f(3), v: f(3), step: 1, gemmDtype: 'BF16' }),
      'RangeError',
      'gemmDtype',
    );
    expectError(
      () => loose.rmsnormForward({ T: 1, C: 1, eps: 1e-6, out: f(1), rstd: f(1), inp: f(1), weight: f(1), device: {} }),
      'TypeError',
      'device',
    );
    expectError(() => loose.info({ device: 'tpu' }), 'RangeError', 'device');
    expectError(() => loose.info(7), 'TypeError', 'options');
    expectError(() => loose.setGemm('builtin', { gemmDtype: 'f16' }), 'RangeError', 'gemmDtype');
    expectError(() => addonOps.setGemm('cublas'), 'RangeError', 'impl'); // a CUDA implementation named for the CPU
  });

  test("explicit defaults ('cpu', 'fp32', the deprecated gemmDtype 'f32', or null) are the default backend", () => {
    const r = rng(25);
    const A = rand32(8, r),
      B = rand32(12, r);
    const c0 = f(6),
      c1 = f(6),
      c2 = f(6),
      c3 = f(6),
      c4 = f(6);
    addonOps.gemm({ M: 2, N: 3, K: 4, A, B, C: c0 });
    addonOps.gemm({ M: 2, N: 3, K: 4, A, B, C: c1, device: 'cpu', precision: 'fp32' });
    loose.gemm({ M: 2, N: 3, K: 4, A, B, C: c2, device: null, precision: null, gemmDtype: null });
    addonOps.gemm({ M: 2, N: 3, K: 4, A, B, C: c3, device: 'cpu', gemmDtype: 'f32' });
    addonOps.gemm({ M: 2, N: 3, K: 4, A, B, C: c4, precision: 'fp32', gemmDtype: 'fp32' });
    for (const c of [c1, c2, c3, c4]) expect(Array.from(c)).toEqual(Array.from(c0));
    expect(addonOps.info()).toMatchObject({ backend: 'cpu', precision: 'fp32' });
    expect(addonOps.info({ precision: 'bf16' })).toMatchObject({ backend: 'cpu', precision: 'bf16' });
    expect(addonOps.info({ gemmDtype: 'bf16' })).toMatchObject({ backend: 'cpu', precision: 'bf16' }); // deprecated name
    // the deprecated name selects the same bf16 instance: the same (bf16-rounded) result as precision 'bf16'
    const b1 = f(6),
      b2 = f(6);
    addonOps.gemm({ M: 2, N: 3, K: 4, A, B, C: b1, precision: 'bf16' });
    addonOps.gemm({ M: 2, N: 3, K: 4, A, B, C: b2, gemmDtype: 'bf16' });
    expect(Array.from(b2)).toEqual(Array.from(b1));
    expect(Array.from(b1)).not.toEqual(Array.from(c0));
  });

  // Only where CUDA is not usable (this is the error a CPU-only machine must give).
  (cudaUsable ? test.skip : test)(
    "device 'cuda' without a usable CUDA backend: Error ERR_RIFT_NO_CUDA, nothing written",
    () => {
      const calls: [string, () => unknown][] = [
        ['gemm', () => addonOps.gemm({ ...g(), C: written, device: 'cuda' })],
        ['gemm bf16', () => addonOps.gemm({ ...g(), C: written, device: 'cuda', precision: 'bf16' })],
        [
          'matmulForward',
          () => addonOps.matmulForward({ M: 2, N: 3, K: 1, out: written, inp: f(2), weight: f(3), device: 'cuda' }),
        ],
        ['scale', () => addonOps.scale({ x: written, s: 2, device: 'cuda' })],
        ['sumsq', () => addonOps.sumsq({ x: written, device: 'cuda' })],
        ['info', () => addonOps.info({ device: 'cuda' })],
        ['setGemm', () => addonOps.setGemm('cublas', { device: 'cuda' })],
      ];
      const written = Float32Array.from([1, 2, 3, 4, 5, 6]);
      for (const [label, call] of calls) {
        let err: (Error & { code?: string }) | undefined;
        try {
          call();
        } catch (e) {
          err = e as Error & { code?: string };
        }
        if (!err) throw new Error(`${label}: expected an Error, nothing was thrown`);
        expect(err.name).toBe('Error');
        expect(err.code).toBe('ERR_RIFT_NO_CUDA');
        expect(err.message).toMatch(
          /^device: 'cuda' is not usable \(it needs a CUDA device and a loadable cuBLAS\): .+; use device 'cpu'$/,
        );
      }
      expect(Array.from(written)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(addonOps.devices()).toEqual(['cpu']);
    },
  );
});
