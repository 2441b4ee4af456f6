// Edge cases and bad input: every failure is a TypeError/RangeError naming the argument, never a crash.
import { addon } from '../lib/native';
import { backends, lossAndGrad, lossAndGradAsync, setNumThreads } from '../lib';
import type { LossOptions } from '../lib';
import { makeCase } from './helpers/cases';
import { maxAbs, reference } from './helpers/reference';

function base(): LossOptions {
  const c = makeCase({ method: 'rift', seed: 21 });
  return { ...c.opts, logits: Float32Array.from(c.logits32), grad: new Float32Array(c.logits32.length) };
}

describe('edge cases', () => {
  test('V = 1: log-prob 0, zero gradient', () => {
    const out = lossAndGrad({
      logits: new Float32Array([3, -2]),
      rows: 2,
      vocab: 1,
      targets: new Int32Array([0, 0]),
      offsets: new Int32Array([0, 2]),
      method: 'sft',
      grad: new Float32Array(2),
      tokenLogps: true,
      entropy: true,
    });
    expect(Math.abs(out.loss)).toBe(0);
    expect(Array.from(out.tokenLogps!)).toEqual([0, 0]);
    expect(Array.from(out.entropy!)).toEqual([0, 0]);
  });

  test('empty batch (no rows, no sequences)', () => {
    const out = lossAndGrad({
      logits: new Float32Array(0),
      rows: 0,
      vocab: 5,
      targets: new Int32Array(0),
      offsets: new Int32Array([0]),
      method: 'sft',
      grad: new Float32Array(0),
      tokenLogps: true,
    });
    expect(out.loss).toBe(0);
    expect(out.tokens).toBe(0);
    expect(out.seqLogps.length).toBe(0);
    expect(out.tokenLogps!.length).toBe(0);
  });

  test('all rows masked: loss 0, gradient 0, no NaN', () => {
    for (const method of ['sft', 'dft', 'rift', 'dpo', 'naive'] as const) {
      const o = base();
      o.method = method;
      o.targets = new Int32Array(o.rows).fill(-100);
      if (method === 'dpo')
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1), pairs: new Int32Array([0, 1]) };
      (o.grad as Float32Array).fill(7);
      const out = lossAndGrad(o);
      // DPO: both sequences are empty, so x = 0 and the pair still costs log 2 (with no gradient).
      expect(out.loss).toBeCloseTo(method === 'dpo' ? Math.LN2 : 0, 12);
      expect(out.tokens).toBe(0);
      expect(maxAbs(o.grad as Float32Array)).toBe(0);
    }
  });

  test('one-token sequences, every reduction', () => {
    for (const reduction of ['token-mean', 'sequence-mean', 'sum'] as const) {
      const c = makeCase({ method: 'rift', negative: 'sequence', reduction, lengths: [1, 1, 1, 1, 1], seed: 8 });
      const ref = reference(c.ref);
      const out = lossAndGrad({ ...c.opts, logits: c.logits32 });
      expect(out.loss).toBeCloseTo(ref.loss, 6);
    }
  });

  test('logits of ±1e4 stay finite and exact', () => {
    const c = makeCase({ method: 'sft', V: 9, lengths: [2, 2], seed: 4, scale: 1e4 });
    c.ref.targets.fill(1);
    const grad = new Float32Array(c.logits32.length);
    const out = lossAndGrad({ ...c.opts, targets: c.ref.targets, logits: c.logits32, grad, entropy: true });
    const ref = reference({ ...c.ref });
    expect(Number.isFinite(out.loss)).toBe(true);
    expect(Math.abs(out.loss - ref.loss) / Math.abs(ref.loss)).toBeLessThan(1e-6);
    for (const g of grad) expect(Number.isFinite(g)).toBe(true);
    for (const h of out.entropy!) expect(Number.isFinite(h)).toBe(true);
  });

  test('zero rewards: RIFT loss and gradient are exactly 0', () => {
    const o = base();
    o.rewards = new Float32Array(o.offsets.length - 1);
    const out = lossAndGrad(o);
    expect(out.loss).toBe(0);
    expect(maxAbs(o.grad as Float32Array)).toBe(0);
  });

  test('thread count can change without changing results', () => {
    const o = base();
    const before = lossAndGrad(o).loss;
    expect(setNumThreads(1)).toBe(1);
    expect(lossAndGrad(o).loss).toBe(before);
    setNumThreads(0);
    expect(backends().cpu.threads).toBeGreaterThanOrEqual(1);
  });

  test('backends() reports the build and the cpu backend', () => {
    const b = backends();
    expect(b.available).toContain('cpu');
    expect(typeof b.build.simd).toBe('string');
    expect(b.build.napiVersion).toBe(8);
  });
});

