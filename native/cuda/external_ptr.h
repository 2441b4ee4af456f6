// What the CUDA driver knows about a raw device address handed to rift by other code (another addon, the
// caller's own CUDA code): the memory type, device, context and the allocation that contains it. Plain C++ (no
// CUDA headers); implemented in external_ptr.cc through the driver entry points the CUDA runtime hands out, so the
// addon still loads without a driver. Used to validate DeviceTensor views of external memory (napi/device.cc).
#pragma once
#include <cstddef>
#include <cstdint>

namespace rift::cuda {

struct ExternalPointer {
  bool cuda = false;           // the driver knows the address (allocated, mapped or registered through CUDA)
  bool device_memory = false;  // device memory or managed memory: kernels on `device` may read and write it
  bool managed = false;
  int device = -1;               // the device it was allocated on or registered with
  bool foreign_context = false;  // allocated in a CUDA context that is not the current (primary) one
  uintptr_t base = 0;            // the allocation that contains the address: [base, base + size)
  size_t size = 0;
};

// Describes `address`, initialising the runtime on the current device first. Throws std::runtime_error when the
// driver entry points are unavailable (CUDA runtime < 11.3 at build time, or a driver too old).
ExternalPointer describe_pointer(uintptr_t address);

// The device the runtime uses for this thread (where DeviceTensor memory is allocated and the kernels run).
int current_device();

}  // namespace rift::cuda
