// exports.sampleRows: the native token sampler (cpu/sampler.h) over host logits.
#pragma once
#include <napi.h>

namespace rift::napi {
void init_sampler(Napi::Env env, Napi::Object exports);
}  // namespace rift::napi
