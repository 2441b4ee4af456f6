// Causal GQA attention on the CPU, flash-style (semantics in model/ops.h). No T×T buffer exists: keys are
// visited in tiles of kBK, packed transposed (D, kBK) so a query row's scores are a vectorised axpy over the
// tile; the forward keeps a running max and sum per query row (online softmax) and saves lse; the backward
// recomputes p = exp(s − lse) tile by tile (FlashAttention-2 order: key tile outer, query rows inner).
//
// Threads: forward tasks are (b, query head, query block); backward tasks are (b, kv head) — each owns its dk /
// dv rows and the dq rows of its group's heads — or, when that gives too few tasks for the pool, (b, query
// head) with per-head dk / dv scratch summed over each group afterwards. No atomics; fixed summation order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/ops_cpu.h"
#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::cpu {
namespace {

constexpr int64_t kBK = 64;  // keys per tile
constexpr int64_t kBQ = 32;  // query rows per forward task

// Kt (D, n) ← rows [0, n) of x (row stride ld), zero-padded to kBK columns.
void pack_t(const float* x, int64_t ld, int64_t n, int64_t D, float* Kt) {
  for (int64_t d = 0; d < D; ++d) {
    float* r = Kt + d * kBK;
    for (int64_t j = 0; j < n; ++j) r[j] = x[j * ld + d];
    for (int64_t j = n; j < kBK; ++j) r[j] = 0.f;
  }
}

// s[j] = scale · Σ_d q[d] · Kt[d][j] for all kBK columns.
inline void scores(const float* q, const float* Kt, int64_t D, float scale, float* s) {
  alignas(64) float acc[kBK] = {};
  for (int64_t d = 0; d < D; ++d) {
    const float x = q[d];
    const float* r = Kt + d * kBK;
#pragma omp simd aligned(acc : 64)
    for (int64_t j = 0; j < kBK; ++j) acc[j] += x * r[j];
  }
#pragma omp simd
  for (int64_t j = 0; j < kBK; ++j) s[j] = acc[j] * scale;
}

float* aligned(std::vector<float>& buf, size_t n) {
  if (buf.size() < n + 16) buf.resize(n + 16);
  auto p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                       int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D) {
  if (B <= 0 || Tq <= 0 || Hq <= 0 || D <= 0) return;
  const int64_t group = Hq / Hkv, nqb = (Tq + kBQ - 1) / kBQ;
  const float scale = 1.f / std::sqrt(float(D));
  const int64_t ldq = Hq * D, ldk = Hkv * D;
  parallel_for(B * Hq * nqb, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> buf;
    float* Kt = aligned(buf, size_t(D * kBK + kBQ * D + kBK + 2 * kBQ));
    float* O = Kt + D * kBK;  // (kBQ, D)
    float* s = O + kBQ * D;   // (kBK)
    float* m = s + kBK;       // (kBQ)
    float* l = m + kBQ;       // (kBQ)
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t qb = task % nqb, h = (task / nqb) % Hq, b = task / (nqb * Hq);
      const int64_t i0 = qb * kBQ, nq = std::min(kBQ, Tq - i0), kvh = h / group;
      const float* qh = q + (b * Tq * Hq + h) * D;
      const float* kh = k + (b * Tkv * Hkv + kvh) * D;
      const float* vh = v + (b * Tkv * Hkv + kvh) * D;
      std::fill(O, O + nq * D, 0.f);
      std::fill(m, m + nq, -INFINITY);
      std::fill(l, l + nq, 0.f);
      const int64_t kend = past + i0 + nq;  // keys [0, kend) are visible to some row of this block
      for (int64_t j0 = 0; j0 < kend; j0 += kBK) {
        const int64_t nk = std::min(kBK, kend - j0);
        pack_t(kh + j0 * ldk, ldk, nk, D, Kt);
        for (int64_t i = 0; i < nq; ++i) {
          const int64_t nv = std::min(nk, past + i0 + i - j0 + 1);  // keys j0 .. past+i0+i
          if (nv <= 0) continue;
          scores(qh + (i0 + i) * ldq, Kt, D, scale, s);
          float mx = m[i];
          for (int64_t j = 0; j < nv; ++j) mx = std::max(mx, s[j]);
          const float corr = std::isinf(m[i]) ? 0.f : vexp(m[i] - mx);
          float sum = 0.f;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < nv; ++j) {
            s[j] = vexp(s[j] - mx);
            sum += s[j];
          }
          l[i] = l[i] * corr + sum;
          m[i] = mx;
          float* o = O + i * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) o[d] *= corr;
          for (int64_t j = 0; j < nv; ++j) {
            const float p = s[j];
            const float* vr = vh + (j0 + j) * ldk;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) o[d] += p * vr[d];
          }
        }
      }
      for (int64_t i = 0; i < nq; ++i) {
        const float inv = 1.f / l[i];
        float* dst = out + ((b * Tq + i0 + i) * Hq + h) * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) dst[d] = O[i * D + d] * inv;
        if (lse) lse[(b * Hq + h) * Tq + i0 + i] = m[i] + std::log(l[i]);
      }
    }
  });
}

