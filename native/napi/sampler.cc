// N-API binding of the native token sampler (cpu/sampler.h), used by lib/engine/sampler.ts:
//   sampleRows(logits: Float32Array (B·V), B, V, temperature, topK, topP, u: Float64Array (B))
//     -> { tokens: Int32Array (B), logprobs: Float64Array (B), samplingLogprobs: Float64Array (B) }
// Arguments are checked here (TypeError / RangeError naming them); the TypeScript wrapper checks the sampling
// parameters with the messages of checkSamplingParams first.
#include "napi/sampler.h"

#include <string>

#include "core/loss.h"
#include "cpu/sampler.h"
#include "napi/args.h"
#include "napi/errors.h"

namespace rift::napi {
namespace {

using args::kMaxI32;

Napi::Value SampleRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t B = args::integer(env, info[1], "B", 1, kMaxI32), V = args::integer(env, info[2], "V", 1, kMaxI32);
  cpu::SampleParams p;
  p.temperature = args::number(env, info[3], "temperature", 0, -INFINITY, INFINITY, true);
  p.top_k = args::integer(env, info[4], "topK", 0, int64_t(1) << 53);
  p.top_p = args::number(env, info[5], "topP", 0, -INFINITY, INFINITY, true);
  if (p.temperature < 0) throw_range(env, "temperature", "must be >= 0");
  if (!(p.top_p > 0 && p.top_p <= 1)) throw_range(env, "topP", "must be in (0, 1]");
  auto logits = args::typed<float>(env, info[0], "logits");
  auto u = args::typed<double>(env, info[6], "u");
  if (double(logits.length) != double(B) * double(V))
    throw_range(env, "logits",
                "length must be B × V = " + std::to_string(B * V) + ", got " + std::to_string(logits.length));
  if (u.length != B)
    throw_range(env, "u", "length must be B = " + std::to_string(B) + ", got " + std::to_string(u.length));
  for (int64_t b = 0; b < B; ++b)
    if (!(u.data[b] >= 0 && u.data[b] < 1)) throw_range(env, "u", "u[" + std::to_string(b) + "] must be in [0, 1)");
  auto tokens = Napi::Int32Array::New(env, size_t(B));
  auto lp = Napi::Float64Array::New(env, size_t(B));
  auto slp = Napi::Float64Array::New(env, size_t(B));
  args::guarded(env, [&] { cpu::sample_rows(logits.data, B, V, p, u.data, tokens.Data(), lp.Data(), slp.Data()); });
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
