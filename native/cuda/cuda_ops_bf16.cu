// Operand rounding for the CUDA backend's BF16 instance (cuda_ops(DType::BF16)): a strided fp32 matrix becomes a
// contiguous bfloat16 matrix that cublasGemmEx reads as CUDA_R_16BF. The rounding is the CPU twin's bit for bit
// (cpu/vmath.h f32_to_bf16, lib/kernels/bf16.ts): round to nearest even on the bit pattern, NaN stays NaN
// (quietened, sign kept), subnormals rounded like any other value (no flush: integer math, so --use_fast_math
// cannot change it).
#include <cuda_bf16.h>

#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

static_assert(sizeof(__nv_bfloat16) == sizeof(uint16_t), "bf16 is carried as its 16-bit pattern");

__device__ __forceinline__ uint16_t f32_to_bf16_rne(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

__global__ void round_bf16_kernel(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  const int64_t n = rows * cols;
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const int64_t r = i / cols, c = i - r * cols;
    dst[i] = f32_to_bf16_rne(src[r * ld + c]);
  }
}

__global__ void from_bf16_kernel(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) dst[i] = __uint_as_float(uint32_t(src[i]) << 16);
}

}  // namespace

void from_bf16(float* dst, const uint16_t* src, int64_t n) {
  if (n <= 0) return;
  from_bf16_kernel<<<flat_blocks(n), kThreads>>>(dst, src, n);
  RIFT_CUDA_CHECK_LAUNCH();
}

void round_bf16(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  round_bf16_kernel<<<flat_blocks(rows * cols), kThreads>>>(dst, src, rows, cols, ld);
  RIFT_CUDA_CHECK_LAUNCH();
}

}  // namespace rift::cuda::ops
