// Embedding, bias helpers, SwiGLU, elementwise ops, Σx² and AdamW on the CPU (semantics in model/ops.h).
// Flat loops split across the thread pool in blocks of kBlock; reductions over tokens go by column blocks so
// results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/sumsq_order.h"
#include "core/checks.h"
#include "core/loss.h"
#include "cpu/ops_cpu.h"
#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::cpu {
namespace {

constexpr int64_t kBlock = 1 << 14;  // elements per parallel block of the flat ops

int64_t column_block(int64_t C) {
  const int64_t per = (C + num_threads() - 1) / num_threads();
  return std::max<int64_t>(16, (per + 15) / 16 * 16);
}

inline float sigmoid(float x) { return 1.f / (1.f + vexp(-x)); }

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t V, int64_t C) {
  check_token_ids(ids, T, V);
  parallel_for(
      T,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t)
          std::memcpy(out + t * C, wte + int64_t(ids[t]) * C, size_t(C) * sizeof(float));
      },
      std::max<int64_t>(1, kBlock / std::max<int64_t>(1, C)));
}

// Each thread owns a block of columns of dwte and walks every token: repeated ids add in token order.
void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V, int64_t C) {
  check_token_ids(ids, T, V);
  const int64_t cb = column_block(C);
  parallel_for((C + cb - 1) / cb, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * cb, n = std::min(cb, C - c0);
      for (int64_t t = 0; t < T; ++t) {
        float* d = dwte + int64_t(ids[t]) * C + c0;
        const float* g = dout + t * C + c0;
#pragma omp simd
        for (int64_t c = 0; c < n; ++c) d[c] += g[c];
      }
    }
  });
}

void bias_rows(float* out, const float* bias, int64_t M, int64_t N, bool accumulate) {
  parallel_for(
      M,
      [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
          float* o = out + m * N;
          if (accumulate) {
#pragma omp simd
            for (int64_t n = 0; n < N; ++n) o[n] += bias[n];
          } else {
            std::memcpy(o, bias, size_t(N) * sizeof(float));
          }
        }
      },
      std::max<int64_t>(1, kBlock / std::max<int64_t>(1, N)));
}

// dbias[n] += Σ_m dout[m][n], summed in double per column block.
void column_sums(float* dbias, const float* dout, int64_t M, int64_t N) {
  const int64_t cb = column_block(N);
  parallel_for((N + cb - 1) / cb, [&](int64_t b0, int64_t b1) {
    std::vector<double> acc(static_cast<size_t>(cb));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * cb, n = std::min(cb, N - c0);
      double* a = acc.data();
      std::fill(a, a + n, 0.0);
      for (int64_t m = 0; m < M; ++m) {
        const float* g = dout + m * N + c0;
#pragma omp simd
        for (int64_t c = 0; c < n; ++c) a[c] += double(g[c]);
      }
      for (int64_t c = 0; c < n; ++c) dbias[c0 + c] += float(a[c]);
    }
  });
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i) {
          const float g = gate[i];
          out[i] = g * sigmoid(g) * up[i];
        }
      },
      kBlock);
}

// The same fp32 value as swiglu_forward, rounded to bf16 (to_bf16 of swiglu_forward, bit for bit).
void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
        float v[256];
        for (int64_t b = i0; b < i1; b += 256) {
          const int64_t m = std::min<int64_t>(256, i1 - b);
#pragma omp simd
          for (int64_t i = 0; i < m; ++i) {
            const float g = gate[b + i];
            v[i] = g * sigmoid(g) * up[b + i];
          }
          for (int64_t i = 0; i < m; ++i) out[b + i] = f32_to_bf16(v[i]);
        }
      },
      kBlock);
}

// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))).
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     bool accumulate) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
        if (accumulate) {
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) {
            const float g = gate[i], s = sigmoid(g), go = dout[i];
            dgate[i] += go * up[i] * s * (1.f + g * (1.f - s));
            dup[i] += go * g * s;
          }
        } else {
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) {
            const float g = gate[i], s = sigmoid(g), go = dout[i], u = up[i];
            dgate[i] = go * u * s * (1.f + g * (1.f - s));
            dup[i] = go * g * s;
          }
        }
      },
      kBlock);
}

void add(float* out, const float* a, const float* b, int64_t n) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
      },
      kBlock);
}

void scale(float* x, float s, int64_t n) {
  parallel_for(
      n,
      [&](int64_t i0, int64_t i1) {
#pragma omp simd
        for (int64_t i = i0; i < i1; ++i) x[i] *= s;
      },
      kBlock);
}

