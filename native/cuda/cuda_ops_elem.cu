// Embedding, bias helpers, SwiGLU, elementwise ops, Σx² and AdamW on the GPU (semantics in model/ops.h; CPU
// twin cpu/ops_misc.cc). Flat ops are grid-stride loops. Reductions are deterministic: fixed grids, fixed
// summation order, no atomics.
#include <cmath>

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

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const float g = gate[i], u = up[i];
    out[i] = g * sigmoid_rn(g) * u;
  }
}

// d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))). Every input is read before an output is written (aliasing allowed).
__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                       const float* up, int64_t n, bool accumulate) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const float g = gate[i], u = up[i], go = dout[i], s = sigmoid_rn(g);
    const float dg = go * u * s * (1.f + g * (1.f - s)), du = go * g * s;
    if (accumulate) {
      dgate[i] += dg;
      dup[i] += du;
    } else {
      dgate[i] = dg;
      dup[i] = du;
    }
  }
}

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) out[i] = a[i] + b[i];
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

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  swiglu_forward_kernel<<<flat_blocks(n), kThreads>>>(out, gate, up, n);
  RIFT_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n,
                     bool accumulate) {
  if (n <= 0) return;
  swiglu_backward_kernel<<<flat_blocks(n), kThreads>>>(dgate, dup, dout, gate, up, n, accumulate);
  RIFT_CUDA_CHECK_LAUNCH();
}

void add(float* out, const float* a, const float* b, int64_t n) {
  if (n <= 0) return;
  add_kernel<<<flat_blocks(n), kThreads>>>(out, a, b, n);
  RIFT_CUDA_CHECK_LAUNCH();
}

void scale(float* x, float s, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<flat_blocks(n), kThreads>>>(x, s, n);
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
