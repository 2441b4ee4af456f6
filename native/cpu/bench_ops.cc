// Benchmark baselines (see bench_ops.h): the unfused SFT path and a threaded copy.
#include "cpu/bench_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>

#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::bench {
namespace {

// The materialised log-softmax, kept between calls and grown when a larger problem arrives.
struct Scratch {
  std::mutex mu;
  std::unique_ptr<float[]> data;
  size_t size = 0;
  float* get(size_t n) {
    if (n > size) {
      data.reset();  // free first: the old and new buffers need not coexist
      data.reset(new float[n]);
      size = n;
    }
    return data.get();
  }
};
Scratch& scratch() {
  static Scratch* s = new Scratch();
  return *s;
}

inline float ld(const float* p, int64_t i) { return p[i]; }
inline float ld(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
inline void st(float* p, int64_t i, float v) { p[i] = v; }
inline void st(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16(v); }

// The exponential: std::exp (scalar libm calls: GCC only vectorises it under -ffast-math) or vexp (vmath.h,
// the polynomial the fused kernel uses, which vectorises).
struct StdExp {
  static float f(float x) { return std::exp(x); }
};
struct VecExp {
  static float f(float x) { return vexp(x); }
};

// Step 1: logp = log_softmax(z), row by row: max, Σ exp(z − max), z − lse.
template <typename Exp, typename T>
void log_softmax(const T* z, float* logp, int64_t N, int64_t V) {
  parallel_for(
      N,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T* x = z + r * V;   // (V)
          float* o = logp + r * V;  // (V)
          float m = -INFINITY;
#pragma omp simd reduction(max : m)
          for (int64_t v = 0; v < V; ++v) m = m > ld(x, v) ? m : ld(x, v);  // (std::max does not vectorise)
          float d = 0.f;
#pragma omp simd reduction(+ : d)
          for (int64_t v = 0; v < V; ++v) d += Exp::f(ld(x, v) - m);
          const float lse = m + std::log(d);
          for (int64_t v = 0; v < V; ++v) o[v] = ld(x, v) - lse;
        }
      },
      4);
}

// Step 3: grad = (exp(logp) − onehot) · scale; rows without a target get 0.
template <typename Exp, typename T>
void sft_grad(const float* logp, T* g, int64_t N, int64_t V, const int32_t* targets, float scale) {
  parallel_for(
      N,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* lp = logp + r * V;  // (V)
          T* gr = g + r * V;               // (V)
          const int32_t y = targets[r];
          if (y == kIgnoreIndex) {
            std::memset(static_cast<void*>(gr), 0, size_t(V) * sizeof(T));
            continue;
          }
#pragma omp simd
          for (int64_t v = 0; v < V; ++v) st(gr, v, Exp::f(lp[v]) * scale);
          st(gr, y, std::expm1(lp[y]) * scale);
        }
      },
      4);
}

template <typename Exp, typename T>
double run(const T* z, T* g, int64_t N, int64_t V, const int32_t* targets) {
  Scratch& s = scratch();
  std::lock_guard<std::mutex> lock(s.mu);
  float* logp = s.get(size_t(N) * size_t(V));  // (N, V)
  log_softmax<Exp>(z, logp, N, V);
  // Step 2: gather and reduce (O(N), serial).
  double sum = 0;
  int64_t n_tokens = 0;
  for (int64_t r = 0; r < N; ++r) {
    const int32_t y = targets[r];
    if (y == kIgnoreIndex) continue;
    sum -= double(logp[r * V + y]);
    ++n_tokens;
  }
  const float scale = n_tokens > 0 ? float(1.0 / double(n_tokens)) : 0.f;
  sft_grad<Exp>(logp, g, N, V, targets, scale);
  return n_tokens > 0 ? sum / double(n_tokens) : 0.0;
}

template <typename Exp>
double dispatch(const void* logits, void* grad, DType dtype, int64_t N, int64_t V, const int32_t* targets) {
  if (dtype == DType::F32) return run<Exp>(static_cast<const float*>(logits), static_cast<float*>(grad), N, V, targets);
  return run<Exp>(static_cast<const uint16_t*>(logits), static_cast<uint16_t*>(grad), N, V, targets);
}

}  // namespace

double unfused_sft(const void* logits, void* grad, DType dtype, int64_t N, int64_t V, const int32_t* targets,
                   bool vector_exp) {
  if (N <= 0 || V <= 0) return 0.0;
  return vector_exp ? dispatch<VecExp>(logits, grad, dtype, N, V, targets)
                    : dispatch<StdExp>(logits, grad, dtype, N, V, targets);
}

void copy(void* dst, const void* src, size_t bytes) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = int64_t((bytes + kBlock - 1) / kBlock);
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  parallel_for(
      blocks,
      [&](int64_t b0, int64_t b1) {
        const size_t begin = size_t(b0) * kBlock, end = std::min(bytes, size_t(b1) * kBlock);
        std::memcpy(d + begin, s + begin, end - begin);
      },
      64);  // ≥ 256 KiB per thread: small copies stay on one thread
}

}  // namespace rift::bench
