// Internal: the fp32 → bf16 conversions of the bf16 attention (cuda_attention_gemm.cu), in
// cuda_attention_convert.cu. Each rounds to nearest even (__float2bfloat16), exactly as the CPU twin's to_bf16.
// Legacy default stream; launch errors are thrown as std::runtime_error naming the conversion.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "model/ops.h"

namespace rift::cuda {

// dst[b·n + i] = bf16(src[b·sstride + i]) for b < B, i < n.
void to_bf16_rows(__nv_bfloat16* dst, const float* src, int64_t B, int64_t n, int64_t sstride);

// A batched KV cache's k or v (n = L·w per batch row): dst[b·n + i] = bf16(src[slot[b]·sstride + i]) for the
// first (past[b] + Tq)·w elements of batch row b, 0 for the rest (those keys are masked; the zeros keep P̃·ṽ free of
// whatever stale positions of a shorter row hold).
void kv_to_bf16_rows(__nv_bfloat16* dst, const float* src, int64_t B, int64_t L, int64_t w, int64_t sstride,
                     const KvRows& rows, int64_t Tq);

// The backward's chunked head-major copy: src (B, T, Hq, D) fp32 → dst bf16, row (b, t, h) of chunk c = t / R
// (first row r0 = c·R, r = min(R, T − r0) rows) at row r0·B·Hq + (b·Hq + h)·r + (t − r0).
void to_bf16_chunked(__nv_bfloat16* dst, const float* src, int64_t B, int64_t T, int64_t Hq, int64_t D, int64_t R);

}  // namespace rift::cuda
