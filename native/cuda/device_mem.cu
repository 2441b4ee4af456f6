// Device queries and raw device memory (see device_mem.h). Copies use the legacy default stream, so they are
// ordered with the loss kernels, which run on it too.
#include "cuda/cuda_check.h"
#include "cuda/device_mem.h"

#include <cuda_profiler_api.h>

namespace rift::cuda {

int device_count() noexcept {
  int n = 0;
  // No driver (cudaErrorInsufficientDriver), no device (cudaErrorNoDevice), ...: report 0 devices.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

DeviceProps device_props(int device) {
  cudaDeviceProp p{};
  RIFT_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  DeviceProps out;
  out.name = p.name;
  out.total_memory = p.totalGlobalMem;
  out.major = p.major;
  out.minor = p.minor;
  out.multiprocessors = p.multiProcessorCount;
  return out;
}

void* alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  RIFT_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void free(void* ptr) {
  if (ptr) RIFT_CUDA_CHECK(cudaFree(ptr));
}

void free_noexcept(void* ptr) noexcept {
  if (ptr && cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) RIFT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) RIFT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void synchronize() { RIFT_CUDA_CHECK(cudaDeviceSynchronize()); }

void profiler(bool on) { RIFT_CUDA_CHECK(on ? cudaProfilerStart() : cudaProfilerStop()); }

}  // namespace rift::cuda
