// The backend registry (registry.h). The CPU factories are defined by cpu/ (cpu_ops.cc, loss_rows.cc) and the CUDA
// ones by cuda/ (cuda_ops.cu, loss_rows.cu) when the build has CUDA; a build without CUDA gets the stubs below,
// which report "no CUDA backend" (nullptr), so callers need no #ifdef to ask.
#include "backends/registry.h"

namespace rift {

#ifndef RIFT_WITH_CUDA
RowBackend* cuda_backend() { return nullptr; }
OpsBackend* cuda_ops(DType) { return nullptr; }
#endif

}  // namespace rift
