// CPU backend of the fused loss (see core/loss.h): rows split across the thread pool, each row read in
// chunks of kChunk values with a blocked online softmax (running max m and sum d), so a row is read once
// for its statistics and once more (from cache) for its gradient. fp32 math; bf16 converted on the fly.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/registry.h"
#include "core/loss.h"
#include "cpu/thread_pool.h"
#include "cpu/vmath.h"

namespace rift {
namespace {

constexpr int64_t kChunk = 512;

// Loads values [v0, v0+n) of a row as floats: a view for fp32, a conversion into buf for bf16.
inline const float* load(const float* row, int64_t v0, int64_t, float*) { return row + v0; }
inline const float* load(const uint16_t* row, int64_t v0, int64_t n, float* buf) {
  for (int64_t k = 0; k < n; ++k) buf[k] = bf16_to_f32(row[v0 + k]);
  return buf;
}
inline float at(const float* row, int64_t v) { return row[v]; }
inline float at(const uint16_t* row, int64_t v) { return bf16_to_f32(row[v]); }
inline void store(uint16_t* out, const float* g, int64_t n) {
  for (int64_t k = 0; k < n; ++k) out[k] = f32_to_bf16(g[k]);
}
inline void put(float* row, int64_t v, float g) { row[v] = g; }
inline void put(uint16_t* row, int64_t v, float g) { row[v] = f32_to_bf16(g); }

struct RowStats {
  float lse, ent;
  bool finite;
};

// Max of x[0, n), and lo = min(lo, min of x): both vectorised; ±Inf shows in one of them.
inline float chunk_max_min(const float* x, int64_t n, float& lo) {
  float cm = -INFINITY, cl = INFINITY;
#pragma omp simd reduction(max : cm) reduction(min : cl)
  for (int64_t k = 0; k < n; ++k) {
    cm = cm > x[k] ? cm : x[k];
    cl = cl < x[k] ? cl : x[k];
  }
  lo = lo < cl ? lo : cl;
  return cm;
}

// Finite check without a per-element branch: the running max and min of the row are finite and so is the
// sum (a NaN anywhere makes the exp sum NaN; ±Inf shows in the max or the min).
template <typename T>
RowStats row_stats(const T* row, int64_t V, bool want_ent) {
  alignas(64) float buf[kChunk];
  float m = -INFINITY, lo = INFINITY, d = 0.f, sz = 0.f;
  for (int64_t v0 = 0; v0 < V; v0 += kChunk) {
    const int64_t n = std::min(kChunk, V - v0);
    const float* x = load(row, v0, n, buf);
    const float cm = chunk_max_min(x, n, lo);
    if (cm > m) {
      const float r = std::isinf(m) ? 0.f : vexp(m - cm);
      d *= r;
      sz *= r;
      m = cm;
    }
    float cd = 0.f, cz = 0.f;
    if (want_ent) {
#pragma omp simd reduction(+ : cd, cz)
      for (int64_t k = 0; k < n; ++k) {
        const float e = vexp(x[k] - m);
        cd += e;
        cz += e * x[k];
      }
    } else {
#pragma omp simd reduction(+ : cd)
      for (int64_t k = 0; k < n; ++k) cd += vexp(x[k] - m);
    }
    d += cd;
    sz += cz;
  }
  RowStats s;
  s.finite = std::isfinite(m) && std::isfinite(lo) && std::isfinite(d);
  s.lse = m + std::log(d);
  s.ent = want_ent ? s.lse - sz / d : 0.f;
  return s;
}

// g = w·exp(z − lse) for all v, then g[y] = w·(p_y − 1) computed as w·expm1(ℓ) in fp32. Safe in place:
// every element is read before the same element is written.
inline void grad_span(const float* x, float* g, int64_t n, float lse, float w) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) g[k] = w * vexp(x[k] - lse);
}

template <typename T>
void row_grad(const T* row, T* g, int64_t V, int32_t y, float lse, float logp, float w) {
  if (w == 0.f) {
    std::memset(static_cast<void*>(g), 0, size_t(V) * sizeof(T));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    grad_span(row, g, V, lse, w);
  } else {
    alignas(64) float buf[kChunk];
    alignas(64) float out[kChunk];
    for (int64_t v0 = 0; v0 < V; v0 += kChunk) {
      const int64_t n = std::min(kChunk, V - v0);
      grad_span(load(row, v0, n, buf), out, n, lse, w);
      store(g + v0, out, n);
    }
  }
  put(g, y, w * std::expm1(logp));
}

// Token-level fused row: ONE exp per element. Pass 1 stores e = exp(z − m_c) with the chunk's own max m_c
// (so e <= 1) into the gradient row (fp32) or an fp32 scratch row (bf16) while it accumulates the online
// softmax; pass 2 is a multiply: g = e · w·exp(m_c − lse), then g[y] = w·expm1(ℓ) in fp32.
// Returns false (and writes nothing the caller relies on) for a row holding NaN/Inf.
struct FusedScratch {
  std::vector<float> e, cmax;
};
thread_local FusedScratch tls_fused;

