// N-API binding of the fused loss. The TypeScript layer (lib/kernels/loss.ts) validates first; this layer
// re-checks every argument it dereferences, so a direct call with bad input throws instead of crashing.
//
// lossAndGradAsync owns what its worker reads and writes: JS may change, detach (transfer) or free the caller's
// arrays while the worker runs. The small arrays (targets, offsets, rewards, refLogps, pairs) are copied at call
// time. A host logits array is copied too, unless a SharedArrayBuffer backs it: that memory can be neither
// detached nor freed while the call holds a reference to the array (its contents may change: the caller's
// business), so it is read in place. A host gradient not backed by one is computed in native memory (in place
// over the logits' copy when there is one) and copied into the caller's array when the call settles; if that
// array was detached or resized meanwhile, the promise rejects ("grad: ...") and nothing is written. Device
// tensors are the DeviceTensor's own memory: referenced and marked busy (free / upload / download throw) until
// the call settles.
#include "napi/loss.h"

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "backends/registry.h"
#include "core/loss.h"
#include "cpu/thread_pool.h"
#include "napi/args.h"
#include "napi/device.h"
#include "napi/errors.h"
#include "napi/job.h"
#include "napi/loss_args.h"

namespace rift::napi {
namespace {

// Where the logits or gradient live: a host typed array or a device tensor.
struct Buffer {
  void* data = nullptr;
  size_t bytes = 0;
  DType dtype = DType::F32;
  bool device = false;
  bool shared = false;   // a host array backed by a SharedArrayBuffer
  bool present = false;  // given by the caller (data may be null for an empty array)
  Napi::Reference<Napi::Value> ref;
};

Buffer buffer(Napi::Env env, Napi::Value v, const char* key, bool optional) {
  Buffer b;
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return b;
    throw_type(env, key, "must be a Float32Array, a Uint16Array (bf16) or a DeviceTensor");
  }
  int dt = 0;
  args::TypedInfo t;
  if (unwrap_device_tensor(v, &b.data, &b.bytes, &dt)) {
    b.device = true;
    b.dtype = DType(dt);
  } else if (args::typed_info(env, v, &t) && (t.type == napi_float32_array || t.type == napi_uint16_array)) {
    b.dtype = t.type == napi_float32_array ? DType::F32 : DType::BF16;
    b.data = t.data;
    b.bytes = t.bytes;
    b.shared = t.shared;
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
  LossArrays arrays;
  RowBackend* backend = nullptr;
  // What the kernel reads and writes: the caller's memory (sync calls, shared or device arrays) or copies.
  const void* in = nullptr;
  void* out = nullptr;
  args::HostCopy in_copy, out_copy;
  bool copy_back = false;  // out is a copy: written into the caller's grad array at settle
};

std::unique_ptr<Call> parse(const Napi::CallbackInfo& info) {
  // Every key is read before any data pointer is taken: a getter cannot detach an array after its check.
  args::Opts o(info);
  o.read({"logits", "grad", "rows", "vocab"}).read(kLossSpecKeys);
  Napi::Env env = o.env();
  auto c = std::make_unique<Call>();
  LossSpec& s = c->spec;
  const int64_t N = o.integer("rows", 0, INT32_MAX);
  s.V = o.integer("vocab", 1, INT32_MAX);

  c->logits = buffer(env, o.buffer_value("logits"), "logits", false);
  c->grad = buffer(env, o.buffer_value("grad"), "grad", true);
  const size_t elem = dtype_size(c->logits.dtype);
  if (c->logits.bytes != size_t(N) * size_t(s.V) * elem)
    throw_range(env, "logits", "length must be rows × vocab = " + std::to_string(N * s.V));
  if (c->grad.present) {
    if (c->grad.device != c->logits.device) throw_type(env, "grad", "must live where logits live (host or device)");
    if (c->grad.dtype != c->logits.dtype) throw_type(env, "grad", "must have the logits' dtype");
    if (c->grad.bytes != c->logits.bytes) throw_range(env, "grad", "length must equal the logits' length");
    const auto* g = static_cast<uint8_t*>(c->grad.data);
    const auto* z = static_cast<uint8_t*>(c->logits.data);
    if (g && z && g != z && g < z + c->logits.bytes && z < g + c->grad.bytes)
      throw_range(env, "grad", "partially overlaps logits (only exact aliasing is allowed)");
  }
  c->backend = &cpu_backend();
  if (c->logits.device) {
    c->backend = cuda_backend();
    if (!c->backend) throw_type(env, "logits", "is a DeviceTensor but no CUDA device is usable");
  }
  parse_loss_spec(o, N, "rows", &s, &c->arrays);
  c->in = c->logits.data;
  c->out = c->grad.data;
  return c;
}

// Makes an async call own what its worker touches (see the top of this file). Throws std::bad_alloc.
void own(Call& c) {
  c.arrays.own(&c.spec);
  if (c.logits.device) return;
  if (!c.logits.shared && c.logits.bytes) {
    c.in_copy = args::HostCopy(c.logits.bytes);
    std::memcpy(c.in_copy.data(), c.logits.data, c.logits.bytes);
    c.in = c.in_copy.data();
  }
  if (c.grad.present && !c.grad.shared) {
    c.copy_back = true;
    if (c.in_copy.data()) {
      c.out = c.in_copy.data();  // run_loss allows exact aliasing: the gradient overwrites the copy row by row
    } else {
      c.out_copy = args::HostCopy(c.grad.bytes);
      c.out = c.out_copy.data();
    }
  }
}

// Copies the gradient from native memory into the caller's grad array; false (nothing written) when that array
// no longer has the call's length: detached, transferred or resized while the call ran.
bool copy_back(Napi::Env env, const Call& c) {
  args::TypedInfo t;
  if (!args::typed_info(env, c.grad.ref.Value(), &t) || t.bytes != c.grad.bytes) return false;
  if (t.bytes) std::memcpy(t.data, c.out, t.bytes);
  return true;
}

LossResult execute(Call& c) {
  // An empty gradient array (rows = 0) still counts as "gradient requested"; its pointer may be null.
  static char empty;
  void* grad = c.grad.present ? (c.out ? c.out : &empty) : nullptr;
  return run_loss(c.spec, *c.backend, c.in, grad, c.logits.dtype);
}

Napi::Value LossAndGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto call = parse(info);
  return loss_result(env, args::guarded(env, [&] { return execute(*call); }), call->spec);
}

// Device tensors in use must not be freed or overwritten from JS until the worker is done.
void set_busy(Call& c, bool busy) {
  if (c.logits.device) set_device_tensor_busy(c.logits.ref.Value(), busy);
  if (c.grad.device && c.grad.data != c.logits.data) set_device_tensor_busy(c.grad.ref.Value(), busy);
}

Napi::Value LossAndGradAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Call> c = parse(info);
  args::guarded(env, [&] { own(*c); });
  auto result = std::make_shared<LossResult>();
  set_busy(*c, true);
  return Job::start(
      env, "rift.lossAndGrad", [c, result] { *result = execute(*c); },
      [c, result](Napi::Env e) -> Napi::Value {
        if (c->copy_back && !copy_back(e, *c))
          throw Napi::Error::New(e,
                                 "grad: its ArrayBuffer was detached, transferred or resized while "
                                 "lossAndGradAsync ran; the gradient was not written");
        return loss_result(e, *result, c->spec);
      },
      [c] { set_busy(*c, false); });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  set_num_threads(int(args::integer(env, info[0], "threads", 0, 1024)));
  return Napi::Number::New(env, num_threads());
}

Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

