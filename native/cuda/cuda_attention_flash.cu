// Host side of the fused attention (cuda_attention_flash.h): selection, checks, and the engine's fallback hook.
#include "cuda/cuda_attention_flash.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "cuda/cuda_attention_flash.cuh"

namespace rift::cuda {
namespace flash_detail {

void require_device(int64_t D) {
  const std::string why = flash_unsupported(D);
  if (!why.empty()) throw LaunchError("flash attention: " + why);
}

}  // namespace flash_detail

namespace {

using flash_detail::Args;
using flash_detail::LaunchError;

std::atomic<bool> g_noted{false};

// The one stderr line of a process whose fused attention falls back to the chunked-GEMM path.
void note_fallback(const std::string& why) {
  if (!g_noted.exchange(true))
    std::fprintf(stderr, "rift: RIFT_CUDA_ATTENTION=flash: %s; using the chunked-GEMM attention\n", why.c_str());
}

bool aligned(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (p && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

Args args(const float* q, const float* k, const float* v, int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq,
          int64_t Hkv, int64_t D) {
  Args a{};
  a.q = q, a.k = k, a.v = v;
  a.Tq = Tq, a.Tkv = Tkv, a.past = past, a.Hq = Hq, a.Hkv = Hkv, a.G = Hq / Hkv;
  a.scale = 1.f / std::sqrt(float(D));
  return a;
}

void forward_checked(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                     int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D) {
  if (B <= 0 || Tq <= 0) return;
  flash_detail::prepare_forward(D);
  Args a = args(q, k, v, Tq, Tkv, past, Hq, Hkv, D);
  a.o = out, a.lse = lse;
  flash_detail::forward(a, B, D);
}

}  // namespace

bool flash_selected() {
  const char* e = std::getenv("RIFT_CUDA_ATTENTION");
  return e && std::strcmp(e, "flash") == 0;
}

std::string flash_unsupported(int64_t D) {
  std::string why = rift::flash::head_dim_unsupported(D);
  if (!why.empty()) return why;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return "no usable CUDA device";
  }
  if (major < 8)
    return "compute capability " + std::to_string(major) + "." + std::to_string(minor) +
           " (mma.sync on bf16 needs sm_80 or newer)";
  return "";
}

void flash_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                   int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D) {
  if (!aligned({out, q, k, v})) throw std::runtime_error("flash attention: q, k, v, out must be 16-byte aligned");
  forward_checked(out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D);
}

void flash_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                    const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D,
                    bool accumulate, float* di) {
  if (B <= 0 || T <= 0) return;
  if (!aligned({dq, dk, dv, dout, q, k, v, out}))
    throw std::runtime_error("flash attention: every tensor must be 16-byte aligned");
  flash_detail::prepare_backward(D);
  Args a = args(q, k, v, T, T, 0, Hq, Hkv, D);
  a.dout = dout, a.out = out, a.lse_in = lse, a.di = di;
  a.dq = dq, a.dk = dk, a.dv = dv, a.accumulate = accumulate;
  flash_detail::backward(a, B, D);
}

bool flash_try_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B, int64_t Tq,
                       int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D, const KvRows* rows) {
  if (!flash_selected() || rows) return false;
  if (!aligned({out, q, k, v})) {
    note_fallback("a tensor is not 16-byte aligned");
    return false;
  }
  try {  // one kernel per batch chunk; a refused first launch has written nothing
    forward_checked(out, lse, q, k, v, B, Tq, Tkv, past, Hq, Hkv, D);
  } catch (const LaunchError& e) {
    note_fallback(e.what());
    return false;
  }
  return true;
}

bool flash_try_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                        int64_t Hkv, int64_t D, bool accumulate, const std::function<void*(size_t)>& scratch) {
  if (!flash_selected()) return false;
  if (B <= 0 || T <= 0) return true;
  if (!aligned({dq, dk, dv, dout, q, k, v, out})) {
    note_fallback("a tensor is not 16-byte aligned");
    return false;
  }
  try {  // every kernel is configured before the first launch: a refusal here has written nothing
    flash_detail::prepare_backward(D);
  } catch (const LaunchError& e) {
    note_fallback(e.what());
    return false;
  }
  float* di = static_cast<float*>(scratch(size_t(B * Hq * T) * sizeof(float)));
  try {
    flash_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate, di);
  } catch (const LaunchError& e) {  // configured but refused later: outputs may be partly written, so no fallback
    throw std::runtime_error(e.what());
  }
  return true;
}

float time_ms(const std::function<void()>& body, int iters) {
  struct Events {
    cudaEvent_t e[2] = {nullptr, nullptr};
    ~Events() {
      for (cudaEvent_t x : e)
        if (x) (void)cudaEventDestroy(x);
    }
  } ev;
  RIFT_CUDA_CHECK(cudaEventCreate(&ev.e[0]));
  RIFT_CUDA_CHECK(cudaEventCreate(&ev.e[1]));
  body();
  RIFT_CUDA_CHECK(cudaEventRecord(ev.e[0], nullptr));
  for (int i = 0; i < iters; ++i) body();
  RIFT_CUDA_CHECK(cudaEventRecord(ev.e[1], nullptr));
  RIFT_CUDA_CHECK(cudaEventSynchronize(ev.e[1]));
  float ms = 0.f;
  RIFT_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.e[0], ev.e[1]));
  return iters > 0 ? ms / float(iters) : 0.f;
}

}  // namespace rift::cuda
