// The CPU twin of the CUDA backend's bf16 attention (cuda/cuda_attention_gemm.cu): causal GQA attention whose two
// products run on bfloat16 operands with fp32 accumulation, exactly as the chunked tensor-core GEMMs there do:
//
//   forward   S = q̃·k̃ᵀ (fp32 sums),  s = S·scale,  lse = m + log Σ exp(s − m)  (fp32),
//             P̃ = bf16(exp(s − lse)),  out = P̃·ṽ (fp32 sums)
//   backward  Di = Σ_d dout·out (fp32),  P̃ recomputed from the saved lse,  dõ = bf16(dout),
//             dV += P̃ᵀ·dõ,  dP = dõ·ṽᵀ,  dS̃ = bf16(scale·P̃·(dP − Di)),  dq = dS̃·k̃,  dK += dS̃ᵀ·q̃
//             (dK, dV of kv head g: one fp32 sum over the group's query heads and rows, head-major — the GPU's
//             single GEMM with K = G·r — then added to the output)
//
// where x̃ = bf16(x) (round to nearest even). Semantics otherwise as OpsBackend::attention_* (model/ops.h).
// Straight loops with one row of scores per (query row, head): O(T²·D) like any attention, no T×T buffer. This is
// the reference the GPU path is tested against and the path of cpu_ops(DType::BF16); the fp32 instance keeps the
// tiled flash kernel of ops_attention.cc.
#include "cpu/ops_attention_bf16.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::cpu {
namespace {

inline float bf(float x) { return bf16_to_f32(f32_to_bf16(x)); }

std::vector<float> rounded(const float* x, int64_t n) {
  std::vector<float> r(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = bf(x[i]);
  return r;
}

// k / v rows [0, L_b) of each batch row b (capacity Tkv), rounded to bf16, contiguous at a pitch of L rows:
// (B, L, Hkv·D). Batch row b reads buffer row slot[b] (b when slot is null) and L_b = past[b] + Tq (L when past
// is null); the rows past L_b are left 0 (never read).
std::vector<float> rounded_kv(const float* x, int64_t B, int64_t Tkv, int64_t L, int64_t KD, const KvRows* rows,
                              int64_t Tq) {
  std::vector<float> r(size_t(B * L * KD));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t src = rows ? rows->slot[b] : b, n = rows ? rows->past[b] + Tq : L;
    for (int64_t i = 0; i < n * KD; ++i) r[size_t(b * L * KD + i)] = bf(x[src * Tkv * KD + i]);
  }
  return r;
}

}  // namespace

void attention_forward_bf16(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                            int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D,
                            const KvRows* rows) {
  const int64_t L = past + Tq, G = Hq / Hkv, QD = Hq * D, KD = Hkv * D;
  const float scale = 1.f / std::sqrt(float(D));
  const std::vector<float> qb = rounded(q, B * Tq * QD), kb = rounded_kv(k, B, Tkv, L, KD, rows, Tq),
                           vb = rounded_kv(v, B, Tkv, L, KD, rows, Tq);
  parallel_for(B * Hq, [&](int64_t e0, int64_t e1) {
    std::vector<float> s(static_cast<size_t>(L));
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / Hq, h = e % Hq, g = h / G;
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t n = (rows ? rows->past[b] : past) + i + 1;  // keys [0, past + i]
        const float* qi = qb.data() + (b * Tq + i) * QD + h * D;
        float m = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const float* kj = kb.data() + (b * L + j) * KD + g * D;
          float acc = 0.f;
          for (int64_t d = 0; d < D; ++d) acc += qi[d] * kj[d];
          s[size_t(j)] = acc * scale;
          m = std::max(m, s[size_t(j)]);
        }
        float sum = 0.f;
        for (int64_t j = 0; j < n; ++j) sum += std::exp(s[size_t(j)] - m);
        const float l = m + std::log(sum);
        if (lse) lse[(b * Hq + h) * Tq + i] = l;
        float* o = out + (b * Tq + i) * QD + h * D;
        std::fill(o, o + D, 0.f);
        for (int64_t j = 0; j < n; ++j) {
          const float p = bf(std::exp(s[size_t(j)] - l));
          const float* vj = vb.data() + (b * L + j) * KD + g * D;
          for (int64_t d = 0; d < D; ++d) o[d] += p * vj[d];
        }
      }
    }
  });
}

