// Operand rounding for the CUDA backend's BF16 instance (cuda_ops(DType::BF16)): a strided fp32 matrix becomes a
// contiguous bfloat16 matrix that cublasGemmEx reads as CUDA_R_16BF, and the exact widening back. The rounding is
// the CPU twin's bit for bit (cpu/vmath.h f32_to_bf16, lib/kernels/bf16.ts; f32_to_bf16_rne in
// cuda_ops_common.cuh).
//
// Both kernels are bandwidth-bound: 2-D grids (rows on y, columns on x, no 64-bit division per element) and
// four elements per thread per step — one 16-byte fp32 load, one 8-byte bf16 store — where the row starts and
// the strides are aligned; element by element otherwise. A contiguous matrix is treated as one long row.
#include <cuda_bf16.h>

#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

static_assert(sizeof(__nv_bfloat16) == sizeof(uint16_t), "bf16 is carried as its 16-bit pattern");

constexpr int kVec = 4;

// Blocks: y covers rows (grid-stride past 65535), x covers a row's columns in steps of kThreads·kVec; together
// at most ~16 blocks per SM-worth of work, the loops stride over the rest.
dim3 grid2(int64_t rows, int64_t cols) {
  const int64_t per_block = int64_t(kThreads) * kVec;
  const int64_t gy = std::min<int64_t>(rows, 65535);
  const int64_t want_x = (cols + per_block - 1) / per_block;
  const int64_t cap_x = std::max<int64_t>(1, 4096 / gy);
  return dim3(unsigned(std::max<int64_t>(1, std::min(want_x, cap_x))), unsigned(gy));
}

__global__ void round_bf16_kernel(uint16_t* __restrict__ dst, const float* __restrict__ src, int64_t rows, int64_t cols,
                                  int64_t ld, bool vec) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x * kVec;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* s = src + r * ld;
    uint16_t* d = dst + r * cols;
    for (int64_t c = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * kVec; c < cols; c += step) {
      if (vec && c + kVec <= cols) {
        const float4 x = *reinterpret_cast<const float4*>(s + c);
        uint2 o;
        o.x = uint32_t(f32_to_bf16_rne(x.x)) | (uint32_t(f32_to_bf16_rne(x.y)) << 16);
        o.y = uint32_t(f32_to_bf16_rne(x.z)) | (uint32_t(f32_to_bf16_rne(x.w)) << 16);
        *reinterpret_cast<uint2*>(d + c) = o;
      } else {
        for (int64_t k = c; k < c + kVec && k < cols; ++k) d[k] = f32_to_bf16_rne(s[k]);
      }
    }
  }
}

__global__ void from_bf16_kernel(float* __restrict__ dst, const uint16_t* __restrict__ src, int64_t n, bool vec) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x * kVec;
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * kVec; i < n; i += step) {
    if (vec && i + kVec <= n) {
      const uint2 x = *reinterpret_cast<const uint2*>(src + i);
      float4 o;
      o.x = __uint_as_float(x.x << 16);
      o.y = __uint_as_float(x.x & 0xffff0000u);
      o.z = __uint_as_float(x.y << 16);
      o.w = __uint_as_float(x.y & 0xffff0000u);
      *reinterpret_cast<float4*>(dst + i) = o;
    } else {
      for (int64_t k = i; k < i + kVec && k < n; ++k) dst[k] = __uint_as_float(uint32_t(src[k]) << 16);
    }
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void from_bf16(float* dst, const uint16_t* src, int64_t n) {
  if (n <= 0) return;
  const bool vec = aligned(dst, 16) && aligned(src, 8);
  from_bf16_kernel<<<grid2(1, n).x, kThreads>>>(dst, src, n, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void round_bf16(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  if (ld == cols) {  // contiguous: one row of rows·cols elements
    cols *= rows;
    rows = 1;
  }
  // Every row start is 16-byte aligned in src (ld·4 bytes apart) and 8-byte aligned in dst (cols·2 bytes apart).
  const bool vec = aligned(src, 16) && aligned(dst, 8) && (rows == 1 || (ld % 4 == 0 && cols % 4 == 0));
  round_bf16_kernel<<<grid2(rows, cols), kThreads>>>(dst, src, rows, cols, ld, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

}  // namespace rift::cuda::ops
