// Results of the model binding that are not arguments: zero-copy views of the flat buffers and the memory report.
// Header-only: included by napi/model.cc alone.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "core/memory.h"
#include "model/ops.h"

namespace rift::napi {

// A zero-copy Float32Array over a shared host OpsBuffer; the ArrayBuffer's finaliser holds the shared_ptr.
// A buffer in device memory cannot be viewed: Error naming the method, pointing at readBuffer / writeBuffer.
inline Napi::Float32Array view(Napi::Env env, const std::shared_ptr<OpsBuffer>& buf, const char* method) {
  if (buf->space() != MemSpace::Host)
    throw Napi::Error::New(env, std::string(method) +
                                    ": this model's buffers are in GPU memory (device 'cuda'): no zero-copy view; "
                                    "use readBuffer / writeBuffer (Model.params() / tensor() return copies)");
  auto* hold = new std::shared_ptr<OpsBuffer>(buf);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, buf->data(), buf->size() * sizeof(float), [](Napi::Env, void*, std::shared_ptr<OpsBuffer>* h) { delete h; },
      hold);
  return Napi::Float32Array::New(env, buf->size(), ab, 0);
}

inline Napi::Object memory_object(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  auto stats = [&](const MemStats& s) {
    Napi::Object x = Napi::Object::New(env);
    x.Set("current", double(s.current));
    x.Set("peak", double(s.peak));
    return x;
  };
  auto space = [&](Napi::Object into, MemSpace sp) {
    for (int c = 0; c < int(MemCategory::kCount); ++c)
      into.Set(mem_category_name(MemCategory(c)), stats(mem_stats(sp, MemCategory(c))));
    into.Set("total", stats(mem_total(sp)));
  };
  space(o, MemSpace::Host);  // host categories at the top level, device memory under "device"
  Napi::Object dev = Napi::Object::New(env);
  space(dev, MemSpace::Device);
  o.Set("device", dev);
  return o;
}

}  // namespace rift::napi
