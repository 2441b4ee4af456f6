// Causal GQA attention on the GPU, flash-style, fp32 (semantics in model/ops.h; CPU twin cpu/ops_attention.cc).
// No T×T buffer: keys are visited in tiles of kBK held in shared memory.
//
// Forward (and the backward's dq pass) — a block is kNW warps of one (b, kv head); warp w owns one row
// R = i·group + g (query position i, head g of the kv group), so the group's heads share every K/V tile (a
// decode step with Tq = 1 still fills the block). Per key tile, lane j scores key j (s = scale·q·k_j with q
// broadcast from shared memory and K rows padded to D+1 floats: conflict-free), the warp does the online-softmax
// update (running max m, sum l), and each lane accumulates the output dims d = lane + 32u (u < DPL) as
// o += Σ_j p_j·V[j][d] with p_j broadcast by shuffle. lse = m + log l.
// Backward (training shapes, past = 0): Di = Σ_d dout·out per row (one warp per row); dq pass as above with
// p = exp(s − lse), ds = p·(dout·v_j − Di)·scale, dq += Σ_j ds_j·k_j; dk/dv pass: a block owns kBK keys of one
// (b, kv head), warp w owns kBK/kNW of them in registers and walks every query row i >= key of every head of the
// group in tiles of kBQ rows (lane r = row r: p_r, ds_r), dv += Σ_r p_r·dout_r, dk += Σ_r ds_r·q_r. Fixed
// order everywhere: deterministic, no atomics; dk/dv summed over the group inside the block.
// The build uses --use_fast_math: exp/log are the fast approximations (relative error ~1e-6).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

constexpr int kNW = 8;                // warps per block
constexpr int kBK = 32;               // keys per tile (= lanes)
constexpr int kBQ = 32;               // query rows per tile of the dk/dv pass (= lanes)
constexpr int kKPW = kBK / kNW;       // keys per warp in the dk/dv pass
constexpr int64_t kMaxGridZ = 65535;  // CUDA's limit on gridDim.z (the batch axis of every launch here)

struct Shape {
  int64_t B, Tq, Tkv, past, Hq, Hkv, D, group;
  float scale;
  // A batched KV cache (forward only; model/ops.h KvRows): batch row b reads k / v row rslot[b] and its queries
  // sit at rpast[b] + i. Null: row b, past.
  const int32_t* rpast = nullptr;
  const int32_t* rslot = nullptr;
};

// Cooperative copy of rows [j0, j0 + n) of x (B, Tkv, Hkv, D) at (b, kvh) into dst (rows of ld floats).
__device__ void load_rows(float* dst, int ld, const float* x, const Shape& s, int64_t b, int64_t kvh, int64_t j0,
                          int n) {
  for (int idx = threadIdx.x; idx < n * s.D; idx += blockDim.x) {
    const int j = idx / int(s.D), d = idx - j * int(s.D);
    dst[j * ld + d] = x[((b * s.Tkv + j0 + j) * s.Hkv + kvh) * s.D + d];
  }
}

__device__ float dot(const float* a, const float* b, int64_t D) {
  float acc = 0.f;
  for (int64_t d = 0; d < D; ++d) acc += a[d] * b[d];
  return acc;
}

