// NCCL in a build without CUDA (node-gyp, RIFT_NO_CUDA=1, no nvcc): there is no device memory to reduce.
#ifndef RIFT_WITH_CUDA
#include <stdexcept>

#include "distributed/collective.h"

namespace rift::dist {

std::unique_ptr<Collective> nccl_collective(Comm&) {
  throw std::runtime_error("NCCL: the addon was built without CUDA (no device memory to reduce)");
}

std::string nccl_describe() { return "unavailable: the addon was built without CUDA"; }

}  // namespace rift::dist
#endif
