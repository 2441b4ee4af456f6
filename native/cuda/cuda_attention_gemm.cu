// The bf16 attention of cuda_ops(DType::BF16) (cuda_attention_gemm.h): chunks of R query rows, every
// (batch row b, query head h) of a chunk at once, e = b·Hq + h, kv head g = h / (Hq / Hkv):
//
//   forward   S_e (r × L1) = q̃_e·k̃_gᵀ            one batched GEMM (bf16 in, fp32 out); L1 = past + r1 keys
//             (a batched KV cache, KvRows: k̃ / ṽ of batch row b gathered from cache row slot[b], its keys past
//             past[b] + Tq zeroed and masked; past, the largest past[b], sizes every GEMM)
//             P̃_e = bf16(exp(S·scale − lse)), lse   one block per score row (masked: key j > past + i gets 0)
//             out_e (r × D) = P̃_e·ṽ_g             one batched GEMM, written straight into out (ldc = Hq·D)
//   backward  (past = 0) Di = Σ dout·out per row first; per chunk: S again, P̃ from the saved lse,
//             dv_g += Σ_j P̃_(gG+j)ᵀ·dõ_(gG+j)  and  dk_g += Σ_j dS̃_(gG+j)ᵀ·q̃_(gG+j)  (j < G, the group's query
//               heads): ONE batched GEMM each, entry (b, g), K = G·r — the group's rows stacked head after head
//             dP_e = dõ_e·ṽ_gᵀ,  dS̃_e = bf16(scale·P̃·(dP − Di)),  dq_e = dS̃_e·k̃_g
//
// Stacking needs the G heads' rows of a chunk to be evenly spaced, so the backward keeps its bf16 q̃ and dõ in a
// chunked head-major layout — chunk c (rows [r0, r0 + r)) at r0·B·Hq·D, then entry e = b·Hq + h at e·r·D, row i
// at +i·D — and its scores at a pitch of r rows per entry (e·r·ldS): rows κ = j·r + i of the group starting at
// head gG are then rows of one (G·r × ·) matrix. The sum over K = G·r is one cuBLAS reduction (head-major, then
// rows); chunks add into dk / dv in chunk order. The CPU twin groups its sums the same way.
//
// x̃ = bf16(x): q, k, v (and dout) are converted once per call into scratch (cuda_attention_convert.h). Scores live in a
// pitch ldS = round8(L) (32-byte aligned rows); R is the largest row count whose (b, h) scores fit ctx.chunk_bytes (a
// multiple of 64 when that is >= 64). The device arrays of GEMM operand pointers for every chunk are built by one
// small kernel per call (fill_tables): nothing goes through the host. No atomics: dk / dv sums run in a fixed
// order (chunk, then one GEMM's reduction over the stacked rows).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_attention_convert.h"
#include "cuda/cuda_attention_gemm.h"
#include "cuda/cuda_check.h"

namespace rift::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline size_t align256(size_t x) { return (x + 255) & ~size_t(255); }

__device__ float block_reduce(float x, bool is_max, float* sh) {
  for (int o = 16; o > 0; o >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = is_max ? fmaxf(x, y) : x + y;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // sh may still be read from a previous reduction
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < int(blockDim.x >> 5) ? sh[lane] : (is_max ? -INFINITY : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      const float y = __shfl_xor_sync(0xffffffffu, x, o);
      x = is_max ? fmaxf(x, y) : x + y;
    }
    if (lane == 0) sh[0] = x;
  }
  __syncthreads();
  return sh[0];
}

// One block per score row (i, e): blockIdx.x = e (< BH), blockIdx.y = i (< r). Row i of chunk r0 sees keys
// [0, past + r0 + i], past = row_past[e / Hq] when row_past is not null (a batched KV cache). With lse_in null:
// computes lse (written to lse_out when not null); else uses lse_in.
// P row = bf16(exp(S·scale − lse)) on the visible keys, 0 on [visible, L1).
__global__ void softmax_kernel(const float* S, bf16* P, int64_t ldS, int64_t R, int64_t L1, int64_t past, int64_t r0,
                               float scale, const float* lse_in, float* lse_out, int64_t Tq, const int32_t* row_past,
                               int64_t Hq) {
  __shared__ float sh[32];
  // e on x (up to 2^31 − 1 blocks), i on y (r <= R <= 65535, see plan()): B·Hq may exceed gridDim.y's 65535 (a
  // decode step over thousands of rows), the chunk's rows never do.
  const int64_t e = blockIdx.x, i = blockIdx.y;
  const float* s = S + (e * R + i) * ldS;
  bf16* p = P + (e * R + i) * ldS;
  const int64_t n = (row_past ? int64_t(row_past[e / Hq]) : past) + r0 + i + 1;
  float l;
  if (lse_in) {
    l = lse_in[e * Tq + r0 + i];
  } else {
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, s[j] * scale);
    m = block_reduce(m, true, sh);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(s[j] * scale - m);
    sum = block_reduce(sum, false, sh);
    l = m + logf(sum);
    if (lse_out && threadIdx.x == 0) lse_out[e * Tq + r0 + i] = l;
  }
  for (int64_t j = threadIdx.x; j < L1; j += blockDim.x) p[j] = __float2bfloat16(j < n ? expf(s[j] * scale - l) : 0.f);
}

