// Argument helpers of the ops binding (napi/ops.cc): the options object read once, typed-array spans, exact
// length checks from shape arguments and overlap checks, each error naming its argument.
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
#include "napi/errors.h"

namespace rift::napi::ops_args {

constexpr int64_t kMaxDim = 2147483647;

template <typename T>
struct Span {
  T* data = nullptr;
  int64_t length = 0;
  bool present = false;
  std::string name;
};

// The options object, read once: every key of the op, and the backend keys every op accepts (kBackendKeys:
// device, gemmDtype), is fetched up front, so no user getter can run (and detach a buffer) after a data pointer
// has been taken.
constexpr const char* kBackendKeys[] = {"device", "gemmDtype"};

class Opts {
 public:
  // The options object is argument `arg` (0 for the ops; 1 for setGemm(impl, options)).
  Opts(const Napi::CallbackInfo& info, std::initializer_list<const char*> keys, size_t arg = 0) : env_(info.Env()) {
    if (info.Length() <= arg || !info[arg].IsObject()) throw_type(env_, "options", "must be an object");
    Napi::Object o = info[arg].As<Napi::Object>();
    for (const char* k : keys) vals_.emplace_back(k, o.Get(k));
    for (const char* k : kBackendKeys) vals_.emplace_back(k, o.Get(k));
  }
  Napi::Env env() const { return env_; }

  Napi::Value get(const char* key) const {
    for (const auto& kv : vals_)
      if (!std::strcmp(kv.first, key)) return kv.second;
    return env_.Undefined();
  }
  bool has(const char* key) const {
    Napi::Value v = get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  int64_t dim(const char* key, int64_t lo, int64_t hi = kMaxDim) const {
    Napi::Value v = get(key);
    if (!v.IsNumber()) throw_type(env_, key, "must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= double(lo) && d <= double(hi)) || d != std::floor(d))
      throw_range(env_, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int64_t(d);
  }
  int64_t dim_or(const char* key, int64_t dflt, int64_t lo, int64_t hi = kMaxDim) const {
    return has(key) ? dim(key, lo, hi) : dflt;
  }
  double num(const char* key, double dflt, double lo = -INFINITY, double hi = INFINITY) const {
    Napi::Value v = get(key);
    if (v.IsUndefined()) return dflt;
    if (!v.IsNumber()) throw_type(env_, key, "must be a number");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d < lo || d > hi)
      throw_range(env_, key, "must be a finite number in [" + fmt(lo) + ", " + fmt(hi) + "]");
    return d;
  }
  bool flag(const char* key) const {
    Napi::Value v = get(key);
    if (v.IsUndefined()) return false;
    if (!v.IsBoolean()) throw_type(env_, key, "must be a boolean");
    return v.As<Napi::Boolean>().Value();
  }
  // One of `allowed` (a string); dflt when the key is absent (undefined or null, as has()). TypeError for a
  // non-string, RangeError for another string.
  std::string choice(const char* key, std::initializer_list<const char*> allowed, const char* dflt) const {
    Napi::Value v = get(key);
    std::string list;
    for (const char* a : allowed) list += std::string(list.empty() ? "" : " or ") + "'" + a + "'";
    if (v.IsUndefined() || v.IsNull()) return dflt;
    if (!v.IsString()) throw_type(env_, key, "must be " + list);
    const std::string s = v.As<Napi::String>().Utf8Value();
    for (const char* a : allowed)
      if (s == a) return s;
    throw_range(env_, key, "must be " + list + " (got '" + s + "')");
  }
  Span<float> f32(const char* key, bool optional = false) const {
    return typed<float>(key, napi_float32_array, "Float32Array", optional);
  }
  Span<int32_t> i32(const char* key) const { return typed<int32_t>(key, napi_int32_array, "Int32Array", false); }
  Span<uint16_t> u16(const char* key) const { return typed<uint16_t>(key, napi_uint16_array, "Uint16Array", false); }

 private:
  static std::string fmt(double d) {
    if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
    std::string s = std::to_string(d);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  template <typename T>
  Span<T> typed(const char* key, napi_typedarray_type kind, const char* kind_name, bool optional) const {
    Span<T> s;
    s.name = key;
    Napi::Value v = get(key);
    if (v.IsUndefined() || v.IsNull()) {
      if (optional) return s;
      throw_type(env_, key, std::string("must be a ") + kind_name);
    }
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
      throw_type(env_, key, std::string("must be a ") + kind_name);
    auto ta = v.As<Napi::TypedArrayOf<T>>();
    s.data = ta.Data();  // napi_get_typedarray_info's pointer: byte offset included
    s.length = int64_t(ta.ElementLength());
    s.present = true;
    return s;
  }

  Napi::Env env_;
  std::vector<std::pair<const char*, Napi::Value>> vals_;
};

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
    throw_range(env, s.name, std::string("length must be ") + formula + " = " + std::to_string(n) + " (got " +
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
    throw_range(env, out.name, std::string(allow_same ? "overlaps " + other.name + " (only exact aliasing is allowed)"
                                                      : "must not overlap " + other.name));
}

// Runs a backend call, mapping ArgError / std::exception to JS errors.
template <typename F>
void guarded(Napi::Env env, F&& f) {
  try {
    f();
  } catch (const ArgError& e) {
    throw to_js(env, e);
  } catch (const std::exception& e) {
    throw engine_error(env, e.what());
  }
}

}  // namespace rift::napi::ops_args
