// Data-dependent argument checks shared by the CPU ops, the CUDA ops and the ops binding: one rule and one message
// each, thrown as ArgError (core/loss.h; the N-API layer maps it to a RangeError naming the argument).
#pragma once
#include <cstdint>
#include <string>

#include "core/loss.h"

namespace rift {

// Every ids[t] (t < n) in [0, V).
inline void check_token_ids(const int32_t* ids, int64_t n, int64_t V) {
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] < 0 || ids[t] >= V)
      throw ArgError{ArgError::Range, "ids",
                     "ids: ids[" + std::to_string(t) + "] = " + std::to_string(ids[t]) + " is outside [0, " +
                         std::to_string(V) + ")"};
}

// Every pos[t] (t < n) >= 0.
inline void check_positions(const int32_t* pos, int64_t n) {
  for (int64_t t = 0; t < n; ++t)
    if (pos[t] < 0)
      throw ArgError{ArgError::Range, "positions",
                     "positions: positions[" + std::to_string(t) + "] = " + std::to_string(pos[t]) + " is negative"};
}

}  // namespace rift
