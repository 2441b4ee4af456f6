// sm_90 fused loss kernel: one thread-block cluster of C CTAs per row (see loss_rows.cu for the design).
// CTA k of the cluster owns chunk k of the row, z[k·chunk, (k+1)·chunk). It streams its chunk from global memory
// into registers (online-softmax partial statistics (m, d, s)) and keeps a copy in shared memory; publishes its
// partial; after a cluster barrier merges the C partials read through distributed shared memory (rank order, so
// every CTA gets the same lse); then writes the gradient of its chunk from shared memory. So the row is read from
// DRAM once and written once, and CTAs of other rows on the same SM overlap their loads with this one's math.
#include <cooperative_groups.h>

#include <algorithm>

#include "cuda/cuda_check.h"
#include "cuda/loss_kernels.cuh"

namespace rift::cuda {
namespace {

constexpr int kMaxClusterThreads = 1024;

struct Partial {
  Stats st;
  float zy;  // z[y], from the CTA whose chunk holds y
  int bad;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // (only the sm_90 kernel body uses them)
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release;\n" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory"); }
#endif

// grid (N·C), cluster (C), dynamic shared memory chunk elements; chunk: elements per CTA, a multiple of 128 bytes.
template <typename T, bool kEnt>
__global__ void __launch_bounds__(kMaxClusterThreads) fused_rows_cluster(RowArgs a, int chunk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int n = kVecN<T>;
  extern __shared__ uint4 smem[];  // (chunk / n)
  __shared__ Partial part;
  __shared__ RowPlan plan;
  const cg::cluster_group cluster = cg::this_cluster();
  const int C = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  const int64_t r = blockIdx.x / C, V = a.V;
  const int64_t v0 = int64_t(rank) * chunk;
  const int64_t len = V - v0 < chunk ? V - v0 : chunk;
  const int nv = len > 0 ? int(len / n) : 0;
  const int32_t y = a.targets[r];
  T* g = a.grad ? static_cast<T*>(a.grad) + r * V + v0 : nullptr;
  uint4* gv = reinterpret_cast<uint4*>(g);
  if (y == kIgnore) {
    if (rank == 0 && threadIdx.x == 0) {
      a.lse[r] = a.logp[r] = 0.f;
      if (kEnt) a.entropy[r] = 0.f;
    }
    if (g)
      for (int i = threadIdx.x; i < nv; i += blockDim.x) __stcs(gv + i, make_uint4(0, 0, 0, 0));
    return;
  }
  const uint4* src = reinterpret_cast<const uint4*>(static_cast<const T*>(a.logits) + r * V + v0);  // (nv)
  // This thread's vectors: global -> registers (statistics) and -> shared memory (for the gradient pass).
  float probe = 0.f;
  Stats st = thread_stats<T, kEnt>(
      nv, blockDim.x, [&](int64_t i) { return src[i]; }, [&](int64_t i, const uint4& v) { smem[i] = v; }, probe);
  bool bad = probe_bad(probe);
  st = block_reduce(st, bad);  // ends with __syncthreads: the whole chunk is in shared memory
  if (threadIdx.x == 0) {
    const int64_t k = y - v0;
    part = {st, (k >= 0 && k < int64_t(nv) * n) ? to_f32(reinterpret_cast<const T*>(smem)[k]) : 0.f, int(bad)};
  }
  cluster.sync();  // partials visible cluster-wide

  if (threadIdx.x == 0) {  // merge the C partials in rank order; rank 0 writes the row's outputs
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
    plan = plan_fused_row(a, r, tot, any_bad != 0, zy, rank == 0);
  }
  cluster_arrive();  // done reading remote partials
  __syncthreads();
  const RowPlan p = plan;
  if (p.mode == 1)
    for (int i = threadIdx.x; i < nv; i += blockDim.x) __stcs(gv + i, make_uint4(0, 0, 0, 0));
  if (p.mode == 2) {
    for (int i = threadIdx.x; i < nv; i += blockDim.x) {
      float x[n];
      __stcs(gv + i, grad_vec(smem[i], p, x));
    }
    const int64_t k = y - v0;  // the thread that wrote y's vector overwrites g[y]
    if (k >= 0 && k < int64_t(nv) * n && threadIdx.x == (k / n) % blockDim.x) g[k] = from_f32<T>(p.gy);
  }
  cluster_wait();  // no CTA exits while another may still read its partial
#endif
}

template <typename T, bool kEnt>
bool launch(const RowArgs& a, const ClusterTuning& tune, cudaStream_t s) {
  constexpr int n = kVecN<T>;
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (a.V % n != 0 || !aligned(a.logits) || !aligned(a.grad)) return false;
  int C = 0;
  int64_t chunk = 0;  // elements per CTA, a multiple of 128 bytes: no two CTAs share a cache line
  constexpr int64_t line = 128 / int64_t(sizeof(T));
  for (int c = 1; c <= 8 && C == 0; c *= 2) {
    const int64_t ch = ((a.V + c - 1) / c + line - 1) / line * line;
    if (size_t(ch) * sizeof(T) <= tune.max_chunk_bytes) C = c, chunk = ch;
  }
  if (C == 0) return false;

  const auto kernel = fused_rows_cluster<T, kEnt>;
  const size_t smem = size_t(chunk) * sizeof(T);
  const int nv = int(chunk / n);
  const int threads = tune.threads > 0 ? tune.threads : (nv > 2048 ? 640 : 256);  // 640: best measured at 74 KB
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(C));  // one cluster, to ask whether it fits
  cfg.blockDim = dim3(std::min(threads, std::max(32, (nv + 31) / 32 * 32)));
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(C), attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;

  // Whether this configuration runs here, asked once per (device, configuration). Callers are serialised (the
  // backend's mutex), so a plain static per instantiation will do.
  struct Verdict {
    int dev = -1, C = 0, threads = 0;
    size_t smem = 0;
    bool ok = false;
  };
  static Verdict cached;
  int dev = 0;
  RIFT_CUDA_CHECK(cudaGetDevice(&dev));
  if (cached.dev != dev || cached.C != C || cached.threads != int(cfg.blockDim.x) || cached.smem != smem) {
    int major = 0, optin = 0, clusters = 0;
    RIFT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    RIFT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaFuncAttributes fa{};
    RIFT_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
    // ptxVersion < 90: this binary holds no sm_90 code for the kernel (its body compiled to nothing).
    bool ok = major >= 9 && fa.ptxVersion >= 90 && smem + fa.sharedSizeBytes <= size_t(optin);
    if (ok) RIFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    if (ok && (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess || clusters == 0)) {
      (void)cudaGetLastError();
      ok = false;
    }
    cached = {dev, C, int(cfg.blockDim.x), smem, ok};
  }
  if (!cached.ok) return false;
  if (a.N * C > INT32_MAX) return false;
  cfg.gridDim = dim3(unsigned(a.N * C));
  RIFT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, a, int(chunk)));
  return true;
}

}  // namespace

bool launch_fused_cluster(const RowArgs& a, int dtype, const ClusterTuning& t, cudaStream_t s) {
  const bool ent = a.entropy != nullptr;
  if (dtype == 0) return ent ? launch<float, true>(a, t, s) : launch<float, false>(a, t, s);
  return ent ? launch<uint16_t, true>(a, t, s) : launch<uint16_t, false>(a, t, s);
}

}  // namespace rift::cuda
