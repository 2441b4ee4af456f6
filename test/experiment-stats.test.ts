// The experiment's statistics against published table values (Student t quantiles, p-values) and hand computations.
import { incompleteBeta, logGamma, meanCI, pairedTTest, tCdf, tQuantile } from '../lib/experiment/stats';

test('log Γ and the incomplete beta function against closed forms', () => {
  expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
  expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
  expect(incompleteBeta(0.3, 1, 1)).toBeCloseTo(0.3, 12); // uniform
  expect(incompleteBeta(0.3, 2, 1)).toBeCloseTo(0.09, 12); // x²
  expect(incompleteBeta(0.3, 1, 3)).toBeCloseTo(1 - 0.7 ** 3, 12);
  expect(() => incompleteBeta(1.5, 1, 1)).toThrow(RangeError);
});

test('Student t quantiles and CDF match the tables', () => {
  expect(tQuantile(0.975, 1)).toBeCloseTo(12.7062, 3);
  expect(tQuantile(0.975, 2)).toBeCloseTo(4.302653, 5);
  expect(tQuantile(0.975, 4)).toBeCloseTo(2.776445, 5);
  expect(tQuantile(0.975, 30)).toBeCloseTo(2.042272, 5);
  expect(tCdf(0, 7)).toBeCloseTo(0.5, 12);
  expect(tCdf(1, 1)).toBeCloseTo(0.75, 12); // Cauchy: 1/2 + atan(1)/π
  expect(2 * tCdf(-1, 10)).toBeCloseTo(0.340893, 5);
  expect(tCdf(Infinity, 3)).toBe(1);
});

test('mean ± 95% CI and the paired t-test by hand', () => {
  const ci = meanCI([1, 2, 3, 4, 5]);
  expect(ci.mean).toBe(3);
  expect(ci.sd).toBeCloseTo(Math.sqrt(2.5), 12);
  expect(ci.half).toBeCloseTo((2.776445 * Math.sqrt(2.5)) / Math.sqrt(5), 5);
  expect(Number.isNaN(meanCI([0.4]).half)).toBe(true);
  // differences 1, 2, 3, 4, 5 → t = 3 / (√2.5/√5) = 4.2426, df 4 → p = 0.01324
  const t = pairedTTest([2, 4, 6, 8, 10], [1, 2, 3, 4, 5]);
  expect(t.t).toBeCloseTo(4.242641, 5);
  expect(t.p).toBeCloseTo(0.013236, 5);
  expect(pairedTTest([1, 2], [1, 2]).p).toBe(1);
  expect(() => pairedTTest([1], [1, 2])).toThrow(RangeError);
});
