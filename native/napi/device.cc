// exports.cuda: device queries and DeviceTensor (device memory owned by a JS object). See device.h.
//
// Identifying our objects: every DeviceTensor instance is stamped with a Node-API type tag in its constructor,
// and unwrap_device_tensor checks that tag before ObjectWrap::Unwrap. Unlike `instanceof` against a stored
// constructor, a tag cannot be faked by Object.create(DeviceTensor.prototype) or a changed prototype, and it
// needs no per-environment state, so it works unchanged in every environment (main thread, worker threads):
// each environment defines its own class in init_device.
#include "napi/device.h"

#include "core/memory.h"
#include "napi/args.h"
#include "napi/errors.h"

#ifdef RIFT_WITH_CUDA
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cuda/device_mem.h"
#include "cuda/external_ptr.h"
#endif

namespace rift::napi {

#ifdef RIFT_WITH_CUDA
namespace {

// Random 128-bit tag marking objects made by DeviceTensor's constructor (must stay constant across builds of a
// process; any value unique to this addon works).
constexpr napi_type_tag kDeviceTensorTag = {0x5d1f0c9a3e7b4c21ULL, 0x9a64e2b7c80f1d35ULL};

// Turns a std::exception from the CUDA layer into a JS Error (code and name are in the message).
template <typename F>
auto cuda_call(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) { throw engine_error(env, e.what()); }
}

// new DeviceTensor(bytes, dtype, address): a view of `bytes` bytes of device memory that other code owns (another
// addon, the caller's CUDA code), at the BigInt `address`. Checked before use, so a kernel never reads outside
// memory that exists: the address must be element-aligned device (or managed) memory of rift's device and of its
// primary context, and [address, address + bytes) must lie inside one allocation. Returns the pointer.
void* borrow_external(Napi::Env env, const Napi::Value& v, size_t bytes, size_t elem) {
  if (!v.IsBigInt()) throw_type(env, "address", "must be a bigint (a device address)");
  bool lossless = false;
  const uint64_t a = v.As<Napi::BigInt>().Uint64Value(&lossless);
  const auto hex = [](uint64_t x) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(x));
    return std::string(buf);
  };
  if (!lossless || uint64_t(uintptr_t(a)) != a) throw_range(env, "address", "must be in [1, 2^64)");
  if (a == 0) throw_range(env, "address", "is null");
  if (a % elem != 0)
    throw_range(env, "address", hex(a) + " is not aligned to the element size " + std::to_string(elem));
  if (bytes > UINTPTR_MAX - a) throw_range(env, "length", "runs past the end of the address space");
  const rift::cuda::ExternalPointer p = cuda_call(env, [&] { return rift::cuda::describe_pointer(uintptr_t(a)); });
  const int mine = cuda_call(env, rift::cuda::current_device);
  if (!p.cuda)
    throw_range(env, "address",
                hex(a) + " is not memory CUDA knows (not allocated, mapped or registered through CUDA)");
  if (!p.device_memory) throw_range(env, "address", hex(a) + " is host memory, not device memory");
  if (p.device != mine)
    throw_range(env, "address",
                hex(a) + " is memory of CUDA device " + std::to_string(p.device) + "; rift runs on device " +
                    std::to_string(mine));
  if (p.foreign_context)
    throw_range(
        env, "address",
        hex(a) + " was allocated in another CUDA context (rift uses the device's primary context, the CUDA runtime's)");
  if (p.size == 0) throw_range(env, "address", hex(a) + ": the CUDA driver reports no allocation containing it");
  if (a + bytes > p.base + p.size)
    throw_range(env, "length",
                std::to_string(bytes / elem) + " elements (" + std::to_string(bytes) + " bytes) from " + hex(a) +
                    " run past the end of its allocation [" + hex(p.base) + ", " + hex(p.base + p.size) + ")");
  return reinterpret_cast<void*>(uintptr_t(a));
}

// Total memory of the device tensors live on (device 0), queried once.
size_t device_memory() {
  static const size_t total = rift::cuda::device_props(0).total_memory;  // a throw leaves it to the next call
  return total;
}

