// The benchmark baselines (not the fused kernel): the unfused C++ SFT path (addon.bench.unfusedSft), the
// naive TS SFT (bench/naive.ts) and the threaded copy, against a float64 reference written here.
// No timing assertions.
import { addon } from '../lib/native';
import { naiveSft } from '../bench/naive';

interface BenchAddon {
  unfusedSft(
    logits: unknown,
    rows: unknown,
    vocab: unknown,
    targets: unknown,
    grad: unknown,
    vectorExp?: unknown,
  ): number;
  copy(dst: unknown, src: unknown): void;
}
const bench = addon.bench as unknown as BenchAddon;

const N = 5;
const V = 11;
const targets = Int32Array.from([3, 10, -100, 0, 7]); // row 2 is a prompt row

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function makeLogits(): Float32Array {
  const rnd = seeded(42);
  const z = new Float32Array(N * V);
  for (let i = 0; i < z.length; i++) z[i] = (rnd() - 0.5) * 8;
  z[0 * V + 3] = 6; // a confident row
  return z;
}

function toBf16(x: Float32Array): Uint16Array {
  // Round to nearest even (no NaNs here).
  const u = new Uint32Array(Float32Array.from(x).buffer);
  return Uint16Array.from(u, (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16);
}
function fromBf16(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  new Uint32Array(out.buffer).set(Uint32Array.from(h, (b) => b << 16));
  return out;
}

/** Float64 SFT: loss = mean −log softmax(z_t)[y_t] over rows with a target; grad = (softmax − onehot)/n. */
function reference(
  z: ArrayLike<number>,
  rows: number,
  vocab: number,
  y: Int32Array,
): { loss: number; grad: Float64Array } {
  const grad = new Float64Array(rows * vocab);
  let n = 0;
  for (let t = 0; t < rows; t++) if (y[t] !== -100) n++;
  let loss = 0;
  for (let t = 0; t < rows; t++) {
    if (y[t] === -100) continue;
    let m = -Infinity;
    for (let v = 0; v < vocab; v++) m = Math.max(m, z[t * vocab + v]);
    let d = 0;
    for (let v = 0; v < vocab; v++) d += Math.exp(z[t * vocab + v] - m);
    const lse = m + Math.log(d);
    loss -= z[t * vocab + y[t]] - lse;
    for (let v = 0; v < vocab; v++) grad[t * vocab + v] = (Math.exp(z[t * vocab + v] - lse) - (v === y[t] ? 1 : 0)) / n;
  }
  return { loss: n > 0 ? loss / n : 0, grad };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function expectError(fn: () => unknown, name: 'TypeError' | 'RangeError', arg: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeDefined();
  // Errors made by the addon come from another realm than jest's globals: compare names, not constructors.
  expect((caught as Error).name).toBe(name);
  expect((caught as Error).message.startsWith(`${arg}:`)).toBe(true);
}

describe('unfused C++ SFT (bench.unfusedSft)', () => {
  test.each([false, true])('f32 matches float64, separate grad and in place (vectorExp %s)', (vectorExp) => {
    const z = makeLogits();
    const ref = reference(z, N, V, targets);
    const grad = new Float32Array(N * V).fill(123); // stale contents must be overwritten (ignored row too)
    const loss = bench.unfusedSft(z, N, V, targets, grad, vectorExp);
    expect(Math.abs(loss - ref.loss)).toBeLessThan(1e-5 * Math.max(1, ref.loss));
    expect(maxAbsDiff(grad, ref.grad)).toBeLessThan(1e-6);
    expect(grad.subarray(2 * V, 3 * V).every((g) => g === 0)).toBe(true);

    const inPlace = Float32Array.from(z);
    const loss2 = bench.unfusedSft(inPlace, N, V, targets, inPlace, vectorExp);
    expect(loss2).toBe(loss);
    expect(maxAbsDiff(inPlace, grad)).toBe(0);
  });

  test.each([false, true])('bf16 matches float64 on the bf16-rounded logits (vectorExp %s)', (vectorExp) => {
    const z = toBf16(makeLogits());
    const ref = reference(fromBf16(z), N, V, targets);
    const grad = new Uint16Array(N * V).fill(0x3f80);
    const loss = bench.unfusedSft(z, N, V, targets, grad, vectorExp);
    expect(Math.abs(loss - ref.loss)).toBeLessThan(1e-5 * Math.max(1, ref.loss));
    const g = fromBf16(grad);
    for (let i = 0; i < g.length; i++)
      expect(Math.abs(g[i] - ref.grad[i])).toBeLessThanOrEqual(Math.abs(ref.grad[i]) * 2 ** -8 + 1e-9);
  });

  test('no row with a target: loss 0, gradient 0', () => {
    const z = makeLogits();
    const grad = new Float32Array(N * V).fill(1);
    expect(bench.unfusedSft(z, N, V, new Int32Array(N).fill(-100), grad)).toBe(0);
    expect(grad.every((g) => g === 0)).toBe(true);
    expect(bench.unfusedSft(new Float32Array(0), 0, V, new Int32Array(0), new Float32Array(0))).toBe(0);
  });

  test('the scratch buffer grows: a larger call after a smaller one is still right', () => {
    const rows = 64;
    const vocab = 1000;
    const rnd = seeded(3);
    const z = Float32Array.from({ length: rows * vocab }, () => (rnd() - 0.5) * 10);
    const y = Int32Array.from({ length: rows }, (_, t) => (t % 7 === 0 ? -100 : (t * 37) % vocab));
    const ref = reference(z, rows, vocab, y);
    const grad = new Float32Array(rows * vocab);
    const loss = bench.unfusedSft(z, rows, vocab, y, grad);
    expect(Math.abs(loss - ref.loss)).toBeLessThan(1e-5 * Math.max(1, ref.loss));
    expect(maxAbsDiff(grad, ref.grad)).toBeLessThan(1e-7);
  });

  test('bad arguments: TypeError / RangeError naming the argument', () => {
    const z = makeLogits();
    const g = new Float32Array(N * V);
    const call =
      (...a: unknown[]) =>
      () =>
        bench.unfusedSft(a[0], a[1], a[2], a[3], a[4]);
    expectError(call(new Float64Array(N * V), N, V, targets, g), 'TypeError', 'logits');
    expectError(call([1, 2, 3], N, V, targets, g), 'TypeError', 'logits');
    expectError(call(z, '5', V, targets, g), 'TypeError', 'rows');
    expectError(call(z, -1, V, targets, g), 'RangeError', 'rows');
    expectError(call(z, 2.5, V, targets, g), 'RangeError', 'rows');
    expectError(call(z, N, undefined, targets, g), 'TypeError', 'vocab');
    expectError(call(z, N, 0, targets, g), 'RangeError', 'vocab');
    expectError(call(z, N, V + 1, targets, g), 'RangeError', 'logits');
    expectError(call(z, N, V, new Uint32Array(N), g), 'TypeError', 'targets');
    expectError(call(z, N, V, new Int32Array(N + 1), g), 'RangeError', 'targets');
    expectError(call(z, N, V, Int32Array.from([0, 1, 2, 3, V]), g), 'RangeError', 'targets');
    expectError(call(z, N, V, Int32Array.from([0, 1, -1, 3, 4]), g), 'RangeError', 'targets');
    expectError(call(z, N, V, targets, new Uint16Array(N * V)), 'TypeError', 'grad');
    expectError(call(z, N, V, targets, null), 'TypeError', 'grad');
    expectError(call(z, N, V, targets, new Float32Array(N * V - 1)), 'RangeError', 'grad');
    expectError(call(toBf16(z), N, V, targets, g), 'TypeError', 'grad');
    expectError(() => bench.unfusedSft(z, N, V, targets, g, 1), 'TypeError', 'vectorExp');
    expectError(() => (bench.unfusedSft as unknown as (...a: unknown[]) => number)(z, N, V), 'TypeError', 'unfusedSft');
  });
});

describe('naive TS SFT (bench/naive.ts)', () => {
  test('matches float64, separate grad and in place', () => {
    const z = makeLogits();
    const ref = reference(z, N, V, targets);
    const grad = new Float32Array(N * V).fill(7);
    const loss = naiveSft(z, N, V, targets, grad);
    expect(Math.abs(loss - ref.loss)).toBeLessThan(1e-5 * Math.max(1, ref.loss));
    expect(maxAbsDiff(grad, ref.grad)).toBeLessThan(1e-6);
    expect(grad.subarray(2 * V, 3 * V).every((g) => g === 0)).toBe(true);

    const inPlace = Float32Array.from(z);
    expect(naiveSft(inPlace, N, V, targets, inPlace, new Float32Array(N * V))).toBe(loss);
    expect(maxAbsDiff(inPlace, grad)).toBe(0);
  });

  test('agrees with the unfused C++ path', () => {
    const z = makeLogits();
    const a = new Float32Array(N * V);
    const b = new Float32Array(N * V);
    const la = naiveSft(z, N, V, targets, a);
    const lb = bench.unfusedSft(z, N, V, targets, b);
    expect(Math.abs(la - lb)).toBeLessThan(1e-5);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
  });
});

describe('threaded copy (bench.copy)', () => {
  test('copies src.byteLength bytes, views with offsets included', () => {
    const n = (3 << 20) + 13; // several pool blocks plus a ragged tail
    const src = new Uint8Array(n + 5);
    for (let i = 0; i < src.length; i++) src[i] = (i * 31 + 7) & 255;
    const dst = new Uint8Array(n + 9).fill(0xee);
    bench.copy(dst.subarray(3), src.subarray(5));
    expect(dst[0]).toBe(0xee);
    expect(dst[2]).toBe(0xee);
    let same = true;
    for (let i = 0; i < n; i++) if (dst[3 + i] !== src[5 + i]) same = false;
    expect(same).toBe(true);
    expect(dst[3 + n]).toBe(0xee);

    const f = Float32Array.from([1, 2, 3]);
    const out = new ArrayBuffer(12);
    bench.copy(out, f);
    expect(Array.from(new Float32Array(out))).toEqual([1, 2, 3]);
  });

  test('bad arguments: TypeError / RangeError naming the argument', () => {
    const a = new Uint8Array(16);
    expectError(() => bench.copy([1, 2], a), 'TypeError', 'dst');
    expectError(() => bench.copy(a, 'abc'), 'TypeError', 'src');
    expectError(() => bench.copy(new Uint8Array(8), a), 'RangeError', 'dst');
    expectError(() => bench.copy(a.subarray(4), a.subarray(0, 8)), 'RangeError', 'dst');
    expectError(() => (bench.copy as unknown as (...x: unknown[]) => void)(a), 'TypeError', 'copy');
  });
});
