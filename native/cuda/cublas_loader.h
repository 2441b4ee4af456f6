// cuBLAS loaded at run time (dlopen), so the addon builds where no cuBLAS exists and loads on machines without
// one. Only what the ops backend uses is declared here, with the exact C signatures and enum values of
// cublas_api.h / library_types.h (CUDA 12 and 13 agree on all of them). Plain C++: no CUDA or cuBLAS headers.
//
// Every call that returns a cublasStatus_t goes through check(): a status other than CUBLAS_STATUS_SUCCESS
// becomes std::runtime_error("cuBLAS error 13 (CUBLAS_STATUS_EXECUTION_FAILED) in cublasSgemm_v2"). Never
// exit()/abort().
#pragma once
#include <string>

namespace rift::cuda {

// Opaque handle types (cublas_api.h: typedef struct cublasContext* cublasHandle_t; cudaStream_t is a pointer).
using cublasHandle_t = struct cublasContext*;
using cublasStreamPtr = void*;  // cudaStream_t (struct CUstream_st*); 0 = the legacy default stream

// Enums are plain C enums: passed as int in the C ABI.
using cublasStatus_t = int;
constexpr cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;  // cublas_api.h
using cublasOperation_t = int;
constexpr cublasOperation_t CUBLAS_OP_N = 0;  // cublas_api.h: CUBLAS_OP_N = 0
constexpr cublasOperation_t CUBLAS_OP_T = 1;  // cublas_api.h: CUBLAS_OP_T = 1
using cublasMath_t = int;
constexpr cublasMath_t CUBLAS_DEFAULT_MATH = 0;         // cublas_api.h: CUBLAS_DEFAULT_MATH = 0
constexpr cublasMath_t CUBLAS_PEDANTIC_MATH = 2;        // cublas_api.h: CUBLAS_PEDANTIC_MATH = 2
constexpr cublasMath_t CUBLAS_TF32_TENSOR_OP_MATH = 3;  // cublas_api.h: CUBLAS_TF32_TENSOR_OP_MATH = 3
using cudaDataType_t = int;
constexpr cudaDataType_t CUDA_R_32F = 0;    // library_types.h: CUDA_R_32F = 0
constexpr cudaDataType_t CUDA_R_16BF = 14;  // library_types.h: CUDA_R_16BF = 14 (__nv_bfloat16)
using cublasComputeType_t = int;
constexpr cublasComputeType_t CUBLAS_COMPUTE_32F = 68;            // cublas_api.h: CUBLAS_COMPUTE_32F = 68
constexpr cublasComputeType_t CUBLAS_COMPUTE_32F_PEDANTIC = 69;   // cublas_api.h: = 69
constexpr cublasComputeType_t CUBLAS_COMPUTE_32F_FAST_TF32 = 77;  // cublas_api.h: CUBLAS_COMPUTE_32F_FAST_TF32 = 77
using cublasGemmAlgo_t = int;
constexpr cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT = -1;  // cublas_api.h: CUBLAS_GEMM_DEFAULT = -1

struct CublasApi {
  std::string path;                                                                     // the library that was loaded
  cublasStatus_t (*create)(cublasHandle_t* handle) = nullptr;                           // cublasCreate_v2
  cublasStatus_t (*destroy)(cublasHandle_t handle) = nullptr;                           // cublasDestroy_v2
  cublasStatus_t (*set_stream)(cublasHandle_t handle, cublasStreamPtr s) = nullptr;     // cublasSetStream_v2
  cublasStatus_t (*set_math_mode)(cublasHandle_t handle, cublasMath_t mode) = nullptr;  // cublasSetMathMode
  // cublasSgemm_v2: column-major C (m, n) = alpha·op(A)·op(B) + beta·C; alpha/beta host pointers (default mode).
  cublasStatus_t (*sgemm)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                          int k, const float* alpha, const float* A, int lda, const float* B, int ldb,
                          const float* beta, float* C, int ldc) = nullptr;
  // cublasGemmEx: CUDA_R_32F operands with CUBLAS_COMPUTE_32F_FAST_TF32 (set_gemm "cublas-tf32"), and
  // CUDA_R_16BF operands with a CUDA_R_32F C and CUBLAS_COMPUTE_32F (the BF16 instance of cuda_ops()).
  cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) = nullptr;
  // cublasGemmBatchedEx: gemm_ex over batchCount (A_i, B_i, C_i) given as DEVICE arrays of device pointers (the
  // bf16 attention of cuda_attention_gemm.cu: one call per product over every (batch row, head)).
  cublasStatus_t (*gemm_batched_ex)(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                    int n, int k, const void* alpha, const void* const Aarray[], cudaDataType_t Atype,
                                    int lda, const void* const Barray[], cudaDataType_t Btype, int ldb,
                                    const void* beta, void* const Carray[], cudaDataType_t Ctype, int ldc,
                                    int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo) = nullptr;
  const char* (*status_string)(cublasStatus_t status) = nullptr;  // cublasGetStatusString (optional)
};

// The loaded API (libcublas.so.13, then libcublas.so.12), or nullptr when none could be loaded or a required
// symbol is missing. Loaded once, thread-safe; never throws.
const CublasApi* cublas_api() noexcept;
inline bool cublas_available() noexcept { return cublas_api() != nullptr; }
// Why cublas_api() is null ("" when it is not).
std::string cublas_load_error();

// Throws std::runtime_error("cuBLAS error N (NAME) in fn") when st != CUBLAS_STATUS_SUCCESS.
void cublas_check(cublasStatus_t st, const char* fn);

}  // namespace rift::cuda