class DeviceTensor : public Napi::ObjectWrap<DeviceTensor> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "DeviceTensor",
        {InstanceMethod<&DeviceTensor::upload>("upload"), InstanceMethod<&DeviceTensor::download>("download"),
         InstanceMethod<&DeviceTensor::free>("free"), InstanceAccessor<&DeviceTensor::get_bytes>("bytes"),
         InstanceAccessor<&DeviceTensor::get_dtype>("dtype"), InstanceAccessor<&DeviceTensor::get_freed>("freed"),
         InstanceAccessor<&DeviceTensor::get_address>("address"),
         InstanceAccessor<&DeviceTensor::get_borrowed>("borrowed")});
  }

  // new DeviceTensor(bytes, dtype[, address]): bytes a non-negative integer multiple of the element size, dtype
  // 0 | 1; with a BigInt address, a view of memory someone else owns (borrow_external) instead of an allocation.
  explicit DeviceTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceTensor>(info) {
    Napi::Env env = info.Env();
    if (!info.IsConstructCall()) throw_type(env, "DeviceTensor", "must be called with new");
    if (info.Length() < 1 || !info[0].IsNumber()) throw_type(env, "bytes", "must be a number");
    if (info.Length() < 2 || !info[1].IsNumber()) throw_type(env, "dtype", "must be 0 (f32) or 1 (bf16)");
    const double b = info[0].As<Napi::Number>().DoubleValue();
    const double d = info[1].As<Napi::Number>().DoubleValue();
    if (d != 0 && d != 1)
      throw_range(env, "dtype", "must be 0 (f32) or 1 (bf16), got " + info[1].ToString().Utf8Value());
    dtype_ = int(d);
    const size_t elem = dtype_ == 0 ? 4 : 2;
    if (!std::isfinite(b) || b != std::floor(b) || b < 0)
      throw_range(env, "bytes", "must be a non-negative integer, got " + info[0].ToString().Utf8Value());
    if (b > 9007199254740991.0) throw_range(env, "bytes", "is too large");
    bytes_ = size_t(b);
    if (bytes_ % elem != 0) throw_range(env, "bytes", "must be a multiple of the element size " + std::to_string(elem));
    if (info.Length() >= 3 && !info[2].IsUndefined()) {  // a view: never freed or counted by rift
      ptr_ = borrow_external(env, info[2], bytes_, elem);
      owned_ = false;
      live_ = true;
      info.This().As<Napi::Object>().TypeTag(&kDeviceTensorTag);
      return;
    }
    const size_t total = cuda_call(env, device_memory);
    if (bytes_ > total)
      throw_range(env, "bytes",
                  std::to_string(bytes_) + " is more than the device's " + std::to_string(total) + " bytes");
    ptr_ = cuda_call(env, [&] { return rift::cuda::alloc(bytes_); });
    mem_note_alloc(MemSpace::Device, MemCategory::Workspace, int64_t(bytes_));  // user tensors count as workspace
    live_ = true;
    info.This().As<Napi::Object>().TypeTag(&kDeviceTensorTag);
  }

  ~DeviceTensor() override { release_noexcept(); }  // the finalizer frees what free() did not

  bool live() const { return live_; }
  // A running lossAndGradAsync uses this tensor: free/upload/download refuse until it settles.
  void set_busy(bool busy) { busy_ += busy ? 1 : -1; }
  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  int dtype() const { return dtype_; }

 private:
  void release_noexcept() {
    if (live_ && owned_) {
      rift::cuda::free_noexcept(ptr_);
      mem_note_free(MemSpace::Device, MemCategory::Workspace, int64_t(bytes_));
    }
    live_ = false;
    ptr_ = nullptr;
  }
  void require_live(Napi::Env env) const {
    if (!live_) throw Napi::Error::New(env, "DeviceTensor: used after free");
    require_idle(env);
  }
  void require_idle(Napi::Env env) const {
    if (busy_ > 0)
      throw Napi::Error::New(env, "DeviceTensor: in use by a running lossAndGradAsync; wait for its promise to settle");
  }
  // The caller's typed array must be Float32Array (dtype 0) or Uint16Array (dtype 1) of exactly bytes_ bytes;
  // returns its data (a SharedArrayBuffer-backed array is accepted: args::typed_info).
  void* host_array(const Napi::CallbackInfo& info, const char* arg) const {
    Napi::Env env = info.Env();
    require_live(env);
    const char* want = dtype_ == 0 ? "Float32Array" : "Uint16Array";
    const napi_typedarray_type want_type = dtype_ == 0 ? napi_float32_array : napi_uint16_array;
    args::TypedInfo t;
    if (info.Length() < 1 || !args::typed_info(env, info[0], &t))
      throw_type(env, arg, std::string("must be a ") + want);
    if (t.type != want_type)
      throw_type(env, arg, std::string("must be a ") + want + " for a " + (dtype_ == 0 ? "fp32" : "bf16") + " tensor");
    if (t.bytes != bytes_)
      throw_range(env, arg,
                  "length must be " + std::to_string(bytes_ / (dtype_ == 0 ? 4 : 2)) + " elements, got " +
                      std::to_string(t.length));
    return t.data;
  }

  Napi::Value upload(const Napi::CallbackInfo& info) {
    void* host = host_array(info, "array");
    cuda_call(info.Env(), [&] { rift::cuda::copy_to_device(ptr_, host, bytes_); });
    return info.Env().Undefined();
  }
  Napi::Value download(const Napi::CallbackInfo& info) {
    void* host = host_array(info, "array");
    cuda_call(info.Env(), [&] { rift::cuda::copy_to_host(host, ptr_, bytes_); });
    return info[0];
  }
  Napi::Value free(const Napi::CallbackInfo& info) {  // idempotent
    require_idle(info.Env());
    if (live_ && !owned_) {  // a view: the memory stays its owner's
      live_ = false;
      ptr_ = nullptr;
    } else if (live_) {
      void* p = ptr_;
      live_ = false;
      ptr_ = nullptr;
      mem_note_free(MemSpace::Device, MemCategory::Workspace, int64_t(bytes_));
      cuda_call(info.Env(), [&] { rift::cuda::free(p); });
    }
    return info.Env().Undefined();
  }
  Napi::Value get_bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }
  Napi::Value get_dtype(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), dtype_); }
  Napi::Value get_freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !live_); }
  // The device address (BigInt) for other CUDA code; throws after free().
  Napi::Value get_address(const Napi::CallbackInfo& info) {
    if (!live_) throw Napi::Error::New(info.Env(), "DeviceTensor: used after free");
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr_)));
  }
  Napi::Value get_borrowed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !owned_); }

  void* ptr_ = nullptr;  // device (bytes_)
  size_t bytes_ = 0;
  int dtype_ = 0;
  bool live_ = false;
  bool owned_ = true;  // false: a view of external memory (borrow_external)
  int busy_ = 0;
};

