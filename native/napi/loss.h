#pragma once
#include <napi.h>

namespace rift::napi {
// exports.lossAndGrad(opts) (sync), exports.lossAndGradAsync(opts) → Promise, exports.setNumThreads,
// exports.numThreads, exports.buildInfo.
void init_loss(Napi::Env env, Napi::Object exports);
}  // namespace rift::napi