// MODE 0: forward (out, lse). MODE 1: backward dq pass (p from lse, ds, dq [+]=).
template <int DPL, int MODE>
__global__ void __launch_bounds__(kNW * 32)
    rows_kernel(float* out, float* lse_out, const float* lse_in, const float* q, const float* k, const float* v,
                const float* dout, const float* Di, Shape s, bool accumulate) {
  extern __shared__ float sm[];
  const int D = int(s.D), ldk = D + 1;
  float* Ks = sm;              // (kBK, D+1)
  float* Vs = Ks + kBK * ldk;  // (kBK, D+1)
  float* Qs = Vs + kBK * ldk;  // (kNW, D)
  float* Gs = Qs + kNW * D;    // (kNW, D) dout rows (MODE 1)
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z, kvh = blockIdx.y, rows = s.Tq * s.group;
  const int64_t R0 = int64_t(blockIdx.x) * kNW, R = R0 + w;
  const bool active = R < rows;
  const int64_t i = R / s.group, h = kvh * s.group + R % s.group;
  const int64_t past = s.rpast ? s.rpast[b] : s.past, kb = s.rslot ? s.rslot[b] : b;
  const int64_t limit = past + i;  // last key this row sees
  const int64_t qoff = ((b * s.Tq + i) * s.Hq + h) * s.D;
  const int64_t lrow = (b * s.Hq + h) * s.Tq + i;  // lse / Di index
  if (active)
    for (int d = lane; d < D; d += 32) {
      Qs[w * D + d] = q[qoff + d];
      if (MODE == 1) Gs[w * D + d] = dout[qoff + d];
    }
  float acc[DPL];
  for (int u = 0; u < DPL; ++u) acc[u] = 0.f;
  float m = -INFINITY, l = 0.f;
  const float row_lse = (MODE == 1 && active) ? lse_in[lrow] : 0.f;
  const float row_di = (MODE == 1 && active) ? Di[lrow] : 0.f;
  const int64_t last = min(R0 + kNW, rows) - 1;
  const int64_t kend = past + last / s.group + 1;  // keys [0, kend) are visible to some row of the block
  for (int64_t j0 = 0; j0 < kend; j0 += kBK) {
    const int nk = int(min(int64_t(kBK), kend - j0));
    __syncthreads();  // the previous tile is no longer read; Qs/Gs written
    load_rows(Ks, ldk, k, s, kb, kvh, j0, nk);
    load_rows(Vs, ldk, v, s, kb, kvh, j0, nk);
    __syncthreads();
    if (!active || limit < j0) continue;  // warp-uniform
    const bool valid = lane < nk && j0 + lane <= limit;
    const float sc = valid ? dot(Qs + w * D, Ks + lane * ldk, s.D) * s.scale : -INFINITY;
    float p;
    if (MODE == 0) {
      const float mt = warp_max(sc), mn = fmaxf(m, mt);
      const float corr = m == -INFINITY ? 0.f : expf(m - mn);
      p = valid ? expf(sc - mn) : 0.f;
      l = l * corr + warp_sum(p);
      m = mn;
      for (int u = 0; u < DPL; ++u) acc[u] *= corr;
    } else {
      const float pr = valid ? expf(sc - row_lse) : 0.f;
      const float dp = valid ? dot(Gs + w * D, Vs + lane * ldk, s.D) : 0.f;
      p = pr * (dp - row_di) * s.scale;  // ds
    }
    const float* X = MODE == 0 ? Vs : Ks;
    for (int jj = 0; jj < nk; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      for (int u = 0; u < DPL; ++u) {
        const int d = lane + 32 * u;
        if (d < D) acc[u] += pj * X[jj * ldk + d];
      }
    }
  }
  if (!active) return;
  if (MODE == 0) {
    const float inv = 1.f / l;
    for (int u = 0; u < DPL; ++u) {
      const int d = lane + 32 * u;
      if (d < D) out[qoff + d] = acc[u] * inv;
    }
    if (lse_out && lane == 0) lse_out[lrow] = m + logf(l);
  } else {
    for (int u = 0; u < DPL; ++u) {
      const int d = lane + 32 * u;
      if (d < D) out[qoff + d] = accumulate ? out[qoff + d] + acc[u] : acc[u];
    }
  }
}

// Di[(b, h, i)] = Σ_d dout·out, one warp per row.
__global__ void di_kernel(float* Di, const float* dout, const float* out, Shape s) {
  const int64_t row = int64_t(blockIdx.x) * kNW + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= s.B * s.Hq * s.Tq) return;
  const int64_t i = row % s.Tq, h = (row / s.Tq) % s.Hq, b = row / (s.Tq * s.Hq);
  const int64_t off = ((b * s.Tq + i) * s.Hq + h) * s.D;
  float a = 0.f;
  for (int64_t d = lane; d < s.D; d += 32) a += dout[off + d] * out[off + d];
  a = warp_sum(a);
  if (lane == 0) Di[row] = a;
}

