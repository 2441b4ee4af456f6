// See external_ptr.h. The driver API is reached through cudaGetDriverEntryPoint[ByVersion], never linked: the
// addon links the static CUDA runtime only, and loads on machines without a driver.
#include "cuda/external_ptr.h"

#include <cuda.h>

#include <string>

#include "cuda/cuda_check.h"

namespace rift::cuda {
namespace {

using GetAttributes = CUresult (*)(unsigned int, CUpointer_attribute*, void**, CUdeviceptr);
using GetAddressRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
using GetCurrent = CUresult (*)(CUcontext*);

void* entry_point(const char* symbol) {
#if CUDART_VERSION >= 12050
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  RIFT_CUDA_CHECK(cudaGetDriverEntryPointByVersion(symbol, &fn, 12000, cudaEnableDefault, &found));
  if (found != cudaDriverEntryPointSuccess || fn == nullptr)
    throw std::runtime_error(std::string("the CUDA driver has no ") + symbol + " (too old a driver?)");
  return fn;
#elif CUDART_VERSION >= 11030
  void* fn = nullptr;
  RIFT_CUDA_CHECK(cudaGetDriverEntryPoint(symbol, &fn, cudaEnableDefault));
  if (fn == nullptr) throw std::runtime_error(std::string("the CUDA driver has no ") + symbol + " (too old a driver?)");
  return fn;
#else
  (void)symbol;
  throw std::runtime_error("checking external device pointers needs a CUDA runtime >= 11.3 at build time");
#endif
}

struct Driver {
  GetAttributes attributes;
  GetAddressRange range;
  GetCurrent current;
};

const Driver& driver() {
  static const Driver d{reinterpret_cast<GetAttributes>(entry_point("cuPointerGetAttributes")),
                        reinterpret_cast<GetAddressRange>(entry_point("cuMemGetAddressRange")),
                        reinterpret_cast<GetCurrent>(entry_point("cuCtxGetCurrent"))};
  return d;
}

}  // namespace

int current_device() {
  int d = 0;
  RIFT_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

ExternalPointer describe_pointer(uintptr_t address) {
  RIFT_CUDA_CHECK(cudaFree(nullptr));  // makes the current device's primary context current
  const Driver& drv = driver();
  ExternalPointer out;
  unsigned int type = 0;
  int managed = 0, ordinal = -1;
  CUcontext ctx = nullptr, mine = nullptr;
  CUpointer_attribute which[] = {CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_IS_MANAGED,
                                 CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, CU_POINTER_ATTRIBUTE_CONTEXT};
  void* data[] = {&type, &managed, &ordinal, &ctx};
  // Unknown addresses are not an error here: their attributes stay zero / null.
  if (drv.attributes(4, which, data, CUdeviceptr(address)) != CUDA_SUCCESS || type == 0) return out;
  out.cuda = true;
  out.managed = managed != 0;
  out.device_memory = type == CU_MEMORYTYPE_DEVICE || out.managed;
  out.device = ordinal;
  if (drv.current(&mine) == CUDA_SUCCESS && ctx != nullptr && ctx != mine) out.foreign_context = true;
  CUdeviceptr base = 0;
  size_t size = 0;
  if (out.device_memory && drv.range(&base, &size, CUdeviceptr(address)) == CUDA_SUCCESS) {
    out.base = uintptr_t(base);
    out.size = size;
  }
  return out;
}

}  // namespace rift::cuda
