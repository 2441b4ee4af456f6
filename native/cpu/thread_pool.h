// A small persistent thread pool: parallel_for over [0, n) in contiguous blocks, one job at a time.
#pragma once
#include <cstdint>
#include <functional>

namespace rift {

// Runs fn(begin, end) over a partition of [0, n) on the pool's threads (the caller takes part).
// Calls from several threads are serialised. Exceptions from fn are rethrown in the caller.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_block = 1);

int num_threads();
// Sets the thread count (>= 1); 0 restores the default (RIFT_NUM_THREADS or the hardware's core count).
void set_num_threads(int n);

}  // namespace rift
