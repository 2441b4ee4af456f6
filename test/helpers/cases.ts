// Small random loss cases shared by the kernel tests.
import type { LossOptions, Method, NegativeForm, Reduction } from '../../lib';
import { bf16ToF32, f32ToBf16 } from '../../lib';
import { RefCase, rng } from './reference';

export interface Case {
  opts: Omit<LossOptions, 'logits' | 'grad'>;
  logits32: Float32Array; // the values the kernel sees (bf16-rounded when dtype is bf16)
  ref: RefCase;
}

export interface CaseSpec {
  method: Method;
  negative?: NegativeForm;
  reduction?: Reduction;
  normalizer?: number;
  seed?: number;
  V?: number;
  lengths?: number[]; // rows per sequence
  scale?: number; // logit spread
  bf16?: boolean;
}

export function makeCase(spec: CaseSpec): Case {
  const r = rng(spec.seed ?? 1);
  const V = spec.V ?? 37;
  const lengths = spec.lengths ?? [3, 1, 4, 2, 5];
  const S = lengths.length;
  const N = lengths.reduce((a, b) => a + b, 0);
  const offsets = new Int32Array(S + 1);
  for (let i = 0; i < S; i++) offsets[i + 1] = offsets[i] + lengths[i];
  let logits32: Float32Array = new Float32Array(N * V);
  const scale = spec.scale ?? 3;
  for (let k = 0; k < logits32.length; k++) logits32[k] = (r() * 2 - 1) * scale;
  const targets = new Int32Array(N);
  for (let t = 0; t < N; t++) targets[t] = r() < 0.2 ? -100 : Math.floor(r() * V);
  // Make some targets likely (p near 1) to exercise the p_y − 1 precision path.
  for (let t = 0; t < N; t += 4) if (targets[t] !== -100) logits32[t * V + targets[t]] += 12;
  if (spec.bf16) logits32 = bf16ToF32(f32ToBf16(logits32));
  const rewardValues = [1, -0.2, 0.5, -1, 0];
  const rewards = new Float32Array(S);
  for (let i = 0; i < S; i++) rewards[i] = rewardValues[i % rewardValues.length];
  const refLogps = new Float64Array(S);
  for (let i = 0; i < S; i++) refLogps[i] = -lengths[i] * (1 + r());
  const pairs = new Int32Array([0, 1, 2, 3, 4, 1, 0, 3]);
  const opts: Omit<LossOptions, 'logits' | 'grad'> = {
    rows: N,
    vocab: V,
    targets,
    offsets,
    rewards,
    method: spec.method,
    negative: spec.negative,
    reduction: spec.reduction,
    normalizer: spec.normalizer,
    ...(spec.method === 'dpo' ? { dpo: { refLogprobs: refLogps, pairs, beta: 0.7 } } : {}),
  };
  const ref: RefCase = {
    logits: Float64Array.from(logits32),
    N,
    V,
    targets,
    offsets,
    rewards,
    method: spec.method,
    negative: spec.negative,
    reduction: spec.reduction,
    normalizer: spec.normalizer,
    refLogps,
    pairs,
    beta: 0.7,
  };
  return { opts, logits32, ref };
}
