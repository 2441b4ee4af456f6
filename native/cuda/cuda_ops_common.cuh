// Internal helpers shared by the cuda_ops_*.cu kernels.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/cuda_check.h"

namespace rift::cuda::ops {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (capped; the loops stride over the rest).
inline unsigned flat_blocks(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(b, int64_t(1) << 20)));
}

// A 2-D grid over a (rows, cols) problem: y covers rows (kernels loop past 65535 with a stride of gridDim.y), x
// covers a row's columns in steps of threads·per_thread (kernels loop past it); at most ~4096 blocks in all.
inline dim3 row_grid(int64_t rows, int64_t cols, int per_thread = 1, int threads = kThreads) {
  const int64_t per_block = int64_t(threads) * per_thread;
  const int64_t gy = std::max<int64_t>(1, std::min<int64_t>(rows, 65535));
  const int64_t want_x = (cols + per_block - 1) / per_block;
  const int64_t cap_x = std::max<int64_t>(1, 4096 / gy);
  return dim3(unsigned(std::max<int64_t>(1, std::min(want_x, cap_x))), unsigned(gy));
}

__device__ __forceinline__ int64_t flat_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t flat_stride() { return int64_t(gridDim.x) * blockDim.x; }

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ double warp_sum_d(double x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// fp32 → bf16 bit pattern, round to nearest even; NaN stays NaN (quietened, sign kept); subnormals rounded like any
// other value. Integer math, so --use_fast_math cannot change it; the CPU twin is cpu/vmath.h f32_to_bf16.
__device__ __forceinline__ uint16_t f32_to_bf16_rne(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// The build uses --use_fast_math: divisions, square roots and 1/x that must match the CPU go through the
// IEEE round-to-nearest intrinsics below.
__device__ __forceinline__ float sigmoid_rn(float x) { return __frcp_rn(__fadd_rn(1.f, expf(-x))); }

}  // namespace rift::cuda::ops
