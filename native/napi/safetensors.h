#pragma once
#include <napi.h>

namespace rift::napi {
// exports.safetensors = { parseHeader(buf, fileSize, fileName?), buildHeader(tensors, metadata?) }.
void init_safetensors(Napi::Env env, Napi::Object exports);
}  // namespace rift::napi
