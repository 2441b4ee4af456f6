// RMSNorm and RoPE on the GPU (semantics in model/ops.h; CPU twin cpu/ops_norm_rope.cc).
// RMSNorm: one block per row, fp32 sums (as the CPU twin), IEEE division and sqrt (the build uses fast math).
// dweight is a deterministic two-pass column reduction over tokens (double partials, fixed order).
// RoPE: inv_freq comes from the host, computed exactly as the CPU twin does; the angle is float(pos)·inv_freq
// rounded to fp32 and its cos/sin are evaluated in double, then rounded to fp32 (the CPU table does the same).
#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

constexpr int kNormThreads = 256;

// Sum over the block (kNormThreads threads); every thread gets the result. red: kNormThreads / 32 floats.
__device__ float block_sum(float x, float* red) {
  x = warp_sum(x);
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // red may still be read by a previous call
  if (lane == 0) red[w] = x;
  __syncthreads();
  float t = lane < kNormThreads / 32 ? red[lane] : 0.f;
  return warp_sum(t);
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(uint16_t* p, float v) { *p = f32_to_bf16_rne(v); }

// Out: float, or a bf16 bit pattern rounded from the same fp32 value (rmsnorm_forward_bf16 = to_bf16 ∘ forward).
template <class Out>
__global__ void rmsnorm_forward_kernel(Out* out, float* rstd, const float* inp, const float* weight, int64_t C,
                                       float eps) {
  __shared__ float red[kNormThreads / 32];
  const int64_t t = blockIdx.x;
  const float* x = inp + t * C;
  Out* o = out + t * C;  // may alias x (fp32): every x is read by the reduction before any o is written
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  ss = block_sum(ss, red);
  const float r = __frcp_rn(__fsqrt_rn(__fadd_rn(__fdiv_rn(ss, float(C)), eps)));
  if (threadIdx.x == 0) rstd[t] = r;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) store(o + c, __fmul_rn(weight[c], __fmul_rn(x[c], r)));
}

// partial[p][c] = Σ_{t in part p} dout[t][c]·(inp[t][c]·rstd[t]) in double.
__global__ void rms_dweight_partial_kernel(double* partial, const float* dout, const float* inp, const float* rstd,
                                           int64_t T, int64_t C, int64_t rpp) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int64_t t0 = int64_t(blockIdx.y) * rpp, t1 = min(T, t0 + rpp);
  double a = 0.0;
  for (int64_t t = t0; t < t1; ++t) a += double(dout[t * C + c] * (inp[t * C + c] * rstd[t]));
  partial[int64_t(blockIdx.y) * C + c] = a;
}

// dinp = r·(g·w − xhat·mean(g·w·xhat)); dinp may alias dout (read by the reduction, then element by element).
__global__ void rmsnorm_backward_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                        const float* rstd, int64_t C, bool accumulate) {
  __shared__ float red[kNormThreads / 32];
  const int64_t t = blockIdx.x;
  const float* g = dout + t * C;
  const float* x = inp + t * C;
  float* d = dinp + t * C;
  const float r = rstd[t];
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += g[c] * weight[c] * (x[c] * r);
  s = block_sum(s, red);
  const float m = __fdiv_rn(s, float(C));
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float v = r * (g[c] * weight[c] - (x[c] * r) * m);
    d[c] = accumulate ? d[c] + v : v;
  }
}

// One thread per (token, frequency i); loops over heads. Forward: o1 = x1·c − x2·s, o2 = x2·c + x1·s; the
// inverse (backward) rotates by −angle. out may alias inp (each pair is read before it is written).
__global__ void rope_kernel(float* out, const float* inp, const int32_t* pos, const float* inv_freq, int64_t T,
                            int64_t H, int64_t D, float sgn, bool accumulate) {
  const int64_t half = D / 2, n = T * half;
  for (int64_t idx = flat_index(); idx < n; idx += flat_stride()) {
    const int64_t t = idx / half, i = idx - t * half;
    const float a = float(pos[t]) * inv_freq[i];
    double sd, cd;
    sincos(double(a), &sd, &cd);
    const float c = float(cd), s = sgn * float(sd);
    for (int64_t h = 0; h < H; ++h) {
      const float* x = inp + (t * H + h) * D;
      float* o = out + (t * H + h) * D;
      const float x1 = x[i], x2 = x[i + half];
      const float o1 = x1 * c - x2 * s, o2 = x2 * c + x1 * s;
      if (accumulate) {
        o[i] += o1;
        o[i + half] += o2;
      } else {
        o[i] = o1;
        o[i + half] = o2;
      }
    }
  }
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps) {
  if (T <= 0) return;
  rmsnorm_forward_kernel<<<unsigned(T), kNormThreads>>>(out, rstd, inp, weight, C, eps);
  RIFT_CUDA_CHECK_LAUNCH();
}

void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                          float eps) {
  if (T <= 0) return;
  rmsnorm_forward_kernel<<<unsigned(T), kNormThreads>>>(out, rstd, inp, weight, C, eps);
  RIFT_CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t T, int64_t C, bool accumulate, double* scratch) {
  if (T <= 0 || C <= 0) return;
  if (dweight) {  // first: dinp may alias dout
    const int64_t rpp = colsum_rows_per_part(T, C), P = (T + rpp - 1) / rpp;
    const unsigned cb = unsigned((C + kThreads - 1) / kThreads);
    rms_dweight_partial_kernel<<<dim3(cb, unsigned(P)), kThreads>>>(scratch, dout, inp, rstd, T, C, rpp);
    RIFT_CUDA_CHECK_LAUNCH();
    colsum_finish(dweight, scratch, P, C);
  }
  if (!dinp) return;
  rmsnorm_backward_kernel<<<unsigned(T), kNormThreads>>>(dinp, dout, inp, weight, rstd, C, accumulate);
  RIFT_CUDA_CHECK_LAUNCH();
}

void rope(float* out, const float* inp, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H, int64_t D,
          bool inverse, bool accumulate) {
  if (T <= 0 || H <= 0 || D < 2) return;
  rope_kernel<<<flat_blocks(T * (D / 2)), kThreads>>>(out, inp, pos, inv_freq, T, H, D, inverse ? -1.f : 1.f,
                                                      accumulate);
  RIFT_CUDA_CHECK_LAUNCH();
}

}  // namespace rift::cuda::ops
