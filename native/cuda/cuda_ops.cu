// The CUDA OpsBackend (cuda_ops(), backends/registry.h): wires model/ops.h to cuBLAS (GEMMs, loaded at run time) and
// the kernels of cuda_ops_elem.cu, cuda_ops_norm_rope.cu and cuda_ops_attention.cu. The GEMM itself is in
// cuda_gemm.cc, the BF16 instance's weight copies in cuda_weight_copies.cc, embedding_backward's host grouping in
// cuda_ops_embedding.cc. Semantics match the CPU twin (cpu/cpu_ops.cc) op for op; linear layers are expressed
// through gemm exactly as there.
//
// Row-major GEMM through column-major cuBLAS: a row-major (r, c) matrix with row stride ld is, byte for byte,
// the column-major (c, r) matrix — its transpose — with leading dimension ld. So row-major C = op(A)·op(B)
// (M, N) is column-major Cᵀ (N, M) = op(B)ᵀ·op(A)ᵀ: call cuBLAS with the operands swapped, m = N, n = M, k = K,
// first operand B (ldb) with transb kept (row-major B (K, N) is column-major Bᵀ (N, K), exactly op(B)ᵀ when
// !transB; row-major B (N, K) for transB is column-major (K, N) and needs CUBLAS_OP_T), second operand A (lda)
// with transA kept the same way, and ldc as C's leading dimension.
//
// Data-dependent errors (a token id outside [0, V), a negative position) are the callers' to check on the host (the
// decoder, napi/ops.cc): the forward ops do not read ids / positions back, which would synchronise every call.
// embedding_backward still copies the ids down (it groups tokens by id on the host) and checks them there.
// Scratch (embedding groups, rope inv_freq, column-sum partials, sumsq partials, attention Di) is one device
// buffer grown on demand, counted as Device/Workspace in the memory tracker. All work is on the legacy default
// stream; a mutex serialises callers (the cuBLAS handle and the scratch are shared).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "core/loss.h"
#include "core/memory.h"
#include "cuda/cublas_loader.h"
#include "cuda/cuda_attention_flash.h"
#include "cuda/cuda_attention_gemm.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_gemm.h"
#include "cuda/cuda_ops_kernels.h"
#include "cuda/cuda_weight_copies.h"
#include "cuda/device_mem.h"

namespace rift {
namespace {

using namespace rift::cuda;

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

class CudaOps final : public OpsBackend {
 public:
  CudaOps(const CublasApi* api, DType gemm_dtype) : api_(api), dtype_(gemm_dtype) {
    RIFT_CUDA_CHECK(cudaGetDevice(&device_));
    cublas_check(api_->create(&handle_), "cublasCreate_v2");
    cublas_check(api_->set_stream(handle_, nullptr), "cublasSetStream_v2");
    cublas_check(api_->set_math_mode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  }
  // Process-wide and never destroyed (cuda_ops() leaks it): tearing down cuBLAS during static destruction,
  // after the CUDA runtime may have shut down, is not safe.
  ~CudaOps() override = default;

  const char* name() const override { return "cuda"; }

  MemSpace space() const override { return MemSpace::Device; }
  float* alloc(MemCategory c, size_t n) override {
    if (n == 0) return nullptr;
    if (n > SIZE_MAX / sizeof(float)) throw std::runtime_error("cuda alloc: size overflow");
    void* p = cuda::alloc(n * sizeof(float));
    const cudaError_t e = cudaMemset(p, 0, n * sizeof(float));
    if (e != cudaSuccess) {
      cuda::free_noexcept(p);
      RIFT_CUDA_CHECK(e);
    }
    mem_note_alloc(MemSpace::Device, c, int64_t(n * sizeof(float)));
    return static_cast<float*>(p);
  }
  void release(float* p, MemCategory c, size_t n) noexcept override {
    if (!p) return;
    if (dtype_ == DType::BF16) drop_weights(p);
    cuda::free_noexcept(p);
    mem_note_free(MemSpace::Device, c, int64_t(n * sizeof(float)));
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    weights_written(dst, bytes);
    cuda::copy_to_device(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override { cuda::copy_to_host(dst, src, bytes); }
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) override {
    if (!width || !rows) return;
    weights_written(dst, (rows - 1) * dpitch + width);
    RIFT_CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, nullptr));
  }

