// N-API binding of the native token sampler (cpu/sampler.h), used by lib/engine/sampler.ts:
//   sampleRows(logits: Float32Array (B·V), B, V, temperature, topK, topP, u: Float64Array (B))
//     -> { tokens: Int32Array (B), logprobs: Float64Array (B), samplingLogprobs: Float64Array (B) }
// Arguments are checked here (TypeError / RangeError naming them); the TypeScript wrapper checks the sampling
// parameters with the messages of checkSamplingParams first.
#include "napi/sampler.h"

#include <string>

#include "core/loss.h"
#include "cpu/sampler.h"
#include "napi/errors.h"
#include "napi/model_args.h"

namespace rift::napi {
namespace {

using namespace model_args;

Napi::Value SampleRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto logits = typed<float>(env, info[0], "logits", napi_float32_array, "Float32Array");
  const int64_t B = integer(env, info[1], "B", 1, kMaxI32), V = integer(env, info[2], "V", 1, kMaxI32);
  cpu::SampleParams p;
  p.temperature = number(env, info[3], "temperature", 0, true);
  p.top_k = integer(env, info[4], "topK", 0, int64_t(1) << 53);
  p.top_p = number(env, info[5], "topP", 0, true);
  if (p.temperature < 0) throw_range(env, "temperature", "must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw_range(env, "topP", "must be in (0, 1]");
  auto u = typed<double>(env, info[6], "u", napi_float64_array, "Float64Array");
  if (double(logits.length) != double(B) * double(V))
    throw_range(env, "logits", "length must be B × V = " + std::to_string(B * V) + ", got " +
                                   std::to_string(logits.length));
  if (u.length != B) throw_range(env, "u", "length must be B = " + std::to_string(B) + ", got " + std::to_string(u.length));
  for (int64_t b = 0; b < B; ++b)
    if (!(u.data[b] >= 0 && u.data[b] < 1)) throw_range(env, "u", "u[" + std::to_string(b) + "] must be in [0, 1)");
  auto tokens = Napi::Int32Array::New(env, size_t(B));
  auto lp = Napi::Float64Array::New(env, size_t(B));
  auto slp = Napi::Float64Array::New(env, size_t(B));
  try {
    cpu::sample_rows(logits.data, B, V, p, u.data, tokens.Data(), lp.Data(), slp.Data());
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
