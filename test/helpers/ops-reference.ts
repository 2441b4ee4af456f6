// Float64 references of the decoder ops (native/model/ops.h), written from the math (HF Qwen2/Llama modules,
// torch.optim.AdamW's documented algorithm), sharing no code with the kernels, and small helpers (seeded data,
// finite differences). addon.ops is typed in lib/native.ts.
import { addon, NativeOps, OpsSelect } from '../../lib/native';

// Math's functions bound once: inside jest's vm context every `Math.x` lookup goes through the sandbox global
// and is ~30× slower in hot loops.
const { abs, cos, exp, fround, log, max, pow, sin, sqrt } = Math;

export type { NativeOps, OpsDevice, OpsPrecision, OpsSelect } from '../../lib/native';

export const ops: NativeOps = addon.ops;

/** addon.ops with `sel` merged into every call (an op's own device / precision keys are overridden). */
export function opsOn(sel: OpsSelect): NativeOps {
  const bound: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(ops) as [string, (...a: unknown[]) => unknown][]) {
    if (name === 'info') bound[name] = (s?: OpsSelect) => ops.info({ ...s, ...sel });
    else if (name === 'setGemm') bound[name] = (impl: string, s?: OpsSelect) => ops.setGemm(impl, { ...s, ...sel });
    else if (name === 'devices') bound[name] = () => ops.devices();
    else bound[name] = (o: unknown) => fn(o !== null && typeof o === 'object' ? { ...(o as object), ...sel } : o);
  }
  return bound as unknown as NativeOps;
}

/**
 * x rounded to the nearest bfloat16 (ties to even), as a number: written from the format (8 significant bits,
 * fp32's exponent range, subnormal step 2^-133, overflow to ±Infinity), not from the bit trick the kernels use.
 */
export function roundBf16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const ax = abs(x);
  let e = Math.floor(Math.log2(ax));
  while (2 ** e > ax) e--;
  while (2 ** (e + 1) <= ax) e++;
  const ulp = 2 ** (Math.max(e, -126) - 7);
  const q = ax / ulp; // exact: ulp is a power of two
  const fl = Math.floor(q);
  const d = q - fl;
  const r = d > 0.5 || (d === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  const y = r * ulp;
  return (x < 0 ? -1 : 1) * (y >= 2 ** 128 ? Infinity : y);
}

/** roundBf16 of every element (fp32 in, float64 out: every bf16 value is exact in both). */
export const roundBf16All = (a: ArrayLike<number>): Float64Array => Float64Array.from(a, roundBf16);

// ---- data

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** fp32-representable uniform values in [-scale, scale). */
export function rand32(n: number, r: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

export const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

/** Max |a − b| / (atol + rtol·|b|) over elements (≤ 1 passes). */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let w = 0;
  for (let i = 0; i < a.length; i++) {
    const e = abs(a[i] - b[i]) / (atol + rtol * abs(b[i]));
    if (!(e <= w)) w = Number.isNaN(e) ? Infinity : e;
  }
  return w;
}

/** Central differences of f at x (float64, step h), element by element. */
export function fdGrad(f: (x: Float64Array) => number, x0: ArrayLike<number>, h = 1e-5): Float64Array {
  const x = Float64Array.from(x0);
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + h;
    const fp = f(x);
    x[i] = v - h;
    const fm = f(x);
    x[i] = v;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

// ---- references

/** C (M, N) = alpha·op(A)·op(B) + beta·C, row-major with leading dimensions; also Σ|terms| per element. */
export function gemmRef(
  ta: boolean,
  tb: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: ArrayLike<number>,
  lda: number,
  B: ArrayLike<number>,
  ldb: number,
  beta: number,
  C: ArrayLike<number>,
  ldc: number,
): { c: Float64Array; mag: Float64Array } {
  const c = Float64Array.from(C);
  const mag = new Float64Array(C.length);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const x = ta ? A[k * lda + m] : A[m * lda + k];
        const y = tb ? B[n * ldb + k] : B[k * ldb + n];
        s += x * y;
        a += abs(x * y);
      }
      const old = beta === 0 ? 0 : beta * C[m * ldc + n];
      c[m * ldc + n] = alpha * s + old;
      mag[m * ldc + n] = abs(alpha) * a + abs(old);
    }
  }
  return { c, mag };
}

/** out (M, N) = inp (M, K) · W (N, K)ᵀ + bias (N). */
export function linearRef(
  inp: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  M: number,
  N: number,
  K: number,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) s += inp[m * K + k] * w[n * K + k];
      out[m * N + n] = s;
    }
  return out;
}

export function embeddingRef(ids: ArrayLike<number>, wte: ArrayLike<number>, C: number): Float64Array {
  const out = new Float64Array(ids.length * C);
  for (let t = 0; t < ids.length; t++) for (let c = 0; c < C; c++) out[t * C + c] = wte[ids[t] * C + c];
  return out;
}

/** HF RMSNorm: x / sqrt(mean x² + eps) · weight. */
export function rmsnormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  T: number,
  C: number,
  eps: number,
): { out: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(T * C);
  const rstd = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[t * C + c] ** 2;
    const r = 1 / sqrt(ss / C + eps);
    rstd[t] = r;
    for (let c = 0; c < C; c++) out[t * C + c] = x[t * C + c] * r * w[c];
  }
  return { out, rstd };
}

/**
 * HF rotate-half RoPE on (T, H, D). fp32Angles: the angle as HF's fp32 code forms it (inv_freq and pos·inv_freq
 * rounded to fp32); otherwise exact float64 angles.
 */