  // The BF16 instance's weight copies (model/ops.h register_weights): allocated at once, filled lazily at the
  // first GEMM that reads the region after a write (one rounding pass over the region), and rewritten by adamw
  // in its own pass. RIFT_CUDA_WEIGHT_COPY=0 turns them off (every GEMM rounds both operands, 2 bytes per
  // parameter less memory).
  void note_written(const void* dst, size_t bytes) override { weights_written(dst, bytes); }
  void register_weights(const float* region, size_t n, MemCategory c) override {
    static const bool off = [] {
      const char* e = std::getenv("RIFT_CUDA_WEIGHT_COPY");
      return e && std::string(e) == "0";
    }();
    if (dtype_ != DType::BF16 || off) return;
    std::lock_guard<std::mutex> lk(mu_);
    weights_.add(region, n, c);
  }

  OpsInfo info() const override {
    OpsInfo i;
    i.gemm = tf32_ ? "cublas-tf32" : "cublas";
    i.threads = 1;
    i.blas_available = true;
    i.blas_path = api_->path;
    i.gemm_dtype = dtype_;
    return i;
  }

  // "cublas": fp32 sgemm (default math, no TF32); "cublas-tf32": cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32.
  bool set_gemm(const std::string& impl) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (impl == "cublas")
      tf32_ = false;
    else if (impl == "cublas-tf32")
      tf32_ = true;
    else
      return false;
    return true;
  }

