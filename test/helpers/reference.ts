// Float64 reference of every loss, written from docs/design.md §1 directly (no shared code with the kernels).
import type { Method, NegativeForm, Reduction } from '../../lib';
import { mulberry32 } from '../../lib/util/rng';

export interface RefCase {
  logits: Float64Array; // (N, V)
  N: number;
  V: number;
  targets: Int32Array;
  offsets: Int32Array;
  rewards?: Float32Array;
  method: Method;
  negative?: NegativeForm;
  reduction?: Reduction;
  normalizer?: number;
  refLogps?: Float64Array;
  pairs?: Int32Array;
  beta?: number;
}

export interface RefOut {
  loss: number;
  seqLogps: Float64Array;
  tokenLogps: Float64Array;
  entropy: Float64Array;
  grad: Float64Array;
}

function rowStats(z: Float64Array, r: number, V: number) {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, z[r * V + v]);
  let d = 0;
  let sz = 0;
  for (let v = 0; v < V; v++) {
    const e = Math.exp(z[r * V + v] - m);
    d += e;
    sz += e * z[r * V + v];
  }
  const lse = m + Math.log(d);
  return { lse, ent: lse - sz / d };
}

/** Loss only. `frozenP` (per row) replaces p_t where the method stops its gradient (DFT), for FD checks. */
export function refLoss(c: RefCase, frozenP?: Float64Array): number {
  return reference(c, frozenP).loss;
}

export function reference(c: RefCase, frozenP?: Float64Array): RefOut {
  const { N, V, targets, offsets } = c;
  const S = offsets.length - 1;
  const reduction = c.reduction ?? 'token-mean';
  const neg = c.negative ?? 'token';
  const lse = new Float64Array(N);
  const lp = new Float64Array(N);
  const ent = new Float64Array(N);
  for (let t = 0; t < N; t++) {
    if (targets[t] === -100) continue;
    const s = rowStats(c.logits, t, V);
    lse[t] = s.lse;
    lp[t] = c.logits[t * V + targets[t]] - s.lse;
    ent[t] = s.ent;
  }
  const count = new Array<number>(S).fill(0);
  const seq = new Float64Array(S);
  for (let i = 0; i < S; i++) {
    for (let t = offsets[i]; t < offsets[i + 1]; t++) {
      if (targets[t] !== -100) {
        count[i]++;
        seq[i] += lp[t];
      }
    }
  }
  const tokens = count.reduce((a, b) => a + b, 0);
  const nonEmpty = count.filter((n) => n > 0).length;
  const scale = (i: number): number => {
    if (count[i] === 0) return 0;
    if (reduction === 'sum') return 1;
    if (reduction === 'token-mean') return 1 / (c.normalizer ?? tokens);
    return 1 / (count[i] * (c.normalizer ?? nonEmpty));
  };
  // dL/dℓ_t per row (the loss as a function of the row log-probs), then dL/dz = −dL/dℓ · (onehot − softmax).
  const dl = new Float64Array(N);
  let loss = 0;
  const p = (t: number) => (frozenP ? frozenP[t] : Math.exp(lp[t]));
  if (c.method === 'dpo') {
    const P = c.pairs!.length / 2;
    const inv = reduction === 'sum' ? 1 : 1 / (c.normalizer ?? P);
    const beta = c.beta ?? 0.1;
    const dS = new Float64Array(S);
    for (let k = 0; k < P; k++) {
      const ch = c.pairs![2 * k];
      const rj = c.pairs![2 * k + 1];
      const x = beta * (seq[ch] - c.refLogps![ch] - (seq[rj] - c.refLogps![rj]));
      loss += inv * Math.log1p(Math.exp(-x)); // −log σ(x)
      const g = (-beta * inv) / (1 + Math.exp(x)); // d/dx of −log σ(x) = −σ(−x)
      dS[ch] += g;
      dS[rj] -= g;
    }
    for (let i = 0; i < S; i++)
      for (let t = offsets[i]; t < offsets[i + 1]; t++) if (targets[t] !== -100) dl[t] = dS[i];
  } else if (c.method !== 'logprob') {
    for (let i = 0; i < S; i++) {
      const ci = scale(i);
      const r = c.rewards ? c.rewards[i] : 0;
      if (c.method === 'rift' && r < 0 && neg === 'sequence' && count[i] > 0) {
        loss += -r * ci * Math.exp(seq[i]);
        for (let t = offsets[i]; t < offsets[i + 1]; t++) if (targets[t] !== -100) dl[t] = -r * ci * Math.exp(seq[i]);
        continue;
      }
      for (let t = offsets[i]; t < offsets[i + 1]; t++) {
        if (targets[t] === -100) continue;
        if (c.method === 'sft') {
          loss += -ci * lp[t];
          dl[t] = -ci;
        } else if (c.method === 'naive') {
          loss += -r * ci * lp[t]; // every reward sign: −r·ℓ_t, unbounded below when r < 0
          dl[t] = -r * ci;
        } else if (c.method === 'dft') {
          loss += -ci * p(t) * lp[t];
          dl[t] = -ci * p(t);
        } else if (r > 0) {
          loss += -r * ci * lp[t];
          dl[t] = -r * ci;
        } else if (r < 0) {
          loss += -r * ci * p(t);
          dl[t] = -r * ci * p(t); // d(p)/dℓ = p
        }
      }
    }
  }
  const grad = new Float64Array(N * V);
  for (let t = 0; t < N; t++) {
    if (targets[t] === -100 || dl[t] === 0) continue;
    const w = -dl[t];
    for (let v = 0; v < V; v++) grad[t * V + v] = w * Math.exp(c.logits[t * V + v] - lse[t]);
    grad[t * V + targets[t]] -= w;
  }
  return { loss, seqLogps: seq, tokenLogps: lp, entropy: ent, grad };
}

/** Deterministic pseudo-random numbers (mulberry32). */
export const rng = mulberry32;

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
