// N-API binding of the safetensors header parser and writer (native/core/safetensors.h).
//   parseHeader(buf: Uint8Array, fileSize: number, fileName = 'safetensors')
//     buf = the first bytes of the file (at least 8 + N) or the whole file
//     -> { headerBytes: N, dataStart: 8 + N, dataBytes, metadata: {k: v},
//          tensors: [{ name, dtype, shape: number[], begin, end }] }   (begin/end: offsets in the data section)
//   buildHeader(tensors: [{ name, dtype, shape }], metadata?: {k: v})
//     -> { header: Uint8Array (8-byte length + padded JSON), dataBytes, placement: [{ name, index, begin, end }] }
// Wrong argument kinds throw TypeError; bad content throws RangeError (sizes, offsets) or Error (format),
// with the parser's message naming the file.
#include "napi/safetensors.h"

#include <cmath>
#include <new>

#include "core/safetensors.h"
#include "napi/errors.h"

namespace rift::napi {
namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

[[noreturn]] void rethrow(Napi::Env env, const st::SafetensorsError& e) {
  if (e.kind == st::SafetensorsError::Range) throw Napi::RangeError::New(env, e.what());
  throw Napi::Error::New(env, e.what());
}

// A property defined as an own data property (safe for keys such as "__proto__").
void define(Napi::Object o, const std::string& key, Napi::Value v) {
  o.DefineProperty(Napi::PropertyDescriptor::Value(key, v, napi_default_jsproperty));
}

Napi::Value ParseHeader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw_type(env, "buf", "must be a Uint8Array (or Buffer)");
  if (info.Length() < 2 || !info[1].IsNumber()) throw_type(env, "fileSize", "must be a number");
  const double fs = info[1].As<Napi::Number>().DoubleValue();
  if (!(fs >= 0 && fs <= kMaxSafe) || fs != std::floor(fs))
    throw_range(env, "fileSize", "must be an integer in [0, 2^53)");
  std::string file = "safetensors";
  if (info.Length() >= 3 && !info[2].IsUndefined()) {
    if (!info[2].IsString()) throw_type(env, "fileName", "must be a string");
    file = info[2].As<Napi::String>().Utf8Value();
  }
  auto buf = info[0].As<Napi::Uint8Array>();
  const uint8_t* data = buf.ElementLength() ? buf.Data() : nullptr;
  static const uint8_t empty[1] = {0};
  st::Header h;
  try {
    h = st::parse_header(data ? data : empty, buf.ElementLength(), uint64_t(fs), file);
  } catch (const st::SafetensorsError& e) { rethrow(env, e); } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, file + ": out of memory while parsing the header");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("headerBytes", double(h.header_bytes));
  out.Set("dataStart", double(h.header_bytes + 8));
  out.Set("dataBytes", double(h.data_bytes));
  Napi::Object meta = Napi::Object::New(env);
  for (const auto& [k, v] : h.metadata) define(meta, k, Napi::String::New(env, v));
  out.Set("metadata", meta);
  Napi::Array tensors = Napi::Array::New(env, h.tensors.size());
  for (size_t i = 0; i < h.tensors.size(); i++) {
    const st::TensorInfo& t = h.tensors[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("dtype", t.dtype);
    Napi::Array shape = Napi::Array::New(env, t.shape.size());
    for (size_t d = 0; d < t.shape.size(); d++) shape.Set(uint32_t(d), double(t.shape[d]));
    o.Set("shape", shape);
    o.Set("begin", double(t.begin));
    o.Set("end", double(t.end));
    tensors.Set(uint32_t(i), o);
  }
  out.Set("tensors", tensors);
  return out;
}

std::string str_field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& arg) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw_type(env, arg + "." + key, "must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Value BuildHeader(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw_type(env, "tensors", "must be an array of {name, dtype, shape}");
  auto arr = info[0].As<Napi::Array>();
  std::vector<st::TensorSpec> specs(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const std::string arg = "tensors[" + std::to_string(i) + "]";
    Napi::Value v = arr.Get(i);
    if (!v.IsObject()) throw_type(env, arg, "must be an object {name, dtype, shape}");
    auto o = v.As<Napi::Object>();
    specs[i].name = str_field(env, o, "name", arg);
    specs[i].dtype = str_field(env, o, "dtype", arg);
    Napi::Value sv = o.Get("shape");
    if (!sv.IsArray()) throw_type(env, arg + ".shape", "must be an array of integers");
    auto shape = sv.As<Napi::Array>();
    if (shape.Length() > st::kMaxRank) throw_range(env, arg + ".shape", "has more than 64 dimensions");
    for (uint32_t d = 0; d < shape.Length(); d++) {
      Napi::Value dv = shape.Get(d);
      if (!dv.IsNumber()) throw_type(env, arg + ".shape", "must be an array of integers");
      const double x = dv.As<Napi::Number>().DoubleValue();
      if (!(x >= 0 && x <= kMaxSafe) || x != std::floor(x))
        throw_range(env, arg + ".shape", "dimensions must be integers in [0, 2^53)");
      specs[i].shape.push_back(int64_t(x));
    }
  }
  std::vector<std::pair<std::string, std::string>> meta;
  if (info.Length() >= 2 && !info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject() || info[1].IsArray()) throw_type(env, "metadata", "must be an object of strings");
    auto m = info[1].As<Napi::Object>();
    Napi::Array keys = m.GetPropertyNames();
    for (uint32_t k = 0; k < keys.Length(); k++) {
      const std::string key = keys.Get(k).ToString().Utf8Value();
      Napi::Value v = m.Get(key);
      if (!v.IsString()) throw_type(env, "metadata." + key, "must be a string");
      meta.emplace_back(key, v.As<Napi::String>().Utf8Value());
    }
  }
  st::Layout l;
  try {
    l = st::layout(specs, meta);
  } catch (const st::SafetensorsError& e) { rethrow(env, e); }
  if (double(l.data_bytes) > kMaxSafe) throw_range(env, "tensors", "total data size exceeds 2^53 bytes");
  Napi::Object out = Napi::Object::New(env);
  auto header = Napi::Uint8Array::New(env, l.prefix.size());
  std::copy(l.prefix.begin(), l.prefix.end(), header.Data());
  out.Set("header", header);
  out.Set("dataBytes", double(l.data_bytes));
  Napi::Array placement = Napi::Array::New(env, l.placement.size());
  for (size_t i = 0; i < l.placement.size(); i++) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("name", l.placement[i].name);
    p.Set("index", double(l.placement[i].index));
    p.Set("begin", double(l.placement[i].begin));
    p.Set("end", double(l.placement[i].end));
    placement.Set(uint32_t(i), p);
  }
  out.Set("placement", placement);
  return out;
}

}  // namespace

void init_safetensors(Napi::Env env, Napi::Object exports) {
  Napi::Object st = Napi::Object::New(env);
  st.Set("parseHeader", Napi::Function::New(env, ParseHeader, "parseHeader"));
  st.Set("buildHeader", Napi::Function::New(env, BuildHeader, "buildHeader"));
  exports.Set("safetensors", st);
}

}  // namespace rift::napi
