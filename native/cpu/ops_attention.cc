// Causal GQA attention on the CPU, flash-style (semantics in model/ops.h). No T×T buffer exists: keys are
// visited in tiles of kBK, query rows in groups of kR, and every product inside a tile is a register-blocked
// micro-kernel (vec.h): scores S = Q·Kᵀ from a transposed key tile Kt (D, kBK); O += P·V from a packed value
// tile; the backward's rank-kR updates dV += Pᵀ·dO, dK += dSᵀ·Q and dQ += dS·K. The forward keeps a running
// max and sum per query row (online softmax) and saves lse; the backward recomputes p = exp(s − lse) tile by
// tile (FlashAttention-2 order: key tile outer, query rows inner), with Di = Σ dout·out per row.
//
// Threads: forward tasks are (b, kv head, block of kBQ (query position, group head) rows); backward tasks are (b, kv
// head) — each owns its dk / dv rows and the dq rows of its group's heads — or, when that gives too few tasks for the
// pool, (b, query head) with per-head dk / dv scratch summed over each group afterwards. No atomics; fixed summation
// order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/memory.h"
#include "cpu/ops_cpu.h"
#include "cpu/scratch.h"
#include "cpu/thread_pool.h"
#include "cpu/vec.h"
#include "cpu/vmath.h"

