// Device tensors (CUDA memory owned by a JS object). Implemented in device.cc.
#pragma once
#include <napi.h>

#include <cstddef>

namespace rift::napi {

// If v is a DeviceTensor made by this addon (and not yet freed), fills its device pointer, size in bytes
// and dtype (0 = f32, 1 = bf16) and returns true; false for anything else.
bool unwrap_device_tensor(const Napi::Value& v, void** ptr, size_t* bytes, int* dtype);

// Marks a DeviceTensor as used by a running async call (its free/upload/download throw until unmarked).
// Does nothing for other values. Call on the JS thread.
void set_device_tensor_busy(const Napi::Value& v, bool busy);

// Adds exports.cuda (device queries, DeviceTensor class) when built with CUDA; exports.cuda = null otherwise.
void init_device(Napi::Env env, Napi::Object exports);

}  // namespace rift::napi
