#pragma once
#include <napi.h>

namespace rift::napi {
// exports.Model (the decoder engine, model/decoder.h) and exports.KvCache (made by model.newKvCache).
void init_model(Napi::Env env, Napi::Object exports);
}  // namespace rift::napi
