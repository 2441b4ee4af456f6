// Device helpers shared by the loss row kernels (loss_rows.cu: generic kernels; loss_cluster.cu: sm_90 cluster
// kernel). Element type T is float (f32) or uint16_t (bf16 bits); all math is fp32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace rift::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int32_t kIgnore = -100;

// Device view of one row pass: logits/grad are the caller's device tensors, the rest lives in the workspace.
struct RowArgs {
  const void* logits;  // (N, V) dtype. Never read through the non-coherent path: grad may alias it.
  void* grad;          // (N, V) dtype, may equal logits; null: statistics only
  int64_t N, V;
  const int32_t* targets;   // (N)
  const float* coef_a;      // (N) fused pass: w = a + b·exp(logp)
  const float* coef_b;      // (N)
  const float* weight;      // (N) grad pass: w
  float* lse;               // (N) out of the fused pass, in for the grad pass
  float* logp;              // (N) out of the fused pass, in for the grad pass
  float* entropy;           // (N) out, or null
  unsigned long long* bad;  // (1) smallest row index holding NaN/Inf; ULLONG_MAX when none
};

// ---- elements: 16-byte vectors of kVecN<T> values ------------------------------------------------------------
template <typename T>
constexpr int kVecN = 16 / int(sizeof(T));

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
template <typename T>
__device__ __forceinline__ T from_f32(float f);
template <>
__device__ __forceinline__ float from_f32<float>(float f) {
  return f;
}
template <>
__device__ __forceinline__ uint16_t from_f32<uint16_t>(float f) {  // round to nearest even, as the CPU twin
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ __forceinline__ void unpack(const uint4& v, float (&x)[4]) {
  x[0] = __uint_as_float(v.x), x[1] = __uint_as_float(v.y), x[2] = __uint_as_float(v.z), x[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack(const uint4& v, float (&x)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    x[2 * k] = __uint_as_float(w[k] << 16);
    x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}
__device__ __forceinline__ uint4 pack(const float (&g)[4]) {
  return make_uint4(__float_as_uint(g[0]), __float_as_uint(g[1]), __float_as_uint(g[2]), __float_as_uint(g[3]));
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x = lo (low half), .y = hi
  return uint32_t(__bfloat16_as_ushort(h.x)) | (uint32_t(__bfloat16_as_ushort(h.y)) << 16);
}
__device__ __forceinline__ uint4 pack(const float (&g)[8]) {
  return make_uint4(pack2(g[0], g[1]), pack2(g[2], g[3]), pack2(g[4], g[5]), pack2(g[6], g[7]));
}

// probe = x·0 + probe stays 0 while every x is finite and becomes NaN at the first NaN or ±Inf. Inline PTX, so
// the compiler cannot fold x·0 to 0 (it would under a no-NaN assumption).
__device__ __forceinline__ void probe_add(float& probe, float x) {
  asm("fma.rn.f32 %0, %1, %2, %0;" : "+f"(probe) : "f"(x), "f"(0.f));
}
__device__ __forceinline__ bool probe_bad(float probe) { return (__float_as_uint(probe) << 1) != 0u; }  // ±0: fine

// ---- online softmax statistics --------------------------------------------------------------------------------
// In log2 units u = z·log2e:  m = max u,  d = Σ 2^(u − m),  s = Σ 2^(u − m)·z  (for the entropy).
// Then lse = (m + log2 d)·ln2 and H = lse − s/d.
struct Stats {
  float m, d, s;
};
__device__ __forceinline__ Stats empty_stats() { return {-INFINITY, 0.f, 0.f}; }

// Adds the n values of one vector: max, exponentials and sums as trees (short dependency chains, more ILP).
template <bool kEnt, int n>
__device__ __forceinline__ void stats_add(Stats& st, const float (&x)[n], float& probe) {
  float t[n];
#pragma unroll
  for (int k = 0; k < n; ++k) {
    t[k] = x[k];
    probe_add(probe, x[k]);
  }
#pragma unroll
  for (int w = n / 2; w > 0; w /= 2)
#pragma unroll
    for (int k = 0; k < w; ++k) t[k] = fmaxf(t[k], t[k + w]);
  const float vm = t[0] * kLog2e;
  if (vm > st.m) {  // rescale by 2^(m_old − m_new); m_old = −inf gives 0, and d = s = 0 then anyway
    const float c = exp2f(st.m - vm);
    st.d *= c;
    if (kEnt) st.s *= c;
    st.m = vm;
  }
  float e[n], ez[n];
#pragma unroll
  for (int k = 0; k < n; ++k) {
    e[k] = exp2f(fmaf(x[k], kLog2e, -st.m));
    if (kEnt) ez[k] = e[k] * x[k];
  }
#pragma unroll
  for (int w = n / 2; w > 0; w /= 2)
#pragma unroll
    for (int k = 0; k < w; ++k) {
      e[k] += e[k + w];
      if (kEnt) ez[k] += ez[k + w];
    }
  st.d += e[0];
  if (kEnt) st.s += ez[0];
}

__device__ __forceinline__ Stats merge(const Stats& a, const Stats& b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return a;  // both empty
  const float ca = exp2f(a.m - m), cb = exp2f(b.m - m);
  return {m, a.d * ca + b.d * cb, a.s * ca + b.s * cb};
}

// Statistics of this thread's vectors i = threadIdx.x + k·step < nv: load(i) reads vector i, keep(i, v) may stash
// it (shared memory). Two vectors per step in two independent accumulators (shorter dependency chains). (Four
// loads issued ahead measured slower for bf16 on H100.) probe: see probe_add.
template <typename T, bool kEnt, typename Load, typename Keep>
__device__ __forceinline__ Stats thread_stats(int64_t nv, int64_t step, const Load& load, const Keep& keep,
                                              float& probe) {
  constexpr int n = kVecN<T>;
  Stats s0 = empty_stats(), s1 = empty_stats();
  float p1 = 0.f;
  int64_t i = threadIdx.x;
  for (; i + step < nv; i += 2 * step) {
    float x0[n], x1[n];
    const uint4 v0 = load(i);
    keep(i, v0);
    unpack(v0, x0);
    const uint4 v1 = load(i + step);
    keep(i + step, v1);
    unpack(v1, x1);
    stats_add<kEnt>(s0, x0, probe);
    stats_add<kEnt>(s1, x1, p1);
  }
  if (i < nv) {
    float x0[n];
    const uint4 v0 = load(i);
    keep(i, v0);
    unpack(v0, x0);
    stats_add<kEnt>(s0, x0, probe);
  }
  probe += p1;
  return merge(s0, s1);
}

// Block-wide merge of every thread's (Stats, bad). The result is valid in thread 0 only. Ends with a
// __syncthreads, so every thread's earlier reads of the row are complete when it returns.
__device__ __forceinline__ Stats block_reduce(Stats st, bool& bad) {
  __shared__ Stats warp_st[32];
  __shared__ int warp_bad[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Stats t{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.d, o),
                  __shfl_xor_sync(0xffffffffu, st.s, o)};
    st = merge(st, t);
  }
  const int any_bad = __any_sync(0xffffffffu, bad);
  if (lane == 0) {
    warp_st[warp] = st;
    warp_bad[warp] = any_bad;
  }
  __syncthreads();
  if (warp == 0) {
    st = lane < nwarps ? warp_st[lane] : empty_stats();
    int b = lane < nwarps ? warp_bad[lane] : 0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const Stats t{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.d, o),
                    __shfl_xor_sync(0xffffffffu, st.s, o)};
      st = merge(st, t);
    }
    bad = __any_sync(0xffffffffu, b);
  }
  __syncthreads();
  return st;
}

