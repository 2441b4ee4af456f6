// Argument and result helpers of the model binding (napi/model.cc, napi/kv_cache.h): typed-array arguments that
// keep a reference to their array (for async calls), integer / number / boolean checks that name the argument,
// engine exceptions mapped to JS errors, zero-copy views of the flat buffers, memory() and loss results.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/loss.h"
#include "core/memory.h"
#include "model/ops.h"
#include "napi/errors.h"

namespace rift::napi::model_args {

constexpr int64_t kMaxI32 = 2147483647;

// ---- argument helpers ---------------------------------------------------------------------------------------

template <typename T>
struct Arr {
  T* data = nullptr;
  int64_t length = 0;
  Napi::Reference<Napi::Value> ref;  // keeps the array alive while a worker runs
};

template <typename T>
inline Arr<T> typed(Napi::Env env, Napi::Value v, const char* key, napi_typedarray_type kind, const char* kind_name,
             bool optional = false) {
  Arr<T> a;
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return a;
    throw_type(env, key, std::string("must be a ") + kind_name);
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throw_type(env, key, std::string("must be a ") + kind_name);
  auto ta = v.As<Napi::TypedArrayOf<T>>();
  a.data = ta.Data();
  a.length = int64_t(ta.ElementLength());
  a.ref = Napi::Persistent(v);
  return a;
}

[[noreturn]] inline void length_error(Napi::Env env, const char* arg, const char* what, int64_t want, int64_t got) {
  throw_range(env, arg, std::string("length must be ") + what + " = " + std::to_string(want) + " (got " +
                            std::to_string(got) + ")");
}

inline int64_t integer(Napi::Env env, Napi::Value v, const char* key, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) throw_type(env, key, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= double(lo) && d <= double(hi)) || d != std::floor(d))
    throw_range(env, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int64_t(d);
}

inline double number(Napi::Env env, Napi::Value v, const char* key, double dflt, bool required = false) {
  if (v.IsUndefined() && !required) return dflt;
  if (!v.IsNumber()) throw_type(env, key, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_range(env, key, "must be finite");
  return d;
}

inline bool boolean(Napi::Env env, Napi::Value v, const char* key, bool dflt) {
  if (v.IsUndefined()) return dflt;
  if (!v.IsBoolean()) throw_type(env, key, "must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// A string that must be one of `allowed` (dflt when undefined).
inline std::string choice(Napi::Env env, Napi::Value v, const char* key, const std::vector<std::string>& allowed,
                          const std::string& dflt) {
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "'" : ", '") + a + "'";
  if (v.IsUndefined()) return dflt;
  if (!v.IsString()) throw_type(env, key, "must be one of " + list);
  const std::string s = v.As<Napi::String>().Utf8Value();
  for (const auto& a : allowed)
    if (s == a) return s;
  throw_range(env, key, "must be one of " + list + ", got '" + s + "'");
}

inline Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* key) {
  if (info.Length() <= i || !info[i].IsObject() || info[i].IsTypedArray())
    throw_type(info.Env(), key, "must be an object");
  return info[i].As<Napi::Object>();
}

// Runs engine code, mapping its exceptions to JS errors.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ArgError& e) {
    throw to_js(env, e);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory");
  } catch (const std::exception& e) {
    throw engine_error(env, e.what());
  }
}

// A zero-copy Float32Array over a shared host OpsBuffer; the ArrayBuffer's finaliser holds the shared_ptr.
// A buffer in device memory cannot be viewed: Error naming the method, pointing at readBuffer / writeBuffer.
inline Napi::Float32Array view(Napi::Env env, const std::shared_ptr<OpsBuffer>& buf, const char* method) {
  if (buf->space() != MemSpace::Host)
    throw Napi::Error::New(env, std::string(method) +
                                    ": this model's buffers are in GPU memory (device 'cuda'): no zero-copy view; "
                                    "use readBuffer / writeBuffer (Model.params() / tensor() return copies)");
  auto* hold = new std::shared_ptr<OpsBuffer>(buf);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, buf->data(), buf->size() * sizeof(float),
      [](Napi::Env, void*, std::shared_ptr<OpsBuffer>* h) { delete h; }, hold);
  return Napi::Float32Array::New(env, buf->size(), ab, 0);
}

inline Napi::Object memory_object(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  auto stats = [&](const MemStats& s) {
    Napi::Object x = Napi::Object::New(env);
    x.Set("current", double(s.current));
    x.Set("peak", double(s.peak));
    return x;
  };
  auto space = [&](Napi::Object into, MemSpace sp) {
    for (int c = 0; c < int(MemCategory::kCount); ++c)
      into.Set(mem_category_name(MemCategory(c)), stats(mem_stats(sp, MemCategory(c))));
    into.Set("total", stats(mem_total(sp)));
  };
  space(o, MemSpace::Host);  // host categories at the top level, device memory under "device"
  Napi::Object dev = Napi::Object::New(env);
  space(dev, MemSpace::Device);
  o.Set("device", dev);
  return o;
}

inline Napi::Object loss_result(Napi::Env env, const LossResult& r, const LossSpec& spec) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("normalizer", r.normalizer);
  out.Set("tokens", double(r.tokens));
  auto seq = Napi::Float64Array::New(env, r.seq_logp.size());
  if (!r.seq_logp.empty()) std::memcpy(seq.Data(), r.seq_logp.data(), r.seq_logp.size() * sizeof(double));
  out.Set("seqLogps", seq);
  auto f32 = [&](const std::vector<float>& v) {
    auto a = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
    return a;
  };
  if (spec.want_token_logp) out.Set("tokenLogps", f32(r.token_logp));
  if (spec.want_entropy) out.Set("entropy", f32(r.entropy));
  return out;
}


}  // namespace rift::napi::model_args
