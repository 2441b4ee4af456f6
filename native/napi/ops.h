#pragma once
#include <napi.h>

namespace rift::napi {
// exports.ops = { info, setGemm, gemm, matmulForward, matmulBackward, embeddingForward, embeddingBackward,
// rmsnormForward, rmsnormBackward, ropeForward, ropeBackward, attentionForward, attentionBackward,
// swigluForward, swigluBackward, add, scale, zero, sumsq, adamw }: one synchronous binding per op of the CPU
// backend (model/ops.h), each taking an options object of Float32Array / Int32Array / numbers.
void init_ops(Napi::Env env, Napi::Object exports);
// Adds the bf16-activation ops to that object (napi/ops_bf16.cc): rmsnormForwardBf16, swigluForwardBf16,
// matmulForwardBf16, matmulBackwardBf16.
void init_ops_bf16(Napi::Env env, Napi::Object ops);
}  // namespace rift::napi
