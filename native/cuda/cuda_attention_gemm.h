// Internal: the bf16 attention of cuda_ops(DType::BF16) (cuda_attention_gemm.cu). Causal GQA attention whose two
// products run as tensor-core GEMMs (cublasGemmBatchedEx, bf16 operands, fp32 accumulation) over chunks of query
// rows: a chunk's scores (rows × keys, every (batch row, head)) are the largest buffer — no T×T matrix exists.
// Same arguments and contract as OpsBackend::attention_* (model/ops.h); the CPU twin is
// cpu/ops_attention_bf16.cc, whose comment gives the exact roundings.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "cuda/cublas_loader.h"
#include "model/ops.h"

namespace rift::cuda {

constexpr size_t kAttentionChunkBytesDefault = size_t(256) << 20;

// The chunk budget from the value of RIFT_CUDA_ATTENTION_CHUNK_BYTES (null: unset): a decimal integer number of
// bytes in [1, 2^48]. Anything else (empty, signs, spaces, suffixes, 0, too large) is ignored: the default is
// returned and *warning (when not null) says why; valid values and an unset variable leave it empty. Host code.
size_t attention_chunk_bytes(const char* value, std::string* warning);
// attention_chunk_bytes of RIFT_CUDA_ATTENTION_CHUNK_BYTES, read once per process; a bad value's warning goes to
// stderr once (one line).
size_t attention_chunk_bytes_from_env();

struct AttnGemmCtx {
  const CublasApi* api = nullptr;
  cublasHandle_t handle = nullptr;
  // Device scratch of at least `bytes` (256-byte aligned), valid until the next call (the backend's scratch()).
  std::function<void*(size_t bytes)> scratch;
  // Bytes of one chunk's scores per (batch row × head) budget: chunks are sized so that all (batch row, head)
  // score rows of a chunk take at most this many bytes (fp32 S + bf16 P). Default 256 MiB; the CUDA backend takes
  // RIFT_CUDA_ATTENTION_CHUNK_BYTES (attention_chunk_bytes) when set.
  size_t chunk_bytes = kAttentionChunkBytesDefault;
};

void attention_forward_gemm(const AttnGemmCtx& ctx, float* out, float* lse, const float* q, const float* k,
                            const float* v, int64_t B, int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv,
                            int64_t D, const KvRows* rows);
void attention_backward_gemm(const AttnGemmCtx& ctx, float* dq, float* dk, float* dv, const float* dout, const float* q,
                             const float* k, const float* v, const float* out, const float* lse, int64_t B, int64_t T,
                             int64_t Hq, int64_t Hkv, int64_t D, bool accumulate);

}  // namespace rift::cuda
