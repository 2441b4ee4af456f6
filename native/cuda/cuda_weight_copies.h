// Internal: the BF16 CUDA instance's persistent bf16 copies of the weights (model/ops.h register_weights), used
// by CudaOps (cuda_ops.cu). A registered fp32 region gets one bf16 copy of the same layout, allocated at once and
// filled lazily: the first GEMM operand read from the region after a write rounds the whole region once (copy_of);
// AdamW rewrites the copy in its own pass (current_copy). Not thread-safe: the caller holds its mutex.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/memory.h"

namespace rift::cuda {

class WeightCopies {
 public:
  // Allocates the copy of [region, region + n) floats (device memory, counted under c); a region registered
  // already is left as it is.
  void add(const float* region, size_t n, MemCategory c);
  // Marks every region overlapping [dst, dst + bytes) stale (written since its copy was made).
  void mark_stale(const void* dst, size_t bytes);
  // The bf16 copy of a (rows, cols) operand with row stride ld lying wholly in one region, refreshed first when
  // stale (one rounding pass on the legacy stream); null when it lies in none.
  const uint16_t* copy_of(const float* p, int64_t rows, int64_t cols, int64_t ld);
  // For an update of [p, p + n) floats: the place of its values in their region's copy when that copy is current
  // (the update rewrites it), else null; a range in no region marks what it overlaps stale.
  uint16_t* current_copy(float* p, size_t n);
  // Frees the copy of the region starting at p, if any (a released buffer). Never throws.
  void drop(const float* p) noexcept;
  bool empty() const { return regions_.empty(); }

 private:
  struct Region {
    const float* base;
    size_t n;  // floats
    MemCategory category;
    uint16_t* copy;  // n bf16 values
    bool stale;
  };
  Region* holding(const float* p, size_t n);
  std::vector<Region> regions_;
};

}  // namespace rift::cuda
