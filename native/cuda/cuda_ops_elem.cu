// Embedding, bias helpers, SwiGLU, elementwise ops, Σx² and AdamW on the GPU (semantics in model/ops.h; CPU
// twin cpu/ops_misc.cc). Flat ops are grid-stride loops. Reductions are deterministic: fixed grids, fixed
// summation order, no atomics.
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t C) {
  const int64_t n = T * C;
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const int64_t t = i / C, c = i - t * C;
    out[i] = wte[int64_t(ids[t]) * C + c];
  }
}

// blockIdx.x: a segment (one id); blockIdx.y: a column chunk. Adds in token order, as the CPU twin does.
__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* order, const int32_t* seg,
                                          const int32_t* seg_id, int64_t C) {
  const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int s = blockIdx.x;
  float* d = dwte + int64_t(seg_id[s]) * C + c;
  float acc = *d;
  for (int k = seg[s]; k < seg[s + 1]; ++k) acc += dout[int64_t(order[k]) * C + c];
  *d = acc;
}

__global__ void bias_rows_kernel(float* out, const float* bias, int64_t M, int64_t N, bool accumulate) {
  const int64_t n = M * N;
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const float b = bias[i % N];
    out[i] = accumulate ? out[i] + b : b;
  }
}

// partial[p][c] = Σ_{m in part p} dout[m][c] (double).
__global__ void colsum_partial_kernel(double* partial, const float* dout, int64_t M, int64_t N, int64_t rpp) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= N) return;
  const int64_t m0 = int64_t(blockIdx.y) * rpp, m1 = min(M, m0 + rpp);
  double a = 0.0;
  for (int64_t m = m0; m < m1; ++m) a += double(dout[m * N + c]);
  partial[int64_t(blockIdx.y) * N + c] = a;
}

__global__ void colsum_finish_kernel(float* dst, const double* partial, int64_t P, int64_t N) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= N) return;
  double a = 0.0;
  for (int64_t p = 0; p < P; ++p) a += partial[p * N + c];
  dst[c] += float(a);
}

// The flat elementwise kernels below take four elements per thread per step (16-byte loads and stores) when every
// pointer is 16-byte aligned (vec), element by element otherwise; the math per element is the same either way.
struct F4 {
  float v[4];
};
__device__ __forceinline__ F4 ld4(const float* p) {
  const float4 x = *reinterpret_cast<const float4*>(p);
  return {{x.x, x.y, x.z, x.w}};
}
__device__ __forceinline__ void st4(float* p, const F4& a) {
  *reinterpret_cast<float4*>(p) = make_float4(a.v[0], a.v[1], a.v[2], a.v[3]);
}

// Calls f(i) for every i < n, in groups of four from 4·k when vec (f4 then handles a group), one by one otherwise.
template <class F1, class F4fn>
__device__ __forceinline__ void flat_loop(int64_t n, bool vec, F1 f1, F4fn f4) {
  int64_t done = 0;
  if (vec) {
    const int64_t groups = n / 4;
    for (int64_t g = flat_index(); g < groups; g += flat_stride()) f4(4 * g);
    done = 4 * groups;
  }
  for (int64_t i = done + flat_index(); i < n; i += flat_stride()) f1(i);
}

__device__ __forceinline__ float swiglu_value(float g, float u) { return g * sigmoid_rn(g) * u; }

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n, bool vec) {
  flat_loop(
      n, vec, [&](int64_t i) { out[i] = swiglu_value(gate[i], up[i]); },
      [&](int64_t i) {
        const F4 g = ld4(gate + i), u = ld4(up + i);
        F4 o;
        for (int k = 0; k < 4; ++k) o.v[k] = swiglu_value(g.v[k], u.v[k]);
        st4(out + i, o);
      });
}

// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))). Every input is read before an output is written (aliasing allowed).
__device__ __forceinline__ void swiglu_grad(float go, float g, float u, float& dg, float& du) {
  const float s = sigmoid_rn(g);
  dg = go * u * s * (1.f + g * (1.f - s));
  du = go * g * s;
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, int64_t n, bool accumulate, bool vec) {
  flat_loop(
      n, vec,
      [&](int64_t i) {
        float dg, du;
        swiglu_grad(dout[i], gate[i], up[i], dg, du);
        dgate[i] = accumulate ? dgate[i] + dg : dg;
        dup[i] = accumulate ? dup[i] + du : du;
      },
      [&](int64_t i) {
        const F4 go = ld4(dout + i), g = ld4(gate + i), u = ld4(up + i);
        F4 dg, du;
        for (int k = 0; k < 4; ++k) swiglu_grad(go.v[k], g.v[k], u.v[k], dg.v[k], du.v[k]);
        if (accumulate) {
          const F4 a = ld4(dgate + i), b = ld4(dup + i);
          for (int k = 0; k < 4; ++k) dg.v[k] += a.v[k], du.v[k] += b.v[k];
        }
        st4(dgate + i, dg);
        st4(dup + i, du);
      });
}

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n, bool vec) {
  flat_loop(
      n, vec, [&](int64_t i) { out[i] = a[i] + b[i]; },
      [&](int64_t i) {
        const F4 x = ld4(a + i), y = ld4(b + i);
        F4 o;
        for (int k = 0; k < 4; ++k) o.v[k] = x.v[k] + y.v[k];
        st4(out + i, o);
      });
}

// cache row (slot[b], pos[b·T + t]) ← x row b·T + t (width floats each); the CPU twin is cpu/ops_misc.cc kv_write.
__global__ void kv_write_kernel(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t T,
                                int64_t Tmax, int64_t width, int64_t n) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const int64_t r = i / width, c = i - r * width, b = r / T;
    cache[(int64_t(slot[b]) * Tmax + pos[r]) * width + c] = x[i];
  }
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) x[i] *= s;
}

// kSumsqParts blocks of kThreads: thread partials in double, block reduction in double, one value per block.
__global__ void sumsq_kernel(const float* x, int64_t n, double* parts) {
  double s = 0.0;
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const double v = double(x[i]);
    s += v * v;
  }
  __shared__ double red[kThreads / 32];
  s = warp_sum_d(s);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    double t = threadIdx.x < kThreads / 32 ? red[threadIdx.x] : 0.0;
    t = warp_sum_d(t);
    if (threadIdx.x == 0) parts[blockIdx.x] = t;
  }
}

struct AdamConst {
  float neg_step, bc2_sqrt, decay, w1, w1c, b2, w2, eps, gs;
  bool low;
};

// torch's _single_tensor_adam order (see cpu/ops_misc.cc); division and sqrt rounded as IEEE (fast math is on).
// mirror (may be null): the bf16 copy of param that the BF16 instance's GEMMs read (cuda_ops.cu), rewritten
// from the updated value in the same pass.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n, AdamConst k,
                             uint16_t* mirror) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const float g = grad[i] * k.gs;
    const float pi = param[i] * k.decay;
    const float mo = m[i];
    const float mi = k.low ? mo + k.w1 * (g - mo) : g - (g - mo) * k.w1c;
    const float vi = v[i] * k.b2 + (k.w2 * g) * g;
    m[i] = mi;
    v[i] = vi;
    const float p = pi + __fdiv_rn(k.neg_step * mi, __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps));
    param[i] = p;
    if (mirror) mirror[i] = f32_to_bf16_rne(p);
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t C) {
  if (T <= 0 || C <= 0) return;
  embedding_forward_kernel<<<flat_blocks(T * C), kThreads>>>(out, ids, wte, T, C);
  RIFT_CUDA_CHECK_LAUNCH();
}

void embedding_backward(float* dwte, const float* dout, const int32_t* order, const int32_t* seg,
                        const int32_t* seg_id, int64_t U, int64_t C) {
  if (U <= 0 || C <= 0) return;
  const int threads = 128;
  const dim3 grid(unsigned(U), unsigned((C + threads - 1) / threads));
  embedding_backward_kernel<<<grid, threads>>>(dwte, dout, order, seg, seg_id, C);
  RIFT_CUDA_CHECK_LAUNCH();
}