namespace rift::cpu {
namespace {

constexpr int kR = 4;                   // query rows per micro-kernel
constexpr int kNVK = 4;                 // vectors per score row
constexpr int64_t kBK = kNVK * kLanes;  // keys per tile (64 with AVX-512)
constexpr int64_t kBQ = 32;             // (query, head) rows per forward task
constexpr int kDV = 4;                  // vectors per head-dimension chunk

// Padded head dimension: packed rows hold Dp floats, zero past D.
inline int64_t padded(int64_t D) { return (D + kLanes - 1) / kLanes * kLanes; }

// Kt (D, kBK) ← rows [0, n) of x (row stride ld) transposed, zero columns past n.
void pack_t(const float* x, int64_t ld, int64_t n, int64_t D, float* Kt) {
  for (int64_t d = 0; d < D; ++d) {
    float* r = Kt + d * kBK;
    for (int64_t j = 0; j < n; ++j) r[j] = x[j * ld + d];
    for (int64_t j = n; j < kBK; ++j) r[j] = 0.f;
  }
}

// P (rows, Dp) ← rows [0, n) of x (row stride ld), zero past n rows and past D columns.
void pack_rows(const float* x, int64_t ld, int64_t n, int64_t rows, int64_t D, int64_t Dp, float* P) {
  for (int64_t j = 0; j < rows; ++j) {
    float* r = P + j * Dp;
    if (j < n)
      std::memcpy(r, x + j * ld, size_t(D) * sizeof(float));
    else
      std::fill(r, r + D, 0.f);
    std::fill(r + D, r + Dp, 0.f);
  }
}

// S (kR, kBK) = scale · A (kR rows of Dp) · Kt (D, kBK).
void scores(const float* A, int64_t Dp, const float* Kt, int64_t D, float scale, float* S) {
  vf acc[kR][kNVK];
  for (int r = 0; r < kR; ++r)
    for (int v = 0; v < kNVK; ++v) acc[r][v] = vzero();
  for (int64_t d = 0; d < D; ++d) {
    vf k[kNVK];
    for (int v = 0; v < kNVK; ++v) k[v] = vload(Kt + d * kBK + v * kLanes);
    for (int r = 0; r < kR; ++r) {
      const vf a = vsplat(A[r * Dp + d]);
      for (int v = 0; v < kNVK; ++v) acc[r][v] += a * k[v];
    }
  }
  const vf sc = vsplat(scale);
  for (int r = 0; r < kR; ++r)
    for (int v = 0; v < kNVK; ++v) vstore(S + r * kBK + v * kLanes, sc * acc[r][v]);
}

// O (kR, Dp) += P (kR, kBK) · X (nk rows of Dp), one chunk of NV vectors of the head dimension at a time.
template <int NV>
void pv_chunk(const float* P, int64_t nk, const float* X, int64_t Dp, float* O, int64_t c0) {
  vf acc[kR][NV];
  for (int r = 0; r < kR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vload(O + r * Dp + c0 + v * kLanes);
  for (int64_t j = 0; j < nk; ++j) {
    vf x[NV];
    for (int v = 0; v < NV; ++v) x[v] = vload(X + j * Dp + c0 + v * kLanes);
    for (int r = 0; r < kR; ++r) {
      const vf p = vsplat(P[r * kBK + j]);
      for (int v = 0; v < NV; ++v) acc[r][v] += p * x[v];
    }
  }
  for (int r = 0; r < kR; ++r)
    for (int v = 0; v < NV; ++v) vstore(O + r * Dp + c0 + v * kLanes, acc[r][v]);
}

// G (nk rows of Dp) += Pᵀ · X: G[j] += Σ_r P[r][j] · X[r] for X (kR, Dp).
template <int NV>
void rank_chunk(const float* P, int64_t nk, const float* X, int64_t Dp, float* G, int64_t c0) {
  vf x[kR][NV];
  for (int r = 0; r < kR; ++r)
    for (int v = 0; v < NV; ++v) x[r][v] = vload(X + r * Dp + c0 + v * kLanes);
  for (int64_t j = 0; j < nk; ++j) {
    vf acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = vload(G + j * Dp + c0 + v * kLanes);
    for (int r = 0; r < kR; ++r) {
      const vf p = vsplat(P[r * kBK + j]);
      for (int v = 0; v < NV; ++v) acc[v] += p * x[r][v];
    }
    for (int v = 0; v < NV; ++v) vstore(G + j * Dp + c0 + v * kLanes, acc[v]);
  }
}

// Walks the head dimension in chunks of kDV vectors (the last one shorter).
template <typename F>
void by_chunks(int64_t Dp, F&& f) {
  for (int64_t c0 = 0; c0 < Dp; c0 += kDV * kLanes) f(c0, int(std::min<int64_t>(kDV, (Dp - c0) / kLanes)));
}

void pv(const float* P, int64_t nk, const float* X, int64_t Dp, float* O) {
  by_chunks(Dp, [&](int64_t c0, int nv) {
    switch (nv) {
      case 1: return pv_chunk<1>(P, nk, X, Dp, O, c0);
      case 2: return pv_chunk<2>(P, nk, X, Dp, O, c0);
      case 3: return pv_chunk<3>(P, nk, X, Dp, O, c0);
      default: return pv_chunk<4>(P, nk, X, Dp, O, c0);
    }
  });
}

void rank_update(const float* P, int64_t nk, const float* X, int64_t Dp, float* G) {
  by_chunks(Dp, [&](int64_t c0, int nv) {
    switch (nv) {
      case 1: return rank_chunk<1>(P, nk, X, Dp, G, c0);
      case 2: return rank_chunk<2>(P, nk, X, Dp, G, c0);
      case 3: return rank_chunk<3>(P, nk, X, Dp, G, c0);
      default: return rank_chunk<4>(P, nk, X, Dp, G, c0);
    }
  });
}

}  // namespace

// Rows of a forward task are (query position i, head g of the kv group) pairs, R = i·group + g: the heads
// of a group share every K / V tile, and a decode step (Tq = 1) still fills the kR-row micro-kernel.
// With rows (a batched KV cache), batch row b reads k / v row rows->slot[b] at its own past rows->past[b].
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                       int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows) {
  if (B <= 0 || Tq <= 0 || Hq <= 0 || D <= 0) return;
  const int64_t group = Hq / Hkv, nrows = Tq * group, nqb = (nrows + kBQ - 1) / kBQ, Dp = padded(D);
  const float scale = 1.f / std::sqrt(float(D));
  const int64_t ldk = Hkv * D;
  parallel_for(B * Hkv * nqb, [&](int64_t t0, int64_t t1) {
    thread_local Scratch buf;
    float* Kt = buf.get(size_t(D * kBK + kBK * Dp + 2 * kBQ * Dp + kR * kBK + 2 * kBQ));
    float* Vp = Kt + D * kBK;  // (kBK, Dp)
    float* Q = Vp + kBK * Dp;  // (kBQ, Dp)
    float* O = Q + kBQ * Dp;   // (kBQ, Dp)
    float* S = O + kBQ * Dp;   // (kR, kBK)
    float* m = S + kR * kBK;   // (kBQ)
    float* l = m + kBQ;        // (kBQ)
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t qb = task % nqb, kvh = (task / nqb) % Hkv, b = task / (nqb * Hkv);
      const int64_t R0 = qb * kBQ, nq = std::min(kBQ, nrows - R0), nqr = (nq + kR - 1) / kR * kR;
      const int64_t pb = rows ? rows->past[b] : past, kb = rows ? rows->slot[b] : b;
      // Row r of the task: query position i = (R0 + r) / group, head kvh·group + (R0 + r) % group.
      auto qrow = [&](int64_t r) { return ((b * Tq + (R0 + r) / group) * Hq + kvh * group + (R0 + r) % group) * D; };
      auto limit = [&](int64_t r) { return pb + (R0 + r) / group; };  // last key the row sees
      const float* kh = k + (kb * Tkv * Hkv + kvh) * D;
      const float* vh = v + (kb * Tkv * Hkv + kvh) * D;
      for (int64_t r = 0; r < nqr; ++r) {
        float* dst = Q + r * Dp;
        if (r < nq)
          std::memcpy(dst, q + qrow(r), size_t(D) * sizeof(float));
        else
          std::fill(dst, dst + D, 0.f);
        std::fill(dst + D, dst + Dp, 0.f);
      }
      std::fill(O, O + nqr * Dp, 0.f);
      std::fill(m, m + nqr, -INFINITY);
      std::fill(l, l + nqr, 0.f);
      const int64_t kend = limit(nq - 1) + 1;  // keys [0, kend) are visible to some row of this block
      for (int64_t j0 = 0; j0 < kend; j0 += kBK) {
        const int64_t nk = std::min(kBK, kend - j0);
        pack_t(kh + j0 * ldk, ldk, nk, D, Kt);
        pack_rows(vh + j0 * ldk, ldk, nk, nk, D, Dp, Vp);
        for (int64_t r0 = 0; r0 < nqr; r0 += kR) {
          if (limit(std::min<int64_t>(r0 + kR, nq) - 1) < j0) continue;  // no row of the group sees this tile
          scores(Q + r0 * Dp, Dp, Kt, D, scale, S);
          for (int r = 0; r < kR; ++r) {
            const int64_t i = r0 + r;
            float* s = S + r * kBK;
            const int64_t nv = i < nq ? std::min(nk, limit(i) - j0 + 1) : 0;  // keys j0 .. limit
            if (nv <= 0) {
              std::fill(s, s + kBK, 0.f);
              continue;
            }
            float mx = m[i];
            for (int64_t j = 0; j < nv; ++j) mx = std::max(mx, s[j]);
            const float corr = std::isinf(m[i]) ? 0.f : vexp(m[i] - mx);
            float sum = 0.f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < kBK; ++j) {
              const float p = j < nv ? vexp(s[j] - mx) : 0.f;
              s[j] = p;
              sum += p;
            }
            l[i] = l[i] * corr + sum;
            m[i] = mx;
            float* o = O + i * Dp;
#pragma omp simd
            for (int64_t d = 0; d < Dp; ++d) o[d] *= corr;
          }
          pv(S, nk, Vp, Dp, O + r0 * Dp);
        }
      }
      for (int64_t r = 0; r < nq; ++r) {
        const float inv = 1.f / l[r];
        float* dst = out + qrow(r);
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) dst[d] = O[r * Dp + d] * inv;
        const int64_t i = (R0 + r) / group, h = kvh * group + (R0 + r) % group;
        if (lse) lse[(b * Hq + h) * Tq + i] = m[r] + std::log(l[r]);
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
  const int64_t T = a.T, D = a.D, Dp = padded(D), kvh = h / (a.Hq / a.Hkv);
  const int64_t ldq = a.Hq * D, ldk = a.Hkv * D;
  const float* qh = a.q + (b * T * a.Hq + h) * D;
  const float* gh = a.dout + (b * T * a.Hq + h) * D;
  const float* oh = a.out + (b * T * a.Hq + h) * D;
  float* dqh = a.dq + (b * T * a.Hq + h) * D;
  const float* kh = a.k + (b * T * a.Hkv + kvh) * D;
  const float* vh = a.v + (b * T * a.Hkv + kvh) * D;
  const float* lse = a.lse + (b * a.Hq + h) * T;
  thread_local Scratch buf;
  float* Kt = buf.get(size_t(2 * D * kBK + 3 * kBK * Dp + 3 * kR * Dp + 3 * kR * kBK + T));
  float* Vt = Kt + D * kBK;   // (D, kBK)
  float* Kp = Vt + D * kBK;   // (kBK, Dp)
  float* dK = Kp + kBK * Dp;  // (kBK, Dp)
  float* dV = dK + kBK * Dp;  // (kBK, Dp)
  float* Q4 = dV + kBK * Dp;  // (kR, Dp)
  float* G4 = Q4 + kR * Dp;   // (kR, Dp) dout rows
  float* dQ4 = G4 + kR * Dp;  // (kR, Dp)
  float* P = dQ4 + kR * Dp;   // (kR, kBK)
  float* dP = P + kR * kBK;   // (kR, kBK)
  float* dS = dP + kR * kBK;  // (kR, kBK)
  float* Di = dS + kR * kBK;  // (T): Σ_d dout·out per query row
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
    pack_rows(kh + j0 * ldk, ldk, nk, nk, D, Dp, Kp);
    std::fill(dK, dK + nk * Dp, 0.f);
    std::fill(dV, dV + nk * Dp, 0.f);
    for (int64_t r0 = j0; r0 < T; r0 += kR) {  // query rows i >= j0 see keys of this tile
      const int64_t nr = std::min<int64_t>(kR, T - r0);
      pack_rows(qh + r0 * ldq, ldq, nr, kR, D, Dp, Q4);
      pack_rows(gh + r0 * ldq, ldq, nr, kR, D, Dp, G4);
      scores(Q4, Dp, Kt, D, a.scale, P);
      scores(G4, Dp, Vt, D, 1.f, dP);
      for (int r = 0; r < kR; ++r) {
        const int64_t i = r0 + r;
        const int64_t nv = r < nr ? std::min(nk, i - j0 + 1) : 0;
        const float li = r < nr ? lse[i] : 0.f, di = r < nr ? Di[i] : 0.f;
        float* p = P + r * kBK;
        float* dp = dP + r * kBK;
        float* ds = dS + r * kBK;
#pragma omp simd
        for (int64_t j = 0; j < kBK; ++j) {
          const float pj = j < nv ? vexp(p[j] - li) : 0.f;
          p[j] = pj;
          ds[j] = pj * (dp[j] - di) * a.scale;
        }
      }
      rank_update(P, nk, G4, Dp, dV);   // dV += Pᵀ·dO
      rank_update(dS, nk, Q4, Dp, dK);  // dK += dSᵀ·Q
      std::fill(dQ4, dQ4 + kR * Dp, 0.f);
      pv(dS, nk, Kp, Dp, dQ4);  // dQ = dS·K
      for (int64_t r = 0; r < nr; ++r) {
        float* dst = dqh + (r0 + r) * ldq;
        const float* src = dQ4 + r * Dp;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
      }
    }
    for (int64_t j = 0; j < nk; ++j) {
      float* dkr = dk + (j0 + j) * ld;
      float* dvr = dv + (j0 + j) * ld;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) {
        dkr[d] += dK[j * Dp + d];
        dvr[d] += dV[j * Dp + d];
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
  HostBuffer sk(MemCategory::Workspace, size_t(B * Hq * T * D)),
      sv(MemCategory::Workspace, size_t(B * Hq * T * D));  // zeroed
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
