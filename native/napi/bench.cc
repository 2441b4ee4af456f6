// N-API binding of the benchmark baselines (cpu/bench_ops.h). Synchronous: the bench times the call itself.
#include "napi/bench.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "cpu/bench_ops.h"
#include "napi/args.h"
#include "napi/errors.h"

namespace rift::napi {
namespace {

// A non-negative integer argument (rows, vocab), named in the error.
int64_t get_count(Napi::Env env, const Napi::Value& v, const std::string& arg, int64_t min) {
  if (!v.IsNumber()) throw_type(env, arg, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) throw_range(env, arg, "must be an integer");
  if (d < double(min)) throw_range(env, arg, "must be >= " + std::to_string(min));
  if (d > 9007199254740991.0) throw_range(env, arg, "is too large");
  return int64_t(d);
}

struct Bytes {
  void* data;
  size_t size;
};

// A TypedArray (any element type, Buffer included) or an ArrayBuffer, as raw bytes.
Bytes get_bytes(Napi::Env env, const Napi::Value& v, const std::string& arg) {
  args::TypedInfo t;
  if (args::typed_info(env, v, &t)) return {t.data, t.bytes};
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    return {ab.Data(), ab.ByteLength()};
  }
  throw_type(env, arg, "must be a TypedArray or an ArrayBuffer");
}

Napi::Value UnfusedSft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5) throw_type(env, "unfusedSft", "expects (logits, rows, vocab, targets, grad)");

  const Napi::Value lv = info[0];
  if (!lv.IsTypedArray()) throw_type(env, "logits", "must be a Float32Array (f32) or a Uint16Array (bf16 bits)");
  const napi_typedarray_type lt = lv.As<Napi::TypedArray>().TypedArrayType();
  if (lt != napi_float32_array && lt != napi_uint16_array)
    throw_type(env, "logits", "must be a Float32Array (f32) or a Uint16Array (bf16 bits)");
  const DType dtype = lt == napi_float32_array ? DType::F32 : DType::BF16;
  const char* kind = lt == napi_float32_array ? "a Float32Array" : "a Uint16Array";

  const int64_t N = get_count(env, info[1], "rows", 0);
  const int64_t V = get_count(env, info[2], "vocab", 1);
  if (V > INT32_MAX) throw_range(env, "vocab", "must fit in int32");
  const double nv = double(N) * double(V);

  Napi::TypedArray logits = lv.As<Napi::TypedArray>();
  if (double(logits.ElementLength()) != nv)
    throw_range(env, "logits",
                "length " + std::to_string(logits.ElementLength()) + " != rows·vocab = " + std::to_string(N * V));

  const Napi::Value tv = info[3];
  if (!tv.IsTypedArray() || tv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(env, "targets", "must be an Int32Array");
  Napi::Int32Array targets = tv.As<Napi::Int32Array>();
  if (int64_t(targets.ElementLength()) != N)
    throw_range(env, "targets",
                "length " + std::to_string(targets.ElementLength()) + " != rows = " + std::to_string(N));
  const int32_t* y = targets.Data();
  for (int64_t t = 0; t < N; ++t)
    if (y[t] != kIgnoreIndex && (y[t] < 0 || y[t] >= V))
      throw_range(
          env, "targets",
          "targets[" + std::to_string(t) + "] = " + std::to_string(y[t]) + " is outside [0, vocab) and not -100");

  const Napi::Value gv = info[4];
  if (!gv.IsTypedArray() || gv.As<Napi::TypedArray>().TypedArrayType() != lt)
    throw_type(env, "grad", std::string("must be ") + kind + ", like logits");
  Napi::TypedArray grad = gv.As<Napi::TypedArray>();
  if (double(grad.ElementLength()) != nv)
    throw_range(env, "grad",
                "length " + std::to_string(grad.ElementLength()) + " != rows·vocab = " + std::to_string(N * V));

  bool vector_exp = false;
  if (info.Length() > 5 && !info[5].IsUndefined()) {
    if (!info[5].IsBoolean()) throw_type(env, "vectorExp", "must be a boolean");
    vector_exp = info[5].As<Napi::Boolean>().Value();
  }

  const Bytes lb = get_bytes(env, logits, "logits");
  const Bytes gb = get_bytes(env, grad, "grad");
  const double loss = bench::unfused_sft(lb.data, gb.data, dtype, N, V, y, vector_exp);
  return Napi::Number::New(env, loss);
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) throw_type(env, "copy", "expects (dst, src)");
  const Bytes dst = get_bytes(env, info[0], "dst");
  const Bytes src = get_bytes(env, info[1], "src");
  if (dst.size < src.size)
    throw_range(env, "dst", "byteLength " + std::to_string(dst.size) + " < src byteLength " + std::to_string(src.size));
  const auto* d = static_cast<const uint8_t*>(dst.data);
  const auto* s = static_cast<const uint8_t*>(src.data);
  if (src.size > 0 && d < s + src.size && s < d + src.size) throw_range(env, "dst", "overlaps src");
  bench::copy(dst.data, src.data, src.size);
  return env.Undefined();
}

}  // namespace

void init_bench(Napi::Env env, Napi::Object exports) {
  Napi::Object b = Napi::Object::New(env);
  b.Set("unfusedSft", Napi::Function::New(env, UnfusedSft, "unfusedSft"));
  b.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("bench", b);
}

}  // namespace rift::napi