// dk / dv for kBK keys of one (b, kv head); training shapes (T = Tq = Tkv, past = 0).
template <int DPL>
__global__ void __launch_bounds__(kNW * 32)
    dkdv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                const float* lse, const float* Di, Shape s, bool accumulate) {
  extern __shared__ float sm[];
  const int D = int(s.D), ldq = D + 1;
  const int64_t T = s.Tq;
  float* Ks = sm;              // (kBK, D)
  float* Vs = Ks + kBK * D;    // (kBK, D)
  float* Qs = Vs + kBK * D;    // (kBQ, D+1)
  float* Gs = Qs + kBQ * ldq;  // (kBQ, D+1)
  float* Ls = Gs + kBQ * ldq;  // (kBQ) lse
  float* Ds = Ls + kBQ;        // (kBQ) Di
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t b = blockIdx.z, kvh = blockIdx.y, j0 = int64_t(blockIdx.x) * kBK;
  const int nk = int(min(int64_t(kBK), T - j0));
  load_rows(Ks, D, k, s, b, kvh, j0, nk);
  load_rows(Vs, D, v, s, b, kvh, j0, nk);
  float ak[kKPW][DPL], av[kKPW][DPL];
  for (int kk = 0; kk < kKPW; ++kk)
    for (int u = 0; u < DPL; ++u) ak[kk][u] = av[kk][u] = 0.f;
  for (int64_t h = kvh * s.group; h < (kvh + 1) * s.group; ++h) {
    for (int64_t i0 = j0 / kBQ * kBQ; i0 < T; i0 += kBQ) {
      const int nq = int(min(int64_t(kBQ), T - i0));
      __syncthreads();  // previous query tile no longer read (and K/V tile visible on the first pass)
      for (int idx = threadIdx.x; idx < nq * D; idx += blockDim.x) {
        const int r = idx / D, d = idx - r * D;
        const int64_t off = ((b * T + i0 + r) * s.Hq + h) * s.D + d;
        Qs[r * ldq + d] = q[off];
        Gs[r * ldq + d] = dout[off];
      }
      if (threadIdx.x < nq) {
        Ls[threadIdx.x] = lse[(b * s.Hq + h) * T + i0 + threadIdx.x];
        Ds[threadIdx.x] = Di[(b * s.Hq + h) * T + i0 + threadIdx.x];
      }
      __syncthreads();
      for (int kk = 0; kk < kKPW; ++kk) {
        const int jl = w * kKPW + kk;
        const int64_t j = j0 + jl;
        if (jl >= nk || j > i0 + nq - 1) continue;  // warp-uniform: no row of this tile sees key j
        const bool valid = lane < nq && i0 + lane >= j;
        float p = 0.f, ds = 0.f;
        if (valid) {
          const float sc = dot(Qs + lane * ldq, Ks + jl * D, s.D) * s.scale;
          p = expf(sc - Ls[lane]);
          const float dp = dot(Gs + lane * ldq, Vs + jl * D, s.D);
          ds = p * (dp - Ds[lane]) * s.scale;
        }
        for (int r = 0; r < nq; ++r) {
          const float pr = __shfl_sync(0xffffffffu, p, r), dsr = __shfl_sync(0xffffffffu, ds, r);
          for (int u = 0; u < DPL; ++u) {
            const int d = lane + 32 * u;
            if (d < D) {
              av[kk][u] += pr * Gs[r * ldq + d];
              ak[kk][u] += dsr * Qs[r * ldq + d];
            }
          }
        }
      }
    }
  }
  for (int kk = 0; kk < kKPW; ++kk) {
    const int jl = w * kKPW + kk;
    if (jl >= nk) continue;
    const int64_t off = ((b * T + j0 + jl) * s.Hkv + kvh) * s.D;
    for (int u = 0; u < DPL; ++u) {
      const int d = lane + 32 * u;
      if (d >= D) continue;
      dk[off + d] = accumulate ? dk[off + d] + ak[kk][u] : ak[kk][u];
      dv[off + d] = accumulate ? dv[off + d] + av[kk][u] : av[kk][u];
    }
  }
}

template <typename K>
void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    RIFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int DPL, int MODE>
void launch_rows(float* out, float* lse_out, const float* lse_in, const float* q, const float* k, const float* v,
                 const float* dout, const float* Di, const Shape& s, bool accumulate) {
  const size_t smem = sizeof(float) * size_t(2 * kBK * (s.D + 1) + 2 * kNW * s.D);
  auto kern = rows_kernel<DPL, MODE>;
  set_smem(kern, smem);
  // gridDim.z (the batch) is limited to 65535: larger batches go in chunks of kMaxGridZ sequences, every pointer
  // advanced to the chunk's first sequence (the kernel indexes from b = blockIdx.z and never reads s.B); with
  // per-row slots the k / v pointers stay and the slot / past arrays advance instead.
  for (int64_t b0 = 0; b0 < s.B; b0 += kMaxGridZ) {
    const int64_t nb = std::min(kMaxGridZ, s.B - b0);
    const int64_t qo = b0 * s.Tq * s.Hq * s.D, ko = s.rslot ? 0 : b0 * s.Tkv * s.Hkv * s.D, lo = b0 * s.Hq * s.Tq;
    Shape sc = s;
    if (s.rpast) sc.rpast = s.rpast + b0;
    if (s.rslot) sc.rslot = s.rslot + b0;
    const dim3 grid(unsigned((s.Tq * s.group + kNW - 1) / kNW), unsigned(s.Hkv), unsigned(nb));
    kern<<<grid, kNW * 32, smem>>>(out + qo, lse_out ? lse_out + lo : nullptr, lse_in ? lse_in + lo : nullptr, q + qo,
                                   k + ko, v + ko, dout ? dout + qo : nullptr, Di ? Di + lo : nullptr, sc, accumulate);
    RIFT_CUDA_CHECK_LAUNCH();
  }
}

