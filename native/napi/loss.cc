// N-API binding of the fused loss. The TypeScript layer (lib/kernels/loss.ts) validates first; this layer
// re-checks every argument it dereferences, so a direct call with bad input throws instead of crashing.
#include "napi/loss.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "core/loss.h"
#include "cpu/thread_pool.h"
#include "napi/device.h"
#include "napi/errors.h"

namespace rift::napi {
namespace {

// A typed array argument: its data pointer and element count, with a reference that keeps it alive.
template <typename T>
struct Arr {
  T* data = nullptr;
  size_t length = 0;
  Napi::Reference<Napi::Value> ref;
};

template <typename T>
Arr<T> typed(Napi::Env env, const Napi::Object& o, const char* key, napi_typedarray_type kind,
             const char* kind_name, bool optional) {
  Arr<T> a;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return a;
    throw_type(env, key, std::string("must be a ") + kind_name);
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throw_type(env, key, std::string("must be a ") + kind_name);
  auto ta = v.As<Napi::TypedArray>();
  a.data = reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  a.length = ta.ElementLength();
  a.ref = Napi::Persistent(v);
  return a;
}

int64_t integer(Napi::Env env, const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw_type(env, key, "must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= double(lo) && d <= double(hi)) || d != double(int64_t(d)))
    throw_range(env, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return int64_t(d);
}

double number(Napi::Env env, const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) throw_type(env, key, "must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// Where the logits or gradient live: a host typed array or a device tensor.
struct Buffer {
  void* data = nullptr;
  size_t bytes = 0;
  DType dtype = DType::F32;
  bool device = false;
  bool present = false;  // given by the caller (data may be null for an empty array)
  Napi::Reference<Napi::Value> ref;
};

Buffer buffer(Napi::Env env, const Napi::Object& o, const char* key, bool optional) {
  Buffer b;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return b;
    throw_type(env, key, "must be a Float32Array, a Uint16Array (bf16) or a DeviceTensor");
  }
  int dt = 0;
  if (unwrap_device_tensor(v, &b.data, &b.bytes, &dt)) {
    b.device = true;
    b.dtype = DType(dt);
  } else if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    if (ta.TypedArrayType() == napi_float32_array) b.dtype = DType::F32;
    else if (ta.TypedArrayType() == napi_uint16_array) b.dtype = DType::BF16;
    else throw_type(env, key, "must be a Float32Array, a Uint16Array (bf16) or a DeviceTensor");
    b.data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    b.bytes = ta.ByteLength();
  } else {
    throw_type(env, key, "must be a Float32Array, a Uint16Array (bf16) or a DeviceTensor");
  }
  b.present = true;
  b.ref = Napi::Persistent(v);
  return b;
}

// Everything one call needs, parsed on the JS thread; owns references to its arrays while it runs.
struct Call {
  LossSpec spec;
  Buffer logits, grad;
  Arr<int32_t> targets, offsets, pairs;
  Arr<float> rewards;
  Arr<double> ref;
  RowBackend* backend = nullptr;
};

std::unique_ptr<Call> parse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  auto c = std::make_unique<Call>();
  LossSpec& s = c->spec;
  s.method = Method(integer(env, o, "method", 0, 4));
  s.neg = NegForm(integer(env, o, "negative", 0, 1));
  s.reduction = Reduction(integer(env, o, "reduction", 0, 2));
  s.N = integer(env, o, "rows", 0, INT32_MAX);
  s.V = integer(env, o, "vocab", 1, INT32_MAX);
  s.normalizer = number(env, o, "normalizer", 0);
  if (!(std::isfinite(s.normalizer) && s.normalizer >= 0)) throw_range(env, "normalizer", "must be finite and > 0");
  s.beta = number(env, o, "beta", 0.1);
  s.want_token_logp = o.Get("tokenLogps").ToBoolean();
  s.want_entropy = o.Get("entropy").ToBoolean();

  c->logits = buffer(env, o, "logits", false);
  c->grad = buffer(env, o, "grad", true);
  const size_t elem = dtype_size(c->logits.dtype);
  if (c->logits.bytes != size_t(s.N) * size_t(s.V) * elem)
    throw_range(env, "logits", "length must be rows × vocab = " + std::to_string(s.N * s.V));
  if (c->grad.present) {
    if (c->grad.device != c->logits.device) throw_type(env, "grad", "must live where logits live (host or device)");
    if (c->grad.dtype != c->logits.dtype) throw_type(env, "grad", "must have the logits' dtype");
    if (c->grad.bytes != c->logits.bytes) throw_range(env, "grad", "length must equal the logits' length");
    const auto* g = static_cast<uint8_t*>(c->grad.data);
    const auto* z = static_cast<uint8_t*>(c->logits.data);
    if (g != z && g < z + c->logits.bytes && z < g + c->grad.bytes)
      throw_range(env, "grad", "partially overlaps logits (only exact aliasing is allowed)");
  }
  c->backend = &cpu_backend();
  if (c->logits.device) {
    c->backend = cuda_backend();
    if (!c->backend) throw_type(env, "logits", "is a DeviceTensor but no CUDA device is usable");
  }

  c->targets = typed<int32_t>(env, o, "targets", napi_int32_array, "Int32Array", false);
  if (c->targets.length != size_t(s.N)) throw_range(env, "targets", "length must equal rows");
  c->offsets = typed<int32_t>(env, o, "offsets", napi_int32_array, "Int32Array", false);
  if (c->offsets.length < 1) throw_range(env, "offsets", "must hold at least one entry (S + 1)");
  s.S = int64_t(c->offsets.length) - 1;
  s.targets = c->targets.data;
  s.offsets = c->offsets.data;
  c->rewards = typed<float>(env, o, "rewards", napi_float32_array, "Float32Array", true);
  if (c->rewards.data && c->rewards.length != size_t(s.S))
    throw_range(env, "rewards", "length must equal the number of sequences");
  s.rewards = c->rewards.data;
  if (s.method == Method::DPO) {
    c->ref = typed<double>(env, o, "refLogps", napi_float64_array, "Float64Array", false);
    if (c->ref.length != size_t(s.S)) throw_range(env, "refLogps", "length must equal the number of sequences");
    c->pairs = typed<int32_t>(env, o, "pairs", napi_int32_array, "Int32Array", false);
    if (c->pairs.length % 2) throw_range(env, "pairs", "length must be even (chosen, rejected)");
    s.ref_logp = c->ref.data;
    s.pairs = c->pairs.data;
    s.P = int64_t(c->pairs.length / 2);
  }
  return c;
}

Napi::Object result_object(Napi::Env env, const LossResult& r, const LossSpec& spec) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("normalizer", r.normalizer);
  out.Set("tokens", double(r.tokens));
  auto seq = Napi::Float64Array::New(env, r.seq_logp.size());
  if (!r.seq_logp.empty()) std::memcpy(seq.Data(), r.seq_logp.data(), r.seq_logp.size() * 8);
  out.Set("seqLogps", seq);
  auto f32 = [&](const std::vector<float>& v) {
    auto a = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
    return a;
  };
  if (spec.want_token_logp) out.Set("tokenLogps", f32(r.token_logp));
  if (spec.want_entropy) out.Set("entropy", f32(r.entropy));
  return out;
}

LossResult execute(Call& c) {
  // An empty gradient array (rows = 0) still counts as "gradient requested"; its pointer may be null.
  static char empty;
  void* grad = c.grad.present ? (c.grad.data ? c.grad.data : &empty) : nullptr;
  return run_loss(c.spec, *c.backend, c.logits.data, grad, c.logits.dtype);
}

Napi::Value LossAndGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto call = parse(info);
  try {
    return result_object(env, execute(*call), call->spec);
  } catch (const ArgError& e) {
    throw to_js(env, e);
  } catch (const std::exception& e) {
    throw engine_error(env, e.what());
  }
}

