// Addon entry: registers each binding file's exports. The only place that knows the full export list.
#include <napi.h>

#include "napi/bench.h"
#include "napi/device.h"
#include "napi/dist.h"
#include "napi/errors.h"
#include "napi/loss.h"
#include "napi/model.h"
#include "napi/ops.h"
#include "napi/ops_flash.h"
#include "napi/safetensors.h"
#include "napi/sampler.h"

namespace rift::napi {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_loss(env, exports);
  init_device(env, exports);
  init_bench(env, exports);
  init_ops(env, exports);
  init_ops_flash(env, exports);
  init_safetensors(env, exports);
  init_model(env, exports);
  init_sampler(env, exports);
  init_dist(env, exports);
  // Test hook: throws the JS error an engine exception with this message becomes (CUDA / cuBLAS status parsing is
  // otherwise only reachable on a GPU).
  exports.Set("_engineError", Napi::Function::New(
                                  env,
                                  [](const Napi::CallbackInfo& info) -> Napi::Value {
                                    throw engine_error(
                                        info.Env(), info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "");
                                  },
                                  "_engineError"));
  return exports;
}

}  // namespace rift::napi

static Napi::Object InitRift(Napi::Env env, Napi::Object exports) { return rift::napi::Init(env, exports); }

NODE_API_MODULE(rift, InitRift)
