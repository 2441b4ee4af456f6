// The shared helpers of the ops bindings (napi/ops_common.h).
#include "napi/ops_common.h"

#ifdef RIFT_WITH_CUDA
#include "cuda/cublas_loader.h"
#include "cuda/device_mem.h"
#endif

namespace rift::napi::ops_common {
namespace {

[[noreturn]] void throw_no_cuda(Napi::Env env, DType dt) {
  Napi::Error e = Napi::Error::New(env,
                                   "device: 'cuda' is not usable (it needs a CUDA device and a loadable "
                                   "cuBLAS): " +
                                       cuda_unusable_reason(dt) + "; use device 'cpu'");
  e.Set("code", Napi::String::New(env, "ERR_RIFT_NO_CUDA"));
  throw e;
}

// The precision the options select: `precision`, or the deprecated `gemmDtype` ('f32' spelled the old way).
DType precision(const Opts& o) {
  const std::string p = o.choice("precision", {"fp32", "bf16"}, "");
  const std::string g = o.choice("gemmDtype", {"f32", "fp32", "bf16"}, "");
  if (!p.empty() && !g.empty() && (p == "bf16") != (g == "bf16"))
    throw_range(o.env(), "gemmDtype",
                "is the deprecated name of precision and must agree with it ('" + p + "'), got '" + g + "'");
  return (p.empty() ? g : p) == "bf16" ? DType::BF16 : DType::F32;
}

}  // namespace

// The options object of an op (argument `arg`), read once: the op's keys and the backend keys every op accepts
// (device, precision and its deprecated alias gemmDtype) are fetched before any data pointer is taken.
Opts opts(const Napi::CallbackInfo& info, std::initializer_list<const char*> keys, size_t arg) {
  Opts o(info, arg);
  o.read(keys).read({"device", "precision", "gemmDtype"});
  return o;
}

// Why cuda_ops() is unusable here ("" when it is usable).
std::string cuda_unusable_reason(DType dt) {
#ifdef RIFT_WITH_CUDA
  if (cuda_ops(dt)) return "";
  if (cuda::device_count() <= 0) return "no CUDA device is visible";
  if (!cuda::cublas_available()) return cuda::cublas_load_error();
  return "the CUDA ops backend could not be created";
#else
  (void)dt;
  return "this addon was built without CUDA (nvcc was not found at build time)";
#endif
}

// The backend the options select (device, precision). Parses values already read by Opts: runs no user code.
OpsBackend& be(const Opts& o) {
  const bool cuda = o.choice("device", {"cpu", "cuda"}, "cpu") == "cuda";
  const DType dt = precision(o);
  if (!cuda) return cpu_ops(dt);
#ifdef RIFT_WITH_CUDA
  if (OpsBackend* b = cuda_ops(dt)) return *b;
#endif
  throw_no_cuda(o.env(), dt);
}

}  // namespace rift::napi::ops_common
