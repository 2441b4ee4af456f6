// RMSNorm and RoPE on the CPU (semantics in model/ops.h). Rows split across the thread pool; inner loops over
// channels written for the vectoriser. Parameter gradients are reduced over tokens by column blocks, so the
// result does not depend on the thread count and no atomics are needed.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/checks.h"
#include "core/loss.h"
#include "core/memory.h"
#include "cpu/ops_cpu.h"
#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift::cpu {
namespace {

// Column blocks for the reductions over tokens: multiples of 16 floats, about one per thread.
int64_t column_block(int64_t C) {
  const int64_t per = (C + num_threads() - 1) / num_threads();
  return std::max<int64_t>(16, (per + 15) / 16 * 16);
}

}  // namespace

namespace {

// One pass per row: rstd, then out = weight·(x·rstd) stored as Out (float, or a bf16 bit pattern rounded from
// the same fp32 value: rmsnorm_forward_bf16 is to_bf16 of rmsnorm_forward, bit for bit).
template <class Out>
void rmsnorm_rows(Out* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps) {
  parallel_for(
      T,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const float* x = inp + t * C;
          Out* o = out + t * C;
          float ss = 0.f;
#pragma omp simd reduction(+ : ss)
          for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
          const float r = 1.f / std::sqrt(ss / float(C) + eps);
          rstd[t] = r;
          if constexpr (std::is_same_v<Out, float>) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) o[c] = weight[c] * (x[c] * r);
          } else {
            for (int64_t c = 0; c < C; ++c) o[c] = f32_to_bf16(weight[c] * (x[c] * r));
          }
        }
      },
      std::max<int64_t>(1, 4096 / std::max<int64_t>(1, C)));
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C, float eps) {
  rmsnorm_rows(out, rstd, inp, weight, T, C, eps);
}

void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                          float eps) {
  rmsnorm_rows(out, rstd, inp, weight, T, C, eps);
}

// dweight first (column blocks over all tokens), then dinp row by row: dinp may alias dout.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t T, int64_t C, bool accumulate) {
  if (dweight) {
    const int64_t cb = column_block(C);
    parallel_for((C + cb - 1) / cb, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c0 = b * cb, n = std::min(cb, C - c0);
        std::vector<float> acc(size_t(n), 0.f);
        float* a = acc.data();
        for (int64_t t = 0; t < T; ++t) {
          const float* g = dout + t * C + c0;
          const float* x = inp + t * C + c0;
          const float r = rstd[t];
#pragma omp simd
          for (int64_t c = 0; c < n; ++c) a[c] += g[c] * (x[c] * r);
        }
        for (int64_t c = 0; c < n; ++c) dweight[c0 + c] += a[c];
      }
    });
  }
  if (!dinp) return;
  parallel_for(
      T,
      [&](int64_t t0, int64_t t1) {
        const float* __restrict w = weight;
        for (int64_t t = t0; t < t1; ++t) {
          const float* g = dout + t * C;
          const float* x = inp + t * C;
          float* d = dinp + t * C;  // may alias g (each element is read before it is written)
          const float r = rstd[t];
          float s = 0.f;  // Σ_c (dout·w)_c · xhat_c
#pragma omp simd reduction(+ : s)
          for (int64_t c = 0; c < C; ++c) s += g[c] * w[c] * (x[c] * r);
          const float m = s / float(C);
          if (accumulate) {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) d[c] += r * (g[c] * w[c] - (x[c] * r) * m);
          } else {
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) d[c] = r * (g[c] * w[c] - (x[c] * r) * m);
          }
        }
      },
      std::max<int64_t>(1, 4096 / std::max<int64_t>(1, C)));
}

// ---- RoPE

