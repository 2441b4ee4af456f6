// Embedding, bias helpers, SwiGLU, elementwise ops, kv_write and AdamW on the GPU (semantics in model/ops.h; CPU
// twin cpu/ops_misc.cc; Σx² is cuda_ops_sumsq.cu). Flat ops are grid-stride loops; row-shaped ones (embedding,
// bias rows, kv_write) use 2-D grids, rows on y, so no element pays a 64-bit division. Where every pointer (and
// row start) is 16-byte aligned a thread takes four elements per step (float4 loads and stores), else one: the
// math per element is the same, so the results are bit-identical either way. Reductions are deterministic: fixed
// grids, fixed summation order, no atomics.
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "cuda/cuda_ops_common.cuh"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {
namespace {

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
// Flat: over the whole grid.
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

// The same over one row of n elements, on the x part of a 2-D grid (row_grid): each block of a row's x range takes
// groups of four (or single elements) in a grid-stride loop.
template <class F1, class F4fn>
__device__ __forceinline__ void row_loop(int64_t n, bool vec, F1 f1, F4fn f4) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if (vec) {
    const int64_t groups = n / 4;
    for (int64_t g = x; g < groups; g += stride) f4(4 * g);
    done = 4 * groups;
  }
  for (int64_t i = done + x; i < n; i += stride) f1(i);
}

// Rows on y (token t), columns on x; four columns per thread per step when every row start is 16-byte aligned.
__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t C,
                                         bool vec) {
  for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
    const float* src = wte + int64_t(ids[t]) * C;
    float* dst = out + t * C;
    row_loop(
        C, vec, [&](int64_t c) { dst[c] = src[c]; }, [&](int64_t c) { st4(dst + c, ld4(src + c)); });
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

__global__ void bias_rows_kernel(float* out, const float* bias, int64_t M, int64_t N, bool accumulate, bool vec) {
  for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
    float* o = out + m * N;
    row_loop(
        N, vec, [&](int64_t c) { o[c] = accumulate ? o[c] + bias[c] : bias[c]; },
        [&](int64_t c) {
          F4 b = ld4(bias + c);
          if (accumulate) {
            const F4 a = ld4(o + c);
            for (int k = 0; k < 4; ++k) b.v[k] = a.v[k] + b.v[k];
          }
          st4(o + c, b);
        });
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
// The same fp32 value as swiglu_forward_kernel, rounded to bf16; the vector path stores four values as 8 bytes.
__global__ void swiglu_forward_bf16_kernel(uint16_t* out, const float* gate, const float* up, int64_t n, bool vec) {
  flat_loop(
      n, vec, [&](int64_t i) { out[i] = f32_to_bf16_rne(swiglu_value(gate[i], up[i])); },
      [&](int64_t i) {
        const F4 g = ld4(gate + i), u = ld4(up + i);
        uint16_t h[4];
        for (int k = 0; k < 4; ++k) h[k] = f32_to_bf16_rne(swiglu_value(g.v[k], u.v[k]));
        uint2 o;
        o.x = uint32_t(h[0]) | (uint32_t(h[1]) << 16);
        o.y = uint32_t(h[2]) | (uint32_t(h[3]) << 16);
        *reinterpret_cast<uint2*>(out + i) = o;
      });
}

__device__ __forceinline__ void swiglu_grad(float go, float g, float u, float& dg, float& du) {
  const float s = sigmoid_rn(g);
  dg = go * u * s * (1.f + g * (1.f - s));
  du = go * g * s;
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                       int64_t n, bool accumulate, bool vec) {
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
// Rows r = b·T + t on y (one division per row, none per element), columns on x.
__global__ void kv_write_kernel(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t rows,
                                int64_t T, int64_t Tmax, int64_t width, bool vec) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* src = x + r * width;
    float* dst = cache + (int64_t(slot[r / T]) * Tmax + pos[r]) * width;
    row_loop(
        width, vec, [&](int64_t c) { dst[c] = src[c]; }, [&](int64_t c) { st4(dst + c, ld4(src + c)); });
  }
}

__global__ void scale_kernel(float* x, float s, int64_t n, bool vec) {
  flat_loop(
      n, vec, [&](int64_t i) { x[i] *= s; },
      [&](int64_t i) {
        F4 a = ld4(x + i);
        for (int k = 0; k < 4; ++k) a.v[k] *= s;
        st4(x + i, a);
      });
}

struct AdamConst {
  float neg_step, bc2_sqrt, decay, w1, w1c, b2, w2, eps, gs;
  bool low;
};

// torch's _single_tensor_adam order (see cpu/ops_misc.cc); division and sqrt rounded as IEEE (fast math is on).
// mirror (may be null): the bf16 copy of param that the BF16 instance's GEMMs read (cuda_ops.cu), rewritten
// from the updated value in the same pass.
// One element: updates p, m, v in place (the same expression in the scalar and the vector path).
__device__ __forceinline__ void adamw_elem(float& p, float gr, float& m, float& v, const AdamConst& k) {
  const float g = gr * k.gs;
  const float pi = p * k.decay;
  const float mo = m;
  const float mi = k.low ? mo + k.w1 * (g - mo) : g - (g - mo) * k.w1c;
  const float vi = v * k.b2 + (k.w2 * g) * g;
  m = mi;
  v = vi;
  p = pi + __fdiv_rn(k.neg_step * mi, __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), k.bc2_sqrt), k.eps));
}

