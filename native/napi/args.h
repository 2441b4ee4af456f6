// The one argument layer of the N-API bindings (loss, model, KvCache, ops, sampler, device tensors).
//
// - Opts reads an options object ONCE: every key a call uses is fetched up front, so no user getter (or Proxy
//   trap) can run after a data pointer has been taken — a getter that detaches or shrinks an array then only
//   changes what the checks see. Reading a key that was not fetched is a bug and throws.
// - Scalars (integer, number, boolean, choice) check their value and name the argument: TypeError for the wrong
//   kind, RangeError for a bad value.
// - Span<T> is a typed-array argument read through napi_get_typedarray_info, which (unlike
//   napi_get_arraybuffer_info) accepts arrays backed by a SharedArrayBuffer. own() copies its elements into
//   native memory: an async call owns every small array it reads (targets, offsets, ids, ...), because JS may
//   change, detach or free the caller's array while the worker runs. HostCopy holds an async call's copy of a
//   big array (the loss binding's logits and gradient: see napi/loss.cc for when it copies and when not).
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/loss.h"
#include "napi/errors.h"

namespace rift::napi::args {

constexpr int64_t kMaxI32 = 2147483647;

// ---- scalars --------------------------------------------------------------------------------------------------

// An integer in [lo, hi]: TypeError "must be a number", RangeError "must be an integer in [lo, hi]".
int64_t integer(Napi::Env env, Napi::Value v, const char* key, int64_t lo, int64_t hi);
// A finite number in [lo, hi]; dflt when v is undefined and the argument is optional.
double number(Napi::Env env, Napi::Value v, const char* key, double dflt, double lo = -INFINITY, double hi = INFINITY,
              bool required = false);
// A boolean; dflt when undefined.
bool boolean(Napi::Env env, Napi::Value v, const char* key, bool dflt);
// One of `allowed` (a string); dflt when v is undefined or null (dflt may be "": absent).
std::string choice(Napi::Env env, Napi::Value v, const char* key, std::initializer_list<const char*> allowed,
                   const char* dflt);
[[noreturn]] void length_error(Napi::Env env, const char* key, const char* formula, int64_t want, int64_t got);

// ---- typed arrays ---------------------------------------------------------------------------------------------

template <typename T>
struct Kind;
template <>
struct Kind<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct Kind<double> {
  static constexpr napi_typedarray_type type = napi_float64_array;
  static constexpr const char* name = "Float64Array";
};
template <>
struct Kind<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct Kind<uint16_t> {
  static constexpr napi_typedarray_type type = napi_uint16_array;
  static constexpr const char* name = "Uint16Array";
};

// What napi_get_typedarray_info says about v: element type, length, data pointer (byte offset included; null or
// dangling-free for a detached array, whose length is 0) and whether a SharedArrayBuffer backs it. False when v
// is not a typed array.
struct TypedInfo {
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  size_t bytes = 0;
  void* data = nullptr;
  bool shared = false;
};
bool typed_info(Napi::Env env, Napi::Value v, TypedInfo* out);
size_t element_size(napi_typedarray_type t);

// A typed-array argument. data points into the caller's array (valid until JS runs again) until own() copies
// the elements into memory the Span holds (shared by copies of the Span).
template <typename T>
struct Span {
  T* data = nullptr;
  int64_t length = 0;
  bool present = false;
  bool shared = false;  // a SharedArrayBuffer backs it
  const char* name = "";

  void own() {  // throws std::bad_alloc
    if (!present || !length) return;
    std::shared_ptr<T[]> copy(new T[size_t(length)]);
    std::memcpy(copy.get(), data, size_t(length) * sizeof(T));
    owned_ = std::move(copy);
    data = owned_.get();
  }

