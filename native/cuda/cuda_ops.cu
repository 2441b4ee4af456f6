// The CUDA OpsBackend (cuda_ops(), backends/registry.h): wires model/ops.h to cuBLAS (GEMMs, loaded at run time) and
// the kernels of cuda_ops_elem.cu, cuda_ops_norm_rope.cu and cuda_ops_attention.cu. Semantics match the CPU twin
// (cpu/cpu_ops.cc) op for op; linear layers are expressed through gemm exactly as there.
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
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "core/checks.h"
#include "core/loss.h"
#include "core/memory.h"
#include "cuda/cublas_loader.h"
#include "cuda/cuda_attention_flash.h"
#include "cuda/cuda_attention_gemm.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_ops_kernels.h"
#include "cuda/device_mem.h"

namespace rift {
namespace {

using namespace rift::cuda;

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

int to_int(int64_t x, const char* what) {
  if (x < 0 || x > int64_t(INT_MAX))
    throw std::runtime_error(std::string("cuda gemm: ") + what + " = " + std::to_string(x) +
                             " does not fit cuBLAS's 32-bit int");
  return int(x);
}

std::vector<int32_t> download_ints(const int32_t* p, int64_t n) {
  std::vector<int32_t> h(size_t(std::max<int64_t>(0, n)));
  if (n > 0) RIFT_CUDA_CHECK(cudaMemcpy(h.data(), p, size_t(n) * sizeof(int32_t), cudaMemcpyDeviceToHost));
  return h;
}

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
    if (dtype_ != DType::BF16 || off || !region || n == 0) return;
    if (n > SIZE_MAX / sizeof(uint16_t)) throw std::runtime_error("cuda weights copy: size overflow");
    std::lock_guard<std::mutex> lk(mu_);
    for (const Weights& w : weights_)
      if (w.base == region) return;
    auto* copy = static_cast<uint16_t*>(cuda::alloc(n * sizeof(uint16_t)));
    mem_note_alloc(MemSpace::Device, c, int64_t(n * sizeof(uint16_t)));
    weights_.push_back({region, n, c, copy, true});
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

