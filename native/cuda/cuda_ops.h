// The CUDA OpsBackend (model/ops.h): every op on device pointers, matching the CPU twin (cpu/cpu_ops.cc) op for
// op. GEMMs go through cuBLAS loaded at run time (cublas_loader.h); the rest are kernels in cuda_ops_*.cu. All
// work runs on the legacy default stream (ordered with the loss kernels and device_mem.h copies).
// Plain C++ header: any .cc file may include it (only when RIFT_WITH_CUDA is defined: it is implemented in .cu).
#pragma once
#include "model/ops.h"

namespace rift {

// The process-wide CUDA backend, or nullptr when there is no CUDA device or no loadable cuBLAS. Never throws.
// Selftest plan: cuda/cuda_ops_selftest.md.
// gemm_dtype BF16: a second instance whose gemm / matmul_* run on bf16 operands (rounded from the fp32 inputs)
// with fp32 accumulation and fp32 output (cublasGemmEx, tensor cores); see cpu_ops() for the twin.
OpsBackend* cuda_ops(DType gemm_dtype = DType::F32);

}  // namespace rift
