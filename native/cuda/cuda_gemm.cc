// The CUDA backend's GEMM (cuda_gemm.h).
#include "cuda/cuda_gemm.h"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda {
namespace {

size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

int to_int(int64_t x, const char* what) {
  if (x < 0 || x > int64_t(INT_MAX))
    throw std::runtime_error(std::string("cuda gemm: ") + what + " = " + std::to_string(x) +
                             " does not fit cuBLAS's 32-bit int");
  return int(x);
}

}  // namespace

void gemm(const GemmCtx& ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const uint16_t* A16,
          const uint16_t* B16) {
  if (alpha == 0.f) K = 0;
  const int m = to_int(N, "N"), n = to_int(M, "M"), k = to_int(K, "K");
  const int la = to_int(std::max<int64_t>(1, lda), "lda"), lb = to_int(std::max<int64_t>(1, ldb), "ldb");
  const int lc = to_int(std::max<int64_t>(1, ldc), "ldc");
  const cublasOperation_t opb = transB ? CUBLAS_OP_T : CUBLAS_OP_N, opa = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Stored shapes (row-major): A (K, M) when transA else (M, K); B (N, K) when transB else (K, N).
  const int64_t ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
  if (ctx.dtype != DType::BF16 && k > 0 && (A16 || B16)) {  // fp32 GEMM: widen the bf16 operand (exact)
    const int64_t na = A16 ? (ar - 1) * lda + ac : 0, nb = B16 ? (br - 1) * ldb + bc : 0;
    const size_t off_b = align256(size_t(na) * sizeof(float));
    char* base = static_cast<char*>(ctx.scratch(off_b + size_t(nb) * sizeof(float)));
    if (A16) ops::from_bf16(reinterpret_cast<float*>(base), A16, na), A = reinterpret_cast<float*>(base);
    if (B16)
      ops::from_bf16(reinterpret_cast<float*>(base + off_b), B16, nb), B = reinterpret_cast<float*>(base + off_b);
    A16 = B16 = nullptr;
  }
  if (ctx.dtype == DType::BF16) {
    // An operand given as bf16 is read as it is; one inside registered weights from their bf16 copy in place
    // (same offset and stride); any other is rounded into the scratch.
    const uint16_t* wa = k > 0 ? (A16 ? A16 : ctx.weights ? ctx.weights->copy_of(A, ar, ac, lda) : nullptr) : nullptr;
    const uint16_t* wb = k > 0 ? (B16 ? B16 : ctx.weights ? ctx.weights->copy_of(B, br, bc, ldb) : nullptr) : nullptr;
    const size_t bytes_a = wa ? 0 : align256(size_t(ar) * size_t(ac) * sizeof(uint16_t));
    const size_t bytes_b = wb ? 0 : size_t(br) * size_t(bc) * sizeof(uint16_t);
    char* base = static_cast<char*>(ctx.scratch(bytes_a + bytes_b));
    const uint16_t* a16 = wa ? wa : reinterpret_cast<uint16_t*>(base);
    const uint16_t* b16 = wb ? wb : reinterpret_cast<uint16_t*>(base + bytes_a);
    if (k > 0 && !wa) ops::round_bf16(reinterpret_cast<uint16_t*>(base), A, ar, ac, lda);
    if (k > 0 && !wb) ops::round_bf16(reinterpret_cast<uint16_t*>(base + bytes_a), B, br, bc, ldb);
    const int la16 = to_int(std::max<int64_t>(1, wa ? lda : ac), "lda");
    const int lb16 = to_int(std::max<int64_t>(1, wb ? ldb : bc), "ldb");
    cublas_check(ctx.api->gemm_ex(ctx.handle, opb, opa, m, n, k, &alpha, b16, CUDA_R_16BF, lb16, a16, CUDA_R_16BF, la16,
                                  &beta, C, CUDA_R_32F, lc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  } else if (ctx.tf32) {
    cublas_check(ctx.api->gemm_ex(ctx.handle, opb, opa, m, n, k, &alpha, B, CUDA_R_32F, lb, A, CUDA_R_32F, la, &beta, C,
                                  CUDA_R_32F, lc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  } else {
    cublas_check(ctx.api->sgemm(ctx.handle, opb, opa, m, n, k, &alpha, B, lb, A, la, &beta, C, lc), "cublasSgemm_v2");
  }
}

}  // namespace rift::cuda
