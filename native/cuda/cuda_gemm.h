// Internal: the CUDA backend's GEMM (cuda_gemm.cc), row-major C = alpha·op(A)·op(B) + beta·C through column-major
// cuBLAS (loaded at run time, cublas_loader.h). The operand mapping is explained in cuda_ops.cu's header comment.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/loss.h"
#include "cuda/cublas_loader.h"
#include "cuda/cuda_weight_copies.h"

namespace rift::cuda {

struct GemmCtx {
  const CublasApi* api = nullptr;
  cublasHandle_t handle = nullptr;
  DType dtype = DType::F32;                    // BF16: bf16 operands, fp32 accumulation (tensor cores)
  bool tf32 = false;                           // F32 only: CUBLAS_COMPUTE_32F_FAST_TF32
  WeightCopies* weights = nullptr;             // BF16: operands inside registered weights read from their bf16 copy
  std::function<void*(size_t bytes)> scratch;  // device workspace of at least bytes (256-byte aligned)
};

// F32: sgemm, or cublasGemmEx with TF32 compute when ctx.tf32. BF16: each operand that is not given as bf16 and
// does not lie in registered weights is rounded to a contiguous bf16 copy in the scratch (A's at offset 0, B's at
// the next 256-byte boundary; ld = stored columns), then cublasGemmEx with CUDA_R_16BF operands, fp32 C and
// CUBLAS_COMPUTE_32F. A16 / B16 (optional): the operand given as bf16 bit patterns (same shape and leading
// dimension) instead of A / B (model/ops.h matmul_*_bf16): BF16 reads it as it is; F32 widens it into the scratch.
// alpha == 0 or K == 0: C = beta·C, A and B unread. Sizes that do not fit cuBLAS's int throw std::runtime_error.
void gemm(const GemmCtx& ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const uint16_t* A16 = nullptr,
          const uint16_t* B16 = nullptr);

}  // namespace rift::cuda
