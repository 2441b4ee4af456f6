// LR schedules against hand-computed values of HF transformers' lr_lambda functions.
import { lrAt, lrFactor, ScheduleOptions } from '../lib/train/schedule';

const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-15 + 1e-12 * Math.abs(b));

describe('warmup', () => {
  test('linear from 0: step 0 gives 0, step w gives baseLr (HF: lr·step/warmup)', () => {
    for (const kind of ['cosine', 'constant', 'linear'] as const) {
      const o: ScheduleOptions = { kind, baseLr: 2e-5, warmupSteps: 4, totalSteps: 20 };
      expect(lrAt(0, o)).toBe(0);
      close(lrAt(1, o), 0.5e-5);
      close(lrAt(3, o), 1.5e-5);
      close(lrAt(4, o), 2e-5);
    }
  });

  test('no warmup: step 0 is baseLr', () => {
    expect(lrAt(0, { kind: 'cosine', baseLr: 1e-3, totalSteps: 10 })).toBe(1e-3);
    expect(lrAt(0, { kind: 'constant', baseLr: 1e-3 })).toBe(1e-3);
  });
});

describe('decay', () => {
  test('cosine: 0.5·(1 + cos(π·progress)), progress = (step − warmup)/(total − warmup)', () => {
    const o: ScheduleOptions = { kind: 'cosine', baseLr: 1, warmupSteps: 2, totalSteps: 10 };
    // progress at step s: (s − 2)/8
    close(lrAt(2, o), 1);
    close(lrAt(4, o), 0.5 * (1 + Math.SQRT1_2)); // progress 1/4: cos(π/4) = √2/2 → 0.8535533905932737
    close(lrAt(4, o), 0.8535533905932737);
    close(lrAt(6, o), 0.5); // progress 1/2
    close(lrAt(8, o), 0.5 * (1 - Math.SQRT1_2)); // 0.14644660940672624
    expect(lrAt(10, o)).toBe(0);
  });

  test('cosine with minLr: factor·(1 − r) + r, r = minLr/baseLr (HF cosine_with_min_lr)', () => {
    const o: ScheduleOptions = { kind: 'cosine', baseLr: 1e-4, warmupSteps: 0, totalSteps: 4, minLr: 1e-5 };
    close(lrAt(0, o), 1e-4);
    close(lrAt(1, o), 1e-4 * (0.8535533905932737 * 0.9 + 0.1));
    close(lrAt(2, o), 1e-4 * 0.55);
    close(lrAt(4, o), 1e-5);
    // warmup still starts from 0
    expect(lrAt(0, { ...o, warmupSteps: 2 })).toBe(0);
    close(lrAt(1, { ...o, warmupSteps: 2 }), 5e-5);
  });

  test('linear: (total − step)/(total − warmup)', () => {
    const o: ScheduleOptions = { kind: 'linear', baseLr: 3, warmupSteps: 1, totalSteps: 5 };
    expect(lrAt(0, o)).toBe(0);
    close(lrAt(1, o), 3);
    close(lrAt(2, o), 2.25);
    close(lrAt(4, o), 0.75);
    expect(lrAt(5, o)).toBe(0);
    close(lrAt(5, { ...o, minLr: 0.3 }), 0.3);
    close(lrAt(3, { ...o, minLr: 0.3 }), 3 * (0.5 * 0.9 + 0.1));
  });

  test('constant: baseLr after warmup, totalSteps optional, minLr ignored', () => {
    const o: ScheduleOptions = { kind: 'constant', baseLr: 0.1, warmupSteps: 10 };
    close(lrAt(5, o), 0.05);
    expect(lrAt(10, o)).toBe(0.1);
    expect(lrAt(1e6, o)).toBe(0.1);
    expect(lrAt(7, { kind: 'constant', baseLr: 0.1, totalSteps: 7, minLr: 0.01 })).toBe(0.1);
  });

  test('warmup = total and total = 1 edge cases (HF: max(1, total − warmup))', () => {
    expect(lrAt(3, { kind: 'cosine', baseLr: 1, warmupSteps: 3, totalSteps: 3 })).toBe(1);
    expect(lrAt(1, { kind: 'linear', baseLr: 1, warmupSteps: 1, totalSteps: 1 })).toBe(0);
    expect(lrAt(1, { kind: 'cosine', baseLr: 1, totalSteps: 1 })).toBe(0);
  });

  test('monotone non-increasing after warmup, within [minLr, baseLr]', () => {
    for (const kind of ['cosine', 'linear'] as const) {
      const o: ScheduleOptions = { kind, baseLr: 1e-3, warmupSteps: 5, totalSteps: 50, minLr: 1e-4 };
      let prev = Infinity;
      for (let s = 5; s <= 50; s++) {
        const lr = lrAt(s, o);
        expect(lr).toBeLessThanOrEqual(prev);
        expect(lr).toBeGreaterThanOrEqual(1e-4 - 1e-18);
        expect(lr).toBeLessThanOrEqual(1e-3);
        prev = lr;
      }
    }
    expect(lrFactor(25, { kind: 'cosine', baseLr: 2, warmupSteps: 0, totalSteps: 50 })).toBeCloseTo(0.5, 15);
  });
});

describe('bad arguments', () => {
  const ok: ScheduleOptions = { kind: 'cosine', baseLr: 1e-3, warmupSteps: 2, totalSteps: 10 };
  test.each([
    ['kind', { ...ok, kind: 'step' as never }, /kind/],
    ['baseLr < 0', { ...ok, baseLr: -1 }, /baseLr/],
    ['baseLr NaN', { ...ok, baseLr: NaN }, /baseLr/],
    ['warmup fractional', { ...ok, warmupSteps: 1.5 }, /warmupSteps/],
    ['warmup > total', { ...ok, warmupSteps: 11 }, /warmupSteps: 11 exceeds totalSteps 10/],
    ['total missing for cosine', { ...ok, totalSteps: undefined }, /totalSteps: required/],
    ['total missing for linear', { ...ok, kind: 'linear' as const, totalSteps: undefined }, /totalSteps: required/],
    ['total 0', { ...ok, totalSteps: 0 }, /totalSteps/],
    ['minLr > baseLr', { ...ok, minLr: 1 }, /minLr/],
    ['minLr < 0', { ...ok, minLr: -1e-9 }, /minLr/],
  ])('%s → RangeError', (_name, o, re) => {
    expect(() => lrAt(0, o as ScheduleOptions)).toThrow(RangeError);
    expect(() => lrAt(0, o as ScheduleOptions)).toThrow(re);
  });

  test('bad steps', () => {
    expect(() => lrAt(-1, ok)).toThrow(/step: must be an integer ≥ 0/);
    expect(() => lrAt(0.5, ok)).toThrow(RangeError);
    expect(() => lrAt(11, ok)).toThrow(/step: 11 is past totalSteps 10/);
    expect(() => lrAt(NaN, ok)).toThrow(RangeError);
  });
});
