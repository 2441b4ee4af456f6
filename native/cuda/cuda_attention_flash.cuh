// Internal to cuda_attention_flash*.cu: the mma.sync wrapper, fragment loads, tile loads and the host helpers the
// forward and backward share. Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4; PTX ISA "Matrix
// Fragments for mma.m16n8k16"):
//   A (16 × 16, row-major): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16 × 8, k × n):      b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16 × 8, fp32):       c0, c1 = (g, 2t), (g, 2t+1);  c2, c3 = (g+8, 2t), (g+8, 2t+1)
// Two C tiles side by side (16 × 16) are, after rounding to bf16 pairs, exactly one A fragment: how P̃ and dS̃ go
// from one product into the next without shared memory.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/ops_attention_flash.h"
#include "cuda/cuda_check.h"

namespace rift::cuda::flash_detail {

using bf16 = __nv_bfloat16;
using rift::flash::kMmaK;
using rift::flash::kTileK;
using rift::flash::kTileQ;
using rift::flash::kWarps;
constexpr int kThreads = kWarps * 32;
constexpr int64_t kMaxGridZ = 65535;

// A kernel that cannot be configured or launched on this device (nothing ran): the engine's hook falls back.
struct LaunchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  const float *q, *k, *v, *dout, *out, *lse_in, *di;
  float *o, *lse, *dq, *dk, *dv;
  int64_t Tq, Tkv, past, Hq, Hkv, G;
  float scale;
  bool accumulate;
};

// d (16 × 8 fp32) += a (16 × 16 bf16) · b (16 × 8 bf16), fp32 accumulation.
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two bf16 (lo at the lower column) in one register, rounded to nearest even.
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }
__device__ __forceinline__ float bfround(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// A fragment of rows [r0, r0 + 16), columns [c0, c0 + 16) of a bf16 row-major tile with pitch p.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* s, int p, int r0, int c0) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const bf16* x = s + (r0 + g) * p + c0 + 2 * t;
  a[0] = ld32(x);
  a[1] = ld32(x + 8 * p);
  a[2] = ld32(x + 8);
  a[3] = ld32(x + 8 * p + 8);
}
// B fragment (k × n = 16 × 8) from a tile stored n-major: element (k, n) at s[(n0 + n)·p + k0 + k].
__device__ __forceinline__ void load_b(uint32_t& b0, uint32_t& b1, const bf16* s, int p, int n0, int k0) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const bf16* x = s + (n0 + g) * p + k0 + 2 * t;
  b0 = ld32(x);
  b1 = ld32(x + 8);
}
// The A fragment of C tiles c[n] (columns 8n..) and c[n + 1] rounded to bf16.
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
  a[0] = pack(lo[0], lo[1]);
  a[1] = pack(lo[2], lo[3]);
  a[2] = pack(hi[0], hi[1]);
  a[3] = pack(hi[2], hi[3]);
}

// Rows [r0, r0 + rows) of an fp32 tensor (row r at src + r·stride, D contiguous floats, 16-byte aligned) into a bf16
// tile: dst[r·p + d] (row-major), or dst[d·p + r] when TRANS. Rows at or past rend are zero. Consecutive threads
// take consecutive float4 of a row (coalesced), or for TRANS consecutive rows (so that their 2-byte stores share
// banks pairwise instead of striding by p).
template <int D, bool TRANS>
__device__ void load_tile(bf16* dst, int p, const float* src, int64_t stride, int64_t r0, int64_t rend, int rows) {
  for (int idx = threadIdx.x; idx < rows * (D / 4); idx += blockDim.x) {
    const int r = TRANS ? idx % rows : idx / (D / 4), c = TRANS ? idx / rows * 4 : (idx - r * (D / 4)) * 4;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r0 + r < rend) x = *reinterpret_cast<const float4*>(src + (r0 + r) * stride + c);
    if (TRANS) {
      dst[(c + 0) * p + r] = __float2bfloat16_rn(x.x);
      dst[(c + 1) * p + r] = __float2bfloat16_rn(x.y);
      dst[(c + 2) * p + r] = __float2bfloat16_rn(x.z);
      dst[(c + 3) * p + r] = __float2bfloat16_rn(x.w);
    } else {
      *reinterpret_cast<uint32_t*>(dst + r * p + c) = pack(x.x, x.y);
      *reinterpret_cast<uint32_t*>(dst + r * p + c + 2) = pack(x.z, x.w);
    }
  }
}

// Host: the launch of the last kernel, as a LaunchError (nothing ran) when it was refused.
inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw LaunchError(std::string("CUDA error ") + std::to_string(int(e)) + " (" + cudaGetErrorName(e) +
                      ") launching " + what);
  if (sync_checks()) RIFT_CUDA_CHECK(cudaDeviceSynchronize());
}

// Host: makes `kernel` launchable with `smem` bytes of dynamic shared memory, or throws LaunchError.
template <typename K>
void configure(K kernel, size_t smem, const char* what) {
  cudaFuncAttributes attr;
  cudaError_t e = cudaFuncGetAttributes(&attr, kernel);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw LaunchError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + std::to_string(smem) +
                      " bytes of shared memory)");
  }
}

// Host: throws LaunchError unless the current device is sm_80+ and D is instantiated.
void require_device(int64_t D);

void forward(const Args& a, int64_t B, int64_t D);
void backward(const Args& a, int64_t B, int64_t D);
// Configures every kernel of the pass (LaunchError when one cannot run): called before anything is written.
void prepare_forward(int64_t D);
void prepare_backward(int64_t D);

}  // namespace rift::cuda::flash_detail
