// exports.KvCache (napi/model.cc constructs it through Model.newKvCache): a JS object owning a KvCache
// (model/decoder.h). Header-only: included by napi/model.cc alone.
#pragma once
#include <napi.h>

#include <algorithm>
#include <memory>
#include <string>

#include "model/decoder.h"
#include "napi/args.h"

namespace rift::napi {

// Objects made by KvCache's constructor carry this tag; unwrap checks it before ObjectWrap::Unwrap (a tag cannot
// be faked with Object.create(KvCache.prototype) and needs no per-environment state).
constexpr const char* kBusy = "busy — an async prefill/decode is still using this KvCache";

constexpr napi_type_tag kKvCacheTag = {0x2b8e41f07c9d4a63ULL, 0xd15a6c0e93f7b248ULL};

class KvCacheWrap final : public Napi::ObjectWrap<KvCacheWrap> {
 public:
  // Defines the class in this environment; returns a reference to its constructor (kept for the environment's
  // lifetime: Model.newKvCache constructs through it).
  static Napi::FunctionReference* Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "KvCache",
        {InstanceAccessor<&KvCacheWrap::Length>("length"), InstanceAccessor<&KvCacheWrap::Capacity>("capacity"),
         InstanceAccessor<&KvCacheWrap::Batch>("batch"), InstanceAccessor<&KvCacheWrap::Freed>("freed"),
         InstanceMethod<&KvCacheWrap::Reset>("reset"), InstanceMethod<&KvCacheWrap::ResetRows>("resetRows"),
         InstanceMethod<&KvCacheWrap::Lengths>("lengths"), InstanceMethod<&KvCacheWrap::CopyRows>("copyRows"),
         InstanceMethod<&KvCacheWrap::Free>("free")});
    exports.Set("KvCache", f);
    return new Napi::FunctionReference(Napi::Persistent(f));
  }
  // Constructed only through Model.newKvCache (an External carrying the KvCache, and the bytes it holds, which
  // are reported to V8 with napi_adjust_external_memory until the cache is freed).
  explicit KvCacheWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvCacheWrap>(info) {
    if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsNumber())
      throw Napi::TypeError::New(info.Env(), "KvCache: use model.newKvCache(B, Tmax)");
    cache_.reset(info[0].As<Napi::External<KvCache>>().Data());
    info.This().As<Napi::Object>().TypeTag(&kKvCacheTag);
    bytes_ = std::max<int64_t>(0, int64_t(info[1].As<Napi::Number>().DoubleValue()));
    int64_t total = 0;
    napi_adjust_external_memory(info.Env(), bytes_, &total);
  }
  ~KvCacheWrap() override { release(Env()); }
  KvCache& get(Napi::Env env, const char* arg) {
    if (!cache_) throw_type(env, arg, "this KvCache was freed");
    if (busy_) throw Napi::Error::New(env, std::string(arg) + ": " + kBusy);
    return *cache_;
  }
  bool busy_ = false;  // set while an async prefill/decode uses the cache (JS thread only)
  static KvCacheWrap* unwrap(Napi::Env env, Napi::Value v, const char* arg) {
    if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kKvCacheTag))
      throw_type(env, arg, "must be a KvCache (from model.newKvCache)");
    return Napi::ObjectWrap<KvCacheWrap>::Unwrap(v.As<Napi::Object>());
  }

 private:
  Napi::Value Length(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache_ ? double(cache_->length()) : 0);
  }
  Napi::Value Capacity(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache_ ? double(cache_->capacity()) : 0);
  }
  Napi::Value Batch(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache_ ? double(cache_->B()) : 0);
  }
  Napi::Value Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !cache_); }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    get(info.Env(), "cache").reset();
    return info.Env().Undefined();
  }
  // resetRows(row, count = 1): those rows hold no tokens any more (free slots).
  Napi::Value ResetRows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& c = get(env, "cache");
    const int64_t row = args::integer(env, info[0], "row", 0, args::kMaxI32);
    const int64_t count = info[1].IsUndefined() ? 1 : args::integer(env, info[1], "count", 0, args::kMaxI32);
    args::guarded(env, [&] { c.reset_rows(row, count); });
    return env.Undefined();
  }
  // lengths() → Int32Array(batch): the tokens each row holds (empty after free()).
  Napi::Value Lengths(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int64_t B = cache_ ? cache_->B() : 0;
    auto out = Napi::Int32Array::New(env, size_t(B));
    for (int64_t r = 0; r < B; ++r) out[size_t(r)] = int32_t(cache_->row_length(r));
    return out;
  }
  // copyRows(src, srcRow, dstRow = 0, count = batch - dstRow)
  Napi::Value CopyRows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    KvCache& dst = get(env, "cache");
    KvCacheWrap* src = unwrap(env, info[0], "src");
    KvCache& s = src->get(env, "src");
    constexpr int64_t kMax = args::kMaxI32;
    const int64_t src_row = args::integer(env, info[1], "srcRow", 0, kMax);
    const int64_t dst_row = info[2].IsUndefined() ? 0 : args::integer(env, info[2], "dstRow", 0, kMax);
    const int64_t count = info[3].IsUndefined() ? dst.B() - dst_row : args::integer(env, info[3], "count", 0, kMax);
    args::guarded(env, [&] { dst.copy_rows(s, src_row, dst_row, count); });
    return env.Undefined();
  }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), std::string("cache: ") + kBusy);
    release(info.Env());
    return info.Env().Undefined();
  }
  void release(Napi::Env env) {
    cache_.reset();
    int64_t total = 0;
    if (bytes_) napi_adjust_external_memory(env, -bytes_, &total);
    bytes_ = 0;
  }
  std::unique_ptr<KvCache> cache_;
  int64_t bytes_ = 0;  // reported to V8 while the cache lives
};

}  // namespace rift::napi
