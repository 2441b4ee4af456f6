// fp32 → bf16 conversions of the bf16 attention (cuda_attention_convert.h). 2-D grids: a batch row (or a
// head row) per blockIdx.y, its elements on x, so no element index is divided; 4 elements per thread (one float4
// load, two bf16x2 stores) when the sizes, strides and pointers allow it, else one.
#include <algorithm>
#include <cstdint>

#include "cuda/cuda_attention_convert.h"
#include "cuda/cuda_check.h"

namespace rift::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 256;

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

__device__ __forceinline__ void store4(bf16* d, float4 f) {
  reinterpret_cast<__nv_bfloat162*>(d)[0] = __floats2bfloat162_rn(f.x, f.y);
  reinterpret_cast<__nv_bfloat162*>(d)[1] = __floats2bfloat162_rn(f.z, f.w);
}

// Row b (blockIdx.y, striding by gridDim.y) of n elements: source row slot ? slot[b] : b; elements at or past
// live(b) = past ? min(n, (past[b] + Tq)·w) : n are written as 0 and not read. VEC: n, sstride and live are
// multiples of 4, src 16-byte and dst 8-byte aligned (checked by the launcher).
template <bool VEC>
__global__ void rows_kernel(bf16* dst, const float* src, int64_t B, int64_t n, int64_t sstride, const int32_t* past,
                            const int32_t* slot, int64_t Tq, int64_t w) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x * (VEC ? 4 : 1);
  const int64_t first = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * (VEC ? 4 : 1);
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    const int64_t want = past ? (int64_t(past[b]) + Tq) * w : n, live = want < n ? want : n;
    const float* s = src + (slot ? int64_t(slot[b]) : b) * sstride;
    bf16* d = dst + b * n;
    for (int64_t x = first; x < n; x += step) {
      if constexpr (VEC) {
        store4(d + x, x < live ? *reinterpret_cast<const float4*>(s + x) : make_float4(0.f, 0.f, 0.f, 0.f));
      } else {
        d[x] = __float2bfloat16(x < live ? s[x] : 0.f);
      }
    }
  }
}

void launch_rows(bf16* dst, const float* src, int64_t B, int64_t n, int64_t sstride, const int32_t* past,
                 const int32_t* slot, int64_t Tq, int64_t w, const char* what) {
  if (B <= 0 || n <= 0) return;
  const bool vec = n % 4 == 0 && sstride % 4 == 0 && (!past || w % 4 == 0) && aligned(src, 16) && aligned(dst, 8);
  const int64_t per_thread = vec ? 4 : 1;
  const int64_t bx = std::min<int64_t>((n / per_thread + kThreads - 1) / kThreads, 65535);
  const dim3 grid(unsigned(std::max<int64_t>(bx, 1)), unsigned(std::min<int64_t>(B, 65535)));
  if (vec)
    rows_kernel<true><<<grid, kThreads>>>(dst, src, B, n, sstride, past, slot, Tq, w);
  else
    rows_kernel<false><<<grid, kThreads>>>(dst, src, B, n, sstride, past, slot, Tq, w);
  check_launch(what);
}

// One head row (b, t, h) per blockIdx.y step; its D elements on x (4 per thread when VEC: D % 4 == 0, aligned).
template <bool VEC>
__global__ void chunked_kernel(bf16* dst, const float* src, int64_t B, int64_t T, int64_t Hq, int64_t D, int64_t R) {
  const int64_t rows = B * T * Hq;
  const int64_t step = int64_t(gridDim.x) * blockDim.x * (VEC ? 4 : 1);
  const int64_t first = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * (VEC ? 4 : 1);
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t h = row % Hq, bt = row / Hq, b = bt / T, t = bt - b * T;  // once per row, not per element
    const int64_t r0 = t / R * R, r = R < T - r0 ? R : T - r0;
    bf16* d = dst + (r0 * B * Hq + (b * Hq + h) * r + (t - r0)) * D;
    const float* s = src + row * D;
    for (int64_t x = first; x < D; x += step) {
      if constexpr (VEC)
        store4(d + x, *reinterpret_cast<const float4*>(s + x));
      else
        d[x] = __float2bfloat16(s[x]);
    }
  }
}

}  // namespace

void to_bf16_rows(bf16* dst, const float* src, int64_t B, int64_t n, int64_t sstride) {
  launch_rows(dst, src, B, n, sstride, nullptr, nullptr, 0, 0, "to_bf16");
}

void kv_to_bf16_rows(bf16* dst, const float* src, int64_t B, int64_t L, int64_t w, int64_t sstride, const KvRows& rows,
                     int64_t Tq) {
  launch_rows(dst, src, B, L * w, sstride, rows.past, rows.slot, Tq, w, "to_bf16 (KV cache rows)");
}

void to_bf16_chunked(bf16* dst, const float* src, int64_t B, int64_t T, int64_t Hq, int64_t D, int64_t R) {
  const int64_t rows = B * T * Hq;
  if (rows <= 0 || D <= 0) return;
  const bool vec = D % 4 == 0 && aligned(src, 16) && aligned(dst, 8);
  const int64_t per_thread = vec ? 4 : 1;
  const dim3 grid(unsigned(std::min<int64_t>((D / per_thread + 127) / 128, 65535)),
                  unsigned(std::min<int64_t>(rows, 65535)));
  if (vec)
    chunked_kernel<true><<<grid, 128>>>(dst, src, B, T, Hq, D, R);
  else
    chunked_kernel<false><<<grid, 128>>>(dst, src, B, T, Hq, D, R);
  check_launch("to_bf16 (chunked head-major)");
}

}  // namespace rift::cuda
