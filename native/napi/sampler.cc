// N-API binding of the native token sampler (cpu/sampler.h), used by lib/engine/sampler.ts:
//   sampleRows(logits: Float32Array (B·V), B, V, temperature, topK, topP, u: Float64Array (B))
//     -> { tokens: Int32Array (B), logprobs: Float64Array (B), samplingLogprobs: Float64Array (B) }
// Arguments are checked here (TypeError / RangeError naming them); the TypeScript wrapper checks the sampling
// parameters with the messages of checkSamplingParams first.
#include "napi/sampler.h"

#include <cmath>
#include <string>

#include "core/loss.h"
#include "cpu/sampler.h"
#include "napi/errors.h"

namespace rift::napi {
namespace {

double number_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw_type(info.Env(), name, "must be a number");
  const double d = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_range(info.Env(), name, "must be finite");
  return d;
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi) {
  const double d = number_arg(info, i, name);
  if (d != std::floor(d) || d < lo || d > hi)
    throw_range(info.Env(), name, "must be an integer in [" + std::to_string(int64_t(lo)) + ", " +
                                      std::to_string(int64_t(hi)) + "]");
  return int64_t(d);
}

Napi::Value SampleRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type(env, "logits", "must be a Float32Array");
  const int64_t B = int_arg(info, 1, "B", 1, 2147483647.0), V = int_arg(info, 2, "V", 1, 2147483647.0);
  cpu::SampleParams p;
  p.temperature = number_arg(info, 3, "temperature");
  p.top_k = int_arg(info, 4, "topK", 0, 9007199254740991.0);
  p.top_p = number_arg(info, 5, "topP");
  if (p.temperature < 0) throw_range(env, "temperature", "must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw_range(env, "topP", "must be in (0, 1]");
  if (info.Length() < 7 || !info[6].IsTypedArray() ||
      info[6].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_type(env, "u", "must be a Float64Array");
  auto logits = info[0].As<Napi::Float32Array>();
  auto u = info[6].As<Napi::Float64Array>();
  if (double(logits.ElementLength()) != double(B) * double(V))
    throw_range(env, "logits", "length must be B × V = " + std::to_string(B * V) + ", got " +
                                   std::to_string(logits.ElementLength()));
  if (int64_t(u.ElementLength()) != B)
    throw_range(env, "u", "length must be B = " + std::to_string(B) + ", got " + std::to_string(u.ElementLength()));
  for (int64_t b = 0; b < B; ++b)
    if (!(u[size_t(b)] >= 0 && u[size_t(b)] < 1)) throw_range(env, "u", "u[" + std::to_string(b) + "] must be in [0, 1)");
  auto tokens = Napi::Int32Array::New(env, size_t(B));
  auto lp = Napi::Float64Array::New(env, size_t(B));
  auto slp = Napi::Float64Array::New(env, size_t(B));
  try {
    cpu::sample_rows(logits.Data(), B, V, p, u.Data(), tokens.Data(), lp.Data(), slp.Data());
  } catch (const ArgError& e) {
    throw to_js(env, e);
  } catch (const std::exception& e) {
    throw engine_error(env, e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("tokens", tokens);
  out.Set("logprobs", lp);
  out.Set("samplingLogprobs", slp);
  return out;
}

}  // namespace

void init_sampler(Napi::Env env, Napi::Object exports) {
  exports.Set("sampleRows", Napi::Function::New(env, SampleRows, "sampleRows"));
}

}  // namespace rift::napi
