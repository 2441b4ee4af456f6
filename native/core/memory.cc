#include "core/memory.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

namespace rift {
namespace {

constexpr int kCats = int(MemCategory::kCount);

struct Ledger {
  std::mutex mu;
  MemStats cat[2][kCats];
  MemStats total[2];
};
Ledger& ledger() {
  static Ledger* l = new Ledger();  // lives until exit: buffers may be freed during static destruction
  return *l;
}

thread_local std::atomic<int64_t>* tl_scope = nullptr;  // the innermost MemScope's counter on this thread

void bump(MemStats& s, int64_t delta) {
  s.current += delta;
  if (s.current > s.peak) s.peak = s.current;
}

}  // namespace

const char* mem_category_name(MemCategory c) {
  static const char* names[kCats] = {"params",      "grads",   "optimizer", "activations",
                                     "logitsChunk", "kvCache", "reference", "workspace"};
  const int i = int(c);
  return i >= 0 && i < kCats ? names[i] : "unknown";
}

void mem_note_alloc(MemSpace space, MemCategory c, int64_t bytes) {
  if (tl_scope) tl_scope->fetch_add(bytes, std::memory_order_relaxed);
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lk(l.mu);
  bump(l.cat[int(space)][int(c)], bytes);
  bump(l.total[int(space)], bytes);
}

void mem_note_free(MemSpace space, MemCategory c, int64_t bytes) {
  if (tl_scope) tl_scope->fetch_sub(bytes, std::memory_order_relaxed);
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lk(l.mu);
  l.cat[int(space)][int(c)].current -= bytes;
  l.total[int(space)].current -= bytes;
}

MemStats mem_stats(MemSpace space, MemCategory c) {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lk(l.mu);
  return l.cat[int(space)][int(c)];
}

MemStats mem_total(MemSpace space) {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lk(l.mu);
  return l.total[int(space)];
}

void mem_reset_peaks() {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lk(l.mu);
  for (int s = 0; s < 2; ++s) {
    for (int c = 0; c < kCats; ++c) l.cat[s][c].peak = l.cat[s][c].current;
    l.total[s].peak = l.total[s].current;
  }
}

MemScope::MemScope(std::atomic<int64_t>* counter) : prev_(tl_scope) { tl_scope = counter; }
MemScope::~MemScope() { tl_scope = prev_; }

HostBuffer::HostBuffer(MemCategory c, size_t floats) : size_(floats), cat_(c) {
  if (floats == 0) return;
  const size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
  data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!data_) throw std::bad_alloc();
  std::memset(data_, 0, bytes);
  mem_note_alloc(MemSpace::Host, cat_, int64_t(floats * sizeof(float)));
}

HostBuffer::~HostBuffer() { release(); }

void HostBuffer::release() {
  if (data_) {
    std::free(data_);
    mem_note_free(MemSpace::Host, cat_, int64_t(size_ * sizeof(float)));
  }
  data_ = nullptr;
  size_ = 0;
}

HostBuffer::HostBuffer(HostBuffer&& o) noexcept : data_(o.data_), size_(o.size_), cat_(o.cat_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    cat_ = o.cat_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace rift
