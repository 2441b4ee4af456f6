// Baselines for the benchmarks (bench/run.ts): the UNFUSED SFT path and a threaded copy. Not used by the
// library itself; they exist so the fused kernel can be measured against a fair C++ baseline and against the
// machine's copy bandwidth in the same run (docs/design.md §5.5). No Node in this header.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/loss.h"

namespace rift::bench {

// Unfused SFT, written the way a framework runs it op by op (threaded, -O3, std::exp):
//   1. logp = log_softmax(z)               into a scratch fp32 (N, V) buffer (kept between calls, grown)
//   2. ℓ_t = logp[t, y_t]; loss = mean −ℓ_t over rows with y_t != kIgnoreIndex
//   3. grad = (exp(logp) − onehot(y)) / n_tokens   (ignored rows: 0), written in the logits' dtype
// logits: (N, V) f32 or bf16 (uint16 bits); grad: (N, V) same dtype, may equal logits; targets: (N).
// vector_exp: use vmath.h's vexp (vectorised, as the fused kernel does) instead of std::exp (scalar libm
// calls without -ffast-math), so the benchmark can separate what fusion buys from what a vector exp buys.
// Returns the loss (0 when no row has a target). Arguments are assumed checked by the caller.
double unfused_sft(const void* logits, void* grad, DType dtype, int64_t N, int64_t V, const int32_t* targets,
                   bool vector_exp = false);

// memcpy(dst, src, bytes) split across the thread pool in 4 KiB-aligned blocks. Regions must not overlap.
// Bandwidth reported by callers counts read + write: 2·bytes / time.
void copy(void* dst, const void* src, size_t bytes);

}  // namespace rift::bench
