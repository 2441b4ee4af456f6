// The memory tracker: every large native allocation goes through it, tagged with a category, so
// `memory()` can report current and peak bytes per category (the RIFT vs DPO memory profile reads it).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace rift {

enum class MemCategory : int {
  Params = 0,
  Grads,
  Optimizer,
  Activations,
  LogitsChunk,
  KvCache,
  Reference,  // a reference model held for DPO
  Workspace,  // scratch owned by kernels (and, on a device, user DeviceTensors and the loss kernels' staging)
  kCount
};
const char* mem_category_name(MemCategory c);

enum class MemSpace : int { Host = 0, Device = 1 };

struct MemStats {
  int64_t current = 0, peak = 0;
};

// Records an allocation/free of `bytes` in a category (thread-safe). Peaks are per category and in total.
void mem_note_alloc(MemSpace space, MemCategory c, int64_t bytes);
void mem_note_free(MemSpace space, MemCategory c, int64_t bytes);
MemStats mem_stats(MemSpace space, MemCategory c);
MemStats mem_total(MemSpace space);
// Resets every peak to the current value (start of a measured region).
void mem_reset_peaks();

// Attribution: while a MemScope lives on a thread, every mem_note_alloc / mem_note_free made on that thread also
// adds +/- bytes to its counter (the innermost scope counts). The N-API layer learns this way what one Model holds,
// to report it to V8 (napi_adjust_external_memory).
class MemScope {
 public:
  explicit MemScope(std::atomic<int64_t>* counter);
  ~MemScope();
  MemScope(const MemScope&) = delete;
  MemScope& operator=(const MemScope&) = delete;

 private:
  std::atomic<int64_t>* prev_;
};

// A tracked, 64-byte aligned host float buffer (zero-initialised). Movable, not copyable.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(MemCategory c, size_t floats);
  ~HostBuffer();
  HostBuffer(HostBuffer&& o) noexcept;
  HostBuffer& operator=(HostBuffer&& o) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  MemCategory category() const { return cat_; }

 private:
  void release();
  float* data_ = nullptr;
  size_t size_ = 0;
  MemCategory cat_ = MemCategory::Workspace;
};

}  // namespace rift