class LossWorker final : public Napi::AsyncWorker {
 public:
  LossWorker(Napi::Env env, std::unique_ptr<Call> call)
      : Napi::AsyncWorker(env, "rift.lossAndGrad"), deferred_(Napi::Promise::Deferred::New(env)),
        call_(std::move(call)) {
    set_busy(true);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = execute(*call_);
    } catch (const ArgError& e) {
      arg_error_ = std::make_unique<ArgError>(e);
      SetError(e.message);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    set_busy(false);
    deferred_.Resolve(result_object(Env(), result_, call_->spec));
  }
  void OnError(const Napi::Error& e) override {
    set_busy(false);
    if (arg_error_) deferred_.Reject(to_js(Env(), *arg_error_).Value());
    else deferred_.Reject(engine_error(Env(), e.Message()).Value());
  }

 private:
  // Device tensors in use must not be freed or overwritten from JS until the worker is done.
  void set_busy(bool busy) {
    if (call_->logits.device) set_device_tensor_busy(call_->logits.ref.Value(), busy);
    if (call_->grad.device && call_->grad.data != call_->logits.data)
      set_device_tensor_busy(call_->grad.ref.Value(), busy);
  }
  Napi::Promise::Deferred deferred_;
  std::unique_ptr<Call> call_;
  LossResult result_;
  std::unique_ptr<ArgError> arg_error_;
};

Napi::Value LossAndGradAsync(const Napi::CallbackInfo& info) {
  auto* worker = new LossWorker(info.Env(), parse(info));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "threads", "must be a number");
  const double n = info[0].As<Napi::Number>().DoubleValue();
  if (!(n >= 0 && n <= 1024) || n != double(int(n))) throw_range(env, "threads", "must be an integer in [0, 1024]");
  set_num_threads(int(n));
  return Napi::Number::New(env, num_threads());
}

Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

}  // namespace

void init_loss(Napi::Env env, Napi::Object exports) {
  exports.Set("lossAndGrad", Napi::Function::New(env, LossAndGrad, "lossAndGrad"));
  exports.Set("lossAndGradAsync", Napi::Function::New(env, LossAndGradAsync, "lossAndGradAsync"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("numThreads", Napi::Function::New(env, NumThreads, "numThreads"));
  Napi::Object build = Napi::Object::New(env);
#ifdef RIFT_WITH_CUDA
  build.Set("cuda", true);
#else
  build.Set("cuda", false);
#endif
#if defined(__AVX512F__)
  build.Set("simd", "avx512");
#elif defined(__AVX2__)
  build.Set("simd", "avx2");
#elif defined(__ARM_NEON)
  build.Set("simd", "neon");
#else
  build.Set("simd", "sse2/scalar");
#endif
  build.Set("napiVersion", NAPI_VERSION);
  build.Set("compiler", __VERSION__);
  exports.Set("buildInfo", build);
}

}  // namespace rift::napi
