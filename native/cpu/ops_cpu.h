// Internal: the CPU implementations behind cpu_ops() (model/ops.h documents the semantics of each).
// Split by file: ops_gemm.cc, ops_norm_rope.cc, ops_attention.cc, ops_misc.cc; cpu_ops.cc wires the class.
#pragma once
#include <cstdint>

#include "model/ops.h"

namespace rift::cpu {

// ---- ops_gemm.cc
enum class GemmImpl { Builtin, OpenBlas };
// Row-major sgemm (see OpsBackend::gemm), dispatched to the selected implementation.
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The cache-blocked, packed, threaded kernel written here (always available).
void gemm_builtin(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
GemmImpl gemm_impl();
// Row-invariant GEMMs for the calling thread (ops_gemm.cc): the builtin kernel, every row of C summed the same
// way whatever M (OpsBackend::set_row_invariant).
void set_row_invariant(bool on);
bool row_invariant();
bool set_gemm_impl(GemmImpl impl);  // false when OpenBLAS is asked for and not loadable
int gemm_threads();

// ---- ops_bf16.cc (the BF16 instance of cpu_ops(): bf16 operands, fp32 accumulation)
// dst (rows, cols) contiguous = src (rows, cols, row stride ld) rounded to the nearest bf16 (ties to even, NaN
// stays NaN), held as fp32.
void round_bf16_matrix(float* dst, const float* src, int64_t rows, int64_t cols, int64_t ld);
// n values to / from bfloat16 bit patterns (OpsBackend::to_bf16 / from_bf16).
void to_bf16(uint16_t* dst, const float* src, int64_t n);
void from_bf16(float* dst, const uint16_t* src, int64_t n);
// A GEMM operand held as fp32 (f) or as bfloat16 bit patterns (h): exactly one is set.
struct Operand {
  const float* f = nullptr;
  const uint16_t* h = nullptr;
};
// gemm (same contract) with each operand fp32 or bf16: a bf16 operand is widened exactly; an fp32 one is rounded
// to bf16 first when `round` (the BF16 instance) and read in place otherwise. Copies go to thread-local scratch.
void gemm_mixed(bool round, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, Operand A,
                int64_t lda, Operand B, int64_t ldb, float beta, float* C, int64_t ldc);
// gemm (same contract) on round_bf16(A), round_bf16(B): gemm_mixed with both operands fp32 and round = true.
void gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---- ops_norm_rope.cc
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps);
void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                          float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t T, int64_t C, bool accumulate);
void rope(float* out, const float* inp, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta, bool inverse,
          bool accumulate);

// ---- ops_attention.cc
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                       int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t D, bool accumulate);

// ---- ops_misc.cc
void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t V, int64_t C);
void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V, int64_t C);
void bias_rows(float* out, const float* bias, int64_t M, int64_t N, bool accumulate);  // out[m] (+)= bias
void column_sums(float* dbias, const float* dout, int64_t M, int64_t N);               // dbias += Σ_m dout[m]
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     bool accumulate);
void add(float* out, const float* a, const float* b, int64_t n);
void scale(float* x, float s, int64_t n);
void zero(float* x, int64_t n);
double sumsq(const float* x, int64_t n);
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p);
void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T, int64_t Tmax,
              int64_t width);

}  // namespace rift::cpu
