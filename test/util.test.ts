// lib/util: the seeded generator against mulberry32's published definition, and the seed mixing.
import { mixSeed, mulberry32 } from '../lib/util/rng';

/** mulberry32 as its author published it (signed state, `| 0`), written independently of lib/util/rng.ts. */
function published(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('mulberry32', () => {
  test('the published stream, bit for bit, for seeds across the 32-bit range', () => {
    for (const seed of [0, 1, 42, 0x7fffffff, 0x80000000, 0xffffffff, -1, 123456789]) {
      const a = mulberry32(seed),
        b = published(seed);
      for (let i = 0; i < 1000; i++) expect(a()).toBe(b());
    }
  });
  test('uniform on [0, 1): mean and variance of 200000 draws', () => {
    const r = mulberry32(7);
    let s = 0,
      s2 = 0;
    const n = 200000;
    for (let i = 0; i < n; i++) {
      const x = r();
      expect(x >= 0 && x < 1).toBe(true);
      s += x;
      s2 += x * x;
    }
    expect(Math.abs(s / n - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(s2 / n - (s * s) / n / n - 1 / 12)).toBeLessThan(0.002);
  });
});

describe('mixSeed', () => {
  test('unsigned 32-bit, and nearby keys give different seeds', () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 20; seed++)
      for (let key = 0; key < 20; key++) {
        const m = mixSeed(seed, key);
        expect(Number.isInteger(m) && m >= 0 && m < 2 ** 32).toBe(true);
        seen.add(m);
      }
    expect(seen.size).toBe(400);
  });
});