describe('log-prob names: *Logprobs, with the deprecated *Logps still accepted', () => {
  test('results carry seqLogprobs / tokenLogprobs and the deprecated aliases (the same arrays)', () => {
    const c = makeCase({ method: 'rift', seed: 31 });
    const r = lossAndGrad({ ...c.opts, logits: c.logits32, tokenLogprobs: true });
    const ref = reference(c.ref);
    expect(r.seqLogprobs.constructor.name).toBe('Float64Array'); // the addon's realm (lossAndGrad does not re-wrap)
    for (let i = 0; i < ref.seqLogps.length; i++) expect(r.seqLogprobs[i]).toBeCloseTo(ref.seqLogps[i], 4);
    expect(r.tokenLogprobs!.length).toBe(c.opts.rows);
    expect(r.seqLogps).toBe(r.seqLogprobs);
    expect(r.tokenLogps).toBe(r.tokenLogprobs);
    // the deprecated option asks for the same output
    const old = lossAndGrad({ ...c.opts, logits: c.logits32, tokenLogps: true });
    expect(Array.from(old.tokenLogprobs!)).toEqual(Array.from(r.tokenLogprobs!));
    expect(lossAndGrad({ ...c.opts, logits: c.logits32 }).tokenLogprobs).toBeUndefined();
  });

  test('dpo: refLogprobs, or the deprecated refLogps: the same loss; both, or a bad one, name themselves', () => {
    const c = makeCase({ method: 'dpo', seed: 32 });
    const { refLogprobs, pairs, beta } = c.opts.dpo!;
    const a = lossAndGrad({ ...c.opts, logits: c.logits32, dpo: { refLogprobs, pairs, beta } });
    const b = lossAndGrad({ ...c.opts, logits: c.logits32, dpo: { refLogps: refLogprobs, pairs, beta } });
    expect(b.loss).toBe(a.loss);
    expect(() =>
      lossAndGrad({ ...c.opts, logits: c.logits32, dpo: { refLogprobs, refLogps: refLogprobs, pairs } }),
    ).toThrow(/^refLogprobs: give refLogprobs or the deprecated refLogps, not both/);
    expect(() => lossAndGrad({ ...c.opts, logits: c.logits32, dpo: { pairs } })).toThrow(
      /^refLogprobs: must be a Float64Array or Float32Array, got undefined/,
    );
    expect(() => lossAndGrad({ ...c.opts, logits: c.logits32, dpo: { refLogps: new Float64Array(1), pairs } })).toThrow(
      /^refLogps: length must be S/,
    );
  });
});

