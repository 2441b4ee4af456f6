// sm_90 fused loss kernel: one thread-block cluster of C CTAs per row (see loss_rows.cu for the design).
// CTA k of the cluster copies its chunk z[k·chunk, (k+1)·chunk) into shared memory with cp.async, computes its
// partial (m, d, s), publishes it in shared memory; after a cluster barrier every CTA merges the C partials read
// through distributed shared memory (same order everywhere, so every CTA gets the same lse) and writes the
// gradient of its chunk from shared memory. The row is read from DRAM once and written once.
#include <cooperative_groups.h>

#include <algorithm>

#include "cuda/cuda_check.h"
#include "cuda/loss_kernels.cuh"

namespace rift::cuda {
namespace {

constexpr int kMaxClusterThreads = 512;

struct Partial {
  Stats st;
  float zy;  // z[y], from the CTA whose chunk holds y
  int bad;
};

template <typename T, bool kEnt>
__global__ void __launch_bounds__(kMaxClusterThreads) fused_rows_cluster(RowArgs a, int chunk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int n = kVecN<T>;
  extern __shared__ uint4 buf[];  // (chunk / n) this CTA's slice of the row
  __shared__ Partial part;
  __shared__ RowPlan plan;
  const cg::cluster_group cluster = cg::this_cluster();
  const int C = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  const int64_t r = blockIdx.x / C, V = a.V;
  const int64_t v0 = int64_t(rank) * chunk;
  const int64_t len = V - v0 < chunk ? V - v0 : chunk;  // elements in this chunk (the last one may be short)
  const int nv = len > 0 ? int(len / n) : 0;           // vectors in this chunk
  const int32_t y = a.targets[r];
  T* g = a.grad ? static_cast<T*>(a.grad) + r * V + v0 : nullptr;  // (nv·n) this CTA's slice of the grad row
  uint4* gv = reinterpret_cast<uint4*>(g);

  if (y == kIgnore) {  // the whole cluster takes this branch; no shared memory is exchanged
    if (rank == 0 && threadIdx.x == 0) {
      a.lse[r] = a.logp[r] = 0.f;
      if (kEnt) a.entropy[r] = 0.f;
    }
    if (g)
      for (int i = threadIdx.x; i < nv; i += blockDim.x) __stcs(gv + i, make_uint4(0, 0, 0, 0));
    return;
  }

  // 1. chunk -> shared memory (all copies in flight at once), then this thread's partial statistics.
  const uint4* src = reinterpret_cast<const uint4*>(static_cast<const T*>(a.logits) + r * V + v0);  // (nv)
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    const uint32_t dst = uint32_t(__cvta_generic_to_shared(buf + i));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src + i) : "memory");
  }
  asm volatile("cp.async.wait_all;\n" ::: "memory");  // this thread's copies; it reads only those below
  Stats st = empty_stats();
  bool bad = false;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    float x[n];
    unpack(buf[i], x);
    stats_add<kEnt>(st, x, bad);
  }
  st = block_reduce(st, bad);  // ends with __syncthreads: the whole chunk is in shared memory
  if (threadIdx.x == 0) {
    const int64_t k = y - v0;
    part = {st, (k >= 0 && k < int64_t(nv) * n) ? to_f32(reinterpret_cast<const T*>(buf)[k]) : 0.f, int(bad)};
  }
  cluster.sync();  // partials visible cluster-wide; every CTA has finished reading the row from global memory

  // 2. merge the C partials (rank order), plan the row, release the partials.
  if (threadIdx.x == 0) {
    Stats tot = empty_stats();
    int any_bad = 0;
    const int owner = int(y / chunk);
    float zy = 0.f;
    for (int k = 0; k < C; ++k) {
      const Partial* p = cluster.map_shared_rank(&part, k);
      tot = merge(tot, p->st);
      any_bad |= p->bad;
      if (k == owner) zy = p->zy;
    }
    plan = plan_fused_row(a, r, tot, any_bad != 0, zy, rank == 0);  // rank 0 writes the row's outputs
  }
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");  // done reading remote partials
  __syncthreads();
  const RowPlan p = plan;

  // 3. gradient of this chunk from shared memory; the thread that wrote y's vector then overwrites g[y].
  if (p.mode == 1)
    for (int i = threadIdx.x; i < nv; i += blockDim.x) __stcs(gv + i, make_uint4(0, 0, 0, 0));
  if (p.mode == 2) {
    for (int i = threadIdx.x; i < nv; i += blockDim.x) {
      float x[n];
      unpack(buf[i], x);
#pragma unroll
      for (int k = 0; k < n; ++k) x[k] = p.w * exp2f(fmaf(x[k], kLog2e, -p.lse2));
      __stcs(gv + i, pack(x));
    }
    const int64_t k = y - v0;
    if (k >= 0 && k < int64_t(nv) * n && threadIdx.x == (k / n) % blockDim.x) g[k] = from_f32<T>(p.gy);
  }
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");  // nobody reads our partial any more
#endif
}

template <typename T, bool kEnt>
bool launch(const RowArgs& a, size_t max_chunk_bytes, cudaStream_t s) {
  constexpr int n = kVecN<T>;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (a.V % n != 0 || !aligned(a.logits) || !aligned(a.grad)) return false;
  int C = 0;
  int64_t chunk = 0;  // elements per CTA, a multiple of n
  for (int c = 1; c <= 8 && C == 0; c *= 2) {
    const int64_t ch = ((a.V + c - 1) / c + n - 1) / n * n;
    if (size_t(ch) * sizeof(T) <= max_chunk_bytes) C = c, chunk = ch;
  }
  if (C == 0 || a.N * C > INT32_MAX) return false;

  int dev = 0, major = 0, optin = 0;
  RIFT_CUDA_CHECK(cudaGetDevice(&dev));
  RIFT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  RIFT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const auto kernel = fused_rows_cluster<T, kEnt>;
  cudaFuncAttributes fa{};
  RIFT_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
  const size_t smem = size_t(chunk) * sizeof(T);
  // ptxVersion < 90: this binary holds no sm_90 code for the kernel (its body compiled to nothing).
  if (major < 9 || fa.ptxVersion < 90 || smem + fa.sharedSizeBytes > size_t(optin)) return false;
  RIFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));

  const int nv = int(chunk / n);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(a.N * C));
  cfg.blockDim = dim3(nv > 4096 ? 512 : std::min(256, std::max(32, (nv + 31) / 32 * 32)));
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(C), attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess || clusters == 0) {
    (void)cudaGetLastError();
    return false;
  }
  RIFT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, a, int(chunk)));
  return true;
}

}  // namespace

bool launch_fused_cluster(const RowArgs& a, int dtype, size_t max_chunk_bytes, cudaStream_t s) {
  const bool ent = a.entropy != nullptr;
  if (dtype == 0) return ent ? launch<float, true>(a, max_chunk_bytes, s) : launch<float, false>(a, max_chunk_bytes, s);
  return ent ? launch<uint16_t, true>(a, max_chunk_bytes, s) : launch<uint16_t, false>(a, max_chunk_bytes, s);
}

}  // namespace rift::cuda