 private:
  std::shared_ptr<T[]> owned_;
};

// A T array argument (TypeError "must be a <Kind>" otherwise); absent (undefined / null) is allowed when
// optional.
template <typename T>
Span<T> typed(Napi::Env env, Napi::Value v, const char* key, bool optional = false) {
  Span<T> s;
  s.name = key;
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return s;
    throw_type(env, key, std::string("must be a ") + Kind<T>::name);
  }
  TypedInfo t;
  if (!typed_info(env, v, &t) || t.type != Kind<T>::type)
    throw_type(env, key, std::string("must be a ") + Kind<T>::name);
  s.data = static_cast<T*>(t.data);
  s.length = int64_t(t.length);
  s.present = true;
  s.shared = t.shared;
  return s;
}

// Native memory holding an async call's copy of a big host array: 64-byte aligned, uninitialised, counted in
// memory() as host workspace. Move-only; throws std::bad_alloc.
class HostCopy {
 public:
  HostCopy() = default;
  explicit HostCopy(size_t bytes);
  ~HostCopy() { release(); }
  HostCopy(HostCopy&& o) noexcept { *this = std::move(o); }
  HostCopy& operator=(HostCopy&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  HostCopy(const HostCopy&) = delete;
  HostCopy& operator=(const HostCopy&) = delete;
  void* data() const { return data_; }

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// ---- options objects ------------------------------------------------------------------------------------------

class Opts {
 public:
  // info[index] must be an object (not a typed array): TypeError "<name>: must be an object" otherwise.
  Opts(const Napi::CallbackInfo& info, size_t index = 0, const char* name = "options");
  // Fetches these keys now (all reads must come before the first typed(): a later read throws).
  Opts& read(std::initializer_list<const char*> keys);
  Opts& read(const std::vector<const char*>& keys);

  Napi::Env env() const { return env_; }
  Napi::Value get(const char* key) const;
  bool has(const char* key) const {  // present: neither undefined nor null
    Napi::Value v = get(key);
    return !v.IsUndefined() && !v.IsNull();
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi = kMaxI32) const {
    return args::integer(env_, get(key), key, lo, hi);
  }
  int64_t integer_or(const char* key, int64_t dflt, int64_t lo, int64_t hi = kMaxI32) const {
    return has(key) ? integer(key, lo, hi) : dflt;
  }
  double number(const char* key, double dflt, double lo = -INFINITY, double hi = INFINITY) const {
    return args::number(env_, get(key), key, dflt, lo, hi);
  }
  double required_number(const char* key) const {
    return args::number(env_, get(key), key, 0, -INFINITY, INFINITY, true);
  }
  bool boolean(const char* key, bool dflt = false) const { return args::boolean(env_, get(key), key, dflt); }
  std::string choice(const char* key, std::initializer_list<const char*> allowed, const char* dflt) const {
    return args::choice(env_, get(key), key, allowed, dflt);
  }
  template <typename T>
  Span<T> typed(const char* key, bool optional = false) const {
    sealed_ = true;
    return args::typed<T>(env_, get(key), key, optional);
  }
  Span<float> f32(const char* key, bool optional = false) const { return typed<float>(key, optional); }
  Span<int32_t> i32(const char* key) const { return typed<int32_t>(key); }
  Span<uint16_t> u16(const char* key) const { return typed<uint16_t>(key); }
  // The raw value of a key that holds a big buffer (read up front like every key): marks the object sealed.
  Napi::Value buffer_value(const char* key) const {
    sealed_ = true;
    return get(key);
  }

 private:
  Napi::Env env_;
  Napi::Object obj_;
  std::vector<std::pair<const char*, Napi::Value>> vals_;
  mutable bool sealed_ = false;
};

// ---- engine calls ---------------------------------------------------------------------------------------------

// Runs engine code on the JS thread, mapping its exceptions to JS errors: ArgError → TypeError / RangeError,
// std::bad_alloc → Error "out of memory", other std::exception → engine_error.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ArgError& e) { throw to_js(env, e); } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory");
  } catch (const std::exception& e) { throw engine_error(env, e.what()); }
}

}  // namespace rift::napi::args
