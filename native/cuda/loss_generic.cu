// Generic loss row kernels (every arch, any V, any alignment); see loss_rows.cu for the design.
// One block per row. Fused pass: read the row once for the online-softmax statistics, block-reduce, then read it
// again (from L2 when it is still there) to write the gradient. Grad pass: one read, one write.
#include "cuda/cuda_check.h"
#include "cuda/loss_kernels.cuh"

namespace rift::cuda {
namespace {

int threads_for(int64_t V) {
  if (V <= 4096) return 128;
  if (V <= 16384) return 256;
  if (V <= 65536) return 512;
  return 1024;
}

template <typename T, bool kVec>
__device__ __forceinline__ void zero_row(T* g, int64_t V) {  // g: (V)
  if (kVec) {
    uint4* gv = reinterpret_cast<uint4*>(g);
    for (int64_t i = threadIdx.x; i < V / kVecN<T>; i += blockDim.x) __stcs(gv + i, make_uint4(0, 0, 0, 0));
  } else {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) g[i] = T(0);
  }
}

// g = w·2^(z·log2e − lse2) over the row; then the thread that wrote the target's vector overwrites g[y] with gy
// (same thread, program order). Each element is read before it is written, so g may equal row.
template <typename T, bool kVec>
__device__ __forceinline__ void write_grad(const T* row, T* g, int64_t V, int32_t y, const RowPlan& p) {
  constexpr int n = kVecN<T>;
  if (kVec) {
    const uint4* rv = reinterpret_cast<const uint4*>(row);  // (V / n)
    uint4* gv = reinterpret_cast<uint4*>(g);                // (V / n)
    for (int64_t i = threadIdx.x; i < V / n; i += blockDim.x) {
      float x[n];
      __stcs(gv + i, grad_vec(__ldcs(rv + i), p, x));
    }
    if (threadIdx.x == (y / n) % blockDim.x) g[y] = from_f32<T>(p.gy);
  } else {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
      g[i] = from_f32<T>(i == y ? p.gy : p.w * exp2f(fmaf(to_f32(row[i]), kLog2e, -p.lse2)));
  }
}

// grid (N), block threads_for(V). kVec: rows are 16-byte aligned (V·size % 16 == 0, aligned base pointers).
template <typename T, bool kVec, bool kEnt>
__global__ void __launch_bounds__(1024) fused_rows_generic(RowArgs a) {
  __shared__ RowPlan plan;
  const int64_t r = blockIdx.x, V = a.V;
  const int32_t y = a.targets[r];
  const T* row = static_cast<const T*>(a.logits) + r * V;     // (V)
  T* g = a.grad ? static_cast<T*>(a.grad) + r * V : nullptr;  // (V)
  if (y == kIgnore) {
    if (threadIdx.x == 0) {
      a.lse[r] = a.logp[r] = 0.f;
      if (kEnt) a.entropy[r] = 0.f;
    }
    if (g) zero_row<T, kVec>(g, V);
    return;
  }
  const float zy = threadIdx.x == 0 ? to_f32(row[y]) : 0.f;
  Stats st = empty_stats();
  float probe = 0.f;
  if (kVec) {
    const uint4* rv = reinterpret_cast<const uint4*>(row);  // (V / n)
    st = thread_stats<T, kEnt>(
        V / kVecN<T>, blockDim.x, [&](int64_t i) { return rv[i]; }, [](int64_t, const uint4&) {}, probe);
  } else {
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
      const float x[1] = {to_f32(row[i])};
      stats_add<kEnt>(st, x, probe);
    }
  }
  bool bad = probe_bad(probe);
  st = block_reduce(st, bad);  // all reads of pass 1 are done past this point
  if (threadIdx.x == 0) plan = plan_fused_row(a, r, st, bad, zy, true);
  __syncthreads();
  const RowPlan p = plan;
  if (p.mode == 1) zero_row<T, kVec>(g, V);
  if (p.mode == 2) write_grad<T, kVec>(row, g, V, y, p);
}

// Grad pass: g = w·(softmax − onehot) from the stored lse and logp. grid (N), block threads_for(V).
template <typename T, bool kVec>
__global__ void __launch_bounds__(1024) grad_rows_generic(RowArgs a) {
  const int64_t r = blockIdx.x, V = a.V;
  const int32_t y = a.targets[r];
  const T* row = static_cast<const T*>(a.logits) + r * V;  // (V)
  T* g = static_cast<T*>(a.grad) + r * V;                  // (V)
  const float w = y == kIgnore ? 0.f : a.weight[r];
  if (w == 0.f) {
    zero_row<T, kVec>(g, V);
    return;
  }
  const RowPlan p = make_plan(a.lse[r] * kLog2e, w, w * expm1f(a.logp[r]));
  write_grad<T, kVec>(row, g, V, y, p);
}

bool vec_ok(const RowArgs& a, size_t size) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (a.V * int64_t(size)) % 16 == 0 && aligned(a.logits) && aligned(a.grad);
}

template <typename T>
void fused(const RowArgs& a, cudaStream_t s) {
  const dim3 grid(unsigned(a.N)), block(threads_for(a.V));
  const bool vec = vec_ok(a, sizeof(T)), ent = a.entropy != nullptr;
  if (vec && ent) fused_rows_generic<T, true, true><<<grid, block, 0, s>>>(a);
  if (vec && !ent) fused_rows_generic<T, true, false><<<grid, block, 0, s>>>(a);
  if (!vec && ent) fused_rows_generic<T, false, true><<<grid, block, 0, s>>>(a);
  if (!vec && !ent) fused_rows_generic<T, false, false><<<grid, block, 0, s>>>(a);
  RIFT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void grad(const RowArgs& a, cudaStream_t s) {
  const dim3 grid(unsigned(a.N)), block(threads_for(a.V));
  if (vec_ok(a, sizeof(T)))
    grad_rows_generic<T, true><<<grid, block, 0, s>>>(a);
  else
    grad_rows_generic<T, false><<<grid, block, 0, s>>>(a);
  RIFT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_fused_generic(const RowArgs& a, int dtype, cudaStream_t s) {
  dtype == 0 ? fused<float>(a, s) : fused<uint16_t>(a, s);
}
void launch_grad_generic(const RowArgs& a, int dtype, cudaStream_t s) {
  dtype == 0 ? grad<float>(a, s) : grad<uint16_t>(a, s);
}

}  // namespace rift::cuda