template <int DPL>
void launch_dkdv(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                 const float* lse, const float* Di, const Shape& s, bool accumulate) {
  const size_t smem = sizeof(float) * size_t(2 * kBK * s.D + 2 * kBQ * (s.D + 1) + 2 * kBQ);
  auto kern = dkdv_kernel<DPL>;
  set_smem(kern, smem);
  for (int64_t b0 = 0; b0 < s.B; b0 += kMaxGridZ) {  // gridDim.z <= 65535: chunks of the batch (see launch_rows)
    const int64_t nb = std::min(kMaxGridZ, s.B - b0);
    const int64_t qo = b0 * s.Tq * s.Hq * s.D, ko = b0 * s.Tq * s.Hkv * s.D, lo = b0 * s.Hq * s.Tq;
    const dim3 grid(unsigned((s.Tq + kBK - 1) / kBK), unsigned(s.Hkv), unsigned(nb));
    kern<<<grid, kNW * 32, smem>>>(dk + ko, dv + ko, dout + qo, q + qo, k + ko, v + ko, lse + lo, Di + lo, s,
                                   accumulate);
    RIFT_CUDA_CHECK_LAUNCH();
  }
}

int dims_per_lane(int64_t D) {
  if (D > kMaxHeadDim)
    throw std::runtime_error("cuda attention: head dimension " + std::to_string(D) + " > " +
                             std::to_string(kMaxHeadDim) + " is not supported");
  return D <= 32 ? 1 : D <= 64 ? 2 : D <= 128 ? 4 : 8;
}

template <int MODE>
void dispatch_rows(float* out, float* lse_out, const float* lse_in, const float* q, const float* k, const float* v,
                   const float* dout, const float* Di, const Shape& s, bool accumulate) {
  switch (dims_per_lane(s.D)) {
    case 1: return launch_rows<1, MODE>(out, lse_out, lse_in, q, k, v, dout, Di, s, accumulate);
    case 2: return launch_rows<2, MODE>(out, lse_out, lse_in, q, k, v, dout, Di, s, accumulate);
    case 4: return launch_rows<4, MODE>(out, lse_out, lse_in, q, k, v, dout, Di, s, accumulate);
    default: return launch_rows<8, MODE>(out, lse_out, lse_in, q, k, v, dout, Di, s, accumulate);
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                       int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows) {
  if (B <= 0 || Tq <= 0 || Hq <= 0 || D <= 0) return;
  Shape s{B, Tq, Tkv, past, Hq, Hkv, D, Hq / Hkv, 1.f / std::sqrt(float(D))};
  if (rows) {
    s.rpast = rows->past;
    s.rslot = rows->slot;
  }
  dispatch_rows<0>(out, lse, nullptr, q, k, v, nullptr, nullptr, s, false);
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t D, bool accumulate, float* scratch) {
  if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
  const Shape s{B, T, T, 0, Hq, Hkv, D, Hq / Hkv, 1.f / std::sqrt(float(D))};
  const int dpl = dims_per_lane(D);
  di_kernel<<<unsigned((B * Hq * T + kNW - 1) / kNW), kNW * 32>>>(scratch, dout, out, s);
  RIFT_CUDA_CHECK_LAUNCH();
  dispatch_rows<1>(dq, nullptr, lse, q, k, v, dout, scratch, s, accumulate);
  switch (dpl) {
    case 1: return launch_dkdv<1>(dk, dv, dout, q, k, v, lse, scratch, s, accumulate);
    case 2: return launch_dkdv<2>(dk, dv, dout, q, k, v, lse, scratch, s, accumulate);
    case 4: return launch_dkdv<4>(dk, dv, dout, q, k, v, lse, scratch, s, accumulate);
    default: return launch_dkdv<8>(dk, dv, dout, q, k, v, lse, scratch, s, accumulate);
  }
}

}  // namespace rift::cuda::ops