  void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    std::lock_guard<std::mutex> lk(mu_);
    gemm_locked(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t M, int64_t N,
                      int64_t K, bool accumulate) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (bias) ops::bias_rows(out, bias, M, N, accumulate);
    const float beta = (bias || accumulate) ? 1.f : 0.f;
    gemm_locked(false, true, M, N, K, 1.f, inp, K, weight, K, beta, out, N);
  }

  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                       const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (dinp) gemm_locked(false, false, M, K, N, 1.f, dout, N, weight, K, accumulate ? 1.f : 0.f, dinp, K);
    if (dweight) gemm_locked(true, false, N, K, M, 1.f, dout, N, inp, K, 1.f, dweight, K);
    if (dbias && M > 0 && N > 0) {
      double* part = static_cast<double*>(scratch(size_t(ops::colsum_scratch(M, N)) * sizeof(double)));
      ops::column_sums(dbias, dout, M, N, part);
    }
  }

  // bf16 activations (model/ops.h): the BF16 instance hands inp to cublasGemmEx as it is (no rounding pass).
  void matmul_forward_bf16(float* out, const uint16_t* inp, const float* weight, const float* bias, int64_t M,
                           int64_t N, int64_t K, bool accumulate) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (bias) ops::bias_rows(out, bias, M, N, accumulate);
    const float beta = (bias || accumulate) ? 1.f : 0.f;
    gemm_locked(false, true, M, N, K, 1.f, nullptr, K, weight, K, beta, out, N, inp, nullptr);
  }
  void matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const uint16_t* inp,
                            const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate) override {
    if (dweight) {
      std::lock_guard<std::mutex> lk(mu_);
      gemm_locked(true, false, N, K, M, 1.f, dout, N, nullptr, K, 1.f, dweight, K, nullptr, inp);
    }
    matmul_backward(dinp, nullptr, dbias, dout, nullptr, weight, M, N, K, accumulate);
  }
  void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                            float eps) override {
    ops::rmsnorm_forward_bf16(out, rstd, inp, weight, T, C, eps);
  }
  void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n) override {
    ops::swiglu_forward_bf16(out, gate, up, n);
  }

  void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t V, int64_t C) override {
    // ids are valid by contract (model/ops.h: the decoder and napi/ops.cc check them on the host): reading them
    // back here would synchronise every call.
    (void)V;
    ops::embedding_forward(out, ids, wte, T, C);
  }

  // Tokens grouped by id on the host, then one block per group and column chunk (cuda_ops_embedding.cc).
  void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V,
                          int64_t C) override {
    std::lock_guard<std::mutex> lk(mu_);
    ops::embedding_backward_grouped(dwte, dout, ids, T, V, C, [this](size_t bytes) { return scratch(bytes); });
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                       float eps) override {
    ops::rmsnorm_forward(out, rstd, inp, weight, T, C, eps);
  }

  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t T, int64_t C, bool accumulate) override {
    std::lock_guard<std::mutex> lk(mu_);
    double* part = nullptr;
    if (dweight && T > 0 && C > 0)
      part = static_cast<double*>(scratch(size_t(ops::colsum_scratch(T, C)) * sizeof(double)));
    ops::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, T, C, accumulate, part);
  }

  void rope_forward(float* out, const float* inp, const int32_t* pos, int64_t T, int64_t H, int64_t D,
                    float theta) override {
    rope(out, inp, pos, T, H, D, theta, false, false);
  }
  void rope_backward(float* dinp, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                     bool accumulate) override {
    rope(dinp, dout, pos, T, H, D, theta, true, accumulate);
  }

  // The BF16 instance runs attention's two products as tensor-core GEMMs on bf16 operands
  // (cuda_attention_gemm.cu; twin: cpu/ops_attention_bf16.cc); RIFT_CUDA_ATTENTION=fp32 keeps the fp32 kernel.
  bool attn_gemm() const {
    static const bool off = [] {
      const char* e = std::getenv("RIFT_CUDA_ATTENTION");
      return e && std::string(e) == "fp32";
    }();
    return dtype_ == DType::BF16 && !off;
  }
  cuda::AttnGemmCtx attn_ctx() {
    cuda::AttnGemmCtx c;
    c.chunk_bytes = cuda::attention_chunk_bytes_from_env();
    c.api = api_;
    c.handle = handle_;
    c.scratch = [this](size_t bytes) { return scratch(bytes); };
    return c;
  }

  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                         int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows) override {
    if (attn_gemm()) {
      std::lock_guard<std::mutex> lk(mu_);
      if (cuda::flash_try_forward(out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D, rows)) return;  // opt-in, falls back
      cuda::attention_forward_gemm(attn_ctx(), out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D, rows);
      return;
    }
    ops::attention_forward(out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D, rows);
  }
  void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T,
                int64_t Tmax, int64_t width) override {
    ops::kv_write(cache, x, slot, pos, B, T, Tmax, width);
  }

  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                          const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                          int64_t Hkv, int64_t D, bool accumulate) override {
    if (B <= 0 || T <= 0 || Hq <= 0 || D <= 0) return;
    std::lock_guard<std::mutex> lk(mu_);
    if (attn_gemm()) {
      if (cuda::flash_try_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate,
                                   [this](size_t bytes) { return scratch(bytes); }))
        return;  // RIFT_CUDA_ATTENTION=flash (cuda_attention_flash.h)
      cuda::attention_backward_gemm(attn_ctx(), dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate);
      return;
    }
    float* di = static_cast<float*>(scratch(size_t(B * Hq * T) * sizeof(float)));
    ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate, di);
  }

  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
    ops::swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                       bool accumulate) override {
    ops::swiglu_backward(dgate, dup, dout, gate, up, n, accumulate);
  }

  void to_bf16(uint16_t* dst, const float* src, int64_t n) override { ops::round_bf16(dst, src, 1, n, n); }
  void from_bf16(float* dst, const uint16_t* src, int64_t n) override { ops::from_bf16(dst, src, n); }
  void add(float* out, const float* a, const float* b, int64_t n) override { ops::add(out, a, b, n); }
  void scale(float* x, float s, int64_t n) override { ops::scale(x, s, n); }
  void zero(float* x, int64_t n) override { ops::zero(x, n); }

  // The fixed order of backends/sumsq_order.h, reduced on the device: the CPU twin's result bit for bit.
  double sumsq(const float* x, int64_t n) override {
    if (n <= 0) return 0.0;
    std::lock_guard<std::mutex> lk(mu_);
    double* part = static_cast<double*>(scratch(size_t(ops::sumsq_scratch(n)) * sizeof(double)));
    return ops::sumsq(x, n, part);
  }

  // Writes the weights' bf16 copy in the same pass when param lies in a registered region whose copy is current.
  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p) override {
    if (n <= 0) return;
    std::lock_guard<std::mutex> lk(mu_);
    ops::adamw(param, grad, m, v, n, p, weights_.current_copy(param, size_t(n)));
  }

 private:
  void gemm_locked(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const uint16_t* A16 = nullptr,
                   const uint16_t* B16 = nullptr) {
    cuda::GemmCtx g{api_, handle_, dtype_, tf32_, &weights_, [this](size_t bytes) { return scratch(bytes); }};
    cuda::gemm(g, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, A16, B16);
  }

  void rope(float* out, const float* inp, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
            bool inverse, bool accumulate) {
    // Positions are valid (>= 0) by contract (model/ops.h): no read-back, no synchronisation.
    const int64_t half = D / 2;
    if (T <= 0 || half <= 0) return;
    std::lock_guard<std::mutex> lk(mu_);
    ops::rope(out, inp, pos, inv_freq(D, theta), T, H, D, inverse, accumulate);
  }

  // inv_freq_i = 1 / θ^(float(2i)/D) (i < D/2), exactly as the CPU twin's table (cpu/ops_norm_rope.cc rope_row),
  // uploaded once per (D, θ) and kept (Workspace; a model has one or two pairs). mu_ held.
  const float* inv_freq(int64_t D, float theta) {
    uint32_t bits;
    std::memcpy(&bits, &theta, sizeof bits);
    const std::pair<int64_t, uint32_t> key{D, bits};
    auto it = inv_freq_.find(key);
    if (it != inv_freq_.end()) return it->second;
    const int64_t half = D / 2;
    std::vector<float> inv(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      const float e = float(2 * i) / float(D);
      inv[size_t(i)] = 1.f / float(std::pow(double(theta), double(e)));
    }
    float* d = static_cast<float*>(cuda::alloc(size_t(half) * sizeof(float)));
    mem_note_alloc(MemSpace::Device, MemCategory::Workspace, int64_t(size_t(half) * sizeof(float)));
    RIFT_CUDA_CHECK(cudaMemcpy(d, inv.data(), size_t(half) * sizeof(float), cudaMemcpyHostToDevice));
    inv_freq_.emplace(key, d);
    return d;
  }

  // Device scratch of at least `bytes` (mu_ held). Growing frees the old buffer: cudaFree waits for the device,
  // so kernels still reading it finish first.
  void* scratch(size_t bytes) {
    bytes = std::max<size_t>(256, align256(bytes));
    if (bytes > cap_) {
      const size_t want = std::max(bytes, cap_ + cap_ / 2);
      if (buf_) {
        cuda::free(buf_);
        mem_note_free(MemSpace::Device, MemCategory::Workspace, int64_t(cap_));
        buf_ = nullptr, cap_ = 0;
      }
      buf_ = cuda::alloc(want);
      cap_ = want;
      mem_note_alloc(MemSpace::Device, MemCategory::Workspace, int64_t(cap_));
    }
    return buf_;
  }

  void weights_written(const void* dst, size_t bytes) {
    if (dtype_ != DType::BF16) return;
    std::lock_guard<std::mutex> lk(mu_);
    weights_.mark_stale(dst, bytes);
  }
  void drop_weights(const float* p) noexcept {
    try {
      std::lock_guard<std::mutex> lk(mu_);
      weights_.drop(p);
    } catch (...) {  // a mutex that cannot be locked: leave the copy (it is freed with the process)
    }
  }

  const CublasApi* api_;
  DType dtype_;
  cuda::WeightCopies weights_;  // mu_
  int device_ = 0;
  cublasHandle_t handle_ = nullptr;
  bool tf32_ = false;
  std::mutex mu_;
  std::map<std::pair<int64_t, uint32_t>, float*> inv_freq_;  // (D, θ bits) → device table; never freed
  void* buf_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace

OpsBackend* cuda_ops(DType gemm_dtype) {
  static std::once_flag once;
  static CudaOps* f32 = nullptr;
  static CudaOps* bf16 = nullptr;
  try {
    std::call_once(once, [] {
      if (cuda::device_count() <= 0) return;
      const CublasApi* api = cublas_api();
      if (!api) return;
      try {
        f32 = new CudaOps(api, DType::F32);  // never deleted (see ~CudaOps)
        bf16 = new CudaOps(api, DType::BF16);
      } catch (...) { f32 = bf16 = nullptr; }
    });
  } catch (...) { return nullptr; }
  return gemm_dtype == DType::BF16 ? bf16 : f32;
}

}  // namespace rift