// dS̃ = bf16(scale·P̃·(dP − Di)) in place of P̃ (0 past the visible keys). Grid as softmax_kernel (past = 0).
__global__ void ds_kernel(bf16* P, const float* dP, int64_t ldS, int64_t R, int64_t L1, int64_t r0, float scale,
                          const float* Di, int64_t T) {
  const int64_t e = blockIdx.x, i = blockIdx.y;
  bf16* p = P + (e * R + i) * ldS;
  const float* dp = dP + (e * R + i) * ldS;
  const int64_t n = r0 + i + 1;
  const float di = Di[e * T + r0 + i];
  for (int64_t j = threadIdx.x; j < L1; j += blockDim.x)
    p[j] = __float2bfloat16(j < n ? scale * __bfloat162float(p[j]) * (dp[j] - di) : 0.f);
}

// Di[(b·Hq + h)·T + t] = Σ_d dout·out over row (b, t, h): one warp per row.
__global__ void di_kernel(float* Di, const float* dout, const float* out, int64_t B, int64_t T, int64_t Hq, int64_t D) {
  const int64_t rows = B * T * Hq;
  const int lane = threadIdx.x & 31;
  for (int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; w < rows;
       w += (int64_t(gridDim.x) * blockDim.x) >> 5) {
    const float* a = dout + w * D;
    const float* o = out + w * D;
    float acc = 0.f;
    for (int64_t d = lane; d < D; d += 32) acc += a[d] * o[d];
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) {
      const int64_t h = w % Hq, bt = w / Hq, b = bt / T, t = bt - b * T;
      Di[(b * Hq + h) * T + t] = acc;
    }
  }
}

// The batched GEMMs' operand pointer tables, built on the device (no host round trip, no synchronisation). One
// Slot per table: entry pointer = base + elem·(b·cb + h·ch + g·cg + r0·cr + (b·Hq + h)·r·ce) for batch row b,
// query head h, kv head g, the chunk's first row r0 and its row count r, where the entry index enumerates (b, h)
// as e = b·Hq + h (mode 0) or (b, g) as x = b·Hkv + g with h = g·G, the group's first head (mode 1: the backward's
// stacked dk / dv GEMMs, entries x < BK). Layout: table[(chunk·n + slot)·BH + entry].
struct Slot {
  const char* base;
  int64_t cb, ch, cg, cr, ce;
  int32_t elem, mode;
};
struct Slots {
  Slot s[15];
  int n;
};

__global__ void fill_tables_kernel(const void** out, Slots sl, int64_t chunks, int64_t BH, int64_t Hq, int64_t Hkv,
                                   int64_t R, int64_t rows) {
  const int64_t total = chunks * sl.n * BH, G = Hq / Hkv, BK = BH / G;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t chunk = i / (sl.n * BH), rem = i - chunk * sl.n * BH;
    const int slot = int(rem / BH);
    const int64_t e = rem - int64_t(slot) * BH;
    const Slot& t = sl.s[slot];
    int64_t b, h, g;
    if (t.mode == 0) {
      b = e / Hq, h = e - b * Hq, g = h / G;
    } else {
      const int64_t x = e % BK;
      b = x / Hkv, g = x - b * Hkv, h = g * G;
    }
    const int64_t r0 = chunk * R, r = min(R, rows - r0);
    out[i] = t.base + int64_t(t.elem) * (b * t.cb + h * t.ch + g * t.cg + r0 * t.cr + (b * Hq + h) * r * t.ce);
  }
}

void fill_tables(const void** out, const Slots& sl, int64_t chunks, int64_t BH, int64_t Hq, int64_t Hkv, int64_t R,
                 int64_t rows) {
  const int64_t total = chunks * sl.n * BH;
  if (total == 0) return;
  const int blocks = int(std::min<int64_t>((total + kThreads - 1) / kThreads, 65535));
  fill_tables_kernel<<<blocks, kThreads>>>(out, sl, chunks, BH, Hq, Hkv, R, rows);
  check_launch("attention pointer tables");
}

