#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace rift {
class Decoder;
}

namespace rift::napi {
// exports.Model (the decoder engine, model/decoder.h) and exports.KvCache (made by model.newKvCache).
void init_model(Napi::Env env, Napi::Object exports);

// For other binding files (napi/dist.cc) that run engine work on a Model: the Decoder behind a JS Model object
// (the native one, model.native in lib/engine/model.ts). lease_model marks the model busy — its own calls then
// throw "busy (what)" — until the lease is released or destroyed, which must happen on the JS thread; it keeps the
// Model alive. Both throw a TypeError naming `arg` when v is not a Model, and an Error when the model is busy.
struct ModelLease {
  Decoder* decoder = nullptr;
  Napi::ObjectReference model;
  std::function<void()> unbusy;
  void release() {
    if (unbusy) std::exchange(unbusy, nullptr)();
    if (!model.IsEmpty()) model.Reset();
  }
  ~ModelLease() { release(); }
};
std::unique_ptr<ModelLease> lease_model(Napi::Env env, Napi::Value v, const char* arg, const std::string& what);
Decoder& model_decoder(Napi::Env env, Napi::Value v, const char* arg);
}  // namespace rift::napi
