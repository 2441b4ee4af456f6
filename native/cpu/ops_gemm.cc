// Row-major SGEMM for the CPU ops: OpenBLAS (dlopen, blas_loader.h) when present, else the kernel below.
//
// Builtin kernel (BLIS-style, plain C++): C is cut into tiles of at most TM×TN; threads take tiles from an
// atomic counter. For each K block of KC, a tile packs op(A) into MR-row panels (k-major) and op(B) into
// NR-column panels, then an MR×NR register micro-kernel (GCC/Clang vector extensions: 512-bit with AVX-512,
// 256-bit with AVX, 128-bit otherwise; scalar-broadcast FMA) walks the A panels against one B panel that stays
// in L1. Edge tiles are zero-padded in the packs and stored through a small buffer. M <= 4 (decode steps)
// takes a GEMV-like path without packing.
//
// Row-invariant mode (set_row_invariant, per calling thread; the decoder's inference uses it): the packed kernel
// for every M, whose sum for an element — per K block of KC, a chain of FMAs over k from 0, then alpha·acc
// (+ beta·C) — does not depend on M or on the tile the row falls in (alpha = 1, beta in {0, 1}), so a row of C has
// the same bits whatever rows are computed with it (continuous batching: a sample's tokens do not depend on which
// rows are decoded with it). Never OpenBLAS, which picks kernels by shape; no small-M path, whose dot products sum
// in another order (M <= 4 then costs one packing of B: a 21M-parameter decode step of one row 16 ms instead of 4).
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <vector>

#include "cpu/blas_loader.h"
#include "cpu/ops_cpu.h"
#include "cpu/scratch.h"
#include "cpu/thread_pool.h"
#include "cpu/vec.h"

namespace rift::cpu {
namespace {

#if defined(__AVX512F__)
constexpr int MR = 8, NV = 3;  // 24 accumulators of 32 registers (8×48 measured a little faster than 12×32)
#elif defined(__AVX__)
constexpr int MR = 6, NV = 2;  // 12 of 16
#else
constexpr int MR = 8, NV = 2;  // 16 of 32 (NEON); SSE spills a little
#endif
constexpr int NR = NV * kLanes;
constexpr int64_t KC = 256;                       // K block: a B micro-panel is KC·NR floats
constexpr int64_t TM = 96 / MR * MR;              // rows per tile (the packed A block, L2)
constexpr int64_t TN = 12 * NR;                   // columns per tile (the packed B block, L2)
constexpr int64_t kTB = 16;                       // k block of the transposing packs
constexpr int64_t kMaxBCache = int64_t(1) << 21;  // floats of packed B a thread keeps per column stripe (8 MiB)

// C (mr, nr) at c ← alpha · Σ_k a[k][i] · b[k][j] + beta · C  (beta == 0: C is not read).
// a: packed (kc, MR), b: packed (kc, NR), both zero-padded past mr / nr.
void micro(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, float alpha,
           float beta, int mr, int nr) {
  vf acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = vf{};
  for (int64_t k = 0; k < kc; ++k) {
    vf bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = vload(b + k * NR + j * kLanes);
#if defined(__GNUC__)
#pragma GCC unroll 16
#endif
    for (int i = 0; i < MR; ++i) {
      const vf ai = vsplat(a[k * MR + i]);
      for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j) {
        float* p = c + i * ldc + j * kLanes;
        vf r = vsplat(alpha) * acc[i][j];
        if (beta != 0.f) r += vsplat(beta) * vload(p);
        vstore(p, r);
      }
    return;
  }
  alignas(64) float tmp[MR * NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) vstore(tmp + i * NR + j * kLanes, acc[i][j]);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float* p = c + i * ldc + j;
      *p = beta != 0.f ? alpha * tmp[i * NR + j] + beta * *p : alpha * tmp[i * NR + j];
    }
}

struct Args {
  bool ta, tb;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
};

// op(A)[m0 + r][p0 + k] for r < mc, k < kc → dst (ceil(mc / MR) panels of (kc, MR)), zero rows past mc.
void pack_a(const Args& g, int64_t m0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t r0 = 0; r0 < mc; r0 += MR, dst += kc * MR) {
    const int rows = int(std::min<int64_t>(MR, mc - r0));
    if (g.ta) {  // A is (K, M): a panel row k is contiguous in A
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = g.A + (p0 + k) * g.lda + m0 + r0;
        float* d = dst + k * MR;
        int i = 0;
        for (; i < rows; ++i) d[i] = src[i];
        for (; i < MR; ++i) d[i] = 0.f;
      }
    } else {  // A is (M, K): transpose in k blocks of kTB so the written lines stay in L1
      const float* src = g.A + (m0 + r0) * g.lda + p0;
      for (int64_t kb = 0; kb < kc; kb += kTB) {
        const int64_t kn = std::min<int64_t>(kTB, kc - kb);
        for (int i = 0; i < MR; ++i) {
          if (i < rows)
            for (int64_t k = kb; k < kb + kn; ++k) dst[k * MR + i] = src[i * g.lda + k];
          else
            for (int64_t k = kb; k < kb + kn; ++k) dst[k * MR + i] = 0.f;
        }
      }
    }
  }
}