// The names of core/loss.h's enums, each at its value: lib/kernels/loss.ts passes a name's index in its METHODS /
// NEGATIVE_FORMS / REDUCTIONS lists (and kernels/device.ts a dtype's), and test/loss.test.ts checks that those
// lists equal exports.enums, so the two sides are tied by name rather than by position alone.
struct EnumName {
  int32_t value;
  const char* name;
};
constexpr EnumName kMethodNames[] = {
    {int32_t(Method::SFT), "sft"}, {int32_t(Method::DFT), "dft"},         {int32_t(Method::RIFT), "rift"},
    {int32_t(Method::DPO), "dpo"}, {int32_t(Method::LOGPROB), "logprob"}, {int32_t(Method::NAIVE), "naive"},
};
constexpr EnumName kNegativeNames[] = {{int32_t(NegForm::Token), "token"}, {int32_t(NegForm::Sequence), "sequence"}};
constexpr EnumName kReductionNames[] = {
    {int32_t(Reduction::TokenMean), "token-mean"},
    {int32_t(Reduction::SequenceMean), "sequence-mean"},
    {int32_t(Reduction::Sum), "sum"},
};
constexpr EnumName kDTypeNames[] = {{int32_t(DType::F32), "fp32"}, {int32_t(DType::BF16), "bf16"}};

// An array with table[i].name at index table[i].value; the values must be 0 .. N-1, each once.
template <size_t N>
Napi::Array enum_names(Napi::Env env, const EnumName (&table)[N]) {
  Napi::Array out = Napi::Array::New(env, N);
  bool seen[N] = {};
  for (const EnumName& e : table) {
    if (e.value < 0 || size_t(e.value) >= N || seen[e.value]) throw std::logic_error("enum name table is not 0..N-1");
    seen[e.value] = true;
    out.Set(uint32_t(e.value), e.name);
  }
  return out;
}

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
  Napi::Object enums = Napi::Object::New(env);
  enums.Set("method", enum_names(env, kMethodNames));
  enums.Set("negative", enum_names(env, kNegativeNames));
  enums.Set("reduction", enum_names(env, kReductionNames));
  enums.Set("dtype", enum_names(env, kDTypeNames));
  exports.Set("enums", enums);
}

}  // namespace rift::napi