export function ropeRef(
  x: ArrayLike<number>,
  pos: ArrayLike<number>,
  T: number,
  H: number,
  D: number,
  theta: number,
  fp32Angles = true,
): Float64Array {
  const out = new Float64Array(T * H * D);
  const half = D / 2;
  const fr = fp32Angles ? fround : (v: number) => v;
  for (let t = 0; t < T; t++) {
    const cs = new Float64Array(D);
    const sn = new Float64Array(D);
    for (let i = 0; i < half; i++) {
      const inv = fr(1 / fr(pow(theta, fr(fr(2 * i) / D))));
      const a = fr(pos[t] * inv);
      cs[i] = cs[i + half] = cos(a); // cat(freqs, freqs)
      sn[i] = sn[i + half] = sin(a);
    }
    for (let h = 0; h < H; h++) {
      const o = (t * H + h) * D;
      for (let d = 0; d < D; d++) {
        const rot = d < half ? -x[o + d + half] : x[o + d - half]; // rotate_half = cat(−x2, x1)
        out[o + d] = x[o + d] * cs[d] + rot * sn[d];
      }
    }
  }
  return out;
}

/**
 * Naive causal GQA attention: softmax(q·kᵀ/sqrt(D)) v over keys j <= past + i. q (B, Tq, Hq, D), k/v (B, Tkv, Hkv, D).
 * Returns out (B, Tq, Hq, D), lse (B, Hq, Tq) and, when wanted, the probabilities for the backward reference.
 */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  B: number,
  Tq: number,
  Tkv: number,
  past: number,
  Hq: number,
  Hkv: number,
  D: number,
): { out: Float64Array; lse: Float64Array } {
  const out = new Float64Array(B * Tq * Hq * D);
  const lse = new Float64Array(B * Hq * Tq);
  const g = Hq / Hkv;
  const sc = 1 / sqrt(D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / g);
      for (let i = 0; i < Tq; i++) {
        const n = past + i + 1;
        const s = new Float64Array(n);
        let mx = -Infinity;
        for (let j = 0; j < n; j++) {
          let d0 = 0;
          for (let d = 0; d < D; d++) d0 += q[((b * Tq + i) * Hq + h) * D + d] * k[((b * Tkv + j) * Hkv + kh) * D + d];
          s[j] = d0 * sc;
          mx = max(mx, s[j]);
        }
        let z = 0;
        for (let j = 0; j < n; j++) z += s[j] = exp(s[j] - mx);
        lse[(b * Hq + h) * Tq + i] = mx + log(z);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += (s[j] / z) * v[((b * Tkv + j) * Hkv + kh) * D + d];
          out[((b * Tq + i) * Hq + h) * D + d] = acc;
        }
      }
    }
  return { out, lse };
}

/** Analytic float64 backward of attentionRef (training shapes), itself checked by finite differences. */
export function attentionBackwardRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dout: ArrayLike<number>,
  B: number,
  T: number,
  Hq: number,
  Hkv: number,
  D: number,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const dq = new Float64Array(B * T * Hq * D);
  const dk = new Float64Array(B * T * Hkv * D);
  const dv = new Float64Array(B * T * Hkv * D);
  const g = Hq / Hkv;
  const sc = 1 / sqrt(D);
  const Q = (b: number, i: number, h: number) => ((b * T + i) * Hq + h) * D;
  const KV = (b: number, j: number, h: number) => ((b * T + j) * Hkv + h) * D;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / g);
      for (let i = 0; i < T; i++) {
        const n = i + 1;
        const p = new Float64Array(n);
        let mx = -Infinity;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[Q(b, i, h) + d] * k[KV(b, j, kh) + d];
          p[j] = s * sc;
          mx = max(mx, p[j]);
        }
        let z = 0;
        for (let j = 0; j < n; j++) z += p[j] = exp(p[j] - mx);
        for (let j = 0; j < n; j++) p[j] /= z;
        const dp = new Float64Array(n);
        let pdp = 0;
        for (let j = 0; j < n; j++) {
          for (let d = 0; d < D; d++) dp[j] += dout[Q(b, i, h) + d] * v[KV(b, j, kh) + d];
          pdp += p[j] * dp[j];
        }
        for (let j = 0; j < n; j++) {
          const ds = p[j] * (dp[j] - pdp) * sc;
          for (let d = 0; d < D; d++) {
            dv[KV(b, j, kh) + d] += p[j] * dout[Q(b, i, h) + d];
            dq[Q(b, i, h) + d] += ds * k[KV(b, j, kh) + d];
            dk[KV(b, j, kh) + d] += ds * q[Q(b, i, h) + d];
          }
        }
      }
    }
  return { dq, dk, dv };
}

export const silu = (x: number) => x / (1 + exp(-x));

export function swigluRef(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: gate.length }, (_, i) => silu(gate[i]) * up[i]);
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * torch.optim.AdamW as documented (pytorch.org/docs/stable/generated/torch.optim.AdamW.html), one step t >= 1:
 * θ ← θ − γλθ; m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²; m̂ = m/(1 − β1^t); v̂ = v/(1 − β2^t);
 * θ ← θ − γ m̂/(sqrt(v̂) + ε). In place on float64 state.
 */
export function adamwRef(
  p: Float64Array,
  g: ArrayLike<number>,
  m: Float64Array,
  v: Float64Array,
  t: number,
  h: AdamWHyper,
): void {
  for (let i = 0; i < p.length; i++) {
    p[i] -= h.lr * h.weightDecay * p[i];
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
    const mh = m[i] / (1 - h.beta1 ** t);
    const vh = v[i] / (1 - h.beta2 ** t);
    p[i] -= (h.lr * mh) / (sqrt(vh) + h.eps);
  }
}
