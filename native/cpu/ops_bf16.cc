// bf16-operand GEMM of the CPU backend's BF16 instance (cpu_ops(DType::BF16)): both operands are rounded to
// bfloat16 (round to nearest even, NaN stays NaN: vmath.h f32_to_bf16, the same rounding as lib/kernels/bf16.ts)
// into fp32 scratch, then the fp32 gemm multiplies them. A product of two bf16 values (8-bit significands) is
// exact in fp32, so this is bf16 inputs with fp32 multiply-accumulate — what the CUDA twin's cublasGemmEx
// (CUDA_R_16BF operands, CUBLAS_COMPUTE_32F) computes, up to the order of the fp32 sums.
#include <algorithm>

#include "cpu/ops_cpu.h"
#include "cpu/scratch.h"
#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::cpu {

void round_bf16_matrix(float* dst, const float* src, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return;
  auto body = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* s = src + r * ld;
      float* d = dst + r * cols;
      for (int64_t c = 0; c < cols; ++c) d[c] = bf16_to_f32(f32_to_bf16(s[c]));
    }
  };
  // Threads only pay off past a few hundred KB; a row block of >= 16K elements per task.
  if (rows * cols < (int64_t(1) << 16))
    body(0, rows);
  else
    parallel_for(rows, body, std::max<int64_t>(1, (int64_t(1) << 14) / cols));
}

void to_bf16(uint16_t* dst, const float* src, int64_t n) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) dst[i] = f32_to_bf16(src[i]);
      },
      int64_t(1) << 15);
}

void from_bf16(float* dst, const uint16_t* src, int64_t n) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) dst[i] = bf16_to_f32(src[i]);
      },
      int64_t(1) << 15);
}

namespace {

// An operand's logical (rows, cols) region as fp32 for gemm(): a bf16 operand widened (exact), an fp32 one rounded
// to bf16 when `round`, else used in place. dst: contiguous scratch (ld = cols) when a copy is made.
const float* operand(const Operand& x, bool round, int64_t rows, int64_t cols, int64_t ld, float* dst,
                     int64_t* ld_out) {
  *ld_out = ld;
  if (!x.h && !round) return x.f;
  *ld_out = std::max<int64_t>(1, cols);
  if (x.h && ld == cols) {
    from_bf16(dst, x.h, rows * cols);
  } else if (x.h) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = bf16_to_f32(x.h[r * ld + c]);
  } else {
    round_bf16_matrix(dst, x.f, rows, cols, ld);
  }
  return dst;
}

}  // namespace

void gemm_mixed(bool round, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, Operand A,
                int64_t lda, Operand B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // operands not read: C = beta·C exactly as the fp32 gemm does it
    gemm(transA, transB, M, N, K, alpha, A.f, lda, B.f, ldb, beta, C, ldc);
    return;
  }
  // Stored shapes: A is (K, M) when transA else (M, K); B is (N, K) when transB else (K, N). Only the logical
  // region is converted (leading-dimension padding is never read), into contiguous copies with ld = stored cols.
  const int64_t ar = transA ? K : M, ac = transA ? M : K, br = transB ? N : K, bc = transB ? K : N;
  const bool copy_a = A.h || round, copy_b = B.h || round;
  // One scratch per thread (grow-only, Workspace in the memory tracker): concurrent callers never share it.
  thread_local Scratch scratch;
  const size_t na = copy_a ? size_t(ar) * size_t(ac) : 0, nb = copy_b ? size_t(br) * size_t(bc) : 0;
  const size_t off_b = (na + 15) / 16 * 16;  // B's copy starts 64-byte aligned
  float* a = na + nb ? scratch.get(off_b + nb) : nullptr;
  int64_t la = lda, lb = ldb;
  const float* pa = operand(A, round, ar, ac, lda, a, &la);
  const float* pb = operand(B, round, br, bc, ldb, a ? a + off_b : nullptr, &lb);
  gemm(transA, transB, M, N, K, alpha, pa, la, pb, lb, beta, C, ldc);
}

void gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_mixed(true, transA, transB, M, N, K, alpha, Operand{A, nullptr}, lda, Operand{B, nullptr}, ldb, beta, C, ldc);
}

}  // namespace rift::cpu
