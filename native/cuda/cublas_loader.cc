// cuBLAS loaded with dlopen (see cublas_loader.h).
#include "cuda/cublas_loader.h"

#include "cuda/cuda_check.h"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

namespace rift::cuda {
namespace {

std::once_flag g_once;
CublasApi g_api;
bool g_ok = false;
std::string g_error;

template <typename F>
bool sym(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  return fn != nullptr;
}

void load() {
  const char* names[] = {"libcublas.so.13", "libcublas.so.12"};
  std::string tried;
  for (const char* name : names) {
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name);
      continue;
    }
    CublasApi api;
    api.path = name;
    const bool ok = sym(lib, "cublasCreate_v2", api.create) && sym(lib, "cublasDestroy_v2", api.destroy) &&
                    sym(lib, "cublasSetStream_v2", api.set_stream) &&
                    sym(lib, "cublasSetMathMode", api.set_math_mode) && sym(lib, "cublasSgemm_v2", api.sgemm) &&
                    sym(lib, "cublasGemmEx", api.gemm_ex) && sym(lib, "cublasGemmBatchedEx", api.gemm_batched_ex);
    if (!ok) {
      tried += std::string(tried.empty() ? "" : "; ") + name + ": a required symbol is missing";
      dlclose(lib);
      continue;
    }
    sym(lib, "cublasGetStatusString", api.status_string);  // optional (cuBLAS >= 11.4)
    g_api = api;                                           // the library stays loaded for the life of the process
    g_ok = true;
    return;
  }
  g_error = "cuBLAS could not be loaded (" + tried + ")";
}

const char* status_name(cublasStatus_t st) {
  switch (st) {  // cublas_api.h cublasStatus_t values
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return nullptr;
  }
}

}  // namespace

const CublasApi* cublas_api() noexcept {
  try {
    std::call_once(g_once, load);
  } catch (...) { return nullptr; }
  return g_ok ? &g_api : nullptr;
}

std::string cublas_load_error() { return cublas_api() ? std::string() : g_error; }

void cublas_check(cublasStatus_t st, const char* fn) {
  if (st == CUBLAS_STATUS_SUCCESS) {
    if (sync_checks())
      check(cudaDeviceSynchronize(), (std::string(fn) + " run (RIFT_CUDA_SYNC)").c_str(), __FILE__, __LINE__);
    return;
  }
  const char* name = status_name(st);
  std::string desc = name ? name : "unknown status";
  if (g_ok && g_api.status_string) {
    const char* s = g_api.status_string(st);
    if (s && desc != s) desc += std::string(": ") + s;
  }
  throw std::runtime_error("cuBLAS error " + std::to_string(st) + " (" + desc + ") in " + fn);
}

}  // namespace rift::cuda