Napi::Value device_count(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), rift::cuda::device_count());  // 0 without driver or device
}

Napi::Value devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int n = rift::cuda::device_count();
  Napi::Array out = Napi::Array::New(env, size_t(n));
  for (int i = 0; i < n; ++i) {
    const rift::cuda::DeviceProps p = cuda_call(env, [&] { return rift::cuda::device_props(i); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", p.name);
    o.Set("totalMemory", double(p.total_memory));
    o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
    o.Set("multiProcessors", p.multiprocessors);
    out.Set(uint32_t(i), o);
  }
  return out;
}

Napi::Value synchronize(const Napi::CallbackInfo& info) {
  if (rift::cuda::device_count() > 0) cuda_call(info.Env(), [] { rift::cuda::synchronize(); });
  return info.Env().Undefined();
}

// cuda.profiler(on): cudaProfilerStart / Stop, so `ncu --profile-from-start off` (or nsys --capture-range
// cudaProfilerApi) captures only the bracketed work. Synchronises first: the range starts and ends on idle work.
Napi::Value profiler(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBoolean()) throw_type(env, "on", "must be a boolean");
  const bool on = info[0].As<Napi::Boolean>().Value();
  if (rift::cuda::device_count() > 0)
    cuda_call(env, [on] {
      rift::cuda::synchronize();
      rift::cuda::profiler(on);
    });
  return env.Undefined();
}

}  // namespace

bool unwrap_device_tensor(const Napi::Value& v, void** ptr, size_t* bytes, int* dtype) {
  if (!v.IsObject()) return false;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.CheckTypeTag(&kDeviceTensorTag)) return false;  // not made by our constructor: Unwrap would be unsafe
  DeviceTensor* t = DeviceTensor::Unwrap(o);
  if (!t || !t->live()) return false;
  *ptr = t->ptr();
  *bytes = t->bytes();
  *dtype = t->dtype();
  return true;
}

void set_device_tensor_busy(const Napi::Value& v, bool busy) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kDeviceTensorTag)) return;
  if (DeviceTensor* t = DeviceTensor::Unwrap(v.As<Napi::Object>())) t->set_busy(busy);
}

void init_device(Napi::Env env, Napi::Object exports) {
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("deviceCount", Napi::Function::New(env, device_count, "deviceCount"));
  cuda.Set("devices", Napi::Function::New(env, devices, "devices"));
  cuda.Set("synchronize", Napi::Function::New(env, synchronize, "synchronize"));
  cuda.Set("profiler", Napi::Function::New(env, profiler, "profiler"));
  cuda.Set("DeviceTensor", DeviceTensor::define(env));
  exports.Set("cuda", cuda);
}

#else  // built without CUDA

bool unwrap_device_tensor(const Napi::Value&, void**, size_t*, int*) { return false; }

void set_device_tensor_busy(const Napi::Value&, bool) {}  // nothing is a DeviceTensor without CUDA

void init_device(Napi::Env env, Napi::Object exports) { exports.Set("cuda", env.Null()); }

#endif

}  // namespace rift::napi
