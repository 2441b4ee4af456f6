// Internal: the bf16 attention of cpu_ops(DType::BF16), the CPU twin of cuda/cuda_attention_gemm.cu
// (ops_attention_bf16.cc documents the roundings). Same arguments and contract as OpsBackend::attention_*.
#pragma once
#include <cstdint>

#include "model/ops.h"

namespace rift::cpu {

void attention_forward_bf16(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                            int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D,
                            const KvRows* rows);
void attention_backward_bf16(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                             int64_t Hkv, int64_t D, bool accumulate);

}  // namespace rift::cpu
