// The argument layer of the N-API bindings: see args.h.
#include "napi/args.h"

#include <cstdlib>
#include <cstring>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "core/memory.h"

namespace rift::napi::args {
namespace {

// "a" | "'a' or 'b'" | "'a', 'b' or 'c'"
std::string alternatives(std::initializer_list<const char*> allowed) {
  std::string list;
  size_t i = 0;
  for (const char* a : allowed) {
    if (i) list += i + 1 == allowed.size() ? " or " : ", ";
    list += std::string("'") + a + "'";
    ++i;
  }
  return list;
}

std::string fmt(double d) {
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  std::string s = std::to_string(d);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

int64_t integer(Napi::Env env, Napi::Value v, const char* key, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) throw_type(env, key, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= double(lo) && d <= double(hi)) || d != std::floor(d))
    throw_range(env, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int64_t(d);
}

double number(Napi::Env env, Napi::Value v, const char* key, double dflt, double lo, double hi, bool required) {
  if (v.IsUndefined() && !required) return dflt;
  if (!v.IsNumber()) throw_type(env, key, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < lo || d > hi) {
    if (std::isinf(lo) && std::isinf(hi)) throw_range(env, key, "must be a finite number");
    throw_range(env, key, "must be a finite number in [" + fmt(lo) + ", " + fmt(hi) + "]");
  }
  return d;
}

bool boolean(Napi::Env env, Napi::Value v, const char* key, bool dflt) {
  if (v.IsUndefined()) return dflt;
  if (!v.IsBoolean()) throw_type(env, key, "must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string choice(Napi::Env env, Napi::Value v, const char* key, std::initializer_list<const char*> allowed,
                   const char* dflt) {
  if (v.IsUndefined() || v.IsNull()) return dflt;
  const std::string list = alternatives(allowed);
  if (!v.IsString()) throw_type(env, key, "must be " + list);
  const std::string s = v.As<Napi::String>().Utf8Value();
  for (const char* a : allowed)
    if (s == a) return s;
  throw_range(env, key, "must be " + list + " (got '" + s + "')");
}

void length_error(Napi::Env env, const char* key, const char* formula, int64_t want, int64_t got) {
  throw_range(
      env, key,
      std::string("length must be ") + formula + " = " + std::to_string(want) + " (got " + std::to_string(got) + ")");
}

size_t element_size(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    default: return 8;
  }
}

bool typed_info(Napi::Env env, Napi::Value v, TypedInfo* out) {
  if (!v.IsTypedArray()) return false;
  napi_value buffer = nullptr;
  size_t offset = 0;
  napi_status st = napi_get_typedarray_info(env, v, &out->type, &out->length, &out->data, &buffer, &offset);
  NAPI_THROW_IF_FAILED(env, st, false);
  bool plain = true;  // napi_is_arraybuffer is false for a SharedArrayBuffer
  st = napi_is_arraybuffer(env, buffer, &plain);
  NAPI_THROW_IF_FAILED(env, st, false);
  out->shared = !plain;
  out->bytes = out->length * element_size(out->type);
  if (!out->length) out->data = nullptr;
  return true;
}

HostCopy::HostCopy(size_t bytes) {
  if (!bytes) return;
  // A big copy is 2 MiB aligned and asks for transparent huge pages (Linux, THP in "madvise" mode): faulting in
  // fresh 4 KiB pages can cost far more than the copy itself (64 MiB on this project's VM: ~450 ms, ~30 ms with
  // huge pages).
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t align = bytes >= kHuge ? kHuge : 64;
  const size_t size = (bytes + align - 1) / align * align;
  data_ = std::aligned_alloc(align, size);
  if (!data_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (align == kHuge) madvise(data_, size, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  bytes_ = bytes;
  mem_note_alloc(MemSpace::Host, MemCategory::Workspace, int64_t(bytes));
}

void HostCopy::release() noexcept {
  if (data_) {
    std::free(data_);
    mem_note_free(MemSpace::Host, MemCategory::Workspace, int64_t(bytes_));
  }
  data_ = nullptr;
  bytes_ = 0;
}

Opts::Opts(const Napi::CallbackInfo& info, size_t index, const char* name) : env_(info.Env()) {
  if (info.Length() <= index || !info[index].IsObject() || info[index].IsTypedArray())
    throw_type(env_, name, "must be an object");
  obj_ = info[index].As<Napi::Object>();
}

Opts& Opts::read(std::initializer_list<const char*> keys) {
  if (sealed_) throw Napi::Error::New(env_, "internal: options read after a data pointer was taken");
  for (const char* k : keys) vals_.emplace_back(k, obj_.Get(k));
  return *this;
}

Opts& Opts::read(const std::vector<const char*>& keys) {
  if (sealed_) throw Napi::Error::New(env_, "internal: options read after a data pointer was taken");
  for (const char* k : keys) vals_.emplace_back(k, obj_.Get(k));
  return *this;
}

Napi::Value Opts::get(const char* key) const {
  for (const auto& kv : vals_)
    if (!std::strcmp(kv.first, key)) return kv.second;
  throw Napi::Error::New(env_, std::string("internal: option '") + key + "' was not read up front");
}

}  // namespace rift::napi::args
