// The fused attention's backward (cuda_attention_flash.h), training shapes (past = 0, Tq = Tkv = T), in three
// kernels and no atomics (deterministic; the price is computing S and dP twice, as the fp32 kernel does):
//   di    Di = Σ_d dout·out per row, one warp per row (lane λ: d ≡ λ mod 32 in order, then xor 16, 8, 4, 2, 1)
//   dq    one block per (kTileQ query rows, query head, batch row), 4 warps × 16 rows; per tile of kTileK keys:
//         S = Q̃·K̃ᵀ, dP = dÕ·Ṽᵀ, p̃ = bf16(exp(S·scale − lse)), dS̃ = bf16((scale·p̃)·(dP − Di)), dq += dS̃·K̃
//   dkdv  one block per (kTileK keys, kv head, batch row), 4 warps × 16 keys; for each query head of the group and
//         each tile of QT queries from the key tile's diagonal on: Sᵀ = K̃·Q̃ᵀ, dPᵀ = Ṽ·dÕᵀ, p̃ and dS̃ as above,
//         dv += p̃ᵀ·dÕ, dk += dS̃ᵀ·Q̃ (QT = 64 for D = 64, 32 for D = 128: registers)
// Q̃, dÕ are staged both row-major and transposed (the two uses need both as 32-bit B-fragment loads). p̃ and dS̃
// go from the accumulators of one product into the A fragments of the next. Order and roundings: the CPU twin's
// (cpu/ops_attention_flash.cc); the query tile size does not change them (mma steps of 16 queries, ascending).
#include "cuda/cuda_attention_flash.cuh"

#include <algorithm>
#include <cmath>

namespace rift::cuda::flash_detail {
namespace {

template <int D>
constexpr int kDkdvQT = D == 64 ? 64 : 32;
template <int D>
constexpr size_t dq_smem() {
  return sizeof(bf16) * size_t(4 * 64 * (D + 8) + D * (kTileK + 8));
}
template <int D>
constexpr size_t dkdv_smem() {
  constexpr int QT = kDkdvQT<D>;
  return sizeof(bf16) * size_t(2 * kTileK * (D + 8) + 2 * QT * (D + 8) + 2 * D * (QT + 8)) + 2 * QT * sizeof(float);
}

__global__ void di_kernel(float* Di, const float* dout, const float* out, int64_t B, int64_t T, int64_t Hq, int D) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);  // (b, t, h) in memory order
  const int lane = threadIdx.x & 31;
  if (row >= B * T * Hq) return;
  const float* x = dout + row * D;
  const float* y = out + row * D;
  float acc = 0.f;
  for (int d = lane; d < D; d += 32) acc = __fadd_rn(acc, __fmul_rn(x[d], y[d]));
  for (int o = 16; o > 0; o >>= 1) acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, o));
  if (lane == 0) {
    const int64_t h = row % Hq, bt = row / Hq, b = bt / T, t = bt - b * T;
    Di[(b * Hq + h) * T + t] = acc;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) dq_kernel(Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int P = D + 8, PT = kTileK + 8, NT = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Gs = Qs + kTileQ * P;  // dÕ
  bf16* Ks = Gs + kTileQ * P;
  bf16* Vs = Ks + kTileK * P;
  bf16* Kt = Vs + kTileK * P;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t T = a.Tq, b = blockIdx.z, h = blockIdx.y, kvh = h / a.G;
  const int64_t q0 = int64_t(gridDim.x - 1 - blockIdx.x) * kTileQ;
  const int64_t QS = a.Hq * D, KS = a.Hkv * D, qoff = (b * T * a.Hq + h) * D, koff = (b * T * a.Hkv + kvh) * D;
  load_tile<D, false>(Qs, P, a.q + qoff, QS, q0, T, kTileQ);
  load_tile<D, false>(Gs, P, a.dout + qoff, QS, q0, T, kTileQ);
  const int r0 = warp * 16;
  int64_t row[2];
  float lse[2], di[2];
  for (int r = 0; r < 2; ++r) {
    row[r] = q0 + r0 + g + 8 * r;
    const bool real = row[r] < T;
    lse[r] = real ? a.lse_in[(b * a.Hq + h) * T + row[r]] : INFINITY;
    di[r] = real ? a.di[(b * a.Hq + h) * T + row[r]] : 0.f;
  }
  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  const int64_t kend = min(q0 + kTileQ, T), warp_last = q0 + r0 + 15;
  for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
    __syncthreads();  // previous tile no longer read (and Qs / Gs written, first time)
    load_tile<D, false>(Ks, P, a.k + koff, KS, j0, kend, kTileK);
    load_tile<D, false>(Vs, P, a.v + koff, KS, j0, kend, kTileK);
    load_tile<D, true>(Kt, PT, a.k + koff, KS, j0, kend, kTileK);
    __syncthreads();
    if (j0 > warp_last) continue;  // warp-uniform
    float s[kTileK / 8][4], dp[kTileK / 8][4];
#pragma unroll
    for (int n = 0; n < kTileK / 8; ++n) {
      for (int c = 0; c < 4; ++c) s[n][c] = dp[n][c] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[4], ga[4], b0, b1;
        load_a(qa, Qs, P, r0, kk * 16);
        load_b(b0, b1, Ks, P, n * 8, kk * 16);
        mma(s[n], qa, b0, b1);
        load_a(ga, Gs, P, r0, kk * 16);
        load_b(b0, b1, Vs, P, n * 8, kk * 16);
        mma(dp[n], ga, b0, b1);
      }
    }
