// The CPU twin of the fused tensor-core attention (cuda/cuda_attention_flash_fwd.cu, _bwd.cu): the kernels'
// arithmetic in their order, so that a GPU run only has to confirm it. x̃ = bf16(x) (round to nearest even).
//
// mma model: one mma.sync.m16n8k16 adds 16 products of bf16 operands (each exact in fp32) to an fp32 accumulator;
// the twin forms the 16-term sum in double and rounds acc + sum to fp32 once. A dot product over D (or over keys,
// or over queries) is a chain of such steps over consecutive groups of 16, starting at 0. (The tensor core aligns
// and truncates inside a step; it may differ from this model in the last bit of a step.)
//
// Forward, per query row i (position past + i, keys [0, past + i]), key tiles of kTileK from key 0:
//   s_j = fp32(mma_dot(q̃_i, k̃_j)) · scale (−inf when masked);  m' = max(m, max_j s_j);  c = exp(m − m') (0 first);
//   p_j = exp(s_j − m');  the row's sum is kept as 4 partials (the 4 lanes of a quad; lane t holds the tile's
//   columns 8n + 2t, 8n + 2t + 1, n = 0..7, summed in that order): l_t ← l_t·c + Σ;  o ← o·c;  then
//   o ← o + P̃·ṽ in mma steps of 16 keys, P̃ = bf16(p) unnormalised.  End: l = (l_0 + l_1) + (l_2 + l_3),
//   out = o · (1/l),  lse = m + log l.
// Backward (past = 0): Di = Σ_d dout·out over 32 lanes (lane λ sums d ≡ λ mod 32 in order, then a butterfly
//   reduction over xor 16, 8, 4, 2, 1);  per (i, j ≤ i): p̃ = bf16(exp(s·scale − lse_i)),
//   dS̃ = bf16((scale·p̃)·(mma_dot(dõ_i, ṽ_j) − Di_i));  dq_i = Σ_j dS̃·k̃_j in mma steps over keys;
//   dk_j = Σ_{h in the group} Σ_i dS̃·q̃_i and dv_j = Σ_h Σ_i p̃·dõ_i in mma steps over queries (heads outer).
// exp / log here are the C library's; the kernels' fast exp / log differ by a few ulps (the only other difference).
// Every fp32 operation is written out: the file is compiled without contraction into fused multiply-adds.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "cpu/ops_attention_flash.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::flash {
namespace {

inline float bf(float x) { return bf16_to_f32(f32_to_bf16(x)); }

std::vector<float> rounded(const float* x, int64_t n) {
  std::vector<float> r(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = bf(x[i]);
  return r;
}

// fp32(acc + Σ_{e < n} a[e·sa]·b[e·sb]) with the sum in double (one mma step, n <= 16).
inline float mma_step(float acc, const float* a, int64_t sa, const float* b, int64_t sb, int n) {
  double s = 0;
  for (int e = 0; e < n; ++e) s += double(a[e * sa]) * double(b[e * sb]);
  return float(double(acc) + s);
}

// Σ_d a[d]·b[d] as a chain of mma steps over d (D a multiple of kMmaK).
inline float mma_dot(const float* a, const float* b, int64_t D) {
  float acc = 0.f;
  for (int64_t d0 = 0; d0 < D; d0 += kMmaK) acc = mma_step(acc, a + d0, 1, b + d0, 1, kMmaK);
  return acc;
}

// Σ_d dout·out as the kernel's warp computes it (see the file comment).
float warp_dot(const float* a, const float* o, int64_t D) {
  float lane[32];
  for (int l = 0; l < 32; ++l) {
    float acc = 0.f;
    for (int64_t d = l; d < D; d += 32) acc = acc + a[d] * o[d];
    lane[l] = acc;
  }
  for (int off = 16; off > 0; off >>= 1) {
    float next[32];
    for (int l = 0; l < 32; ++l) next[l] = lane[l] + lane[l ^ off];
    std::copy(next, next + 32, lane);
  }
  return lane[0];
}

}  // namespace

void attention_forward_twin(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                            int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D) {
  const int64_t G = Hq / Hkv, QD = Hq * D, KD = Hkv * D;
  const float scale = 1.f / std::sqrt(float(D));
  const std::vector<float> qb = rounded(q, B * Tq * QD), kb = rounded(k, B * Tkv * KD), vb = rounded(v, B * Tkv * KD);
  parallel_for(B * Hq, [&](int64_t e0, int64_t e1) {
    std::vector<float> o(static_cast<size_t>(D)), s(kTileK), pr(kTileK);
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / Hq, h = e % Hq, g = h / G;
      const float* kbase = kb.data() + b * Tkv * KD + g * D;
      const float* vbase = vb.data() + b * Tkv * KD + g * D;
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t lim = past + i;
        const float* qi = qb.data() + (b * Tq + i) * QD + h * D;
        float m = -INFINITY, l4[4] = {0.f, 0.f, 0.f, 0.f};
        std::fill(o.begin(), o.end(), 0.f);
        for (int64_t j0 = 0; j0 <= lim; j0 += kTileK) {
          float mt = -INFINITY;
          for (int jj = 0; jj < kTileK; ++jj) {
            const int64_t j = j0 + jj;
            s[size_t(jj)] = j <= lim ? mma_dot(qi, kbase + j * KD, D) * scale : -INFINITY;
            mt = std::max(mt, s[size_t(jj)]);
          }
          const float mn = std::max(m, mt);
          const float corr = m == -INFINITY ? 0.f : std::exp(m - mn);
          m = mn;
          for (int jj = 0; jj < kTileK; ++jj)
            s[size_t(jj)] = s[size_t(jj)] == -INFINITY ? 0.f : std::exp(s[size_t(jj)] - m);
          for (int t = 0; t < 4; ++t) {
            float rs = 0.f;
            for (int n = 0; n < kTileK / 8; ++n) rs = (rs + s[size_t(8 * n + 2 * t)]) + s[size_t(8 * n + 2 * t + 1)];
            l4[t] = l4[t] * corr + rs;
          }
          for (int64_t d = 0; d < D; ++d) o[size_t(d)] = o[size_t(d)] * corr;
          for (int jj = 0; jj < kTileK; ++jj) pr[size_t(jj)] = bf(s[size_t(jj)]);
          // o += P̃·ṽ in steps of 16 keys; keys past lim have P̃ = 0 (their rows are not read: they may lie past Tkv)
          for (int k0 = 0; k0 < kTileK && j0 + k0 <= lim; k0 += kMmaK) {
            const int n = int(std::min<int64_t>(kMmaK, lim - (j0 + k0) + 1));
            for (int64_t d = 0; d < D; ++d)
              o[size_t(d)] = mma_step(o[size_t(d)], pr.data() + k0, 1, vbase + (j0 + k0) * KD + d, KD, n);
          }
        }
        const float l = (l4[0] + l4[1]) + (l4[2] + l4[3]);
        const float inv = 1.f / l;
        float* orow = out + (b * Tq + i) * QD + h * D;
        for (int64_t d = 0; d < D; ++d) orow[d] = o[size_t(d)] * inv;
        if (lse) lse[(b * Hq + h) * Tq + i] = m + std::log(l);
      }
    }
  });
}