namespace {

// cos / sin of pos·inv_freq_i for i < D/2, computed as HF does in fp32: inv_freq = 1 / θ^(float(2i)/D),
// angle = float(pos)·inv_freq rounded to fp32, then an accurate cos/sin of that fp32 angle.
void rope_row(int64_t pos, int64_t D, float theta, float* cs, float* sn) {
  for (int64_t i = 0; i < D / 2; ++i) {
    const float e = float(2 * i) / float(D);
    const float inv = 1.f / float(std::pow(double(theta), double(e)));
    const float a = float(pos) * inv;
    cs[i] = float(std::cos(double(a)));
    sn[i] = float(std::sin(double(a)));
  }
}

struct RopeTable {
  int64_t rows = 0, half = 0;
  HostBuffer cs, sn;  // (rows, D/2) each, tracked as workspace
};

constexpr int64_t kMaxCachedPos = int64_t(1) << 16;

// The table for (D, θ) holding at least positions [0, need), grown in powers of two; shared, immutable.
std::shared_ptr<const RopeTable> rope_table(int64_t D, float theta, int64_t need) {
  static std::mutex mu;
  static std::map<std::pair<int64_t, float>, std::shared_ptr<const RopeTable>> cache;
  std::lock_guard<std::mutex> lk(mu);
  auto& slot = cache[{D, theta}];
  if (slot && slot->rows >= need) return slot;
  int64_t rows = 64;
  while (rows < need) rows *= 2;
  auto t = std::make_shared<RopeTable>();
  t->rows = rows;
  t->half = D / 2;
  t->cs = HostBuffer(MemCategory::Workspace, size_t(rows * t->half));
  t->sn = HostBuffer(MemCategory::Workspace, size_t(rows * t->half));
  RopeTable* tp = t.get();
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          rope_row(r, D, theta, tp->cs.data() + r * tp->half, tp->sn.data() + r * tp->half);
      },
      64);
  slot = t;
  return slot;
}

}  // namespace

// Forward: o1 = x1·c − x2·s, o2 = x2·c + x1·s. Inverse (backward, Rᵀ): d1 = g1·c + g2·s, d2 = g2·c − g1·s.
void rope(float* out, const float* inp, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta, bool inverse,
          bool accumulate) {
  const int64_t half = D / 2;
  check_positions(pos, T);
  int64_t maxpos = -1;
  for (int64_t t = 0; t < T; ++t) maxpos = std::max<int64_t>(maxpos, pos[t]);
  if (T == 0 || half == 0) return;
  std::shared_ptr<const RopeTable> table;
  if (maxpos < kMaxCachedPos) table = rope_table(D, theta, maxpos + 1);
  const float sgn = inverse ? -1.f : 1.f;  // the inverse rotation is the rotation by −angle
  parallel_for(
      T,
      [&](int64_t t0, int64_t t1) {
        std::vector<float> own;  // positions beyond the cache: this token's row computed here
        for (int64_t t = t0; t < t1; ++t) {
          const float* cs;
          const float* sn;
          if (table) {
            cs = table->cs.data() + int64_t(pos[t]) * half;
            sn = table->sn.data() + int64_t(pos[t]) * half;
          } else {
            own.resize(size_t(2 * half));
            rope_row(pos[t], D, theta, own.data(), own.data() + half);
            cs = own.data();
            sn = own.data() + half;
          }
          for (int64_t h = 0; h < H; ++h) {
            const float* x = inp + (t * H + h) * D;
            float* o = out + (t * H + h) * D;
#pragma omp simd
            for (int64_t i = 0; i < half; ++i) {
              const float x1 = x[i], x2 = x[i + half], c = cs[i], s = sgn * sn[i];
              const float o1 = x1 * c - x2 * s, o2 = x2 * c + x1 * s;
              if (accumulate) {
                o[i] += o1;
                o[i + half] += o2;
              } else {
                o[i] = o1;
                o[i + half] = o2;
              }
            }
          }
        }
      },
      std::max<int64_t>(1, 2048 / std::max<int64_t>(1, H * D)));
}

}  // namespace rift::cpu