#pragma unroll
    for (int n = 0; n < kTileK / 8; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = c >> 1;
        const int64_t j = j0 + n * 8 + 2 * t + (c & 1);
        const float p = j <= row[r] ? bfround(__expf(__fsub_rn(__fmul_rn(s[n][c], a.scale), lse[r]))) : 0.f;
        s[n][c] = bfround(__fmul_rn(__fmul_rn(a.scale, p), __fsub_rn(dp[n][c], di[r])));  // dS̃
      }
#pragma unroll
    for (int kk = 0; kk < kTileK / 16; ++kk) {
      uint32_t da[4];
      c_to_a(da, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        uint32_t b0, b1;
        load_b(b0, b1, Kt, PT, n * 8, kk * 16);
        mma(acc[n], da, b0, b1);
      }
    }
  }
  for (int r = 0; r < 2; ++r) {
    if (row[r] >= T) continue;
    float* o = a.dq + (b * T + row[r]) * QS + h * D;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      float2* x = reinterpret_cast<float2*>(o + n * 8 + 2 * t);
      float2 v = make_float2(acc[n][2 * r], acc[n][2 * r + 1]);
      if (a.accumulate) v = make_float2(__fadd_rn(x->x, v.x), __fadd_rn(x->y, v.y));
      *x = v;
    }
  }
#endif
}

template <int D>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int QT = kDkdvQT<D>, P = D + 8, PQ = QT + 8, NT = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kTileK * P;
  bf16* Qs = Vs + kTileK * P;
  bf16* Gs = Qs + QT * P;  // dÕ
  bf16* Qt = Gs + QT * P;  // Q̃ᵀ (D × QT)
  bf16* Gt = Qt + D * PQ;  // dÕᵀ
  float* Ls = reinterpret_cast<float*>(Gt + D * PQ);
  float* Ds = Ls + QT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t T = a.Tq, b = blockIdx.z, kvh = blockIdx.y;
  const int64_t j0 = int64_t(gridDim.x - 1 - blockIdx.x) * kTileK;
  const int64_t QS = a.Hq * D, KS = a.Hkv * D, koff = (b * T * a.Hkv + kvh) * D;
  load_tile<D, false>(Ks, P, a.k + koff, KS, j0, T, kTileK);
  load_tile<D, false>(Vs, P, a.v + koff, KS, j0, T, kTileK);
  const int r0 = warp * 16;
  const int64_t key[2] = {j0 + r0 + g, j0 + r0 + g + 8};
  float ak[NT][4], av[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
    for (int c = 0; c < 4; ++c) ak[n][c] = av[n][c] = 0.f;
  for (int64_t h = kvh * a.G; h < (kvh + 1) * a.G; ++h) {
    const int64_t qoff = (b * T * a.Hq + h) * D;
    for (int64_t i0 = j0 / QT * QT; i0 < T; i0 += QT) {
      __syncthreads();  // the previous query tile is no longer read
      load_tile<D, false>(Qs, P, a.q + qoff, QS, i0, T, QT);
      load_tile<D, false>(Gs, P, a.dout + qoff, QS, i0, T, QT);
      load_tile<D, true>(Qt, PQ, a.q + qoff, QS, i0, T, QT);
      load_tile<D, true>(Gt, PQ, a.dout + qoff, QS, i0, T, QT);
      for (int r = threadIdx.x; r < QT; r += blockDim.x) {
        const bool real = i0 + r < T;
        Ls[r] = real ? a.lse_in[(b * a.Hq + h) * T + i0 + r] : INFINITY;
        Ds[r] = real ? a.di[(b * a.Hq + h) * T + i0 + r] : 0.f;
      }
      __syncthreads();
      if (i0 + QT - 1 < j0 + r0) continue;  // warp-uniform: every query of the tile precedes the warp's keys
      float s[QT / 8][4], dp[QT / 8][4];
#pragma unroll
      for (int n = 0; n < QT / 8; ++n) {
        for (int c = 0; c < 4; ++c) s[n][c] = dp[n][c] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          uint32_t ka[4], va[4], b0, b1;
          load_a(ka, Ks, P, r0, kk * 16);
          load_b(b0, b1, Qs, P, n * 8, kk * 16);
          mma(s[n], ka, b0, b1);
          load_a(va, Vs, P, r0, kk * 16);
          load_b(b0, b1, Gs, P, n * 8, kk * 16);
          mma(dp[n], va, b0, b1);
        }
      }
#pragma unroll
      for (int n = 0; n < QT / 8; ++n)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int ql = n * 8 + 2 * t + (c & 1);
          const int64_t i = i0 + ql, j = key[c >> 1];
          const bool vis = i >= j && i < T && j < T;
          const float p = vis ? bfround(__expf(__fsub_rn(__fmul_rn(s[n][c], a.scale), Ls[ql]))) : 0.f;
          s[n][c] = p;
          dp[n][c] = bfround(__fmul_rn(__fmul_rn(a.scale, p), __fsub_rn(dp[n][c], Ds[ql])));  // dS̃ᵀ
        }
#pragma unroll
      for (int kk = 0; kk < QT / 16; ++kk) {
        uint32_t pa[4], da[4];
        c_to_a(pa, s[2 * kk], s[2 * kk + 1]);
        c_to_a(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          uint32_t b0, b1;
          load_b(b0, b1, Gt, PQ, n * 8, kk * 16);
          mma(av[n], pa, b0, b1);
          load_b(b0, b1, Qt, PQ, n * 8, kk * 16);
          mma(ak[n], da, b0, b1);
        }
      }
    }
  }
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= T) continue;
    const int64_t off = (b * T + key[r]) * KS + kvh * D;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      float2* xk = reinterpret_cast<float2*>(a.dk + off + n * 8 + 2 * t);
      float2* xv = reinterpret_cast<float2*>(a.dv + off + n * 8 + 2 * t);
      float2 vk = make_float2(ak[n][2 * r], ak[n][2 * r + 1]), vv = make_float2(av[n][2 * r], av[n][2 * r + 1]);
      if (a.accumulate) {
        vk = make_float2(__fadd_rn(xk->x, vk.x), __fadd_rn(xk->y, vk.y));
        vv = make_float2(__fadd_rn(xv->x, vv.x), __fadd_rn(xv->y, vv.y));
      }
      *xk = vk;
      *xv = vv;
    }
  }
