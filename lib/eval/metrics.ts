// Evaluation metrics over K samples per problem.
//
// Mean@K  the fraction of correct samples of a problem, averaged over problems (the expected accuracy of one sample).
// Pass@k  the probability that at least one of k samples drawn without replacement from a problem's n samples is
//         correct, averaged over problems: the unbiased estimator of Chen et al. (2021, "Evaluating Large Language
//         Models Trained on Code"), 1 − C(n−c, k) / C(n, k) for a problem with c correct samples out of n.
//
// The binomials overflow float64 long before n gets large (C(200, 100) ≈ 9e58, C(2000, 1000) = Infinity), so the
// ratio is computed as the product C(n−c, k) / C(n, k) = ∏_{i=n−c+1}^{n} (1 − k/i): c factors in (0, 1), no
// overflow, relative error ≈ c·ε.

function checkCount(name: string, v: unknown, min: number): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new RangeError(`${name}: must be an integer ≥ ${min}, got ${String(v)}`);
}

/**
 * Unbiased Pass@k estimate for one problem: n samples, c of them correct, k ≤ n drawn. RangeError unless
 * n ≥ 1, 0 ≤ c ≤ n and 1 ≤ k ≤ n.
 */
export function passAtK(n: number, c: number, k: number): number {
  checkCount('n', n, 1);
  checkCount('c', c, 0);
  checkCount('k', k, 1);
  if (c > n) throw new RangeError(`c: ${c} correct samples out of n = ${n}`);
  if (k > n) throw new RangeError(`k: ${k} is more than the n = ${n} samples (Pass@k needs k ≤ n)`);
  if (n - c < k) return 1; // every k-subset holds a correct sample
  let notPass = 1;
  for (let i = n - c + 1; i <= n; i++) notPass *= 1 - k / i;
  return 1 - notPass;
}

function checkResults(results: readonly (readonly boolean[])[]): void {
  if (!Array.isArray(results))
    throw new TypeError('results: must be an array (one boolean[] of sample correctness per problem)');
  if (results.length === 0) throw new RangeError('results: no problems');
  results.forEach((r, p) => {
    if (!Array.isArray(r)) throw new TypeError(`results: results[${p}] must be a boolean[]`);
    if (r.length === 0) throw new RangeError(`results: problem ${p} has no samples`);
    r.forEach((x, s) => {
      if (typeof x !== 'boolean')
        throw new TypeError(`results: results[${p}][${s}] must be a boolean, got ${typeof x}`);
    });
  });
}

const countTrue = (r: readonly boolean[]) => r.reduce((a, x) => a + (x ? 1 : 0), 0);

/** Mean@K: each problem's fraction of correct samples, averaged over problems (problems weigh the same). */
export function meanAtK(results: readonly (readonly boolean[])[]): number {
  checkResults(results);
  let sum = 0;
  for (const r of results) sum += countTrue(r) / r.length;
  return sum / results.length;
}

/** Pass@k averaged over problems; every problem needs at least k samples. */
export function meanPassAtK(results: readonly (readonly boolean[])[], k: number): number {
  checkResults(results);
  let sum = 0;
  for (const r of results) sum += passAtK(r.length, countTrue(r), k);
  return sum / results.length;
}

/** 1, 2, 4, … below n, and n itself: the k values summarize() reports by default. */
export function defaultKs(n: number): number[] {
  checkCount('n', n, 1);
  const ks: number[] = [];
  for (let k = 1; k < n; k *= 2) ks.push(k);
  ks.push(n);
  return ks;
}

export interface MetricsSummary {
  /** Mean fraction of correct samples per problem. */
  meanAtK: number;
  /** Pass@k for each reported k (keys are k as decimal strings, ascending). */
  passAtK: Record<string, number>;
  /** Number of problems. */
  problems: number;
  /** Total number of samples over all problems. */
  samples: number;
  /** Samples per problem when every problem has the same number, else the smallest. */
  k: number;
}

/**
 * Mean@K and Pass@k for `ks` (default: 1, 2, 4, … and K, where K is the smallest number of samples of any problem;
 * every k must be ≤ that K).
 */
export function summarize(results: readonly (readonly boolean[])[], ks?: readonly number[]): MetricsSummary {
  checkResults(results);
  const K = Math.min(...results.map((r) => r.length));
  const list = ks === undefined ? defaultKs(K) : [...ks];
  if (!Array.isArray(list) || list.length === 0) throw new RangeError('ks: must be a non-empty array of integers');
  list.forEach((k) => {
    checkCount('ks', k, 1);
    if (k > K) throw new RangeError(`ks: k = ${k} is more than the ${K} samples of the smallest problem`);
  });
  const passAt: Record<string, number> = {};
  for (const k of [...new Set(list)].sort((a, b) => a - b)) passAt[String(k)] = meanPassAtK(results, k);
  return {
    meanAtK: meanAtK(results),
    passAtK: passAt,
    problems: results.length,
    samples: results.reduce((a, r) => a + r.length, 0),
    k: K,
  };
}
