// Float64 reference forward of the Qwen2 / Llama decoder, written from docs/design.md §3.1 and the semantics of
// HF's modeling_qwen2.py / modeling_llama.py (eager attention), independently of the C++ engine. Slow and
// simple on purpose: one plain loop per op, every intermediate in float64. Inputs are the float32 tensors that
// loadCheckpoint() returns (HF names; Linear weights [out, in], y = x·Wᵀ + b).
import type { DecoderConfig } from '../../lib/engine/checkpoint';

export interface RefTensor {
  shape: number[];
  data: Float32Array;
}

export interface ReferenceOutput {
  logits: Float64Array; // (B, T, V)
  hidden: Float64Array; // (B, T, H): output of the final RMSNorm, the input of lm_head (HF's hidden_states[-1])
}

function get(tensors: Map<string, RefTensor>, name: string): Float32Array {
  const t = tensors.get(name);
  if (!t) throw new Error(`reference: tensor "${name}" is missing`);
  return t.data;
}

/** y (N, out) = x (N, in) · Wᵀ (W: (out, in)) + b (out). */
function linear(
  x: Float64Array,
  N: number,
  inDim: number,
  W: Float32Array,
  outDim: number,
  b?: Float32Array,
): Float64Array {
  if (W.length !== outDim * inDim) throw new Error(`reference: weight has ${W.length} values, want ${outDim}×${inDim}`);
  const y = new Float64Array(N * outDim);
  for (let n = 0; n < N; n++) {
    const xo = n * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = b ? b[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i] * W[wo + i];
      y[n * outDim + o] = s;
    }
  }
  return y;
}

/** RMSNorm over the last dim: x / sqrt(mean(x²) + eps) · w. */
function rmsnorm(x: Float64Array, N: number, H: number, w: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(N * H);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[n * H + i] ** 2;
    const r = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) y[n * H + i] = x[n * H + i] * r * w[i];
  }
  return y;
}

/**
 * RoPE, HF rotate-half layout, in place on (B, T, nHeads, D): inv_freq[i] = θ^(−2i/D) for i < D/2; the angle of
 * position p is p·inv_freq[i] for both dims i and i + D/2 (cos/sin of cat(freqs, freqs));
 * x' = x·cos + rotate_half(x)·sin with rotate_half(x) = cat(−x[D/2:], x[:D/2]).
 */
function rope(x: Float64Array, B: number, T: number, nHeads: number, D: number, theta: number, pos0 = 0): void {
  const half = D / 2;
  const inv = Float64Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / D));
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < nHeads; h++) {
        const o = ((b * T + t) * nHeads + h) * D;
        for (let i = 0; i < half; i++) {
          const a = (pos0 + t) * inv[i];
          const c = Math.cos(a),
            s = Math.sin(a);
          const x1 = x[o + i],
            x2 = x[o + i + half];
          x[o + i] = x1 * c - x2 * s;
          x[o + i + half] = x2 * c + x1 * s;
        }
      }
}

/** Reference forward of `ids` (B, T), positions 0..T−1 in every row, no padding. */
export function referenceForward(
  cfg: DecoderConfig,
  tensors: Map<string, RefTensor>,
  ids: ArrayLike<number>,
  B: number,
  T: number,
): ReferenceOutput {
  if (ids.length !== B * T) throw new Error(`reference: ${ids.length} ids, want B·T = ${B * T}`);
  const H = cfg.hidden_size,
    I = cfg.intermediate_size,
    V = cfg.vocab_size,
    D = cfg.head_dim;
  const nH = cfg.num_attention_heads,
    nKV = cfg.num_key_value_heads,
    group = nH / nKV;
  const N = B * T;
  const eps = cfg.rms_norm_eps;

  // embedding
  const emb = get(tensors, 'model.embed_tokens.weight'); // (V, H)
  let x = new Float64Array(N * H); // residual stream (B, T, H)
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (!Number.isInteger(id) || id < 0 || id >= V)
      throw new Error(`reference: ids[${n}] = ${id} is outside [0, ${V})`);
    for (let i = 0; i < H; i++) x[n * H + i] = emb[id * H + i];
  }

  const scale = 1 / Math.sqrt(D);
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const bias = (proj: string) => (cfg.qkv_bias ? get(tensors, `${p}self_attn.${proj}_proj.bias`) : undefined);

    // attention block
    const h1 = rmsnorm(x, N, H, get(tensors, `${p}input_layernorm.weight`), eps);
    const q = linear(h1, N, H, get(tensors, `${p}self_attn.q_proj.weight`), nH * D, bias('q')); // (B, T, nH, D)
    const k = linear(h1, N, H, get(tensors, `${p}self_attn.k_proj.weight`), nKV * D, bias('k')); // (B, T, nKV, D)
    const v = linear(h1, N, H, get(tensors, `${p}self_attn.v_proj.weight`), nKV * D, bias('v')); // (B, T, nKV, D)
    rope(q, B, T, nH, D, cfg.rope_theta);
    rope(k, B, T, nKV, D, cfg.rope_theta);
    const att = new Float64Array(N * nH * D); // (B, T, nH, D)
    const scores = new Float64Array(T);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < nH; h++) {
        const kh = Math.floor(h / group); // GQA: query head h reads KV head h / (nH / nKV)
        for (let t = 0; t < T; t++) {
          const qo = ((b * T + t) * nH + h) * D;
          let m = -Infinity;
          for (let s = 0; s <= t; s++) {
            const ko = ((b * T + s) * nKV + kh) * D;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
            scores[s] = dot * scale;
            m = Math.max(m, scores[s]);
          }
          let z = 0;
          for (let s = 0; s <= t; s++) z += scores[s] = Math.exp(scores[s] - m);
          for (let s = 0; s <= t; s++) {
            const w = scores[s] / z;
            const vo = ((b * T + s) * nKV + kh) * D;
            for (let d = 0; d < D; d++) att[qo + d] += w * v[vo + d];
          }
        }
      }
    const o = linear(
      att,
      N,
      nH * D,
      get(tensors, `${p}self_attn.o_proj.weight`),
      H,
      cfg.o_bias ? get(tensors, `${p}self_attn.o_proj.bias`) : undefined,
    );
    for (let i = 0; i < N * H; i++) x[i] += o[i];

    // MLP block: down(silu(gate(h)) · up(h))
    const h2 = rmsnorm(x, N, H, get(tensors, `${p}post_attention_layernorm.weight`), eps);
    const g = linear(h2, N, H, get(tensors, `${p}mlp.gate_proj.weight`), I);
    const u = linear(h2, N, H, get(tensors, `${p}mlp.up_proj.weight`), I);
    for (let i = 0; i < N * I; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
    const dn = linear(g, N, I, get(tensors, `${p}mlp.down_proj.weight`), H);
    const nx = new Float64Array(N * H);
    for (let i = 0; i < N * H; i++) nx[i] = x[i] + dn[i];
    x = nx;
  }

  const hidden = rmsnorm(x, N, H, get(tensors, 'model.norm.weight'), eps);
  const head = cfg.tie_word_embeddings ? emb : get(tensors, 'lm_head.weight'); // (V, H)
  const logits = linear(hidden, N, H, head, V);
  return { logits, hidden };
}

/** log softmax of row `r` of `logits` (rows of V), in float64. */
export function logSoftmaxRow(logits: ArrayLike<number>, r: number, V: number): Float64Array {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(logits[r * V + v] - m);
  const lse = m + Math.log(z);
  return Float64Array.from({ length: V }, (_, v) => logits[r * V + v] - lse);
}