// vec: param, grad, m, v 16-byte aligned and mirror (when not null) 8-byte aligned.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n, AdamConst k,
                             uint16_t* mirror, bool vec) {
  flat_loop(
      n, vec,
      [&](int64_t i) {
        float p = param[i], mi = m[i], vi = v[i];
        adamw_elem(p, grad[i], mi, vi, k);
        m[i] = mi, v[i] = vi, param[i] = p;
        if (mirror) mirror[i] = f32_to_bf16_rne(p);
      },
      [&](int64_t i) {
        F4 p = ld4(param + i), mi = ld4(m + i), vi = ld4(v + i);
        const F4 g = ld4(grad + i);
        for (int j = 0; j < 4; ++j) adamw_elem(p.v[j], g.v[j], mi.v[j], vi.v[j], k);
        st4(m + i, mi), st4(v + i, vi), st4(param + i, p);
        if (mirror) {
          uint2 o;
          o.x = uint32_t(f32_to_bf16_rne(p.v[0])) | (uint32_t(f32_to_bf16_rne(p.v[1])) << 16);
          o.y = uint32_t(f32_to_bf16_rne(p.v[2])) | (uint32_t(f32_to_bf16_rne(p.v[3])) << 16);
          *reinterpret_cast<uint2*>(mirror + i) = o;
        }
      });
}

bool all16(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t C) {
  if (T <= 0 || C <= 0) return;
  const bool vec = C % 4 == 0 && all16({out, wte});
  embedding_forward_kernel<<<row_grid(T, C, vec ? 4 : 1), kThreads>>>(out, ids, wte, T, C, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void embedding_backward(float* dwte, const float* dout, const int32_t* order, const int32_t* seg, const int32_t* seg_id,
                        int64_t U, int64_t C) {
  if (U <= 0 || C <= 0) return;
  const int threads = 128;
  const dim3 grid(unsigned(U), unsigned((C + threads - 1) / threads));
  embedding_backward_kernel<<<grid, threads>>>(dwte, dout, order, seg, seg_id, C);
  RIFT_CUDA_CHECK_LAUNCH();
}

void bias_rows(float* out, const float* bias, int64_t M, int64_t N, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const bool vec = N % 4 == 0 && all16({out, bias});
  bias_rows_kernel<<<row_grid(M, N, vec ? 4 : 1), kThreads>>>(out, bias, M, N, accumulate, vec);
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

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  const bool vec = all16({out, gate, up});
  swiglu_forward_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(out, gate, up, n, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  const bool vec = all16({gate, up}) && reinterpret_cast<uintptr_t>(out) % 8 == 0;
  swiglu_forward_bf16_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(out, gate, up, n, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     bool accumulate) {
  if (n <= 0) return;
  const bool vec = all16({dgate, dup, dout, gate, up});
  swiglu_backward_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(dgate, dup, dout, gate, up, n, accumulate,
                                                                           vec);
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
  const bool vec = all16({x});
  scale_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(x, s, n, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T, int64_t Tmax,
              int64_t width) {
  const int64_t rows = B * T;
  if (rows <= 0 || width <= 0) return;
  const bool vec = width % 4 == 0 && all16({cache, x});
  kv_write_kernel<<<row_grid(rows, width, vec ? 4 : 1), kThreads>>>(cache, x, slot, pos, rows, T, Tmax, width, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

void zero(float* x, int64_t n) {
  if (n > 0) RIFT_CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(n) * sizeof(float), 0));
}

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p, uint16_t* mirror) {
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
  const bool vec = all16({param, grad, m, v}) && reinterpret_cast<uintptr_t>(mirror) % 8 == 0;
  adamw_kernel<<<flat_blocks(vec ? (n + 3) / 4 : n), kThreads>>>(param, grad, m, v, n, k, mirror, vec);
  RIFT_CUDA_CHECK_LAUNCH();
}

}  // namespace rift::cuda::ops