template <typename T>
bool row_fused_grad(const T* row, T* g, int64_t V, int32_t y, float a, float b, bool want_ent, float* lse_out,
                    float* logp_out, float* ent_out) {
  const float zy = at(row, y);  // before the row may be overwritten (in place)
  FusedScratch& ws = tls_fused;
  const int64_t chunks = (V + kChunk - 1) / kChunk;
  if (int64_t(ws.cmax.size()) < chunks) ws.cmax.resize(chunks);
  float* E;
  if constexpr (std::is_same_v<T, float>) {
    E = g;
  } else {
    if (int64_t(ws.e.size()) < V) ws.e.resize(V);
    E = ws.e.data();
  }
  alignas(64) float buf[kChunk];
  float m = -INFINITY, lo = INFINITY, d = 0.f, sz = 0.f;
  for (int64_t c = 0, v0 = 0; v0 < V; ++c, v0 += kChunk) {
    const int64_t n = std::min(kChunk, V - v0);
    const float* x = load(row, v0, n, buf);
    const float cm = chunk_max_min(x, n, lo);
    ws.cmax[c] = cm;
    float* e = E + v0;
    float cd = 0.f, cz = 0.f;
    if (want_ent) {
#pragma omp simd reduction(+ : cd, cz)
      for (int64_t k = 0; k < n; ++k) {
        const float xe = x[k];
        const float ek = vexp(xe - cm);
        e[k] = ek;
        cd += ek;
        cz += ek * xe;
      }
    } else {
#pragma omp simd reduction(+ : cd)
      for (int64_t k = 0; k < n; ++k) {
        const float ek = vexp(x[k] - cm);
        e[k] = ek;
        cd += ek;
      }
    }
    if (cm > m) {  // merge the chunk's (cm, cd) into the running (m, d)
      const float r = std::isinf(m) ? 0.f : vexp(m - cm);
      d = d * r + cd;
      sz = sz * r + cz;
      m = cm;
    } else {
      const float r = vexp(cm - m);
      d += cd * r;
      sz += cz * r;
    }
  }
  if (!(std::isfinite(m) && std::isfinite(lo) && std::isfinite(d))) return false;
  const float lse = m + std::log(d);
  const float logp = zy - lse;
  *lse_out = lse;
  *logp_out = logp;
  if (ent_out) *ent_out = lse - sz / d;
  const float w = a + b * std::exp(logp);
  if (w == 0.f) {
    std::memset(static_cast<void*>(g), 0, size_t(V) * sizeof(T));
    return true;
  }
  for (int64_t c = 0, v0 = 0; v0 < V; ++c, v0 += kChunk) {
    const int64_t n = std::min(kChunk, V - v0);
    const float s = w * std::exp(ws.cmax[c] - lse);
    const float* e = E + v0;
    if constexpr (std::is_same_v<T, float>) {
      float* out = g + v0;
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) out[k] = e[k] * s;
    } else {
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) buf[k] = e[k] * s;
      store(g + v0, buf, n);
    }
  }
  put(g, y, w * std::expm1(logp));
  return true;
}

template <typename T>
void rows(RowsIO& io, bool grad_pass) {
  const T* logits = static_cast<const T*>(io.logits);
  T* grad = static_cast<T*>(io.grad);
  const int64_t V = io.V;
  std::atomic<int64_t> bad{INT64_MAX};
  parallel_for(
      io.N,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T* row = logits + r * V;
          T* g = grad ? grad + r * V : nullptr;
          const int32_t y = io.targets[r];
          if (y == kIgnoreIndex) {
            if (!grad_pass) {
              io.lse[r] = io.logp[r] = 0.f;
              if (io.entropy) io.entropy[r] = 0.f;
            }
            if (g) std::memset(static_cast<void*>(g), 0, size_t(V) * sizeof(T));
            continue;
          }
          if (grad_pass) {
            row_grad(row, g, V, y, io.lse[r], io.logp[r], io.weight[r]);
            continue;
          }
          if (g) {  // token-level: statistics and gradient in one fused row
            float* ent = io.entropy ? io.entropy + r : nullptr;
            if (row_fused_grad(row, g, V, y, io.coef_a[r], io.coef_b[r], ent != nullptr, io.lse + r, io.logp + r, ent))
              continue;
            if (static_cast<const void*>(g) != static_cast<const void*>(row))
              std::memset(static_cast<void*>(g), 0, size_t(V) * sizeof(T));  // no partial gradient left behind
            int64_t cur = bad.load();
            while (r < cur && !bad.compare_exchange_weak(cur, r)) {}
            continue;
          }
          const RowStats s = row_stats(row, V, io.entropy != nullptr);
          if (!s.finite) {
            int64_t cur = bad.load();
            while (r < cur && !bad.compare_exchange_weak(cur, r)) {}
            continue;
          }
          const float logp = at(row, y) - s.lse;
          io.lse[r] = s.lse;
          io.logp[r] = logp;
          if (io.entropy) io.entropy[r] = s.ent;
        }
      },
      4);
  const int64_t b = bad.load();
  io.bad_row = b == INT64_MAX ? -1 : b;
}

class CpuBackend final : public RowBackend {
 public:
  const char* name() const override { return "cpu"; }
  void rows_fused(RowsIO& io) override { io.dtype == DType::F32 ? rows<float>(io, false) : rows<uint16_t>(io, false); }
  void rows_grad(RowsIO& io) override { io.dtype == DType::F32 ? rows<float>(io, true) : rows<uint16_t>(io, true); }
};

}  // namespace

RowBackend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace rift