// op(B)[p0 + k][n0 + c] for k < kc, c < nc → dst (ceil(nc / NR) panels of (kc, NR)), zero columns past nc.
void pack_b(const Args& g, int64_t n0, int64_t nc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t c0 = 0; c0 < nc; c0 += NR, dst += kc * NR) {
    const int cols = int(std::min<int64_t>(NR, nc - c0));
    if (!g.tb) {  // B is (K, N)
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = g.B + (p0 + k) * g.ldb + n0 + c0;
        float* d = dst + k * NR;
        int j = 0;
        for (; j < cols; ++j) d[j] = src[j];
        for (; j < NR; ++j) d[j] = 0.f;
      }
    } else {  // B is (N, K): column j of op(B) is row j of B; transposed in k blocks as in pack_a
      const float* src = g.B + (n0 + c0) * g.ldb + p0;
      for (int64_t kb = 0; kb < kc; kb += kTB) {
        const int64_t kn = std::min<int64_t>(kTB, kc - kb);
        for (int j = 0; j < NR; ++j) {
          if (j < cols)
            for (int64_t k = kb; k < kb + kn; ++k) dst[k * NR + j] = src[j * g.ldb + k];
          else
            for (int64_t k = kb; k < kb + kn; ++k) dst[k * NR + j] = 0.f;
        }
      }
    }
  }
}

// op(B) columns [n0, n0 + nc) for all of K → Bp: one packed block of (ceil(nc / NR) panels of (KC, NR)) per
// K block, so the tiles of one column stripe pack B once per thread instead of once per tile.
void pack_b_all(const Args& g, int64_t n0, int64_t nc, float* Bp) {
  const int64_t np = (nc + NR - 1) / NR;
  for (int64_t p0 = 0, kb = 0; p0 < g.K; p0 += KC, ++kb)
    pack_b(g, n0, nc, p0, std::min(KC, g.K - p0), Bp + kb * np * NR * KC);
}

// One tile of C. Bcached: this column stripe's B from pack_b_all, or null (pack each K block here).
void tile(const Args& g, int64_t m0, int64_t mc, int64_t n0, int64_t nc, const float* Bcached) {
  thread_local Scratch abuf, bbuf;  // pool threads persist: packs are allocated once per thread
  const int64_t mp = (mc + MR - 1) / MR, np = (nc + NR - 1) / NR;
  float* Ap = abuf.get(size_t(mp * MR * KC));
  float* Bown = Bcached ? nullptr : bbuf.get(size_t(np * NR * KC));
  for (int64_t p0 = 0, kb = 0; p0 < g.K; p0 += KC, ++kb) {
    const int64_t kc = std::min(KC, g.K - p0);
    pack_a(g, m0, mc, p0, kc, Ap);
    const float* Bp = Bcached ? Bcached + kb * np * NR * KC : Bown;
    if (!Bcached) pack_b(g, n0, nc, p0, kc, Bown);
    const float beta = p0 == 0 ? g.beta : 1.f;
    for (int64_t q = 0; q < np; ++q) {
      const int nr = int(std::min<int64_t>(NR, nc - q * NR));
      for (int64_t p = 0; p < mp; ++p) {
        const int mr = int(std::min<int64_t>(MR, mc - p * MR));
        micro(kc, Ap + p * kc * MR, Bp + q * kc * NR, g.C + (m0 + p * MR) * g.ldc + n0 + q * NR, g.ldc, g.alpha, beta,
              mr, nr);
      }
    }
  }
}

