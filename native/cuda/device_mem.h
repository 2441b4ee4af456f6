// Device queries and raw device memory for the N-API layer and the backends. Plain C++ (no CUDA headers), so
// any .cc file may include it; implemented in device_mem.cu. Every function throws std::runtime_error (with
// the CUDA error code and name) on failure, except device_count() and free_noexcept().
#pragma once
#include <cstddef>
#include <string>

namespace rift::cuda {

struct DeviceProps {
  std::string name;
  size_t total_memory = 0;   // bytes
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
};

// Number of CUDA devices; 0 when there is no device or no (or too old a) driver. Never throws.
int device_count() noexcept;
DeviceProps device_props(int device);

void* alloc(size_t bytes);               // device memory on the current device; bytes == 0 gives nullptr
void free(void* ptr);                    // nullptr is a no-op
void free_noexcept(void* ptr) noexcept;  // for destructors/finalizers: errors are ignored
void copy_to_device(void* dst, const void* src, size_t bytes);  // dst: device, src: host
void copy_to_host(void* dst, const void* src, size_t bytes);    // dst: host, src: device
void synchronize();                                             // waits for all work on the current device
void profiler(bool on);  // cudaProfilerStart / Stop: brackets what Nsight tools capture

}  // namespace rift::cuda
