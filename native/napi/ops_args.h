// Shape checks of the ops binding (napi/ops.cc) over args::Span arguments (napi/args.h): exact lengths from shape
// arguments and overlaps between outputs and inputs, each error naming its argument.
#pragma once
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/loss.h"
#include "napi/args.h"
#include "napi/errors.h"

namespace rift::napi::ops_args {

using args::Span;

// Product of shape arguments; RangeError (naming arg) past 2^53.
inline int64_t product(Napi::Env env, const std::string& arg, std::initializer_list<int64_t> dims) {
  double p = 1;
  int64_t r = 1;
  for (int64_t d : dims) {
    p *= double(d);
    r *= d;
    if (p > 9007199254740991.0) throw_range(env, arg, "size is too large");
  }
  return r;
}

template <typename T>
void expect_len(Napi::Env env, const Span<T>& s, std::initializer_list<int64_t> dims, const char* formula) {
  if (!s.present) return;
  const int64_t n = product(env, s.name, dims);
  if (s.length != n)
    throw_range(env, s.name,
                std::string("length must be ") + formula + " = " + std::to_string(n) + " (got " +
                    std::to_string(s.length) + ")");
}

// Outputs may not overlap inputs (or each other); allow_same permits exact aliasing (in-place ops).
template <typename A, typename B>
void disjoint(Napi::Env env, const Span<A>& out, const Span<B>& other, bool allow_same = false) {
  if (!out.present || !other.present || !out.length || !other.length) return;
  const auto* p = reinterpret_cast<const uint8_t*>(out.data);
  const auto* q = reinterpret_cast<const uint8_t*>(other.data);
  const size_t np = size_t(out.length) * sizeof(A), nq = size_t(other.length) * sizeof(B);
  if (p == q && np == nq && allow_same) return;
  if (p < q + nq && q < p + np)
    throw_range(env, out.name,
                allow_same ? "overlaps " + std::string(other.name) + " (only exact aliasing is allowed)"
                           : "must not overlap " + std::string(other.name));
}

}  // namespace rift::napi::ops_args
