#pragma once
#include <napi.h>

namespace rift::napi {
// exports.opsFlash = { forward, backward, unsupported, bench }: the fused attention (cuda/cuda_attention_flash.h)
// and its CPU twin (cpu/ops_attention_flash.h) called directly, for tests and scripts/cuda-flash-check.js.
void init_ops_flash(Napi::Env env, Napi::Object exports);
}  // namespace rift::napi
