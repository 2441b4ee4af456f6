// The one summation order of OpsBackend::sumsq (Σ x² in double), followed by the CPU twin (cpu/ops_misc.cc) and
// the CUDA kernels (cuda/cuda_ops_elem.cu) alike, so that the result — the gradient norm — is the same number on
// both, bit for bit, and does not depend on threads, grid size or pointer alignment (docs/design.md §4.2):
//
//   1. x is cut into chunks of kChunk = 4096 elements (the last one may be short). Within chunk c, element
//      l = i − c·kChunk belongs to lane j = (l mod 1024) / 4 of kLanes = 256, at step (l / 1024)·4 + l mod 4:
//      each lane adds its (up to) 16 squares double(x)·double(x) in step order, from 0.
//   2. The 256 lane sums are combined by lane_tree: halving within each group of 32 lanes (offsets 16, 8, 4, 2,
//      1: s[j] += s[j + o] for j < o), then halving over the 8 group sums (offsets 4, 2, 1).
//   3. The chunk sums P_c are reduced the same way once more: lane j adds P_j, P_(j+256), P_(j+512), ... in
//      order, then lane_tree.
//
// A float's square is exact in double, so a fused multiply-add gives the same bits as a multiply then an add;
// every addition is an IEEE double addition in the order above. (On the GPU one thread is one lane, a block one
// chunk, and the tree is a warp butterfly then a butterfly over the warps' sums: the same pairs, commuted.)
#pragma once
#include <cstdint>

namespace rift::sumsq_order {

constexpr int64_t kLanes = 256;
constexpr int64_t kGroup = 32;           // lanes per first-level group (a warp)
constexpr int64_t kStride = 4 * kLanes;  // 1024: elements between a lane's groups of four
constexpr int64_t kChunk = 4 * kStride;  // 4096 elements per chunk

// Combines s[0, kLanes) in place in the order of step 2; returns the total (left in s[0]).
inline double lane_tree(double* s) {
  for (int64_t g = 0; g < kLanes; g += kGroup)
    for (int64_t o = kGroup / 2; o > 0; o /= 2)
      for (int64_t j = 0; j < o; ++j) s[g + j] += s[g + j + o];
  double w[kLanes / kGroup];
  for (int64_t g = 0; g < kLanes / kGroup; ++g) w[g] = s[g * kGroup];
  for (int64_t o = kLanes / kGroup / 2; o > 0; o /= 2)
    for (int64_t j = 0; j < o; ++j) w[j] += w[j + o];
  s[0] = w[0];
  return w[0];
}

}  // namespace rift::sumsq_order
