// The fused loss kernels against the float64 reference, for every method × negative form × reduction × dtype.
import {
  f32ToBf16,
  bf16ToF32,
  lossAndGrad,
  lossAndGradAsync,
  METHODS,
  NEGATIVE_FORMS,
  REDUCTIONS,
  TRAIN_METHODS,
} from '../lib';
import { DEVICE_DTYPES } from '../lib/kernels/device';
import { addon } from '../lib/native';
import type { Method, NegativeForm, Reduction } from '../lib';
import { makeCase } from './helpers/cases';
import { maxAbs, maxAbsDiff, reference, refLoss } from './helpers/reference';

const combos: Array<{ method: Method; negative?: NegativeForm; reduction: Reduction }> = [];
for (const method of METHODS) {
  for (const reduction of REDUCTIONS) {
    if (method === 'rift') {
      combos.push({ method, negative: 'token', reduction }, { method, negative: 'sequence', reduction });
    } else {
      combos.push({ method, reduction });
    }
  }
}

describe.each(combos)('$method / $negative / $reduction', ({ method, negative, reduction }) => {
  test.each(['fp32', 'bf16'] as const)('%s: loss, log-probs, entropy and gradient match float64', (dtype) => {
    const c = makeCase({ method, negative, reduction, bf16: dtype === 'bf16', seed: 7 });
    const ref = reference(c.ref);
    const logits = dtype === 'fp32' ? Float32Array.from(c.logits32) : f32ToBf16(c.logits32);
    const grad =
      method === 'logprob'
        ? undefined
        : dtype === 'fp32'
          ? new Float32Array(logits.length)
          : new Uint16Array(logits.length);
    const out = lossAndGrad({ ...c.opts, logits, grad, tokenLogps: true, entropy: true });
    expect(Math.abs(out.loss - ref.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.loss)));
    expect(maxAbsDiff(out.seqLogps, ref.seqLogps)).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.tokenLogps!, ref.tokenLogps)).toBeLessThan(2e-5);
    expect(maxAbsDiff(out.entropy!, ref.entropy)).toBeLessThan(2e-5);
    if (grad) {
      const g = grad instanceof Float32Array ? grad : bf16ToF32(grad);
      // fp32: a few ulps of the largest entry; bf16: the gradient is rounded to 8 bits of mantissa.
      const tol = (dtype === 'fp32' ? 1e-5 : 8e-3) * Math.max(maxAbs(ref.grad), 1e-12);
      expect(maxAbsDiff(g, ref.grad)).toBeLessThanOrEqual(tol);
      expect(maxAbs(g)).toBeGreaterThan(0);
    }
  });
});

describe('finite differences (float64 reference vs its analytic gradient, and the kernel vs both)', () => {
  const cases: Array<{ method: Method; negative?: NegativeForm; reduction: Reduction }> = [
    { method: 'sft', reduction: 'token-mean' },
    { method: 'dft', reduction: 'sequence-mean' },
    { method: 'rift', negative: 'token', reduction: 'token-mean' },
    { method: 'rift', negative: 'sequence', reduction: 'sum' },
    { method: 'dpo', reduction: 'token-mean' },
    { method: 'naive', reduction: 'sequence-mean' },
  ];
  test.each(cases)('$method / $negative / $reduction', ({ method, negative, reduction }) => {
    const c = makeCase({ method, negative, reduction, V: 6, lengths: [2, 1, 3, 1, 2], scale: 1.5, seed: 3 });
    const ref = reference(c.ref);
    // DFT stops the gradient through p: freeze p at the base point.
    const frozen = method === 'dft' ? ref.tokenLogps.map(Math.exp) : undefined;
    const h = 1e-6;
    const fd = new Float64Array(ref.grad.length);
    for (let k = 0; k < fd.length; k++) {
      const z = c.ref.logits[k];
      c.ref.logits[k] = z + h;
      const up = refLoss(c.ref, frozen);
      c.ref.logits[k] = z - h;
      const down = refLoss(c.ref, frozen);
      c.ref.logits[k] = z;
      fd[k] = (up - down) / (2 * h);
    }
    expect(maxAbsDiff(fd, ref.grad)).toBeLessThan(1e-7 * Math.max(1, maxAbs(ref.grad)) + 1e-9);
    expect(maxAbs(fd)).toBeGreaterThan(1e-4);
    if (method === 'dft') return; // the kernel's DFT loss has no stop-gradient to freeze
    // The fp32 kernel's own loss, differentiated with a coarse step, agrees with its gradient.
    const logits = Float32Array.from(c.logits32);
    const grad = new Float32Array(logits.length);
    lossAndGrad({ ...c.opts, logits, grad });
    const step = 1e-2;
    let worst = 0;
    for (let k = 0; k < logits.length; k++) {
      const z = logits[k];
      logits[k] = z + step;
      const up = lossAndGrad({ ...c.opts, logits }).loss;
      logits[k] = z - step;
      const down = lossAndGrad({ ...c.opts, logits }).loss;
      logits[k] = z;
      worst = Math.max(worst, Math.abs((up - down) / (2 * step) - grad[k]));
    }
    expect(worst).toBeLessThan(2e-3 * Math.max(1, maxAbs(grad)));
  });

  test('DPO raises the chosen log-prob: its gradient on the chosen target is negative', () => {
    const c = makeCase({ method: 'dpo', V: 5, lengths: [1, 1], seed: 11 });
    const opts = {
      ...c.opts,
      dpo: { refLogps: new Float64Array(2), pairs: new Int32Array([0, 1]), beta: 1 },
      targets: new Int32Array([2, 3]),
      rewards: undefined,
    };
    const grad = new Float32Array(10);
    lossAndGrad({ ...opts, logits: c.logits32.slice(0, 10), grad });
    expect(grad[2]).toBeLessThan(0); // descent raises z[chosen target]
    expect(grad[5 + 3]).toBeGreaterThan(0); // and lowers z[rejected target]
  });
});