namespace {

struct Bwd {
  const float *dout, *q, *k, *v, *out, *lse;
  float* dq;
  int64_t B, T, Hq, Hkv, D;
  float scale;
};

// One query head h of batch b: dq rows (+=; exclusive to the caller) and this head's dk / dv contributions
// added into dk / dv (T rows of D at row stride ld).
void backward_head(const Bwd& a, int64_t b, int64_t h, float* dk, float* dv, int64_t ld) {
  const int64_t T = a.T, D = a.D, kvh = h / (a.Hq / a.Hkv);
  const int64_t ldq = a.Hq * D, ldk = a.Hkv * D;
  const float* qh = a.q + (b * T * a.Hq + h) * D;
  const float* gh = a.dout + (b * T * a.Hq + h) * D;
  const float* oh = a.out + (b * T * a.Hq + h) * D;
  float* dqh = a.dq + (b * T * a.Hq + h) * D;
  const float* kh = a.k + (b * T * a.Hkv + kvh) * D;
  const float* vh = a.v + (b * T * a.Hkv + kvh) * D;
  const float* lse = a.lse + (b * a.Hq + h) * T;
  thread_local std::vector<float> buf;
  float* Kt = aligned(buf, size_t(2 * D * kBK + 2 * kBK * D + 3 * kBK + T));
  float* Vt = Kt + D * kBK;
  float* dK = Vt + D * kBK;  // (kBK, D)
  float* dV = dK + kBK * D;  // (kBK, D)
  float* p = dV + kBK * D;   // (kBK)
  float* dp = p + kBK;       // (kBK)
  float* ds = dp + kBK;      // (kBK)
  float* Di = ds + kBK;      // (T): Σ_d dout·out per query row
  for (int64_t i = 0; i < T; ++i) {
    const float* g = gh + i * ldq;
    const float* o = oh + i * ldq;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < D; ++d) s += g[d] * o[d];
    Di[i] = s;
  }
  for (int64_t j0 = 0; j0 < T; j0 += kBK) {
    const int64_t nk = std::min(kBK, T - j0);
    pack_t(kh + j0 * ldk, ldk, nk, D, Kt);
    pack_t(vh + j0 * ldk, ldk, nk, D, Vt);
    std::fill(dK, dK + kBK * D, 0.f);
    std::fill(dV, dV + kBK * D, 0.f);
    for (int64_t i = j0; i < T; ++i) {
      const int64_t nv = std::min(nk, i - j0 + 1);
      const float* qi = qh + i * ldq;
      const float* gi = gh + i * ldq;
      scores(qi, Kt, D, a.scale, p);
      scores(gi, Vt, D, 1.f, dp);
      const float li = lse[i], di = Di[i];
#pragma omp simd
      for (int64_t j = 0; j < kBK; ++j) {
        const float pj = j < nv ? vexp(p[j] - li) : 0.f;
        p[j] = pj;
        ds[j] = pj * (dp[j] - di) * a.scale;
      }
      float* dqi = dqh + i * ldq;
      for (int64_t j = 0; j < nv; ++j) {
        const float pj = p[j], sj = ds[j];
        const float* kr = kh + (j0 + j) * ldk;
        float* dvr = dV + j * D;
        float* dkr = dK + j * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) {
          dvr[d] += pj * gi[d];
          dkr[d] += sj * qi[d];
          dqi[d] += sj * kr[d];
        }
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      float* dkr = dk + (j0 + j) * ld;
      float* dvr = dv + (j0 + j) * ld;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) {
        dkr[d] += dK[j * D + d];
        dvr[d] += dV[j * D + d];
      }
    }
  }
}

void zero_rows(float* x, int64_t rows, int64_t D, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) std::fill(x + r * ld, x + r * ld + D, 0.f);
}

}  // namespace

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t D, bool accumulate) {
  if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
  const Bwd a{dout, q, k, v, out, lse, dq, B, T, Hq, Hkv, D, 1.f / std::sqrt(float(D))};
  const int64_t group = Hq / Hkv, ldk = Hkv * D, ldq = Hq * D;
  if (group == 1 || B * Hkv >= 2 * num_threads()) {
    // Tasks (b, kv head): dk / dv rows and the group's dq rows are exclusive to the task.
    parallel_for(B * Hkv, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / Hkv, kvh = t % Hkv;
        float* dkh = dk + (b * T * Hkv + kvh) * D;
        float* dvh = dv + (b * T * Hkv + kvh) * D;
        if (!accumulate) {
          zero_rows(dkh, T, D, ldk);
          zero_rows(dvh, T, D, ldk);
          for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) zero_rows(dq + (b * T * Hq + h) * D, T, D, ldq);
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) backward_head(a, b, h, dkh, dvh, ldk);
      }
    });
    return;
  }
  // Tasks (b, query head) into per-head dk / dv scratch (B, Hq, T, D), then summed over each group.
  std::vector<float> sk(size_t(B * Hq * T * D), 0.f), sv(size_t(B * Hq * T * D), 0.f);
  parallel_for(B * Hq, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hq, h = t % Hq;
      if (!accumulate) zero_rows(dq + (b * T * Hq + h) * D, T, D, ldq);
      backward_head(a, b, h, sk.data() + t * T * D, sv.data() + t * T * D, D);
    }
  });
  parallel_for(B * T, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / T, j = r % T;
      for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
        float* dkr = dk + (r * Hkv + kvh) * D;
        float* dvr = dv + (r * Hkv + kvh) * D;
        if (!accumulate) {
          std::fill(dkr, dkr + D, 0.f);
          std::fill(dvr, dvr + D, 0.f);
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          const float* src_k = sk.data() + ((b * Hq + h) * T + j) * D;
          const float* src_v = sv.data() + ((b * Hq + h) * T + j) * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            dkr[d] += src_k[d];
            dvr[d] += src_v[d];
          }
        }
      }
    }
  });
}

}  // namespace rift::cpu