// M <= 4: C = alpha·op(A)·op(B) + beta·C as M dot products per column (transB) or M row updates (!transB).
void small_m(const Args& g) {
  std::vector<float> a(size_t(g.M * g.K));  // alpha·op(A), contiguous (M, K)
  for (int64_t m = 0; m < g.M; ++m)
    for (int64_t k = 0; k < g.K; ++k) a[m * g.K + k] = g.alpha * (g.ta ? g.A[k * g.lda + m] : g.A[m * g.lda + k]);
  const float* ap = a.data();
  auto put = [&](int64_t m, int64_t n, float s) {
    float* p = g.C + m * g.ldc + n;
    *p = g.beta != 0.f ? s + g.beta * *p : s;
  };
  const int64_t min_cols = std::max<int64_t>(16, (1 << 16) / std::max<int64_t>(1, g.K));
  if (g.tb) {
    parallel_for(
        g.N,
        [&](int64_t n0, int64_t n1) {
          for (int64_t n = n0; n < n1; ++n) {
            const float* b = g.B + n * g.ldb;
            for (int64_t m = 0; m < g.M; ++m) {
              const float* x = ap + m * g.K;
              float s = 0.f;
#pragma omp simd reduction(+ : s)
              for (int64_t k = 0; k < g.K; ++k) s += x[k] * b[k];
              put(m, n, s);
            }
          }
        },
        min_cols);
  } else {
    constexpr int64_t kCols = 256;
    parallel_for((g.N + kCols - 1) / kCols,
                 [&](int64_t c0, int64_t c1) {
                   alignas(64) float acc[4][kCols];
                   for (int64_t c = c0; c < c1; ++c) {
                     const int64_t n0 = c * kCols, nc = std::min(kCols, g.N - n0);
                     for (int64_t m = 0; m < g.M; ++m) std::fill(acc[m], acc[m] + nc, 0.f);
                     for (int64_t k = 0; k < g.K; ++k) {
                       const float* b = g.B + k * g.ldb + n0;
                       for (int64_t m = 0; m < g.M; ++m) {
                         const float x = ap[m * g.K + k];
                         float* r = acc[m];
#pragma omp simd
                         for (int64_t j = 0; j < nc; ++j) r[j] += x * b[j];
                       }
                     }
                     for (int64_t m = 0; m < g.M; ++m)
                       for (int64_t j = 0; j < nc; ++j) put(m, n0 + j, acc[m][j]);
                   }
                 },
                 std::max<int64_t>(1, min_cols / kCols));
  }
}

thread_local bool t_row_invariant = false;

std::atomic<int> g_impl{-1};  // -1: not chosen yet (OpenBLAS when loadable)
std::atomic<int> g_blas_threads{0};

}  // namespace

void set_row_invariant(bool on) { t_row_invariant = on; }
bool row_invariant() { return t_row_invariant; }

void gemm_builtin(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const Args g{transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  if (M <= 4 && !t_row_invariant) return small_m(g);
  const int64_t mt = (M + TM - 1) / TM, nt = (N + TN - 1) / TN, tiles = mt * nt;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const int64_t workers = flops < 4e6 ? 1 : std::min<int64_t>(tiles, num_threads());
  // Tiles go column stripe by column stripe; a thread keeps the packed B of its current stripe (all of K) when
  // that fits kMaxBCache floats and the stripe has several row tiles.
  const int64_t kb = (K + KC - 1) / KC, stripe = kb * ((std::min(TN, N) + NR - 1) / NR) * NR * KC;
  const bool cache_b = mt > 1 && stripe <= kMaxBCache;
  std::atomic<int64_t> next{0};
  parallel_for(workers, [&](int64_t, int64_t) {
    thread_local Scratch bcache;
    int64_t cached = -1;
    float* Bc = nullptr;
    for (int64_t t; (t = next.fetch_add(1)) < tiles;) {
      const int64_t ni = t / mt, m0 = (t % mt) * TM, n0 = ni * TN, nc = std::min(TN, N - n0);
      if (cache_b && ni != cached) {
        Bc = bcache.get(size_t(stripe));
        pack_b_all(g, n0, nc, Bc);
        cached = ni;
      }
      tile(g, m0, std::min(TM, M - m0), n0, nc, cache_b ? Bc : nullptr);
    }
  });
}

GemmImpl gemm_impl() {
  int v = g_impl.load();
  if (v < 0) {
    v = int(blas_lib() ? GemmImpl::OpenBlas : GemmImpl::Builtin);
    int expected = -1;
    if (!g_impl.compare_exchange_strong(expected, v)) v = expected;
  }
  return GemmImpl(v);
}

bool set_gemm_impl(GemmImpl impl) {
  if (impl == GemmImpl::OpenBlas && !blas_lib()) return false;
  g_impl.store(int(impl));
  return true;
}

int gemm_threads() {
  if (gemm_impl() == GemmImpl::OpenBlas) return blas_lib()->get_num_threads();
  return num_threads();
}

void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta·C (beta == 0: C is not read)
    for (int64_t m = 0; m < M; ++m) {
      float* c = C + m * ldc;
      if (beta == 0.f)
        std::fill(c, c + N, 0.f);
      else if (beta != 1.f)
        for (int64_t n = 0; n < N; ++n) c[n] *= beta;
    }
    return;
  }
  const BlasLib* blas = gemm_impl() == GemmImpl::OpenBlas && !t_row_invariant ? blas_lib() : nullptr;
  const int64_t big = std::max({M, N, K, lda, ldb, ldc});
  if (blas && big <= INT_MAX) {
    const int want = num_threads();  // follow setNumThreads / RIFT_NUM_THREADS
    if (g_blas_threads.exchange(want) != want) blas->set_num_threads(want);
    blas->sgemm(101, transA ? 112 : 111, transB ? 112 : 111, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb),
                beta, C, int(ldc));
    return;
  }
  gemm_builtin(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace rift::cpu
