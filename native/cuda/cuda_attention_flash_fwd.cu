// The fused attention's forward (cuda_attention_flash.h): one block per (kTileQ query rows, query head, batch row),
// kWarps warps of 16 rows each. Q̃ (bf16) is loaded once into registers as A fragments; per tile of kTileK keys the
// block stages K̃ (row-major) and Ṽᵀ (so that P̃·Ṽ's B fragments are 32-bit loads) in shared memory, then each warp
//   S = Q̃·K̃ᵀ (mma over D in steps of 16), s = S·scale (−inf past the causal limit), the online-softmax update of
//   its rows (max over the quad of lanes holding a row, exp, the per-lane partial sums), O ← O·c, and
//   O += P̃·Ṽ with P̃ = bf16(p) taken straight from the S accumulators (two C tiles = one A fragment).
// End: the quad's partial sums are added ((l0 + l1) + (l2 + l3)), out = O·(1/l), lse = m + log l. Tiles past a
// warp's last visible key are skipped (a no-op for its rows). The arithmetic, in order, is the CPU twin's
// (cpu/ops_attention_flash.cc): the fp32 steps the twin reproduces are written with _rn intrinsics so the compiler
// cannot contract them; exp / log are the fast approximations. Query tiles run last-first (the longest first).
#include "cuda/cuda_attention_flash.cuh"

#include <algorithm>
#include <cmath>

namespace rift::cuda::flash_detail {
namespace {

template <int D>
constexpr size_t fwd_smem() {
  return sizeof(bf16) * size_t(kTileQ * (D + 8) + kTileK * (D + 8) + D * (kTileK + 8));
}

template <int D>
__global__ void __launch_bounds__(kThreads) fwd_kernel(Args a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int P = D + 8, PT = kTileK + 8, NT = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kTileQ * P;
  bf16* Vt = Ks + kTileK * P;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t b = blockIdx.z, h = blockIdx.y, kvh = h / a.G;
  const int64_t q0 = int64_t(gridDim.x - 1 - blockIdx.x) * kTileQ;
  const int64_t QS = a.Hq * D, KS = a.Hkv * D;
  const float* qb = a.q + (b * a.Tq * a.Hq + h) * D;
  const float* kb = a.k + (b * a.Tkv * a.Hkv + kvh) * D;
  const float* vb = a.v + (b * a.Tkv * a.Hkv + kvh) * D;
  load_tile<D, false>(Qs, P, qb, QS, q0, a.Tq, kTileQ);
  __syncthreads();
  const int r0 = warp * 16;
  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) load_a(qa[kk], Qs, P, r0, kk * 16);
  float o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int64_t lim[2] = {a.past + q0 + r0 + g, a.past + q0 + r0 + g + 8};  // last key of the lane's two rows
  const int64_t warp_lim = a.past + q0 + r0 + 15;
  const int64_t kend = a.past + min(q0 + kTileQ, a.Tq);  // keys [0, kend) are seen by some row of the block
  for (int64_t j0 = 0; j0 < kend; j0 += kTileK) {
    __syncthreads();  // the previous tile is no longer read
    load_tile<D, false>(Ks, P, kb, KS, j0, kend, kTileK);
    load_tile<D, true>(Vt, PT, vb, KS, j0, kend, kTileK);
    __syncthreads();
    if (j0 > warp_lim) continue;  // warp-uniform: no row of this warp sees the tile
    float s[kTileK / 8][4];
#pragma unroll
    for (int n = 0; n < kTileK / 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t b0, b1;
        load_b(b0, b1, Ks, P, n * 8, kk * 16);
        mma(s[n], qa[kk], b0, b1);
      }
    }
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kTileK / 8; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t j = j0 + n * 8 + 2 * t + (c & 1);
        s[n][c] = j <= lim[c >> 1] ? __fmul_rn(s[n][c], a.scale) : -INFINITY;
        mt[c >> 1] = fmaxf(mt[c >> 1], s[n][c]);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 1));
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(0xffffffffu, mt[r], 2));
      const float mn = fmaxf(m[r], mt[r]);
      corr[r] = m[r] == -INFINITY ? 0.f : __expf(__fsub_rn(m[r], mn));
      m[r] = mn;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < kTileK / 8; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int r = c >> 1;
        s[n][c] = s[n][c] == -INFINITY ? 0.f : __expf(__fsub_rn(s[n][c], m[r]));
        rs[r] = __fadd_rn(rs[r], s[n][c]);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = __fadd_rn(__fmul_rn(l[r], corr[r]), rs[r]);
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) o[n][c] = __fmul_rn(o[n][c], corr[c >> 1]);
#pragma unroll
    for (int kk = 0; kk < kTileK / 16; ++kk) {
      uint32_t pa[4];
      c_to_a(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        uint32_t b0, b1;
        load_b(b0, b1, Vt, PT, n * 8, kk * 16);
        mma(o[n], pa, b0, b1);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = __fadd_rn(l[r], __shfl_xor_sync(0xffffffffu, l[r], 1));
    l[r] = __fadd_rn(l[r], __shfl_xor_sync(0xffffffffu, l[r], 2));
    const int64_t row = q0 + r0 + g + 8 * r;
    if (row >= a.Tq) continue;
    const float inv = __frcp_rn(l[r]);
    float* orow = a.o + (b * a.Tq + row) * QS + h * D;
#pragma unroll
    for (int n = 0; n < NT; ++n)
      *reinterpret_cast<float2*>(orow + n * 8 + 2 * t) =
          make_float2(__fmul_rn(o[n][2 * r], inv), __fmul_rn(o[n][2 * r + 1], inv));
    if (a.lse && t == 0) a.lse[(b * a.Hq + h) * a.Tq + row] = __fadd_rn(m[r], __logf(l[r]));
  }
#endif
}

template <int D>
void launch(const Args& a, int64_t B) {
  for (int64_t b0 = 0; b0 < B; b0 += kMaxGridZ) {  // gridDim.z <= 65535: the batch in chunks
    const int64_t nb = std::min(kMaxGridZ, B - b0);
    Args c = a;
    c.q += b0 * a.Tq * a.Hq * D;
    c.o += b0 * a.Tq * a.Hq * D;
    c.k += b0 * a.Tkv * a.Hkv * D;
    c.v += b0 * a.Tkv * a.Hkv * D;
    if (c.lse) c.lse += b0 * a.Hq * a.Tq;
    const dim3 grid(unsigned((a.Tq + kTileQ - 1) / kTileQ), unsigned(a.Hq), unsigned(nb));
    fwd_kernel<D><<<grid, kThreads, fwd_smem<D>()>>>(c);
    check_launch("flash attention forward");
  }
}

}  // namespace

void prepare_forward(int64_t D) {
  require_device(D);
  if (D == 64)
    configure(fwd_kernel<64>, fwd_smem<64>(), "flash attention forward");
  else
    configure(fwd_kernel<128>, fwd_smem<128>(), "flash attention forward");
}

void forward(const Args& a, int64_t B, int64_t D) {
  if (D == 64)
    launch<64>(a, B);
  else
    launch<128>(a, B);
}

}  // namespace rift::cuda::flash_detail
