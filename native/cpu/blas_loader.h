// OpenBLAS, loaded at run time with dlopen: the build has no BLAS dependency and the addon works without one.
// Tried in order: libopenblas.so.0, libopenblas.so, libblas.so.3 (the last only when it is OpenBLAS behind
// Debian's alternatives: a reference BLAS is slower than the builtin kernel and is not used).
// RIFT_BLAS=off skips loading altogether.
#pragma once
#include <string>

namespace rift::cpu {

struct BlasLib {
  // cblas_sgemm with 32-bit integers (LP64 OpenBLAS): order 101 = row-major, trans 111 = no, 112 = yes.
  using SgemmFn = void (*)(int order, int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
                           const float* B, int ldb, float beta, float* C, int ldc);
  SgemmFn sgemm = nullptr;
  void (*set_num_threads)(int) = nullptr;  // openblas_set_num_threads
  int (*get_num_threads)() = nullptr;      // openblas_get_num_threads
  std::string path;
};

// The loaded library, or null. Loads once (thread-safe); never unloads.
const BlasLib* blas_lib();

}  // namespace rift::cpu
