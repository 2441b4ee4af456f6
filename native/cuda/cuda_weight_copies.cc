// The bf16 weight copies of the BF16 CUDA instance (cuda_weight_copies.h).
#include "cuda/cuda_weight_copies.h"

#include <stdexcept>

#include "cuda/cuda_ops_kernels.h"
#include "cuda/device_mem.h"

namespace rift::cuda {

void WeightCopies::add(const float* region, size_t n, MemCategory c) {
  if (!region || n == 0) return;
  if (n > SIZE_MAX / sizeof(uint16_t)) throw std::runtime_error("cuda weights copy: size overflow");
  for (const Region& r : regions_)
    if (r.base == region) return;
  auto* copy = static_cast<uint16_t*>(cuda::alloc(n * sizeof(uint16_t)));
  mem_note_alloc(MemSpace::Device, c, int64_t(n * sizeof(uint16_t)));
  regions_.push_back({region, n, c, copy, true});
}

WeightCopies::Region* WeightCopies::holding(const float* p, size_t n) {
  for (Region& r : regions_)
    if (p >= r.base && p < r.base + r.n && n <= size_t(r.base + r.n - p)) return &r;
  return nullptr;
}

void WeightCopies::mark_stale(const void* dst, size_t bytes) {
  const char* d = static_cast<const char*>(dst);
  for (Region& r : regions_) {
    const char* b = reinterpret_cast<const char*>(r.base);
    if (d < b + r.n * sizeof(float) && b < d + bytes) r.stale = true;
  }
}

const uint16_t* WeightCopies::copy_of(const float* p, int64_t rows, int64_t cols, int64_t ld) {
  if (regions_.empty() || rows <= 0 || cols <= 0) return nullptr;
  Region* r = holding(p, size_t((rows - 1) * ld + cols));
  if (!r) return nullptr;
  if (r->stale) {
    ops::round_bf16(r->copy, r->base, 1, int64_t(r->n), int64_t(r->n));
    r->stale = false;
  }
  return r->copy + (p - r->base);
}

uint16_t* WeightCopies::current_copy(float* p, size_t n) {
  if (Region* r = holding(p, n)) return r->stale ? nullptr : r->copy + (p - r->base);
  mark_stale(p, n * sizeof(float));
  return nullptr;
}

void WeightCopies::drop(const float* p) noexcept {
  for (size_t i = 0; i < regions_.size(); ++i)
    if (regions_[i].base == p) {
      cuda::free_noexcept(regions_[i].copy);
      mem_note_free(MemSpace::Device, regions_[i].category, int64_t(regions_[i].n * sizeof(uint16_t)));
      regions_.erase(regions_.begin() + std::ptrdiff_t(i));
      return;
    }
}

}  // namespace rift::cuda
