// sm_90 fused loss kernel: one thread-block cluster of C CTAs per row (see loss_rows.cu for the design).
// Persistent: the grid holds as many clusters as fit on the GPU at once; cluster c handles rows c, c + clusters,
// ... (its j-th row is row_j). CTA k of a cluster owns chunk k of every row, z[k·chunk, (k+1)·chunk), and keeps
// three rows of it in shared memory (triple buffer, filled by cp.async). Iteration j of a CTA:
//   - requests the chunk of row_{j+2},
//   - computes its partial statistics (m, d, s) of row_{j+1}  (this hides the cluster barrier of row_j),
//   - waits on the cluster barrier of row_j; warp 0 merges the C partials of row_j, read through distributed
//     shared memory (same order in every CTA, so all get the same lse); rank 0 writes lse/logp/entropy,
//   - writes the gradient of its chunk of row_j from shared memory,
//   - publishes its partial of row_{j+1} and arrives on the cluster barrier of row_{j+1}.
// Each row is read from DRAM once and written once; loads, math and stores of consecutive rows overlap.
#include <cooperative_groups.h>

#include <algorithm>

#include "cuda/cuda_check.h"
#include "cuda/loss_kernels.cuh"

namespace rift::cuda {
namespace {

constexpr int kMaxClusterThreads = 512;
constexpr int kBuffers = 3;

struct Partial {
  Stats st;
  float zy;  // z[y], from the CTA whose chunk holds y
  int bad;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900  // (only the sm_90 kernel body uses them)
__device__ __forceinline__ void cp_async16(uint4* dst, const uint4* src) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_older() {  // all groups but the newest are complete
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release;\n" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory"); }
#endif

// grid (clusters·C), cluster (C), dynamic shared memory kBuffers·chunk elements. chunk: elements per CTA, a
// multiple of n.
template <typename T, bool kEnt>
__global__ void __launch_bounds__(kMaxClusterThreads) fused_rows_cluster(RowArgs a, int chunk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  constexpr int n = kVecN<T>;
  extern __shared__ uint4 smem[];  // (kBuffers, chunk / n) this CTA's chunk of three rows
  __shared__ Partial part[2];      // published partial of row_j in part[j % 2]
  __shared__ RowPlan plan;
  const cg::cluster_group cluster = cg::this_cluster();
  const int C = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  const int64_t V = a.V, N = a.N, v0 = int64_t(rank) * chunk;
  const int64_t len = V - v0 < chunk ? V - v0 : chunk;  // elements in this chunk (the last one may be short)
  const int nv = len > 0 ? int(len / n) : 0;           // vectors in this chunk
  const int half = chunk / n;                          // vectors per buffer
  const int64_t first = blockIdx.x / C, stride = gridDim.x / C;
  const T* zc = static_cast<const T*>(a.logits) + v0;           // (N, V) shifted to this chunk
  T* gc = a.grad ? static_cast<T*>(a.grad) + v0 : nullptr;  // (N, V) shifted to this chunk
  const auto row_of = [&](int64_t j) { return first + j * stride; };
  const auto buffer = [&](int64_t j) { return smem + int(j % kBuffers) * half; };

  // Requests row r's chunk (nothing for rows past the end or ignored rows: they are not read). Always commits.
  const auto prefetch = [&](int64_t r, uint4* buf) {
    if (r < N && a.targets[r] != kIgnore) {
      const uint4* src = reinterpret_cast<const uint4*>(zc + r * V);  // (nv)
      for (int i = threadIdx.x; i < nv; i += blockDim.x) cp_async16(buf + i, src + i);
    }
    cp_async_commit();
  };
  // This CTA's partial statistics of row r (valid in thread 0). Uniform: ignored rows skip the block reduction.
  const auto partial = [&](int64_t r, const uint4* buf) {
    Partial out{empty_stats(), 0.f, 0};
    const int32_t y = a.targets[r];
    if (y == kIgnore) return out;
    Stats st = empty_stats();
    float probe = 0.f;
    for (int i = threadIdx.x; i < nv; i += blockDim.x) {
      float x[n];
      unpack(buf[i], x);
      stats_add<kEnt>(st, x, probe);
    }
    bool bad = probe_bad(probe);
    st = block_reduce(st, bad);  // ends with __syncthreads: every thread's copies of this chunk are in
    if (threadIdx.x == 0) {
      const int64_t k = y - v0;
      out = {st, (k >= 0 && k < int64_t(nv) * n) ? to_f32(reinterpret_cast<const T*>(buf)[k]) : 0.f, int(bad)};
    }
    return out;
  };

  if (first >= N) return;  // (the whole cluster)
  prefetch(row_of(0), buffer(0));
  prefetch(row_of(1), buffer(1));
  cp_async_wait_older();
  Partial mine = partial(row_of(0), buffer(0));
  if (threadIdx.x == 0) part[0] = mine;
  cluster_arrive();
  for (int64_t j = 0; row_of(j) < N; ++j) {
    const int64_t r = row_of(j), rn = row_of(j + 1);
    prefetch(row_of(j + 2), buffer(j + 2));  // buffer(j + 2) == buffer(j - 1): done with it
    cp_async_wait_older();                   // row_{j+1}'s chunk (this thread's copies)
    if (rn < N) mine = partial(rn, buffer(j + 1));
    cluster_wait();  // every CTA has published its partial of row_j

    const int32_t y = a.targets[r];
    if (threadIdx.x < 32) {  // warp 0: lane k < C reads rank k's partial; merge across lanes
      const int lane = threadIdx.x;
      Partial q{empty_stats(), 0.f, 0};
      if (lane < C) q = *cluster.map_shared_rank(&part[j & 1], lane);
      Stats st = q.st;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const Stats t{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.d, o),
                      __shfl_xor_sync(0xffffffffu, st.s, o)};
        st = merge(st, t);
      }
      const bool bad = __any_sync(0xffffffffu, q.bad) != 0;
      const float zy = __shfl_sync(0xffffffffu, q.zy, y == kIgnore ? 0 : int(y / chunk));
      if (lane == 0) {
        if (y != kIgnore) {
          plan = plan_fused_row(a, r, st, bad, zy, rank == 0);
        } else {
          if (rank == 0) {
            a.lse[r] = a.logp[r] = 0.f;
            if (kEnt) a.entropy[r] = 0.f;
          }
          plan = gc ? kPlanZero : kPlanNothing;
        }
      }
    }
    __syncthreads();
    const RowPlan p = plan;
    uint4* gv = gc ? reinterpret_cast<uint4*>(gc + r * V) : nullptr;  // (nv) this chunk of grad row r
    if (p.mode == 1)
      for (int i = threadIdx.x; i < nv; i += blockDim.x) __stcs(gv + i, make_uint4(0, 0, 0, 0));
    if (p.mode == 2) {
      const uint4* buf = buffer(j);
      for (int i = threadIdx.x; i < nv; i += blockDim.x) {
        float x[n];
        __stcs(gv + i, grad_vec(buf[i], p, x));
      }
      const int64_t k = y - v0;  // the thread that wrote y's vector overwrites g[y]
      if (k >= 0 && k < int64_t(nv) * n && threadIdx.x == (k / n) % blockDim.x)
        reinterpret_cast<T*>(gv)[k] = from_f32<T>(p.gy);
    }
    if (rn < N) {
      if (threadIdx.x == 0) part[(j + 1) & 1] = mine;  // its readers (row_{j-1}) are past the barrier of row_j
      cluster_arrive();
    }
  }
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  cluster.sync();  // no CTA exits while another may still read its partials
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
  if (C == 0) return false;

  int dev = 0, major = 0, optin = 0;
  RIFT_CUDA_CHECK(cudaGetDevice(&dev));
  RIFT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  RIFT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const auto kernel = fused_rows_cluster<T, kEnt>;
  cudaFuncAttributes fa{};
  RIFT_CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
  const size_t smem = kBuffers * size_t(chunk) * sizeof(T);
  // ptxVersion < 90: this binary holds no sm_90 code for the kernel (its body compiled to nothing).
  if (major < 9 || fa.ptxVersion < 90 || smem + fa.sharedSizeBytes > size_t(optin)) return false;
  RIFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));

  const int nv = int(chunk / n);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(C));  // one cluster, to ask how many fit
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
  cfg.gridDim = dim3(unsigned(std::min<int64_t>(a.N, clusters) * C));  // persistent clusters
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
