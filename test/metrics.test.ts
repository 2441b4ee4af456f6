// Pass@k against its closed form 1 − C(n−c, k)/C(n, k) with exact BigInt binomials; Mean@K; summarize().
import { passAtK, meanAtK, meanPassAtK, summarize, defaultKs } from '../lib/eval/metrics';

function binom(n: number, k: number): bigint {
  if (k < 0 || k > n) return 0n;
  let r = 1n;
  for (let i = 0; i < k; i++) r = (r * BigInt(n - i)) / BigInt(i + 1);
  return r;
}

/** 1 − C(n−c,k)/C(n,k) from exact integers, rounded once to float64 (via a 1e30-scaled integer quotient). */
function closedForm(n: number, c: number, k: number): number {
  const num = binom(n - c, k),
    den = binom(n, k);
  const SCALE = 10n ** 30n;
  return 1 - Number((num * SCALE) / den) / 1e30;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('passAtK', () => {
  test('matches the closed form for every (n, c, k) with n ≤ 30', () => {
    let worst = 0;
    for (let n = 1; n <= 30; n++)
      for (let c = 0; c <= n; c++)
        for (let k = 1; k <= n; k++) worst = Math.max(worst, Math.abs(passAtK(n, c, k) - closedForm(n, c, k)));
    expect(worst).toBeLessThan(1e-13);
  });

  test('matches the closed form for large n where the float binomials overflow', () => {
    expect(Number(binom(2000, 1000))).toBe(Infinity); // far past float64
    for (const [n, c, k] of [
      [200, 3, 100],
      [1000, 1, 1],
      [1000, 10, 500],
      [2000, 50, 1000],
      [1200, 1100, 64],
    ]) {
      expect(passAtK(n, c, k)).toBeCloseTo(closedForm(n, c, k), 12);
    }
  });

  test('edge cases', () => {
    expect(passAtK(10, 0, 1)).toBe(0);
    expect(passAtK(10, 0, 10)).toBe(0);
    expect(passAtK(10, 10, 1)).toBe(1);
    expect(passAtK(10, 10, 10)).toBe(1);
    expect(passAtK(10, 1, 10)).toBe(1); // n − c < k: every draw includes the correct one
    expect(passAtK(10, 3, 8)).toBe(1);
    expect(passAtK(1, 1, 1)).toBe(1);
    expect(passAtK(1, 0, 1)).toBe(0);
    expect(passAtK(10, 3, 1)).toBeCloseTo(0.3, 15); // k = 1: c/n
    expect(passAtK(4, 1, 2)).toBeCloseTo(0.5, 15); // 1 − C(3,2)/C(4,2) = 1 − 3/6
  });

  test('bad arguments are RangeErrors', () => {
    expect(() => passAtK(4, 1, 5)).toThrow(RangeError); // k > n
    expect(() => passAtK(4, 1, 5)).toThrow(/^k: 5 is more than the n = 4/);
    expect(() => passAtK(4, 5, 1)).toThrow(/^c: /);
    expect(() => passAtK(4, -1, 1)).toThrow(/^c: /);
    expect(() => passAtK(4, 1, 0)).toThrow(/^k: /);
    expect(() => passAtK(0, 0, 1)).toThrow(/^n: /);
    expect(() => passAtK(4.5, 1, 1)).toThrow(RangeError);
    expect(() => passAtK(NaN, 1, 1)).toThrow(RangeError);
  });

  test('properties: in [0, 1], monotone in c and k, k = 1 gives c/n, and it is the subset average', () => {
    const rnd = seeded(7);
    for (let t = 0; t < 300; t++) {
      const n = 1 + Math.floor(rnd() * 64),
        c = Math.floor(rnd() * (n + 1)),
        k = 1 + Math.floor(rnd() * n);
      const p = passAtK(n, c, k);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThanOrEqual(1);
      if (c < n) expect(passAtK(n, c + 1, k)).toBeGreaterThanOrEqual(p - 1e-15);
      if (k < n) expect(passAtK(n, c, k + 1)).toBeGreaterThanOrEqual(p - 1e-15);
      expect(passAtK(n, c, 1)).toBeCloseTo(c / n, 14);
    }
    // Unbiasedness, checked exactly: the estimate is the fraction of k-subsets of the n samples that hold a correct
    // one. Enumerate all subsets of a small sample set.
    const correct = [true, false, false, true, false, false, false];
    const n = correct.length,
      c = correct.filter(Boolean).length;
    for (let k = 1; k <= n; k++) {
      let hit = 0,
        all = 0;
      for (let mask = 0; mask < 1 << n; mask++) {
        let bits = 0,
          any = false;
        for (let i = 0; i < n; i++)
          if (mask & (1 << i)) {
            bits++;
            any ||= correct[i];
          }
        if (bits !== k) continue;
        all++;
        if (any) hit++;
      }
      expect(passAtK(n, c, k)).toBeCloseTo(hit / all, 14);
    }
  });
});

describe('meanAtK / summarize', () => {
  const results = [
    [true, true, true, true], // 1
    [false, false, false, false], // 0
    [true, false, false, false], // 0.25
    [false, true, true, false], // 0.5
  ];

  test('Mean@K averages per-problem accuracy', () => {
    expect(meanAtK(results)).toBeCloseTo((1 + 0 + 0.25 + 0.5) / 4, 15);
    // problems weigh the same even with different sample counts
    expect(meanAtK([[true], [false, false, false]])).toBe(0.5);
  });

  test('summarize reports Mean@K, Pass@k for 1, 2, 4 and the counts', () => {
    const s = summarize(results);
    expect(Object.keys(s.passAtK)).toEqual(['1', '2', '4']);
    expect(s.passAtK['1']).toBeCloseTo(s.meanAtK, 15); // Pass@1 = Mean@K
    expect(s.passAtK['4']).toBe(3 / 4); // three problems have a correct sample
    expect(s.passAtK['2']).toBeCloseTo((1 + 0 + passAtK(4, 1, 2) + passAtK(4, 2, 2)) / 4, 15);
    expect(s).toMatchObject({ problems: 4, samples: 16, k: 4 });
    expect(summarize(results, [3, 1, 3]).passAtK).toEqual({ '1': s.passAtK['1'], '3': meanPassAtK(results, 3) });
  });

  test('defaultKs', () => {
    expect(defaultKs(1)).toEqual([1]);
    expect(defaultKs(8)).toEqual([1, 2, 4, 8]);
    expect(defaultKs(6)).toEqual([1, 2, 4, 6]);
  });

  test('bad input', () => {
    expect(() => meanAtK([])).toThrow(/^results: no problems/);
    expect(() => meanAtK([[true], []])).toThrow(/^results: problem 1 has no samples/);
    expect(() => meanAtK([[1 as unknown as boolean]])).toThrow(TypeError);
    expect(() => summarize([[true, false], [true]], [2])).toThrow(/^ks: k = 2 is more than the 1 samples/);
    expect(() => summarize(results, [0])).toThrow(RangeError);
  });
});
