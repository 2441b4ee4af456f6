// OpsBackend::sumsq (Σ x² in double, the gradient norm's square) follows ONE fixed summation order on every backend
// (native/backends/sumsq_order.h, docs/design.md §4.2): chunks of 4096 elements, 256 lanes per chunk (element
// r·1024 + 4j + k of a chunk is lane j's step 4r + k), a fixed tree over the lanes, and the chunk sums reduced the
// same way. JS numbers are IEEE doubles and a float's square is exact in double, so the float64 reference below,
// written in that order, must equal the result bit for bit: on the CPU whatever the thread count or alignment, and on
// CUDA (when usable) the same number as the CPU.
import { setNumThreads } from '../lib';
import { ops, OpsDevice, rand32, rng } from './helpers/ops-reference';

const LANES = 256,
  GROUP = 32,
  STRIDE = 1024,
  CHUNK = 4096;

function laneTree(s: Float64Array): number {
  for (let g = 0; g < LANES; g += GROUP)
    for (let o = GROUP >> 1; o > 0; o >>= 1) for (let j = 0; j < o; j++) s[g + j] += s[g + j + o];
  const w = new Float64Array(LANES / GROUP);
  for (let g = 0; g < w.length; g++) w[g] = s[g * GROUP];
  for (let o = w.length >> 1; o > 0; o >>= 1) for (let j = 0; j < o; j++) w[j] += w[j + o];
  return w[0];
}

function sumsqFixedOrder(x: Float32Array): number {
  const n = x.length;
  if (n === 0) return 0;
  const chunks = Math.ceil(n / CHUNK),
    part = new Float64Array(chunks);
  for (let c = 0; c < chunks; c++) {
    const base = c * CHUNK,
      len = Math.min(CHUNK, n - base),
      s = new Float64Array(LANES);
    for (let j = 0; j < LANES; j++)
      for (let r = 0; r < 4; r++)
        for (let k = 0; k < 4; k++) {
          const l = r * STRIDE + 4 * j + k;
          if (l < len) s[j] += x[base + l] * x[base + l];
        }
    part[c] = laneTree(s);
  }
  const s = new Float64Array(LANES);
  for (let j = 0; j < LANES; j++) for (let c = j; c < chunks; c += LANES) s[j] += part[c];
  return laneTree(s);
}

/** The plain left-to-right double sum: a different order, a different last bit in general. */
function sumsqNaive(x: Float32Array): number {
  let s = 0;
  for (const v of x) s += v * v;
  return s;
}

const SIZES = [1, 3, 1023, 4095, 4096, 4097, 12289, 100003, 1048576 + 4097, 2100000];
const DEVICES = ops.devices() as OpsDevice[];

describe('sumsq: one fixed summation order', () => {
  const r = rng(2026);
  const data = SIZES.map((n) => {
    const x = rand32(n + 1, r, 3);
    x[0] = 1e-30; // the misaligned view x.subarray(1) starts 4 bytes into a 16-byte-aligned buffer
    return x;
  });

  test('the CPU equals the float64 reference in the fixed order, bit for bit, for any thread count', () => {
    let differsFromNaive = 0;
    try {
      for (const [t, threads] of [0, 1, 2, 3].entries()) {
        setNumThreads(threads);
        for (const [i, n] of SIZES.entries()) {
          const whole = data[i].subarray(0, n),
            shifted = data[i].subarray(1);
          const want = sumsqFixedOrder(whole);
          expect([n, threads, ops.sumsq({ x: whole })]).toEqual([n, threads, want]);
          expect([n, threads, 'misaligned', ops.sumsq({ x: shifted })]).toEqual([
            n,
            threads,
            'misaligned',
            sumsqFixedOrder(shifted),
          ]);
          if (t === 0 && sumsqNaive(whole) !== want) differsFromNaive++;
          // and it is Σx²: within the naive sum's own rounding bound (n·2⁻⁵³ relative)
          expect(Math.abs(want - sumsqNaive(whole))).toBeLessThanOrEqual(n * 1.2e-16 * want);
        }
      }
    } finally {
      setNumThreads(0);
    }
    // the order is observable: for the larger sizes a naive left-to-right sum lands on other last bits
    expect(differsFromNaive).toBeGreaterThan(0);
    expect(ops.sumsq({ x: new Float32Array(0) })).toBe(0);
  });

  (DEVICES.includes('cuda') ? test : test.skip)('cuda equals the CPU bit for bit, run after run', () => {
    const device = 'cuda';
    for (const [i, n] of SIZES.entries()) {
      const whole = data[i].subarray(0, n),
        shifted = data[i].subarray(1);
      const cpu = ops.sumsq({ x: whole });
      expect([n, ops.sumsq({ x: whole, device })]).toEqual([n, cpu]);
      expect([n, ops.sumsq({ x: whole, device })]).toEqual([n, cpu]);
      expect([n, 'misaligned', ops.sumsq({ x: shifted, device })]).toEqual([
        n,
        'misaligned',
        ops.sumsq({ x: shifted }),
      ]);
    }
  });
});