void attention_backward_twin(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                             int64_t Hkv, int64_t D, bool accumulate) {
  const int64_t G = Hq / Hkv, QD = Hq * D, KD = Hkv * D;
  const float scale = 1.f / std::sqrt(float(D));
  const std::vector<float> qb = rounded(q, B * T * QD), kb = rounded(k, B * T * KD), vb = rounded(v, B * T * KD),
                           dob = rounded(dout, B * T * QD);
  std::vector<float> Di(static_cast<size_t>(B * Hq * T));
  parallel_for(B * Hq * T, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r = (b·Hq + h)·T + i
      const int64_t i = r % T, h = (r / T) % Hq, b = r / (T * Hq), off = (b * T + i) * QD + h * D;
      Di[size_t(r)] = warp_dot(dout + off, out + off, D);
    }
  });
  // p̃ and dS̃ of query row i against keys [0, i] (the same bits in both passes).
  auto row = [&](int64_t b, int64_t h, int64_t i, float* p, float* ds) {
    const int64_t g = h / G;
    const float* qi = qb.data() + (b * T + i) * QD + h * D;
    const float* doi = dob.data() + (b * T + i) * QD + h * D;
    const float l = lse[(b * Hq + h) * T + i], di = Di[size_t((b * Hq + h) * T + i)];
    for (int64_t j = 0; j <= i; ++j) {
      const float s = mma_dot(qi, kb.data() + (b * T + j) * KD + g * D, D);
      const float pt = bf(std::exp(s * scale - l));
      const float dp = mma_dot(doi, vb.data() + (b * T + j) * KD + g * D, D);
      p[j] = pt;
      ds[j] = bf((scale * pt) * (dp - di));
    }
  };
  // dq: query rows of (b, h); keys in mma steps of 16.
  parallel_for(B * Hq, [&](int64_t e0, int64_t e1) {
    std::vector<float> p(static_cast<size_t>(T)), ds(static_cast<size_t>(T)), acc(static_cast<size_t>(D));
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / Hq, h = e % Hq, g = h / G;
      for (int64_t i = 0; i < T; ++i) {
        row(b, h, i, p.data(), ds.data());
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int64_t j0 = 0; j0 <= i; j0 += kMmaK) {
          const int n = int(std::min<int64_t>(kMmaK, i - j0 + 1));
          const float* kj = kb.data() + (b * T + j0) * KD + g * D;
          for (int64_t d = 0; d < D; ++d) acc[size_t(d)] = mma_step(acc[size_t(d)], ds.data() + j0, 1, kj + d, KD, n);
        }
        float* o = dq + (b * T + i) * QD + h * D;
        for (int64_t d = 0; d < D; ++d) o[d] = accumulate ? o[d] + acc[size_t(d)] : acc[size_t(d)];
      }
    }
  });
  // dk, dv: keys of (b, kv head g); heads of the group outer, queries in mma steps of 16.
  parallel_for(B * Hkv, [&](int64_t e0, int64_t e1) {
    std::vector<float> P(static_cast<size_t>(kMmaK * T)), S(static_cast<size_t>(kMmaK * T)),
        ak(static_cast<size_t>(T * D)), av(static_cast<size_t>(T * D));
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t b = e / Hkv, g = e % Hkv;
      std::fill(ak.begin(), ak.end(), 0.f);
      std::fill(av.begin(), av.end(), 0.f);
      for (int64_t h = g * G; h < (g + 1) * G; ++h)
        for (int64_t i0 = 0; i0 < T; i0 += kMmaK) {
          const int n = int(std::min<int64_t>(kMmaK, T - i0));
          for (int r = 0; r < n; ++r) row(b, h, i0 + r, P.data() + r * T, S.data() + r * T);
          const float* qg = qb.data() + (b * T + i0) * QD + h * D;
          const float* dg = dob.data() + (b * T + i0) * QD + h * D;
          for (int64_t j = 0; j < i0 + n; ++j) {
            const int r0 = int(std::max<int64_t>(0, j - i0));  // rows i >= j of the step
            for (int64_t d = 0; d < D; ++d) {
              float& kd = ak[size_t(j * D + d)];
              float& vd = av[size_t(j * D + d)];
              kd = mma_step(kd, S.data() + r0 * T + j, T, qg + r0 * QD + d, QD, n - r0);
              vd = mma_step(vd, P.data() + r0 * T + j, T, dg + r0 * QD + d, QD, n - r0);
            }
          }
        }
      for (int64_t j = 0; j < T; ++j) {
        float* kr = dk + (b * T + j) * KD + g * D;
        float* vr = dv + (b * T + j) * KD + g * D;
        for (int64_t d = 0; d < D; ++d) {
          kr[d] = accumulate ? kr[d] + ak[size_t(j * D + d)] : ak[size_t(j * D + d)];
          vr[d] = accumulate ? vr[d] + av[size_t(j * D + d)] : av[size_t(j * D + d)];
        }
      }
    }
  });
}

}  // namespace rift::flash
