// Internal: the fused tensor-core attention of the CUDA backend (cuda_attention_flash_fwd.cu, _bwd.cu): causal GQA
// attention, flash-style — one kernel per pass, Q·Kᵀ, the online softmax and P·V in registers, bf16 operands on
// mma.sync.m16n8k16 with fp32 accumulation (sm_80 and newer), no scores in device memory. Same arguments and
// contract as OpsBackend::attention_* (model/ops.h); CPU twin: cpu/ops_attention_flash.cc (which states the
// roundings); docs/design.md "Fused flash attention". Plain C++ header (implemented in .cu files).
//
// Selection: RIFT_CUDA_ATTENTION=flash (read at every call) makes the BF16 instance of cuda_ops() run these kernels
// for head dimensions 64 and 128 on sm_80+; otherwise — and whenever a kernel cannot run — it keeps the chunked-GEMM
// path (cuda_attention_gemm.h). A batched KV cache (KvRows, continuous-batching decode) always takes the chunked
// path.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "model/ops.h"

namespace rift::cuda {

// RIFT_CUDA_ATTENTION == "flash".
bool flash_selected();
// "" when the fused kernels can run head dimension D on the current device, else the reason.
std::string flash_unsupported(int64_t D);

// Direct calls on device pointers (16-byte aligned). Throw std::runtime_error for an unsupported D or device, or a
// CUDA error. di: B·Hq·T floats of device scratch.
void flash_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                   int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D);
void flash_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                    const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                    bool accumulate, float* di);

// The engine's hook (cuda_ops.cu): when flash_selected(), runs the fused kernel and returns true; returns false when
// it is not selected, for a KvRows call, or when the kernel cannot run here (arch < sm_80, head dimension,
// alignment, a kernel that cannot be configured) — the last case after ONE line on stderr per process. Nothing has
// been written when it returns false. scratch: the backend's device scratch (valid until its next call).
bool flash_try_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                       int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows);
bool flash_try_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t D, bool accumulate, const std::function<void*(size_t)>& scratch);

// Mean milliseconds of body() over `iters` runs on the default stream, timed with CUDA events (after one untimed run).
float time_ms(const std::function<void()>& body, int iters);

}  // namespace rift::cuda
