// The backend registry: the one layer that knows which backends exist and hands them out. core/ (RowBackend,
// core/loss.h) and model/ (OpsBackend, model/ops.h) define the interfaces and never name an implementation;
// cpu/ and cuda/ implement them; napi/ (and the CUDA self-test) pick one here. No Node, no CUDA in this header.
//
// The CPU backends always exist. The CUDA ones exist when the addon was built with CUDA (RIFT_WITH_CUDA) and the
// process sees a device (and, for the ops, a loadable cuBLAS); otherwise their factories return nullptr.
#pragma once
#include "core/loss.h"
#include "model/ops.h"

namespace rift {

// The CPU row backend of the fused loss (cpu/loss_rows.cc). Process-wide.
RowBackend& cpu_backend();
// The CUDA row backend (cuda/loss_rows.cu), or nullptr: built without CUDA, or no driver / device. Process-wide.
RowBackend* cuda_backend();

// The CPU ops backend (cpu/cpu_ops.cc; threads: rift::parallel_for; GEMM: OpenBLAS loaded at run time when present,
// else builtin). gemm_dtype BF16 gives a second process-wide instance whose gemm / matmul_* round both operands to
// bfloat16 (round to nearest even) and accumulate in fp32 — the CPU twin of the CUDA backend's bf16 tensor-core
// GEMMs (torch autocast's bf16 matmul) — and whose attention runs its two products on bf16 operands the same way
// (q, k, v and the probabilities; dout and dS in the backward: cpu/ops_attention_bf16.cc). Every other op is fp32
// in both instances.
OpsBackend& cpu_ops(DType gemm_dtype = DType::F32);

// The process-wide CUDA ops backend (cuda/cuda_ops.cu), or nullptr: built without CUDA, no CUDA device, or no
// loadable cuBLAS. Never throws. gemm_dtype BF16: the instance whose gemm / matmul_* run on bf16 operands (rounded
// from the fp32 inputs) with fp32 accumulation and fp32 output (cublasGemmEx, tensor cores); cpu_ops(BF16) is its
// twin. Self-test against the CPU twin: native/cuda/selftest/ (scripts/build-cuda-selftest.sh).
OpsBackend* cuda_ops(DType gemm_dtype = DType::F32);

// True when this build contains the CUDA backends (they may still be unusable on this machine).
constexpr bool cuda_built() {
#ifdef RIFT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace rift
