// Σ x² in double on the GPU in the fixed order of backends/sumsq_order.h — the CPU twin's (cpu/ops_misc.cc) — so the
// result is identical run to run, whatever the alignment, and equal to the CPU's bit for bit. One block per chunk
// of 4096 elements (thread j = lane j), then one block reduces the chunk sums on the device: only the final double
// is copied to the host.
#include "backends/sumsq_order.h"
#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

namespace so = rift::sumsq_order;
static_assert(so::kLanes == kThreads && so::kGroup == 32, "one thread per lane, one warp per lane group");

__device__ __forceinline__ double sq(float x) { return __dmul_rn(double(x), double(x)); }

// The lane tree of step 2: a warp butterfly (the same pairs as halving, commuted), then the 8 warp sums by a
// butterfly over warp 0 whose lanes 8..31 hold +0 (adding it changes nothing). Every thread passes s; the total is
// returned to thread 0.
__device__ double lane_tree(double s) {
  __shared__ double red[so::kLanes / so::kGroup];
  s = warp_sum_d(s);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
  __syncthreads();
  double t = 0.0;
  if (threadIdx.x < 32) {
    t = threadIdx.x < so::kLanes / so::kGroup ? red[threadIdx.x] : 0.0;
    t = warp_sum_d(t);
  }
  return t;
}

// Block c: chunk c; thread j adds its elements r·1024 + 4j + k (r, k < 4) in (r, k) order. vec: x 16-byte aligned.
__global__ void sumsq_chunk_kernel(const float* __restrict__ x, int64_t n, double* __restrict__ part, bool vec) {
  const int64_t base = int64_t(blockIdx.x) * so::kChunk, len = min(so::kChunk, n - base);
  const float* p = x + base;
  double s = 0.0;
  for (int r = 0; r < 4; ++r) {
    const int64_t l = r * so::kStride + 4 * int64_t(threadIdx.x);
    if (vec && l + 4 <= len) {
      const float4 v = *reinterpret_cast<const float4*>(p + l);
      s = __dadd_rn(s, sq(v.x));
      s = __dadd_rn(s, sq(v.y));
      s = __dadd_rn(s, sq(v.z));
      s = __dadd_rn(s, sq(v.w));
    } else {
      for (int k = 0; k < 4; ++k)
        if (l + k < len) s = __dadd_rn(s, sq(p[l + k]));
    }
  }
  s = lane_tree(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// One block: lane j adds part[j], part[j + 256], ... in order, then the lane tree; writes the total to *out.
__global__ void sumsq_final_kernel(const double* __restrict__ part, int64_t chunks, double* __restrict__ out) {
  double s = 0.0;
  for (int64_t c = threadIdx.x; c < chunks; c += so::kLanes) s = __dadd_rn(s, part[c]);
  s = lane_tree(s);
  if (threadIdx.x == 0) *out = s;
}

}  // namespace

int64_t sumsq_scratch(int64_t n) { return (n + so::kChunk - 1) / so::kChunk + 1; }

double sumsq(const float* x, int64_t n, double* scratch) {
  if (n <= 0) return 0.0;
  const int64_t chunks = (n + so::kChunk - 1) / so::kChunk;
  if (chunks > int64_t(0x7fffffff)) throw std::runtime_error("cuda sumsq: n = " + std::to_string(n) + " is too large");
  const bool vec = reinterpret_cast<uintptr_t>(x) % 16 == 0;
  sumsq_chunk_kernel<<<unsigned(chunks), so::kLanes>>>(x, n, scratch, vec);
  RIFT_CUDA_CHECK_LAUNCH();
  sumsq_final_kernel<<<1, so::kLanes>>>(scratch, chunks, scratch + chunks);
  RIFT_CUDA_CHECK_LAUNCH();
  double s = 0.0;
  RIFT_CUDA_CHECK(cudaMemcpy(&s, scratch + chunks, sizeof s, cudaMemcpyDeviceToHost));
  return s;
}

}  // namespace rift::cuda::ops