// What the gradient pass of one row does, decided by thread 0 from the row statistics.
struct RowPlan {
  float lse2;     // lse·log2e: g = w·2^(z·log2e − lse2)
  float w;        // row weight
  float gy;       // gradient of the target element, w·expm1(logp) in fp32
  int mode;       // 0: write nothing, 1: zero the row, 2: write the gradient
  float lse2w;    // lse2 − log2|w|
  uint32_t sign;  // 0x80008000 when w < 0 (two bf16 sign bits), else 0
};
__device__ __forceinline__ RowPlan make_plan(float lse2, float w, float gy) {
  return {lse2, w, gy, 2, lse2 - log2f(fabsf(w)), w < 0.f ? 0x80008000u : 0u};
}
constexpr RowPlan kPlanNothing{0.f, 0.f, 0.f, 0, 0.f, 0u}, kPlanZero{0.f, 0.f, 0.f, 1, 0.f, 0u};

// g = w·2^(z·log2e − lse2) for the n values of a 16-byte vector. bf16: w's magnitude is folded into the exponent
// (lse2w = lse2 − log2|w|) and its sign applied to the packed bits, one multiply fewer per value.
__device__ __forceinline__ uint4 grad_vec(const uint4& v, const RowPlan& p, float (&x)[4]) {
  unpack(v, x);
#pragma unroll
  for (int k = 0; k < 4; ++k) x[k] = p.w * exp2f(fmaf(x[k], kLog2e, -p.lse2));
  return pack(x);
}
__device__ __forceinline__ uint4 grad_vec(const uint4& v, const RowPlan& p, float (&x)[8]) {
  unpack(v, x);
#pragma unroll
  for (int k = 0; k < 8; ++k) x[k] = exp2f(fmaf(x[k], kLog2e, -p.lse2w));
  uint4 g = pack(x);
  g.x ^= p.sign, g.y ^= p.sign, g.z ^= p.sign, g.w ^= p.sign;
  return g;
}

