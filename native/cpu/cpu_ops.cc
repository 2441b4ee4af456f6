// The CPU OpsBackend: wires model/ops.h to the implementations in ops_gemm.cc, ops_norm_rope.cc,
// ops_attention.cc and ops_misc.cc. Linear layers are expressed through gemm here.
#include <cstdlib>
#include <cstring>
#include <new>

#include "backends/registry.h"
#include "cpu/blas_loader.h"
#include "cpu/ops_attention_bf16.h"
#include "cpu/ops_cpu.h"

namespace rift {
namespace {

class CpuOps final : public OpsBackend {
 public:
  explicit CpuOps(DType gemm_dtype) : dtype_(gemm_dtype) {}
  const char* name() const override { return "cpu"; }

  MemSpace space() const override { return MemSpace::Host; }
  float* alloc(MemCategory c, size_t n) override {
    if (n == 0) return nullptr;
    if (n > (SIZE_MAX - 63) / sizeof(float)) throw std::bad_alloc();
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    mem_note_alloc(MemSpace::Host, c, int64_t(n * sizeof(float)));
    return static_cast<float*>(p);
  }
  void release(float* p, MemCategory c, size_t n) noexcept override {
    if (!p) return;
    std::free(p);
    mem_note_free(MemSpace::Host, c, int64_t(n * sizeof(float)));
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) override {
    for (size_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  }

  OpsInfo info() const override {
    OpsInfo i;
    i.gemm = cpu::gemm_impl() == cpu::GemmImpl::OpenBlas ? "openblas" : "builtin";
    i.threads = cpu::gemm_threads();
    const cpu::BlasLib* lib = cpu::blas_lib();
    i.blas_available = lib != nullptr;
    i.blas_path = lib ? lib->path : "";
    i.gemm_dtype = dtype_;
    return i;
  }

  bool set_row_invariant(bool on) override {
    const bool prev = cpu::row_invariant();
    cpu::set_row_invariant(on);
    return prev;
  }

  bool set_gemm(const std::string& impl) override {
    if (impl == "builtin") return cpu::set_gemm_impl(cpu::GemmImpl::Builtin);
    if (impl == "openblas") return cpu::set_gemm_impl(cpu::GemmImpl::OpenBlas);
    return false;
  }

  // BF16 instance: every GEMM operand (A and B; inp / weight, dout / weight, dout / inp) rounded to bf16, fp32
  // accumulation and output (cpu::gemm_bf16). Bias and dbias stay fp32 (from the fp32 bias / dout).
  void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    mm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  // out = bias (or out += bias), then out += inp · weightᵀ: one gemm with beta = 1.
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t M, int64_t N,
                      int64_t K, bool accumulate) override {
    if (bias) cpu::bias_rows(out, bias, M, N, accumulate);
    const float beta = (bias || accumulate) ? 1.f : 0.f;
    mm(false, true, M, N, K, 1.f, inp, K, weight, K, beta, out, N);
  }

  void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                       const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate) override {
    if (dinp) mm(false, false, M, K, N, 1.f, dout, N, weight, K, accumulate ? 1.f : 0.f, dinp, K);
    if (dweight) mm(true, false, N, K, M, 1.f, dout, N, inp, K, 1.f, dweight, K);
    if (dbias) cpu::column_sums(dbias, dout, M, N);
  }

  // bf16 activations (model/ops.h): the input is widened exactly into the gemm's scratch, where the BF16 instance
  // would have put its rounded fp32 input, so results equal matmul_forward / matmul_backward on from_bf16(inp).
  void matmul_forward_bf16(float* out, const uint16_t* inp, const float* weight, const float* bias, int64_t M,
                           int64_t N, int64_t K, bool accumulate) override {
    if (bias) cpu::bias_rows(out, bias, M, N, accumulate);
    const float beta = (bias || accumulate) ? 1.f : 0.f;
    cpu::gemm_mixed(dtype_ == DType::BF16, false, true, M, N, K, 1.f, {nullptr, inp}, K, {weight, nullptr}, K, beta,
                    out, N);
  }
  void matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const uint16_t* inp,
                            const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate) override {
    if (dinp) mm(false, false, M, K, N, 1.f, dout, N, weight, K, accumulate ? 1.f : 0.f, dinp, K);
    if (dweight)
      cpu::gemm_mixed(dtype_ == DType::BF16, true, false, N, K, M, 1.f, {dout, nullptr}, N, {nullptr, inp}, K, 1.f,
                      dweight, K);
    if (dbias) cpu::column_sums(dbias, dout, M, N);
  }
  void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                            float eps) override {
    cpu::rmsnorm_forward_bf16(out, rstd, inp, weight, T, C, eps);
  }
  void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n) override {
    cpu::swiglu_forward_bf16(out, gate, up, n);
  }

  void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t V, int64_t C) override {
    cpu::embedding_forward(out, ids, wte, T, V, C);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V,
                          int64_t C) override {
    cpu::embedding_backward(dwte, dout, ids, T, V, C);
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                       float eps) override {
    cpu::rmsnorm_forward(out, rstd, inp, weight, T, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                        const float* rstd, int64_t T, int64_t C, bool accumulate) override {
    cpu::rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, T, C, accumulate);
  }

  void rope_forward(float* out, const float* inp, const int32_t* pos, int64_t T, int64_t H, int64_t D,
                    float theta) override {
    cpu::rope(out, inp, pos, T, H, D, theta, false, false);
  }
  void rope_backward(float* dinp, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                     bool accumulate) override {
    cpu::rope(dinp, dout, pos, T, H, D, theta, true, accumulate);
  }

  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                         int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows) override {
    if (dtype_ == DType::BF16)
      return cpu::attention_forward_bf16(out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D, rows);
    cpu::attention_forward(out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D, rows);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                          const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                          int64_t Hkv, int64_t D, bool accumulate) override {
    if (dtype_ == DType::BF16)
      return cpu::attention_backward_bf16(dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate);
    cpu::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate);
  }

  void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T,
                int64_t Tmax, int64_t width) override {
    cpu::kv_write(cache, x, slot, pos, B, T, Tmax, width);
  }

  void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) override {
    cpu::swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                       bool accumulate) override {
    cpu::swiglu_backward(dgate, dup, dout, gate, up, n, accumulate);
  }

  void to_bf16(uint16_t* dst, const float* src, int64_t n) override { cpu::to_bf16(dst, src, n); }
  void from_bf16(float* dst, const uint16_t* src, int64_t n) override { cpu::from_bf16(dst, src, n); }
  void add(float* out, const float* a, const float* b, int64_t n) override { cpu::add(out, a, b, n); }
  void scale(float* x, float s, int64_t n) override { cpu::scale(x, s, n); }
  void zero(float* x, int64_t n) override { cpu::zero(x, n); }
  double sumsq(const float* x, int64_t n) override { return cpu::sumsq(x, n); }
  void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p) override {
    cpu::adamw(param, grad, m, v, n, p);
  }

 private:
  void mm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (dtype_ == DType::BF16)
      cpu::gemm_bf16(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
      cpu::gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  DType dtype_;
};

}  // namespace

OpsBackend& cpu_ops(DType gemm_dtype) {
  static CpuOps f32(DType::F32), bf16(DType::BF16);
  return gemm_dtype == DType::BF16 ? bf16 : f32;
}

}  // namespace rift
