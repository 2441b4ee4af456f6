// Typed errors for the N-API layer: every bad argument becomes a TypeError or RangeError naming it.
#pragma once
#include <napi.h>

#include <string>

#include "core/loss.h"

namespace rift::napi {

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& arg, const std::string& what) {
  throw Napi::TypeError::New(env, arg + ": " + what);
}
[[noreturn]] inline void throw_range(Napi::Env env, const std::string& arg, const std::string& what) {
  throw Napi::RangeError::New(env, arg + ": " + what);
}

// A JS error object for an ArgError (for async completion, where we cannot throw).
inline Napi::Error to_js(Napi::Env env, const ArgError& e) {
  if (e.kind == ArgError::Type) return Napi::TypeError::New(env, e.message);
  return Napi::RangeError::New(env, e.message);
}

}  // namespace rift::napi