describe('bad input → typed errors naming the argument', () => {
  const cases: Array<[string, (o: LossOptions) => unknown, RegExp, typeof TypeError | typeof RangeError]> = [
    [
      'logits wrong kind',
      (o) => (o.logits = new Float64Array(o.rows * o.vocab) as unknown as Float32Array),
      /^logits:/,
      TypeError,
    ],
    ['logits wrong length', (o) => (o.logits = new Float32Array(3)), /^logits:/, RangeError],
    ['grad wrong dtype', (o) => (o.grad = new Uint16Array(o.rows * o.vocab)), /^grad:/, TypeError],
    ['grad wrong length', (o) => (o.grad = new Float32Array(2)), /^grad:/, RangeError],
    [
      'targets wrong kind',
      (o) => (o.targets = new Float32Array(o.rows) as unknown as Int32Array),
      /^targets:/,
      TypeError,
    ],
    [
      'targets wrong length',
      (o) => (o.targets = new Int32Array(1)),
      /^targets: length must be rows = \d+, got 1$/,
      RangeError,
    ],
    ['target ≥ V', (o) => (o.targets[0] = o.vocab), /^targets:/, RangeError],
    ['target < −100', (o) => (o.targets[0] = -101), /^targets:/, RangeError],
    ['target −5', (o) => (o.targets[0] = -5), /^targets:/, RangeError],
    [
      'offsets not monotone',
      (o) => {
        o.offsets[1] = o.offsets[2] + 1;
      },
      /^offsets:/,
      RangeError,
    ],
    [
      'offsets do not end at rows',
      (o) => (o.offsets = new Int32Array([0, 1])),
      /^offsets: last offset must equal rows = \d+, got 1$/,
      RangeError,
    ],
    ['offsets empty', (o) => (o.offsets = new Int32Array(0)), /^offsets:/, RangeError],
    ['rewards NaN', (o) => (o.rewards![1] = NaN), /^rewards:/, RangeError],
    ['rewards Inf', (o) => (o.rewards![0] = Infinity), /^rewards:/, RangeError],
    ['rewards missing for rift', (o) => (o.rewards = undefined), /^rewards:/, TypeError],
    [
      'rewards missing for naive',
      (o) => {
        o.method = 'naive';
        o.rewards = undefined;
      },
      /^rewards: a Float32Array of length S is required for method 'naive'/,
      TypeError,
    ],
    [
      'rewards NaN for naive',
      (o) => {
        o.method = 'naive';
        o.rewards![2] = NaN;
      },
      /^rewards:/,
      RangeError,
    ],
    ['rewards wrong length', (o) => (o.rewards = new Float32Array(1)), /^rewards:/, RangeError],
    ['method unknown', (o) => (o.method = 'ppo' as never), /^method:/, RangeError],
    ['reduction unknown', (o) => (o.reduction = 'mean' as never), /^reduction:/, RangeError],
    ['rows not integer', (o) => (o.rows = 1.5), /^rows:/, RangeError],
    ['vocab 0', (o) => (o.vocab = 0), /^vocab:/, RangeError],
    ['normalizer 0', (o) => (o.normalizer = 0), /^normalizer:/, RangeError],
    ['normalizer NaN', (o) => (o.normalizer = NaN), /^normalizer:/, RangeError],
    ['dpo options missing', (o) => (o.method = 'dpo'), /^dpo:/, TypeError],
    [
      'dpo pair out of range',
      (o) => {
        o.method = 'dpo';
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1), pairs: new Int32Array([0, 99]) };
      },
      /^pairs:/,
      RangeError,
    ],
    [
      'dpo pair negative',
      (o) => {
        o.method = 'dpo';
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1), pairs: new Int32Array([-1, 0]) };
      },
      /^pairs:/,
      RangeError,
    ],
    [
      'dpo odd pairs',
      (o) => {
        o.method = 'dpo';
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1), pairs: new Int32Array([0]) };
      },
      /^pairs:/,
      RangeError,
    ],
    [
      'dpo ref NaN',
      (o) => {
        o.method = 'dpo';
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1).fill(NaN), pairs: new Int32Array([0, 1]) };
      },
      /^refLogprobs: refLogprobs\[0\] = NaN is not finite/,
      RangeError,
    ],
    [
      'dpo beta ≤ 0',
      (o) => {
        o.method = 'dpo';
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1), pairs: new Int32Array([0, 1]), beta: 0 };
      },
      /^beta:/,
      RangeError,
    ],
    [
      'dpo beta huge (the loss would be ±Infinity)',
      (o) => {
        o.method = 'dpo';
        o.dpo = { refLogprobs: new Float64Array(o.offsets.length - 1), pairs: new Int32Array([0, 1]), beta: 1e39 };
      },
      /^beta:/,
      RangeError,
    ],
    ['logprob with grad', (o) => (o.method = 'logprob'), /^grad:/, TypeError],
  ];
  test.each(cases)('%s', (_name, mutate, message, kind) => {
    const o = base();
    mutate(o);
    let err: unknown;
    try {
      lossAndGrad(o);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(kind);
    expect((err as Error).message).toMatch(message);
  });

  test.each([NaN, Infinity, -Infinity])(
    'logits holding %s → RangeError naming logits (sync and async)',
    async (bad) => {
      const o = base();
      (o.logits as Float32Array)[o.vocab * 1 + 2] = bad; // row 1 has a target in this case
      o.targets[1] = 3;
      expect(() => lossAndGrad(o)).toThrow(RangeError);
      expect(() => lossAndGrad(o)).toThrow(/^logits: row 1 holds NaN or Inf/);
      await expect(lossAndGradAsync(o)).rejects.toThrow(RangeError);
    },
  );

  test('the native layer itself rejects bad arguments without crashing', () => {
    const o = base();
    const good = {
      logits: o.logits,
      rows: o.rows,
      vocab: o.vocab,
      targets: o.targets,
      offsets: o.offsets,
      rewards: o.rewards,
      method: 2,
      negative: 0,
      reduction: 0,
    };
    expect(() => addon.lossAndGrad(good)).not.toThrow();
    expect(() => addon.lossAndGrad(null as never)).toThrow(/^options: must be an object/);
    expect(() => addon.lossAndGrad({ ...good, targets: new Int32Array(1) })).toThrow(/^targets:/);
    expect(() => addon.lossAndGrad({ ...good, targets: o.targets.map(() => 1e6) })).toThrow(/^targets:/);
    expect(() => addon.lossAndGrad({ ...good, offsets: new Int32Array([0, 5, 2, o.rows, o.rows, o.rows]) })).toThrow(
      /^offsets:/,
    );
    expect(() => addon.lossAndGrad({ ...good, rows: o.rows + 1 })).toThrow(/^logits:/);
    expect(() => addon.lossAndGrad({ ...good, method: 9 })).toThrow(/^method:/);
    expect(() => addon.lossAndGrad({ ...good, method: 6 })).toThrow(/^method:/);
    expect(() => addon.lossAndGrad({ ...good, method: 5, rewards: undefined })).toThrow(
      /^rewards: required for method 'naive'/,
    );
    expect(() => addon.lossAndGrad({ ...good, method: 5 })).not.toThrow();
    expect(() => addon.lossAndGrad({ ...good, logits: 'x' })).toThrow(/^logits: must be/);
    expect(() => addon.lossAndGrad({ ...good, grad: (o.logits as Float32Array).subarray(1).slice(0, 0) })).toThrow(
      /^grad:/,
    );
    const buf = new Float32Array(o.rows * o.vocab + 1);
    expect(() =>
      addon.lossAndGrad({ ...good, logits: buf.subarray(0, o.rows * o.vocab), grad: buf.subarray(1) }),
    ).toThrow(/^grad: partially overlaps/);
    expect(() =>
      addon.lossAndGrad({
        ...good,
        method: 3,
        refLogps: new Float64Array(o.offsets.length - 1),
        pairs: new Int32Array([0, 50]),
      }),
    ).toThrow(/^pairs:/);
  });
});
