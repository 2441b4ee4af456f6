// Typed errors for the N-API layer: every bad argument becomes a TypeError or RangeError naming it.
#pragma once
#include <napi.h>

#include <string>
#include <utility>

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

// A JS Error for an engine exception's message. CUDA runtime and cuBLAS failures, whose messages start
//   "CUDA error 2 (cudaErrorMemoryAllocation) in cudaMalloc at …"  /  "cuBLAS error 13 (CUBLAS_STATUS_…) in …",
// also carry code 'ERR_RIFT_CUDA' | 'ERR_RIFT_CUBLAS', errno (the numeric status) and status (its name).
inline Napi::Error engine_error(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  for (const auto& [prefix, code] : {std::pair<const char*, const char*>{"CUDA error ", "ERR_RIFT_CUDA"},
                                     std::pair<const char*, const char*>{"cuBLAS error ", "ERR_RIFT_CUBLAS"}}) {
    const std::string p = prefix;
    if (msg.compare(0, p.size(), p) != 0) continue;
    size_t i = p.size(), j = i;
    while (j < msg.size() && ((msg[j] >= '0' && msg[j] <= '9') || (j == i && msg[j] == '-'))) ++j;
    if (j == i || j + 2 >= msg.size() || msg[j] != ' ' || msg[j + 1] != '(') break;
    const size_t close = msg.find(')', j + 2);
    if (close == std::string::npos) break;
    e.Set("code", Napi::String::New(env, code));
    e.Set("errno", Napi::Number::New(env, std::stod(msg.substr(i, j - i))));
    e.Set("status", Napi::String::New(env, msg.substr(j + 2, close - j - 2)));
    break;
  }
  return e;
}

}  // namespace rift::napi