void zero(float* x, int64_t n) {
  parallel_for(
      n, [&](int64_t i0, int64_t i1) { std::memset(x + i0, 0, size_t(i1 - i0) * sizeof(float)); }, kBlock);
}

// In the order of backends/sumsq_order.h (the CUDA kernel's, so the two agree bit for bit): chunks in parallel, each
// into 256 lane sums combined by the fixed tree, then the chunk sums reduced the same way.
double sumsq(const float* x, int64_t n) {
  namespace so = sumsq_order;
  if (n <= 0) return 0.0;
  const int64_t nc = (n + so::kChunk - 1) / so::kChunk;
  std::vector<double> part(static_cast<size_t>(nc));
  parallel_for(nc, [&](int64_t c0, int64_t c1) {
    double s[so::kLanes];
    for (int64_t c = c0; c < c1; ++c) {
      const float* p = x + c * so::kChunk;
      const int64_t len = std::min(so::kChunk, n - c * so::kChunk);
      std::fill(s, s + so::kLanes, 0.0);
      // Lane j's steps in order: (r, k) for the element r·1024 + 4j + k. The j loop is innermost (vectorisable):
      // each lane still sees its own elements in step order.
      for (int64_t r = 0; r < 4; ++r)
        for (int64_t k = 0; k < 4; ++k) {
          const float* q = p + r * so::kStride + k;
          if (len == so::kChunk) {
            for (int64_t j = 0; j < so::kLanes; ++j) s[j] += double(q[4 * j]) * double(q[4 * j]);
          } else {
            for (int64_t j = 0; j < so::kLanes; ++j) {
              const int64_t l = r * so::kStride + 4 * j + k;
              if (l < len) s[j] += double(q[4 * j]) * double(q[4 * j]);
            }
          }
        }
      part[size_t(c)] = so::lane_tree(s);
    }
  });
  double s[so::kLanes] = {};
  for (int64_t j = 0; j < so::kLanes; ++j)
    for (int64_t c = j; c < nc; c += so::kLanes) s[j] += part[size_t(c)];
  return so::lane_tree(s);
}

// torch.optim.AdamW's single-tensor step (torch/optim/adamw.py → adam.py, _single_tensor_adam), in its order:
//   param.mul_(1 − lr·wd); exp_avg.lerp_(g, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2);
//   denom = exp_avg_sq.sqrt() / sqrt(bc2) + eps; param.addcdiv_(exp_avg, denom, −lr / bc1).
// lerp with weight w < 0.5 is m + w·(g − m) (ATen's lerp formula). Bias corrections in double, as torch does
// with Python floats.
void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p) {
  const double bc1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double bc2 = 1.0 - std::pow(p.beta2, double(p.step));
  const float neg_step = float(-(p.lr / bc1));
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float decay = float(1.0 - p.lr * p.weight_decay);
  const float w1 = float(1.0 - p.beta1), w1c = 1.f - w1;  // ATen lerp: 1 − weight in the tensor dtype
  const float b2 = float(p.beta2), w2 = float(1.0 - p.beta2), eps = float(p.eps);
  const float gs = p.grad_scale;
  // ATen's lerp: m + w·(g − m) for w < 0.5, else g − (g − m)·(1 − w); the branch is hoisted out of the loop.
  auto run = [&](auto low) {
    parallel_for(
        n,
        [&](int64_t i0, int64_t i1) {
          float* __restrict pp = param + i0;
          float* __restrict mp = m + i0;
          float* __restrict vp = v + i0;
          const float* __restrict gp = grad + i0;
          const int64_t len = i1 - i0;
#pragma omp simd
          for (int64_t i = 0; i < len; ++i) {
            const float g = gp[i] * gs;
            const float pi = pp[i] * decay;
            const float mi = decltype(low)::value ? mp[i] + w1 * (g - mp[i]) : g - (g - mp[i]) * w1c;
            const float vi = vp[i] * b2 + (w2 * g) * g;
            mp[i] = mi;
            vp[i] = vi;
            pp[i] = pi + (neg_step * mi) / (std::sqrt(vi) / bc2_sqrt + eps);
          }
        },
        kBlock);
  };
  if (1.0 - p.beta1 < 0.5)
    run(std::true_type{});
  else
    run(std::false_type{});
}

void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T, int64_t Tmax,
              int64_t width) {
  const size_t bytes = size_t(width) * sizeof(float);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(cache + (int64_t(slot[b]) * Tmax + pos[b * T + t]) * width, x + (b * T + t) * width, bytes);
}

}  // namespace rift::cpu
