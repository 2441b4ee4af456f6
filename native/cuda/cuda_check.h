// CUDA runtime errors as C++ exceptions. Never exit()/abort() inside the addon: every cudaError_t that is not
// cudaSuccess becomes a std::runtime_error such as
//   "CUDA error 2 (cudaErrorMemoryAllocation) in cudaMalloc at loss_rows.cu:123: out of memory"
// which the N-API layer turns into a JS Error.
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace rift::cuda {

inline std::string error_message(cudaError_t e, const char* expr, const char* file, int line) {
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  const char* paren = std::strchr(expr, '(');  // "cudaMalloc(&p, n)" -> "cudaMalloc"
  const std::string call = paren ? std::string(expr, size_t(paren - expr)) : std::string(expr);
  return "CUDA error " + std::to_string(int(e)) + " (" + cudaGetErrorName(e) + ") in " + call + " at " + base + ":" +
         std::to_string(line) + ": " + cudaGetErrorString(e);
}

inline void check(cudaError_t e, const char* expr, const char* file, int line) {
  if (e == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so the next call does not report it again
  throw std::runtime_error(error_message(e, expr, file, line));
}

// RIFT_CUDA_SYNC=1 (debugging): every kernel launch and cuBLAS call is followed by a device synchronisation and
// its check, so a fault in a kernel (an illegal address, say) is reported at that launch's file:line instead of at
// a later, unrelated synchronisation. Slow; off by default. Read once.
inline bool sync_checks() {
  static const bool on = [] {
    const char* e = std::getenv("RIFT_CUDA_SYNC");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return on;
}

inline void check_launch(const char* file, int line) {
  check(cudaGetLastError(), "kernel launch", file, line);
  if (sync_checks()) check(cudaDeviceSynchronize(), "kernel run (RIFT_CUDA_SYNC)", file, line);
}

// check_launch for a launch named by the op it belongs to (`what`, e.g. "attention softmax") instead of a source line:
// "CUDA error N (name) launching <what>", and with RIFT_CUDA_SYNC=1 the kernel's own fault as "... running <what>".
inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error ") + std::to_string(int(e)) + " (" + cudaGetErrorName(e) +
                             ") launching " + what);
  if (!sync_checks()) return;
  const cudaError_t r = cudaDeviceSynchronize();
  if (r == cudaSuccess) return;
  (void)cudaGetLastError();
  throw std::runtime_error(std::string("CUDA error ") + std::to_string(int(r)) + " (" + cudaGetErrorName(r) +
                           ") running " + what + ": " + cudaGetErrorString(r));
}

}  // namespace rift::cuda

// RIFT_CUDA_CHECK(cudaMalloc(&p, n)); throws std::runtime_error on failure.
#define RIFT_CUDA_CHECK(expr) ::rift::cuda::check((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: reports launch-configuration errors (bad grid, too much shared memory, ...), and with
// RIFT_CUDA_SYNC=1 the kernel's own faults.
#define RIFT_CUDA_CHECK_LAUNCH() ::rift::cuda::check_launch(__FILE__, __LINE__)