#endif
}

template <int D>
void launch(const Args& a, int64_t B) {
  const int64_t T = a.Tq;
  for (int64_t b0 = 0; b0 < B; b0 += kMaxGridZ) {  // gridDim.z <= 65535: the batch in chunks
    const int64_t nb = std::min(kMaxGridZ, B - b0), qo = b0 * T * a.Hq * D, ko = b0 * T * a.Hkv * D;
    Args c = a;
    c.q += qo, c.dout += qo, c.out += qo, c.dq += qo;
    c.k += ko, c.v += ko, c.dk += ko, c.dv += ko;
    c.lse_in += b0 * a.Hq * T;
    c.di += b0 * a.Hq * T;
    float* di = const_cast<float*>(c.di);
    const int64_t rows = nb * T * a.Hq;
    di_kernel<<<unsigned((rows + kWarps - 1) / kWarps), kThreads>>>(di, c.dout, c.out, nb, T, a.Hq, D);
    check_launch("flash attention backward (Di)");
    const dim3 gq(unsigned((T + kTileQ - 1) / kTileQ), unsigned(a.Hq), unsigned(nb));
    dq_kernel<D><<<gq, kThreads, dq_smem<D>()>>>(c);
    check_launch("flash attention backward (dq)");
    const dim3 gk(unsigned((T + kTileK - 1) / kTileK), unsigned(a.Hkv), unsigned(nb));
    dkdv_kernel<D><<<gk, kThreads, dkdv_smem<D>()>>>(c);
    check_launch("flash attention backward (dk, dv)");
  }
}

template <int D>
void prepare() {
  configure(dq_kernel<D>, dq_smem<D>(), "flash attention backward (dq)");
  configure(dkdv_kernel<D>, dkdv_smem<D>(), "flash attention backward (dk, dv)");
  configure(di_kernel, 0, "flash attention backward (Di)");
}

}  // namespace

void prepare_backward(int64_t D) {
  require_device(D);
  if (D == 64)
    prepare<64>();
  else
    prepare<128>();
}

void backward(const Args& a, int64_t B, int64_t D) {
  if (D == 64)
    launch<64>(a, B);
  else
    launch<128>(a, B);
}

}  // namespace rift::cuda::flash_detail