describe("'naive' (−r·log π on every sample) against RIFT's bounded negative term", () => {
  // One negative sample (r = −0.5), one token, V = 4: push its target logit down and watch loss and gradient.
  const at = (method: 'naive' | 'rift', zy: number) => {
    const logits = new Float32Array([zy, 0, 0, 0]);
    const grad = new Float32Array(4);
    const out = lossAndGrad({
      logits,
      grad,
      rows: 1,
      vocab: 4,
      targets: new Int32Array([0]),
      offsets: new Int32Array([0, 1]),
      rewards: new Float32Array([-0.5]),
      method,
      tokenLogps: true,
    });
    return { loss: out.loss, logp: out.tokenLogps![0], gy: grad[0] };
  };

  test('the naive loss is unbounded below and its push on the target never fades; RIFT-token fades with p', () => {
    const zs = [0, -5, -10, -20, -40];
    const naive = zs.map((z) => at('naive', z));
    const rift = zs.map((z) => at('rift', z));
    for (let k = 0; k < zs.length; k++) {
      expect(naive[k].loss).toBeCloseTo(0.5 * naive[k].logp, 5); // loss = −r·ℓ = 0.5·ℓ → −∞ as ℓ → −∞
      expect(rift[k].loss).toBeCloseTo(0.5 * Math.exp(rift[k].logp), 6); // in [0, 0.5]
      // ∂L/∂z_y = w·(p − 1) with w = r = −0.5 (naive) or r·p (RIFT): descent lowers z_y
      expect(naive[k].gy).toBeCloseTo(-0.5 * (Math.exp(naive[k].logp) - 1), 5);
      expect(rift[k].gy).toBeCloseTo(-0.5 * Math.exp(rift[k].logp) * (Math.exp(rift[k].logp) - 1), 6);
    }
    expect(naive[4].loss).toBeLessThan(-19); // ℓ ≈ −41.4
    expect(naive[4].gy).toBeCloseTo(0.5, 5); // still the full push
    expect(rift[4].loss).toBeGreaterThanOrEqual(0);
    expect(rift[4].gy).toBeLessThan(1e-15);
  });

  test('on positive rewards naive equals RIFT (both −r·ℓ)', () => {
    const c = makeCase({ method: 'naive', seed: 13 });
    const pos = Float32Array.from(c.opts.rewards!, (r) => Math.abs(r));
    const g1 = new Float32Array(c.logits32.length),
      g2 = new Float32Array(c.logits32.length);
    const a = lossAndGrad({ ...c.opts, rewards: pos, logits: c.logits32, grad: g1 });
    const b = lossAndGrad({ ...c.opts, rewards: pos, method: 'rift', logits: c.logits32, grad: g2 });
    expect(a.loss).toBe(b.loss);
    expect(Array.from(g1)).toEqual(Array.from(g2));
  });
});