void bias_rows(float* out, const float* bias, int64_t M, int64_t N, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  bias_rows_kernel<<<flat_blocks(M * N), kThreads>>>(out, bias, M, N, accumulate);
  RIFT_CUDA_CHECK_LAUNCH();
}

int64_t colsum_rows_per_part(int64_t M, int64_t N) { return std::max<int64_t>(32, (M + 255) / 256); }

int64_t colsum_scratch(int64_t M, int64_t N) {
  const int64_t rpp = colsum_rows_per_part(M, N);
  return std::max<int64_t>(1, (M + rpp - 1) / rpp) * N;
}

void column_sums(float* dbias, const float* dout, int64_t M, int64_t N, double* scratch) {
  if (M <= 0 || N <= 0) return;
  const int64_t rpp = colsum_rows_per_part(M, N), P = (M + rpp - 1) / rpp;
  const unsigned cb = unsigned((N + kThreads - 1) / kThreads);
  colsum_partial_kernel<<<dim3(cb, unsigned(P)), kThreads>>>(scratch, dout, M, N, rpp);
  RIFT_CUDA_CHECK_LAUNCH();
  colsum_finish(dbias, scratch, P, N);
}

void colsum_finish(float* dst, const double* partial, int64_t P, int64_t N) {
  colsum_finish_kernel<<<unsigned((N + kThreads - 1) / kThreads), kThreads>>>(dst, partial, P, N);
  RIFT_CUDA_CHECK_LAUNCH();
}

namespace {
bool all16(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}
}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  const bool vec = all16({out, gate, up});
  swiglu_forward_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(out, gate, up, n, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     bool accumulate) {
  if (n <= 0) return;
  const bool vec = all16({dgate, dup, dout, gate, up});
  swiglu_backward_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(dgate, dup, dout, gate, up, n,
                                                                             accumulate, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void add(float* out, const float* a, const float* b, int64_t n) {
  if (n <= 0) return;
  const bool vec = all16({out, a, b});
  add_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(out, a, b, n, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void scale(float* x, float s, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<flat_blocks(n), kThreads>>>(x, s, n);
  RIFT_CUDA_CHECK_LAUNCH();
}

void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T,
              int64_t Tmax, int64_t width) {
  const int64_t n = B * T * width;
  if (n <= 0) return;
  kv_write_kernel<<<flat_blocks(n), kThreads>>>(cache, x, slot, pos, T, Tmax, width, n);
  RIFT_CUDA_CHECK_LAUNCH();
}

void zero(float* x, int64_t n) {
  if (n > 0) RIFT_CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(n) * sizeof(float), 0));
}

void sumsq_parts(const float* x, int64_t n, double* scratch) {
  sumsq_kernel<<<kSumsqParts, kThreads>>>(x, n, scratch);
  RIFT_CUDA_CHECK_LAUNCH();
}

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p,
           uint16_t* mirror) {
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double bc2 = 1.0 - std::pow(p.beta2, double(p.step));
  AdamConst k;
  k.neg_step = float(-(p.lr / bc1));
  k.bc2_sqrt = float(std::sqrt(bc2));
  k.decay = float(1.0 - p.lr * p.weight_decay);
  k.w1 = float(1.0 - p.beta1);
  k.w1c = 1.f - k.w1;
  k.b2 = float(p.beta2);
  k.w2 = float(1.0 - p.beta2);
  k.eps = float(p.eps);
  k.gs = p.grad_scale;
  k.low = 1.0 - p.beta1 < 0.5;
  adamw_kernel<<<flat_blocks(n), kThreads>>>(param, grad, m, v, n, k, mirror);
  RIFT_CUDA_CHECK_LAUNCH();
}

}  // namespace rift::cuda::ops
