// Internal: the kernel launchers behind CudaOps (cuda_ops.cu). Every pointer is device memory unless named
// host_; scratch arguments are device workspace sized by the caller as documented. Launchers enqueue on the
// legacy default stream, check the launch (std::runtime_error) and do not synchronise.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "model/ops.h"

namespace rift::cuda::ops {

// ---- cuda_ops_elem.cu
void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t C);  // ids checked
// Segments of tokens with one id: order (T) = token indices grouped by id, ascending token order inside a group;
// seg (U + 1) offsets into order; seg_id (U) the id of each group. dwte[id] += Σ dout[t] in token order.
void embedding_backward(float* dwte, const float* dout, const int32_t* order, const int32_t* seg, const int32_t* seg_id,
                        int64_t U, int64_t C);
// ---- cuda_ops_embedding.cc: ids (device) copied back and checked (check_token_ids: std::out_of_range naming the
// bad id), grouped on the host, then embedding_backward above; scratch(bytes): device workspace of at least bytes.
void embedding_backward_grouped(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V, int64_t C,
                                const std::function<void*(size_t)>& scratch);
void bias_rows(float* out, const float* bias, int64_t M, int64_t N, bool accumulate);
// Rows per partial of the column reductions and the scratch they need (doubles).
int64_t colsum_rows_per_part(int64_t M, int64_t N);
int64_t colsum_scratch(int64_t M, int64_t N);
void column_sums(float* dbias, const float* dout, int64_t M, int64_t N, double* scratch);
// dst (N) += Σ_p partial[p][c] over P rows of doubles (the second pass of column_sums and of RMSNorm's dweight).
void colsum_finish(float* dst, const double* partial, int64_t P, int64_t N);
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n);  // bf16 of the same value
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     bool accumulate);
void add(float* out, const float* a, const float* b, int64_t n);
void scale(float* x, float s, int64_t n);
void zero(float* x, int64_t n);
// OpsBackend::kv_write: cache row (slot[b], pos[b·T + t]) ← x row b·T + t (slot, pos checked by the caller).
void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T, int64_t Tmax,
              int64_t width);
// mirror: null, or n bf16 values rewritten from the updated param (the BF16 instance's weight copy).
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p,
           uint16_t* mirror = nullptr);

// ---- cuda_ops_sumsq.cu: Σ x² in the order of backends/sumsq_order.h (the CPU twin's). scratch: sumsq_scratch(n)
// doubles. Synchronous: returns the value (one 8-byte copy to the host).
int64_t sumsq_scratch(int64_t n);
double sumsq(const float* x, int64_t n, double* scratch);

// ---- cuda_ops_norm_rope.cu
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps);
void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                          float eps);  // bf16 of the same value
// scratch: colsum_scratch(T, C) doubles when dweight is not null.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t T, int64_t C, bool accumulate, double* scratch);
// inv_freq (D/2) computed on the host as the CPU twin does; positions checked (>= 0).
void rope(float* out, const float* inp, const int32_t* pos, const float* inv_freq, int64_t T, int64_t H, int64_t D,
          bool inverse, bool accumulate);

// ---- cuda_ops_attention.cu
constexpr int64_t kMaxHeadDim = 256;
// rows: null, or the per-row past / slot arrays (device memory) of a batched KV cache (model/ops.h KvRows).
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                       int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows);
// scratch: B·Hq·T floats (Di = Σ_d dout·out per query row).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t D, bool accumulate, float* scratch);

// ---- cuda_ops_bf16.cu
// dst (rows, cols) contiguous bfloat16 bit patterns (== __nv_bfloat16, CUDA_R_16BF) = src (rows, cols) fp32 with
// row stride ld, rounded to nearest even (NaN stays NaN) exactly as the CPU twin (cpu/vmath.h f32_to_bf16).
void round_bf16(uint16_t* dst, const float* src, int64_t rows, int64_t cols, int64_t ld);
void from_bf16(float* dst, const uint16_t* src, int64_t n);  // exact widening

}  // namespace rift::cuda::ops
