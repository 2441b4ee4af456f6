// Grow-only scratch memory of the CPU kernels (gemm packs, attention tiles): 64-byte aligned and counted as
// Workspace in the memory tracker (core/memory.h). Kernels keep one per thread (thread_local; pool threads live
// for the process) or one per call. Contents are unspecified.
#pragma once
#include <cstddef>

#include "core/memory.h"

namespace rift::cpu {

class Scratch {
 public:
  float* get(size_t floats) {
    if (buf_.size() < floats) buf_ = HostBuffer(MemCategory::Workspace, floats);
    return buf_.data();
  }

 private:
  HostBuffer buf_;
};

}  // namespace rift::cpu