describe('in place, async, reductions and normaliser', () => {
  test('grad may alias logits (f32 and bf16) and gives the same gradient', () => {
    for (const bf16 of [false, true]) {
      const c = makeCase({ method: 'rift', bf16, seed: 5 });
      const mk = () => (bf16 ? f32ToBf16(c.logits32) : Float32Array.from(c.logits32));
      const a = mk();
      const g = bf16 ? new Uint16Array(a.length) : new Float32Array(a.length);
      const r1 = lossAndGrad({ ...c.opts, logits: a, grad: g });
      const b = mk();
      const r2 = lossAndGrad({ ...c.opts, logits: b, grad: b });
      expect(r2.loss).toBe(r1.loss);
      expect(Array.from(b)).toEqual(Array.from(g));
    }
  });

  test('async variant matches sync and runs off the event loop', async () => {
    const c = makeCase({ method: 'rift', negative: 'sequence', seed: 9 });
    const g1 = new Float32Array(c.logits32.length);
    const g2 = new Float32Array(c.logits32.length);
    const s = lossAndGrad({ ...c.opts, logits: c.logits32, grad: g1, entropy: true });
    const a = await lossAndGradAsync({ ...c.opts, logits: c.logits32, grad: g2, entropy: true });
    expect(a.loss).toBe(s.loss);
    expect(Array.from(a.entropy!)).toEqual(Array.from(s.entropy!));
    expect(Array.from(g2)).toEqual(Array.from(g1));
    const many = await Promise.all([1, 2, 3, 4].map(() => lossAndGradAsync({ ...c.opts, logits: c.logits32 })));
    for (const m of many) expect(m.loss).toBe(s.loss);
  });

  test('an explicit normaliser makes micro-batch gradient accumulation exact', () => {
    const c = makeCase({ method: 'rift', lengths: [3, 2, 4, 1], seed: 4 });
    const whole = new Float32Array(c.logits32.length);
    const full = lossAndGrad({ ...c.opts, logits: c.logits32, grad: whole });
    const V = c.opts.vocab;
    const split = 2; // sequences 0-1 | 2-3
    const rowSplit = c.opts.offsets[split];
    let loss = 0;
    const parts: Float32Array[] = [];
    for (const [s0, s1] of [
      [0, split],
      [split, 4],
    ]) {
      const r0 = c.opts.offsets[s0];
      const r1 = c.opts.offsets[s1];
      const offsets = c.opts.offsets.slice(s0, s1 + 1).map((o) => o - r0);
      const grad = new Float32Array((r1 - r0) * V);
      loss += lossAndGrad({
        ...c.opts,
        rows: r1 - r0,
        logits: c.logits32.slice(r0 * V, r1 * V),
        grad,
        targets: c.opts.targets.slice(r0, r1),
        offsets,
        rewards: c.opts.rewards!.slice(s0, s1),
        normalizer: full.normalizer,
      }).loss;
      parts.push(grad);
    }
    expect(loss).toBeCloseTo(full.loss, 6);
    expect(maxAbsDiff(parts[0], whole.subarray(0, rowSplit * V))).toBeLessThan(1e-7);
    expect(maxAbsDiff(parts[1], whole.subarray(rowSplit * V))).toBeLessThan(1e-7);
  });

  test('sum = token-mean × tokens', () => {
    const c = makeCase({ method: 'sft', seed: 2 });
    const mean = lossAndGrad({ ...c.opts, logits: c.logits32, reduction: 'token-mean' });
    const sum = lossAndGrad({ ...c.opts, logits: c.logits32, reduction: 'sum' });
    expect(sum.normalizer).toBe(1);
    expect(sum.loss).toBeCloseTo(mean.loss * mean.tokens, 5);
  });
});

describe('one vocabulary with the native side', () => {
  test("the enum lists equal the addon's names, value for value (core/loss.h)", () => {
    expect(addon.enums.method).toEqual([...METHODS]);
    expect(addon.enums.negative).toEqual([...NEGATIVE_FORMS]);
    expect(addon.enums.reduction).toEqual([...REDUCTIONS]);
    expect(addon.enums.dtype).toEqual([...DEVICE_DTYPES]);
  });
  test("the Trainer's methods: the kernel's minus 'logprob', plus 'rft'", () => {
    expect([...TRAIN_METHODS].sort()).toEqual([...METHODS.filter((m) => m !== 'logprob'), 'rft'].sort());
  });
});