// Thread 0 of a fused row plans the gradient (CPU twin rules) and, when report is set, writes lse/logp/entropy
// or reports the row as bad (a bad row gets no outputs and no gradient).
__device__ __forceinline__ RowPlan plan_fused_row(const RowArgs& a, int64_t r, const Stats& st, bool bad, float zy,
                                                  bool report) {
  if (bad) {
    if (report) atomicMin(a.bad, static_cast<unsigned long long>(r));
    return kPlanNothing;
  }
  const float lse2 = st.m + log2f(st.d);
  const float lse = lse2 * kLn2;
  const float logp = zy - lse;
  if (report) {
    a.lse[r] = lse;
    a.logp[r] = logp;
    if (a.entropy) a.entropy[r] = lse - st.s / st.d;
  }
  if (!a.grad) return kPlanNothing;
  const float w = a.coef_a[r] + a.coef_b[r] * expf(logp);
  if (w == 0.f) return kPlanZero;
  return make_plan(lse2, w, w * expm1f(logp));
}

// ---- launchers -------------------------------------------------------------------------------------------------
// Generic kernels (any arch, any V, any alignment): one block per row; the fused pass reads each row twice.
void launch_fused_generic(const RowArgs& a, int dtype, cudaStream_t stream);
void launch_grad_generic(const RowArgs& a, int dtype, cudaStream_t stream);

// sm_90 cluster kernel: the row is split over a cluster of C CTAs that hold it in shared memory, so it is read
// from DRAM once. Returns false (launching nothing) when it does not apply: device or binary older than sm_90,
// V·size not a multiple of 16 bytes, unaligned pointers, or a row too long for 8 CTAs of max_chunk_bytes.
struct ClusterTuning {
  size_t max_chunk_bytes = 76 * 1024;  // largest chunk of a row per CTA (the cluster size follows from it)
  int threads = 0;                     // per CTA; 0: by chunk size
};
bool launch_fused_cluster(const RowArgs& a, int dtype, const ClusterTuning& tune, cudaStream_t stream);

}  // namespace rift::cuda