  // Tokens grouped by id on the host (stable: token order inside a group), one block per group and column
  // chunk on the device: deterministic, and the same summation order as the CPU twin.
  void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V,
                          int64_t C) override {
    std::lock_guard<std::mutex> lk(mu_);
    const std::vector<int32_t> h = download_ints(ids, T);
    check_token_ids(h.data(), T, V);
    if (T <= 0 || C <= 0) return;
    std::vector<int32_t> order(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) order[size_t(t)] = int32_t(t);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return h[size_t(a)] < h[size_t(b)]; });
    std::vector<int32_t> seg, seg_id;
    for (int64_t k = 0; k < T; ++k)
      if (k == 0 || h[size_t(order[size_t(k)])] != h[size_t(order[size_t(k - 1)])]) {
        seg.push_back(int32_t(k));
        seg_id.push_back(h[size_t(order[size_t(k)])]);
      }
    const int64_t U = int64_t(seg_id.size());
    seg.push_back(int32_t(T));
    const size_t o_order = 0, o_seg = align256(size_t(T) * 4), o_id = o_seg + align256(size_t(U + 1) * 4);
    char* base = static_cast<char*>(scratch(o_id + size_t(U) * 4));
    RIFT_CUDA_CHECK(cudaMemcpy(base + o_order, order.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    RIFT_CUDA_CHECK(cudaMemcpy(base + o_seg, seg.data(), size_t(U + 1) * 4, cudaMemcpyHostToDevice));
    RIFT_CUDA_CHECK(cudaMemcpy(base + o_id, seg_id.data(), size_t(U) * 4, cudaMemcpyHostToDevice));
    ops::embedding_backward(dwte, dout, reinterpret_cast<int32_t*>(base + o_order),
                            reinterpret_cast<int32_t*>(base + o_seg), reinterpret_cast<int32_t*>(base + o_id), U, C);
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
  // RIFT_CUDA_ATTENTION_CHUNK_BYTES: the bf16 attention's chunk budget, read once; a bad value is ignored with one
  // line on stderr (cuda_attention_gemm.h attention_chunk_bytes).
  static size_t attn_chunk_bytes() {
    static const size_t bytes = [] {
      std::string warning;
      const size_t b = cuda::attention_chunk_bytes(std::getenv("RIFT_CUDA_ATTENTION_CHUNK_BYTES"), &warning);
      if (!warning.empty()) std::fprintf(stderr, "rift: %s\n", warning.c_str());
      return b;
    }();
    return bytes;
  }
  cuda::AttnGemmCtx attn_ctx() {
    cuda::AttnGemmCtx c;
    c.chunk_bytes = attn_chunk_bytes();
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
    uint16_t* copy = nullptr;
    if (Weights* w = weights_holding(param, size_t(n))) {
      if (!w->stale) copy = w->copy + (param - w->base);
    } else {
      mark_stale(param, size_t(n) * sizeof(float));
    }
    ops::adamw(param, grad, m, v, n, p, copy);
  }

 private:
  // BF16 instance (dtype_ == BF16): both operands rounded to contiguous bf16 copies in the scratch (A's at offset
  // 0, B's at the next 256-byte boundary; ld = stored columns), then cublasGemmEx with CUDA_R_16BF operands,
  // fp32 C and CUBLAS_COMPUTE_32F (tensor cores, fp32 accumulation). set_gemm's TF32 choice does not apply.
  // A16 / B16 (optional): the operand given as bf16 bit patterns (same shape and leading dimension) instead of
  // A / B (model/ops.h matmul_*_bf16). The BF16 instance reads it as it is; the fp32 ones widen it into scratch.
  void gemm_locked(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const uint16_t* A16 = nullptr,
                   const uint16_t* B16 = nullptr) {
    if (M <= 0 || N <= 0) return;
    // alpha == 0 (or K == 0): C = beta·C and A, B are not read (ops.h; the CPU twin never reads them, and A may hold
    // NaN). cuBLAS does not document skipping A·B for alpha == 0, so pass k = 0, which it defines as C = beta·C.
    if (alpha == 0.f) K = 0;
    const int m = to_int(N, "N"), n = to_int(M, "M"), k = to_int(K, "K");
    const int la = to_int(std::max<int64_t>(1, lda), "lda"), lb = to_int(std::max<int64_t>(1, ldb), "ldb");
    const int lc = to_int(std::max<int64_t>(1, ldc), "ldc");
    const cublasOperation_t opb = transB ? CUBLAS_OP_T : CUBLAS_OP_N, opa = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    // Stored shapes (row-major): A (K, M) when transA else (M, K); B (N, K) when transB else (K, N).
    const int64_t ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
    if (dtype_ != DType::BF16 && k > 0 && (A16 || B16)) {  // fp32 GEMM: widen the bf16 operand (exact)
      const int64_t na = A16 ? (ar - 1) * lda + ac : 0, nb = B16 ? (br - 1) * ldb + bc : 0;
      const size_t off_b = align256(size_t(na) * sizeof(float));
      char* base = static_cast<char*>(scratch(off_b + size_t(nb) * sizeof(float)));
      if (A16) ops::from_bf16(reinterpret_cast<float*>(base), A16, na), A = reinterpret_cast<float*>(base);
      if (B16)
        ops::from_bf16(reinterpret_cast<float*>(base + off_b), B16, nb), B = reinterpret_cast<float*>(base + off_b);
      A16 = B16 = nullptr;
    }
    if (dtype_ == DType::BF16) {
      // An operand given as bf16 is read as it is; one inside registered weights from their bf16 copy in place
      // (same offset and stride); any other is rounded into the scratch.
      const uint16_t* wa = k > 0 ? (A16 ? A16 : weights_copy(A, ar, ac, lda)) : nullptr;
      const uint16_t* wb = k > 0 ? (B16 ? B16 : weights_copy(B, br, bc, ldb)) : nullptr;
      const size_t bytes_a = wa ? 0 : align256(size_t(ar) * size_t(ac) * sizeof(uint16_t));
      const size_t bytes_b = wb ? 0 : size_t(br) * size_t(bc) * sizeof(uint16_t);
      char* base = static_cast<char*>(scratch(bytes_a + bytes_b));
      const uint16_t* a16 = wa ? wa : reinterpret_cast<uint16_t*>(base);
      const uint16_t* b16 = wb ? wb : reinterpret_cast<uint16_t*>(base + bytes_a);
      if (k > 0 && !wa) ops::round_bf16(reinterpret_cast<uint16_t*>(base), A, ar, ac, lda);
      if (k > 0 && !wb) ops::round_bf16(reinterpret_cast<uint16_t*>(base + bytes_a), B, br, bc, ldb);
      const int la16 = to_int(std::max<int64_t>(1, wa ? lda : ac), "lda");
      const int lb16 = to_int(std::max<int64_t>(1, wb ? ldb : bc), "ldb");
      cublas_check(api_->gemm_ex(handle_, opb, opa, m, n, k, &alpha, b16, CUDA_R_16BF, lb16, a16, CUDA_R_16BF, la16,
                                 &beta, C, CUDA_R_32F, lc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
    } else if (tf32_) {
      cublas_check(api_->gemm_ex(handle_, opb, opa, m, n, k, &alpha, B, CUDA_R_32F, lb, A, CUDA_R_32F, la, &beta, C,
                                 CUDA_R_32F, lc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
    } else {
      cublas_check(api_->sgemm(handle_, opb, opa, m, n, k, &alpha, B, lb, A, la, &beta, C, lc), "cublasSgemm_v2");
    }
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

  struct Weights {
    const float* base;
    size_t n;  // floats
    MemCategory category;
    uint16_t* copy;  // n bf16 values
    bool stale;      // written since the copy was made
  };

  // The registered region holding [p, p + n) floats whole, or null (mu_ held).
  Weights* weights_holding(const float* p, size_t n) {
    for (Weights& w : weights_)
      if (p >= w.base && p < w.base + w.n && n <= size_t(w.base + w.n - p)) return &w;
    return nullptr;
  }
  // Marks every region overlapping [dst, dst + bytes) stale (mu_ held).
  void mark_stale(const void* dst, size_t bytes) {
    const char* d = static_cast<const char*>(dst);
    for (Weights& w : weights_) {
      const char* b = reinterpret_cast<const char*>(w.base);
      if (d < b + w.n * sizeof(float) && b < d + bytes) w.stale = true;
    }
  }
  void weights_written(const void* dst, size_t bytes) {
    if (dtype_ != DType::BF16) return;
    std::lock_guard<std::mutex> lk(mu_);
    mark_stale(dst, bytes);
  }
  // The bf16 copy of a (rows, cols) operand with row stride ld when it lies in registered weights (refreshing a
  // stale copy first), else null (mu_ held).
  const uint16_t* weights_copy(const float* p, int64_t rows, int64_t cols, int64_t ld) {
    if (weights_.empty() || rows <= 0 || cols <= 0) return nullptr;
    Weights* w = weights_holding(p, size_t((rows - 1) * ld + cols));
    if (!w) return nullptr;
    if (w->stale) {
      ops::round_bf16(w->copy, w->base, 1, int64_t(w->n), int64_t(w->n));
      w->stale = false;
    }
    return w->copy + (p - w->base);
  }
  void drop_weights(const float* p) noexcept {
    try {
      std::lock_guard<std::mutex> lk(mu_);
      for (size_t i = 0; i < weights_.size(); ++i)
        if (weights_[i].base == p) {
          cuda::free_noexcept(weights_[i].copy);
          mem_note_free(MemSpace::Device, weights_[i].category, int64_t(weights_[i].n * sizeof(uint16_t)));
          weights_.erase(weights_.begin() + std::ptrdiff_t(i));
          return;
        }
    } catch (...) {  // a mutex that cannot be locked: leave the copy (it is freed with the process)
    }
  }

  const CublasApi* api_;
  DType dtype_;
  std::vector<Weights> weights_;  // mu_
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
