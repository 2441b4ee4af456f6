// CUDA backend of the fused loss (core/loss.h); the CPU twin is cpu/loss_rows.cc and the semantics match it.
//
// Design (docs/design.md §2.4). io.logits / io.grad are device tensors (N, V) in f32 or bf16; the small per-row
// arrays are host memory: staged in pinned memory and uploaded in one copy into a persistent device workspace
// (grown on demand, guarded by a mutex); lse/logp/entropy and the bad-row index come back in one copy. All math
// is fp32; exponentials are exp2f of z·log2e minus a pre-scaled max or lse.
//
//  fused pass, sm_90, V·size % 16 == 0 (loss_cluster.cu): a thread-block cluster of C ∈ {1,2,4,8} CTAs per row;
//    CTA k streams chunk k (≤ 76 KB, 128-byte aligned) of the row from global memory with 16-byte loads into
//    registers for its online-softmax partial (m, d, Σe·z) and into shared memory; the C partials are merged
//    through distributed shared memory; each CTA then writes its chunk of the gradient from shared memory.
//    V=151936 bf16: C=4, 74 KB per CTA, 2 CTAs (640 threads each) per SM.
//    Traffic per row: 1 read + 1 write (4·V bytes for bf16).
//  fused pass, otherwise (loss_generic.cu): one block per row (128–1024 threads by V), 16-byte loads when
//    V·size % 16 == 0 (scalar fallback), per-thread online softmax, warp-shuffle + shared-memory reduction, then a
//    second read of the row for the gradient. Traffic: 2 reads (the 2nd from L2 when the rows in flight fit in
//    it; at V=151936 they mostly do not) + 1 write.
//  grad pass (sequence-level methods, pass B; loss_generic.cu): g = w·(softmax − onehot) from the stored
//    lse/logp. Traffic: 1 read + 1 write.
//
// Gradient rules (as the CPU twin): g = w·exp(z − lse) for every v, then g[y] = w·expm1(logp) in fp32; w == 0 or
// target −100 → the row is zeroed (−100 rows are not read; their lse/logp/entropy are 0); a row holding NaN/Inf
// gets nothing written (no gradient, no outputs) and the smallest such row is io.bad_row. grad may equal logits:
// every element is read before it is written.
//
// Measured on one H100 80GB HBM3 (N=8192, V=151936, bf16, SFT, in place or not): cluster kernel 1.73 ms, generic
// kernel 2.32 ms, cudaMemcpy device-to-device of the same bytes 1.65 ms.
//
// Environment (testing/tuning): RIFT_CUDA_LOSS_KERNEL=generic forces the generic fused kernel;
// RIFT_CUDA_CLUSTER_KB sets the largest chunk per CTA of the cluster kernel (default 76).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "backends/registry.h"
#include "core/loss.h"
#include "core/memory.h"
#include "cuda/cuda_check.h"
#include "cuda/loss_kernels.cuh"

namespace rift {
namespace cuda {
namespace {

size_t align_up(size_t x) { return (x + 255) & ~size_t(255); }

// Where each per-row array lives inside the workspace (same offsets on host staging and device).
struct Layout {
  size_t targets, a, b, lse, logp, ent, bad, total;  // inputs [targets, lse) or [targets, ent); outputs [lse, total)
  explicit Layout(int64_t N) {
    const size_t n4 = align_up(size_t(N) * 4);
    targets = 0, a = n4, b = 2 * n4, lse = 3 * n4, logp = 4 * n4, ent = 5 * n4, bad = 6 * n4;
    total = bad + 256;
  }
};

void require_device_ptr(const void* p, const char* what) {
  cudaPointerAttributes at{};
  if (cudaPointerGetAttributes(&at, p) != cudaSuccess) (void)cudaGetLastError();
  if (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)
    throw std::runtime_error(std::string("cuda backend: ") + what + " is not device memory");
}

class CudaBackend final : public RowBackend {
 public:
  CudaBackend() { RIFT_CUDA_CHECK(cudaGetDevice(&device_)); }
  const char* name() const override { return "cuda"; }
  void rows_fused(RowsIO& io) override { run(io, true); }
  void rows_grad(RowsIO& io) override { run(io, false); }

 private:
  void reserve(size_t bytes) {
    if (bytes <= capacity_) return;
    const size_t want = std::max(bytes, capacity_ + capacity_ / 2);
    if (dev_buf_) {
      RIFT_CUDA_CHECK(cudaFree(dev_buf_));
      mem_note_free(MemSpace::Device, MemCategory::Workspace, int64_t(capacity_));
      dev_buf_ = nullptr;
    }
    if (host_buf_) {
      RIFT_CUDA_CHECK(cudaFreeHost(host_buf_));
      mem_note_free(MemSpace::Host, MemCategory::Workspace, int64_t(capacity_));
      host_buf_ = nullptr;
    }
    capacity_ = 0;
    RIFT_CUDA_CHECK(cudaMalloc(&dev_buf_, want));
    mem_note_alloc(MemSpace::Device, MemCategory::Workspace, int64_t(want));
    RIFT_CUDA_CHECK(cudaMallocHost(&host_buf_, want));
    mem_note_alloc(MemSpace::Host, MemCategory::Workspace, int64_t(want));
    capacity_ = want;
  }