Slot slot(const void* base, int elem, int mode, int64_t cb, int64_t ch, int64_t cg, int64_t cr, int64_t ce = 0) {
  return Slot{static_cast<const char*>(base), cb, ch, cg, cr, ce, elem, mode};
}

// Row-major batched GEMM through column-major cuBLAS (the mapping of cuda_ops.cu): C_i (M × N, ldc) =
// alpha·op(A_i)·op(B_i) + beta·C_i, A_i (M × K) or (K × M) when ta, B_i (K × N) or (N × K) when tb.
void bgemm(const AttnGemmCtx& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* const* A,
           cudaDataType_t At, int64_t lda, const void* const* Bp, int64_t ldb, float beta, void* const* C, int64_t ldc,
           int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  const float alpha = 1.f;
  cublas_check(c.api->gemm_batched_ex(c.handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(N),
                                      int(M), int(K), &alpha, Bp, CUDA_R_16BF, int(ldb), A, At, int(lda), &beta, C,
                                      CUDA_R_32F, int(ldc), int(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmBatchedEx");
}

// Scratch carving and the pointer tables (host side, uploaded once).
struct Carver {
  char* base;
  size_t off = 0;
  template <typename T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(base + off);
    off += align256(count * sizeof(T));
    return p;
  }
};

struct Plan {
  int64_t ldS, R, chunks;
};

Plan plan(const AttnGemmCtx& c, int64_t BH, int64_t rows, int64_t keys) {
  Plan p;
  p.ldS = round_up(keys, 8);
  const int64_t per_row = BH * p.ldS * 6;  // fp32 S + bf16 P
  int64_t R = std::max<int64_t>(1, int64_t(c.chunk_bytes) / std::max<int64_t>(per_row, 1));
  if (R >= 64) R = R / 64 * 64;
  p.R = std::min({R, rows, int64_t(65535)});  // the row kernels put a chunk's rows on gridDim.y (<= 65535)
  p.chunks = (rows + p.R - 1) / p.R;
  return p;
}

void check_dims(int64_t B, int64_t Tq, int64_t L, int64_t Hq, int64_t Hkv, int64_t D, int64_t ldS) {
  const int64_t lim = int64_t(1) << 31;
  if (Hq * D >= lim || Hkv * D >= lim || ldS >= lim || B * Hq >= lim || Tq >= lim || L >= lim)
    throw std::runtime_error("cuda attention (bf16): a dimension does not fit cuBLAS's 32-bit int");
}

}  // namespace

void attention_forward_gemm(const AttnGemmCtx& c, float* out, float* lse, const float* q, const float* k,
                            const float* v, int64_t B, int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv,
                            int64_t D, const KvRows* rows) {
  const int64_t L = past + Tq, QD = Hq * D, KD = Hkv * D, BH = B * Hq;
  if (B == 0 || Tq == 0) return;
  const float scale = 1.f / std::sqrt(float(D));
  const Plan pl = plan(c, BH, Tq, L);
  check_dims(B, Tq, L, Hq, Hkv, D, pl.ldS);
  const int64_t nptr = pl.chunks * 6 * BH;
  const size_t bytes = align256(size_t(B * Tq * QD) * 2) + 2 * align256(size_t(B * L * KD) * 2) +
                       align256(size_t(BH * pl.R * pl.ldS) * 4) + align256(size_t(BH * pl.R * pl.ldS) * 2) +
                       align256(size_t(nptr) * sizeof(void*));
  Carver cv{static_cast<char*>(c.scratch(bytes))};
  bf16* qb = cv.take<bf16>(size_t(B * Tq * QD));
  bf16* kb = cv.take<bf16>(size_t(B * L * KD));
  bf16* vb = cv.take<bf16>(size_t(B * L * KD));
  float* S = cv.take<float>(size_t(BH * pl.R * pl.ldS));
  bf16* P = cv.take<bf16>(size_t(BH * pl.R * pl.ldS));
  const void** dptr = cv.take<const void*>(size_t(nptr));

  // Pointer tables: per chunk, [S: A B C][O: A B C] × BH (entries e = b·Hq + h).
  const int64_t pe = pl.R * pl.ldS;  // one (b, h) entry's scores
  Slots sl{};
  sl.n = 6;
  sl.s[0] = slot(qb, 2, 0, Tq * QD, D, 0, QD);
  sl.s[1] = slot(kb, 2, 0, L * KD, 0, D, 0);
  sl.s[2] = slot(S, 4, 0, Hq * pe, pe, 0, 0);
  sl.s[3] = slot(P, 2, 0, Hq * pe, pe, 0, 0);
  sl.s[4] = slot(vb, 2, 0, L * KD, 0, D, 0);
  sl.s[5] = slot(out, 4, 0, Tq * QD, D, 0, QD);
  fill_tables(dptr, sl, pl.chunks, BH, Hq, Hkv, pl.R, Tq);
  to_bf16_rows(qb, q, 1, B * Tq * QD, 0);
  if (rows) {  // batch row b: cache row slot[b], its own past[b] + Tq keys (past is their maximum)
    kv_to_bf16_rows(kb, k, B, L, KD, Tkv * KD, *rows, Tq);
    kv_to_bf16_rows(vb, v, B, L, KD, Tkv * KD, *rows, Tq);
  } else {
    to_bf16_rows(kb, k, B, L * KD, Tkv * KD);
    to_bf16_rows(vb, v, B, L * KD, Tkv * KD);
  }

  for (int64_t ch = 0; ch < pl.chunks; ++ch) {
    const int64_t r0 = ch * pl.R, r = std::min(pl.R, Tq - r0), L1 = past + r0 + r;
    const void* const* t = dptr + ch * 6 * BH;
    bgemm(c, false, true, r, L1, D, t, CUDA_R_16BF, QD, t + BH, KD, 0.f, const_cast<void* const*>(t + 2 * BH), pl.ldS,
          BH);
    softmax_kernel<<<dim3(unsigned(BH), unsigned(r)), kThreads>>>(S, P, pl.ldS, pl.R, L1, past, r0, scale, nullptr, lse,
                                                                  Tq, rows ? rows->past : nullptr, Hq);
    check_launch("attention softmax");
    bgemm(c, false, false, r, D, L1, t + 3 * BH, CUDA_R_16BF, pl.ldS, t + 4 * BH, KD, 0.f,
          const_cast<void* const*>(t + 5 * BH), QD, BH);
  }
}

void attention_backward_gemm(const AttnGemmCtx& c, float* dq, float* dk, float* dv, const float* dout, const float* q,
                             const float* k, const float* v, const float* out, const float* lse, int64_t B, int64_t T,
                             int64_t Hq, int64_t Hkv, int64_t D, bool accumulate) {
  const int64_t G = Hq / Hkv, QD = Hq * D, KD = Hkv * D, BH = B * Hq, BK = B * Hkv;
  if (B == 0 || T == 0) return;
  const float scale = 1.f / std::sqrt(float(D));
  const Plan pl = plan(c, BH, T, T);
  check_dims(B, T, T, Hq, Hkv, D, pl.ldS);
  // Per chunk: S [3 BH], dV [G × 3 BK = 3 BH], dP [3 BH], dQ [3 BH], dK [3 BH].
  const int64_t per_chunk = 15 * BH, nptr = pl.chunks * per_chunk;
  const size_t bytes = 2 * align256(size_t(B * T * QD) * 2) + 2 * align256(size_t(B * T * KD) * 2) +
                       align256(size_t(BH * pl.R * pl.ldS) * 4) + align256(size_t(BH * pl.R * pl.ldS) * 2) +
                       align256(size_t(BH * T) * 4) + align256(size_t(nptr) * sizeof(void*));
  Carver cv{static_cast<char*>(c.scratch(bytes))};
  bf16* qb = cv.take<bf16>(size_t(B * T * QD));
  bf16* dob = cv.take<bf16>(size_t(B * T * QD));
  bf16* kb = cv.take<bf16>(size_t(B * T * KD));
  bf16* vb = cv.take<bf16>(size_t(B * T * KD));
  float* S = cv.take<float>(size_t(BH * pl.R * pl.ldS));
  bf16* P = cv.take<bf16>(size_t(BH * pl.R * pl.ldS));
  float* Di = cv.take<float>(size_t(BH * T));
  const void** dptr = cv.take<const void*>(size_t(nptr));

  // Pointer tables per chunk (15 × BH). q̃ / dõ are chunked head-major (qc per first row r0, e·r·D per entry), the
  // scores at r rows per entry (e·r·ldS). S = q̃·k̃ᵀ [0-2]; dv += stacked P̃ᵀ·dõ [3-5, mode 1: entry (b, g) starts
  // at head gG, K = G·r]; dP = dõ·ṽᵀ [6-8]; dq = dS̃·k̃ [9-11]; dk += stacked dS̃ᵀ·q̃ [12-14, mode 1].
  const int64_t qc = BH * D;
  Slots sl{};
  sl.n = 15;
  sl.s[0] = slot(qb, 2, 0, 0, 0, 0, qc, D);
  sl.s[1] = slot(kb, 2, 0, T * KD, 0, D, 0);
  sl.s[2] = slot(S, 4, 0, 0, 0, 0, 0, pl.ldS);
  sl.s[3] = slot(P, 2, 1, 0, 0, 0, 0, pl.ldS);
  sl.s[4] = slot(dob, 2, 1, 0, 0, 0, qc, D);
  sl.s[5] = slot(dv, 4, 1, T * KD, 0, D, 0);
  sl.s[6] = slot(dob, 2, 0, 0, 0, 0, qc, D);
  sl.s[7] = slot(vb, 2, 0, T * KD, 0, D, 0);
  sl.s[8] = slot(S, 4, 0, 0, 0, 0, 0, pl.ldS);
  sl.s[9] = slot(P, 2, 0, 0, 0, 0, 0, pl.ldS);
  sl.s[10] = slot(kb, 2, 0, T * KD, 0, D, 0);
  sl.s[11] = slot(dq, 4, 0, T * QD, D, 0, QD);
  sl.s[12] = slot(P, 2, 1, 0, 0, 0, 0, pl.ldS);
  sl.s[13] = slot(qb, 2, 1, 0, 0, 0, qc, D);
  sl.s[14] = slot(dk, 4, 1, T * KD, 0, D, 0);
  fill_tables(dptr, sl, pl.chunks, BH, Hq, Hkv, pl.R, T);
  to_bf16_chunked(qb, q, B, T, Hq, D, pl.R);
  to_bf16_chunked(dob, dout, B, T, Hq, D, pl.R);
  to_bf16_rows(kb, k, 1, B * T * KD, 0);
  to_bf16_rows(vb, v, 1, B * T * KD, 0);
  if (!accumulate) {
    RIFT_CUDA_CHECK(cudaMemsetAsync(dk, 0, size_t(B * T * KD) * sizeof(float), nullptr));
    RIFT_CUDA_CHECK(cudaMemsetAsync(dv, 0, size_t(B * T * KD) * sizeof(float), nullptr));
  }
  {
    const int64_t warps = B * T * Hq;
    const int blocks = int(std::min<int64_t>((warps * 32 + kThreads - 1) / kThreads, 65535));
    di_kernel<<<blocks, kThreads>>>(Di, dout, out, B, T, Hq, D);
    check_launch("attention Di");
  }
  for (int64_t ch = 0; ch < pl.chunks; ++ch) {
    const int64_t r0 = ch * pl.R, r = std::min(pl.R, T - r0), L1 = r0 + r;
    const void* const* t = dptr + ch * per_chunk;
    auto C = [&](int slot) { return const_cast<void* const*>(t + slot * BH); };
    const dim3 grid{static_cast<unsigned>(BH), static_cast<unsigned>(r)};
    bgemm(c, false, true, r, L1, D, t, CUDA_R_16BF, D, t + BH, KD, 0.f, C(2), pl.ldS, BH);  // S
    // This chunk's scores sit at r rows per entry: r is the row kernels' entry stride.
    softmax_kernel<<<grid, kThreads>>>(S, P, pl.ldS, r, L1, 0, r0, scale, lse, nullptr, T, nullptr, Hq);
    check_launch("attention backward P");
    // dv_g += P̃ᵀ·dõ over the group's stacked rows (K = G·r): one GEMM per (b, g)
    bgemm(c, true, false, L1, D, G * r, t + 3 * BH, CUDA_R_16BF, pl.ldS, t + 4 * BH, D, 1.f, C(5), KD, BK);
    bgemm(c, false, true, r, L1, D, t + 6 * BH, CUDA_R_16BF, D, t + 7 * BH, KD, 0.f, C(8), pl.ldS, BH);  // dP
    ds_kernel<<<grid, kThreads>>>(P, S, pl.ldS, r, L1, r0, scale, Di, T);
    check_launch("attention dS");
    bgemm(c, false, false, r, D, L1, t + 9 * BH, CUDA_R_16BF, pl.ldS, t + 10 * BH, KD, accumulate ? 1.f : 0.f, C(11),
          QD, BH);  // dq
    // dk_g += dS̃ᵀ·q̃ over the stacked rows
    bgemm(c, true, false, L1, D, G * r, t + 12 * BH, CUDA_R_16BF, pl.ldS, t + 13 * BH, D, 1.f, C(14), KD, BK);
  }
}

}  // namespace rift::cuda