void attention_backward_bf16(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                             int64_t Hkv, int64_t D, bool accumulate) {
  const int64_t G = Hq / Hkv, QD = Hq * D, KD = Hkv * D;
  const float scale = 1.f / std::sqrt(float(D));
  const std::vector<float> qb = rounded(q, B * T * QD), kb = rounded(k, B * T * KD), vb = rounded(v, B * T * KD),
                           dob = rounded(dout, B * T * QD);
  // dS̃ for every (b, h, i, j ≤ i) is needed twice (dq by query row, dk by key row): recompute it per pass rather
  // than store T² values. ds_row fills dS̃ of one query row into ds[0, i].
  auto ds_row = [&](int64_t b, int64_t h, int64_t i, float* p_out, float* ds) {
    const int64_t g = h / G;
    const float* qi = qb.data() + (b * T + i) * QD + h * D;
    const float* doi = dob.data() + (b * T + i) * QD + h * D;
    const float* dof = dout + (b * T + i) * QD + h * D;
    const float* oi = out + (b * T + i) * QD + h * D;
    float di = 0.f;
    for (int64_t d = 0; d < D; ++d) di += dof[d] * oi[d];
    const float l = lse[(b * Hq + h) * T + i];
    for (int64_t j = 0; j <= i; ++j) {
      const float* kj = kb.data() + (b * T + j) * KD + g * D;
      const float* vj = vb.data() + (b * T + j) * KD + g * D;
      float s = 0.f, dp = 0.f;
      for (int64_t d = 0; d < D; ++d) {
        s += qi[d] * kj[d];
        dp += doi[d] * vj[d];
      }
      const float p = bf(std::exp(s * scale - l));
      if (p_out) p_out[j] = p;
      ds[j] = bf(scale * p * (dp - di));
    }
  };
  // dq: tasks (b, h), rows written once.
  parallel_for(B * Hq, [&](int64_t e0, int64_t e1) {
    std::vector<float> ds(static_cast<size_t>(T));
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / Hq, h = e % Hq, g = h / G;
      for (int64_t i = 0; i < T; ++i) {
        ds_row(b, h, i, nullptr, ds.data());
        float* o = dq + (b * T + i) * QD + h * D;
        if (!accumulate) std::fill(o, o + D, 0.f);
        for (int64_t j = 0; j <= i; ++j) {
          const float* kj = kb.data() + (b * T + j) * KD + g * D;
          for (int64_t d = 0; d < D; ++d) o[d] += ds[size_t(j)] * kj[d];
        }
      }
    }
  });
  // dk, dv: tasks (b, kv head g). The GPU sums one GEMM over the group's rows stacked head after head (K = G·r:
  // head gG's rows, then head gG + 1's, ...) and adds the result to dk / dv; so here: a fresh fp32 sum per key
  // row j over (h, i) in that order (h in the group, query rows i >= j), then one addition to the output. (The GPU
  // splits the rows into chunks only when the scores outgrow its chunk budget; each chunk's sum is added in turn.)
  parallel_for(B * Hkv, [&](int64_t e0, int64_t e1) {
    std::vector<float> ds(static_cast<size_t>(T)), p(static_cast<size_t>(T));
    std::vector<float> sk(static_cast<size_t>(T * D)), sv(static_cast<size_t>(T * D));  // the stacked sums
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / Hkv, g = e % Hkv;
      std::fill(sk.begin(), sk.end(), 0.f);
      std::fill(sv.begin(), sv.end(), 0.f);
      for (int64_t h = g * G; h < (g + 1) * G; ++h)
        for (int64_t i = 0; i < T; ++i) {
          ds_row(b, h, i, p.data(), ds.data());
          const float* qi = qb.data() + (b * T + i) * QD + h * D;
          const float* doi = dob.data() + (b * T + i) * QD + h * D;
          for (int64_t j = 0; j <= i; ++j) {
            float* kr = sk.data() + j * D;
            float* vr = sv.data() + j * D;
            for (int64_t d = 0; d < D; ++d) {
              kr[d] += ds[size_t(j)] * qi[d];
              vr[d] += p[size_t(j)] * doi[d];
            }
          }
        }
      for (int64_t j = 0; j < T; ++j) {
        float* kr = dk + (b * T + j) * KD + g * D;
        float* vr = dv + (b * T + j) * KD + g * D;
        for (int64_t d = 0; d < D; ++d) {
          kr[d] = accumulate ? kr[d] + sk[size_t(j * D + d)] : sk[size_t(j * D + d)];
          vr[d] = accumulate ? vr[d] + sv[size_t(j * D + d)] : sv[size_t(j * D + d)];
        }
      }
    }
  });
}

}  // namespace rift::cpu