  void run(RowsIO& io, bool fused) {
    io.bad_row = -1;
    if (io.N <= 0) return;
    if (!io.logits || (!fused && !io.grad)) throw std::runtime_error("cuda backend: missing logits or grad");
    const int dtype = io.dtype == DType::F32 ? 0 : 1;
    std::lock_guard<std::mutex> lock(mu_);
    RIFT_CUDA_CHECK(cudaSetDevice(device_));
    require_device_ptr(io.logits, "logits");
    if (io.grad) require_device_ptr(io.grad, "grad");

    const int64_t N = io.N;
    const size_t n4 = size_t(N) * 4;
    const Layout L(N);
    reserve(L.total);
    char* h = static_cast<char*>(host_buf_);
    char* d = static_cast<char*>(dev_buf_);
    for (int64_t t = 0; t < N; ++t)  // the kernels index z[y]: never trust y blindly
      if (io.targets[t] != kIgnoreIndex && (io.targets[t] < 0 || io.targets[t] >= io.V))
        throw std::runtime_error("cuda backend: targets[" + std::to_string(t) + "] is outside [0, V)");
    // Inputs go up in one copy: [0, up) of the layout.
    std::memcpy(h + L.targets, io.targets, n4);
    size_t up = L.a;
    if (fused && io.grad) {
      std::memcpy(h + L.a, io.coef_a, n4);
      std::memcpy(h + L.b, io.coef_b, n4);
      up = L.lse;
    }
    if (!fused) {
      std::memcpy(h + L.a, io.weight, n4);
      std::memcpy(h + L.lse, io.lse, n4);
      std::memcpy(h + L.logp, io.logp, n4);
      up = L.ent;
    }
    const cudaStream_t s = 0;  // legacy default stream: ordered with DeviceTensor copies
    RIFT_CUDA_CHECK(cudaMemcpyAsync(d, h, up, cudaMemcpyHostToDevice, s));
    // Outputs start as all-ones bits: bad = "none", and lse/logp/entropy = a NaN that arithmetic never produces,
    // so rows that get no outputs (bad rows) are recognised below and keep the caller's values, as on the CPU.
    if (fused) RIFT_CUDA_CHECK(cudaMemsetAsync(d + L.lse, 0xff, L.total - L.lse, s));

    RowArgs a{};
    a.logits = io.logits;
    a.grad = io.grad;
    a.N = N, a.V = io.V;
    a.targets = reinterpret_cast<const int32_t*>(d + L.targets);
    a.coef_a = reinterpret_cast<const float*>(d + L.a);
    a.coef_b = reinterpret_cast<const float*>(d + L.b);
    a.weight = reinterpret_cast<const float*>(d + L.a);
    a.lse = reinterpret_cast<float*>(d + L.lse);
    a.logp = reinterpret_cast<float*>(d + L.logp);
    a.entropy = fused && io.entropy ? reinterpret_cast<float*>(d + L.ent) : nullptr;
    a.bad = reinterpret_cast<unsigned long long*>(d + L.bad);

    if (!fused) {
      launch_grad_generic(a, dtype, s);
      RIFT_CUDA_CHECK(cudaStreamSynchronize(s));  // the caller may free the host arrays on return
      return;
    }
    const char* kernel = std::getenv("RIFT_CUDA_LOSS_KERNEL");
    const char* kb = std::getenv("RIFT_CUDA_CLUSTER_KB");
    ClusterTuning tune;
    if (kb) tune.max_chunk_bytes = size_t(std::max(1, std::atoi(kb))) * 1024;
    const bool generic = kernel && std::strcmp(kernel, "generic") == 0;
    if (generic || !launch_fused_cluster(a, dtype, tune, s)) launch_fused_generic(a, dtype, s);
    RIFT_CUDA_CHECK(cudaMemcpyAsync(h + L.lse, d + L.lse, L.total - L.lse, cudaMemcpyDeviceToHost, s));
    RIFT_CUDA_CHECK(cudaStreamSynchronize(s));
    const auto take = [&](float* out, size_t off) {
      const uint32_t* src = reinterpret_cast<const uint32_t*>(h + off);  // (N)
      for (int64_t r = 0; r < N; ++r)
        if (src[r] != 0xffffffffu) std::memcpy(out + r, src + r, 4);
    };
    take(io.lse, L.lse);
    take(io.logp, L.logp);
    if (io.entropy) take(io.entropy, L.ent);
    unsigned long long bad;
    std::memcpy(&bad, h + L.bad, sizeof bad);
    io.bad_row = bad == ~0ull ? -1 : int64_t(bad);
  }

  std::mutex mu_;
  int device_ = 0;
  void* dev_buf_ = nullptr;   // workspace (Layout), device
  void* host_buf_ = nullptr;  // same layout, pinned host staging
  size_t capacity_ = 0;
};

}  // namespace
}  // namespace cuda

RowBackend* cuda_backend() {
  // Decided once: a machine without a driver or device gets nullptr (cudaGetDeviceCount fails or returns 0).
  // Never destroyed: at process exit the CUDA runtime may be unloaded before static destructors run.
  static cuda::CudaBackend* const backend = []() -> cuda::CudaBackend* {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      (void)cudaGetLastError();
      return nullptr;
    }
    return new cuda::CudaBackend();
  }();
  return backend;
}

}  // namespace rift
