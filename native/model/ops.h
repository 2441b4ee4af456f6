// The ops the decoder (Qwen2 / Llama family, docs/design.md §4) is built from, behind ONE backend interface
// that cpu/ and cuda/ implement (instances: backends/registry.h, cpu_ops() / cuda_ops()): the model code calls these
// and never branches on the device, and never names an instance. No Node, no CUDA in this header.
//
// Conventions (every op):
// - fp32, row-major, contiguous unless a leading dimension says otherwise; shapes in comments, e.g. (T, C).
//   Pointers are "data" pointers of the backend (host memory for the CPU backend, device memory for CUDA).
// - Forward ops WRITE their outputs. Saved activations a backward needs are named in its comment.
// - Backward ops ACCUMULATE (+=) into parameter gradients (dweight, dbias, dwte), always.
//   Input gradients (dinp, dq, dk, dv, dgate, dup) are WRITTEN (=) when accumulate == false and ADDED (+=)
//   when accumulate == true (a tensor read by several consumers: the residual stream, the normed input that
//   feeds q/k/v or gate/up). With accumulate == false the input-gradient buffer need not be initialised.
// - Outputs must not overlap inputs unless the comment allows it ("may alias": exact aliasing only).
// - Arguments are assumed checked by the caller (napi/ops.cc checks everything it passes, token ids and positions
//   included; the decoder checks ids and makes the positions). The CPU backend still throws ArgError
//   (core/loss.h) for a token id outside [0, V) or a negative position; the CUDA backend does not read ids or
//   positions back to the host (a synchronisation per call) except in embedding_backward, which checks them. Sizes are
//   element counts (int64); T = tokens, C = channels.
// - Scratch memory (gemm packs, rope tables, attention tiles and group reduction) is owned by the backend and
//   counted as Workspace in the memory tracker (core/memory.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "core/loss.h"
#include "core/memory.h"

namespace rift {

struct OpsInfo {
  std::string gemm;               // implementation in use: cpu "builtin" | "openblas"
  int threads = 1;                // threads the gemm runs on
  bool blas_available = false;    // an OpenBLAS could be loaded (RIFT_BLAS=off: never)
  std::string blas_path;          // the library that was loaded, "" when none
  DType gemm_dtype = DType::F32;  // operand precision of gemm / matmul_* (backends/registry.h: cpu_ops())
};

// torch.optim.AdamW (amsgrad=False, maximize=False), one step over a flat buffer, in torch's order:
//   g = grad·grad_scale;  p ← p·(1 − lr·weight_decay);  m ← m + (1−β1)·(g − m);  v ← β2·v + (1−β2)·g²;
//   p ← p − (lr / (1−β1^step)) · m / (sqrt(v) / sqrt(1−β2^step) + eps)
// (== p − lr·(m̂/(sqrt(v̂)+eps) + wd·p) with the decay taken on the old p). step >= 1 is the count after this
// update (torch increments state['step'] first). grad_scale: e.g. min(1, max_norm / ‖g‖) for clipping.
// Hyperparameters are doubles (Python floats in torch); the update itself runs in fp32 like torch's on fp32.
struct AdamWParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
  int64_t step = 1;
  float grad_scale = 1.f;
};

// The per-row layout of a batched KV cache for attention_forward: arrays of the B batch rows, in the backend's
// memory (host for the CPU, device for CUDA).
struct KvRows {
  const int32_t* past = nullptr;  // (B) tokens row b holds before this call: its query i sits at past[b] + i
  const int32_t* slot = nullptr;  // (B) the row of the k / v buffers that batch row b reads
};

class OpsBackend {
 public:
  virtual ~OpsBackend() = default;
  virtual const char* name() const = 0;  // "cpu" | "cuda"
  virtual OpsInfo info() const = 0;
  // Picks the GEMM implementation ("builtin" | "openblas" on CPU). Returns false (and keeps the current one)
  // when that implementation is unavailable.
  virtual bool set_gemm(const std::string& impl) = 0;

  // ---- Memory in this backend's space (host for the CPU, the current device for CUDA), counted in the memory
  // tracker (core/memory.h) under (space(), category). alloc: n floats, zero-initialised, 64-byte aligned (256 on
  // CUDA); n == 0 gives nullptr; out of memory throws (std::bad_alloc, or std::runtime_error with the CUDA
  // error). release: a pointer from alloc with the same category and n (nullptr: no-op).
  virtual MemSpace space() const = 0;
  virtual float* alloc(MemCategory c, size_t n) = 0;
  virtual void release(float* p, MemCategory c, size_t n) noexcept = 0;
  // Copies: upload host → backend memory, download backend → host (both complete before they return), and
  // copy2d within backend memory: `rows` rows of `width` bytes, row starts `spitch` / `dpitch` bytes apart
  // (regions must not overlap).
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) = 0;

  // ---- Weights (a hint; the default ignores it). `region` (n floats, from alloc with category c) holds tensors
  // read as GEMM operands many times between writes: a model's parameters. A backend whose GEMMs round operands
  // (the CUDA BF16 instance) keeps a bf16 copy of the region, counted under c, and reads it instead of rounding
  // an operand that lies in the region. The copy follows the backend's own writes into the region (upload,
  // copy2d, adamw); no other op may write there. The registration ends when the region is released.
  virtual void register_weights(const float* region, size_t n, MemCategory c) { (void)region, (void)n, (void)c; }
  // Notes that `bytes` at dst (this backend's memory) were written by something other than this backend's own ops
  // — a collective of native/dist (MPI, NCCL) — so that a registered region's copy is refreshed before its next use.
  virtual void note_written(const void* dst, size_t bytes) { (void)dst, (void)bytes; }

  // ---- Row invariance (inference). While on for the calling thread, every GEMM the thread issues computes each
  // row of C with the same bits whatever M and the other rows are (for alpha = 1, beta in {0, 1}: the engine's
  // calls), so a decode row's logits do not depend on the rows batched with it. Returns the previous setting. The
  // CPU backend then runs its builtin kernel for every M (OpenBLAS chooses kernels by shape); a backend that cannot
  // promise it (CUDA: cuBLAS picks algorithms by shape) ignores it and returns false.
  virtual bool set_row_invariant(bool on) {
    (void)on;
    return false;
  }

  // ---- GEMM: C (M, N) = alpha · op(A) · op(B) + beta · C, row-major.
  // op(A) is (M, K): A is (M, K) with row stride lda >= K, or (K, M) with lda >= M when transA.
  // op(B) is (K, N): B is (K, N) with ldb >= N, or (N, K) with ldb >= K when transB. C: ldc >= N.
  // beta == 0: C is not read (may hold NaN). C must not overlap A or B.
  virtual void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;

  // ---- Linear (PyTorch layout): out (M, N) [+]= inp (M, K) · weight (N, K)ᵀ + bias (N). bias may be null.
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t M,
                              int64_t N, int64_t K, bool accumulate) = 0;
  // dinp (M, K) [+]= dout (M, N) · weight (N, K);  dweight (N, K) += doutᵀ · inp (M, K);
  // dbias (N) += column sums of dout. Any of dinp / dweight / dbias may be null (skipped).
  // Saved: inp (for dweight), weight (for dinp).
  virtual void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate) = 0;

  // ---- Embedding: out (T, C) = wte (V, C)[ids (T)]. Throws ArgError for an id outside [0, V).
  virtual void embedding_forward(float* out, const int32_t* ids, const float* wte, int64_t T, int64_t V, int64_t C) = 0;
  // dwte (V, C) += scatter-add of dout (T, C) by ids (T) (deterministic: no atomics).
  virtual void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V,
                                  int64_t C) = 0;

  // ---- RMSNorm (HF Qwen2/Llama, fp32): rstd_t = 1/sqrt(mean_c x² + eps); out = x·rstd·weight.
  // out (T, C), rstd (T) saved for the backward, inp (T, C), weight (C). out may alias inp.
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t T, int64_t C,
                               float eps) = 0;
  // dinp (T, C) [+]=, dweight (C) +=. Saved: inp (T, C), rstd (T). dinp may alias dout when !accumulate.
  virtual void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                                const float* rstd, int64_t T, int64_t C, bool accumulate) = 0;

  // ---- RoPE, HF rotate-half layout, on (T, H, D) with pos (T) >= 0, D even:
  // inv_freq_i = 1/θ^(2i/D) (i < D/2), a = pos·inv_freq (fp32, as HF), cos/sin of cat(a, a);
  // out = x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x[D/2:], x[:D/2]). For (B, T, H, D) pass B·T tokens
  // and the positions of every token. out may alias inp. Throws ArgError for a negative position.
  virtual void rope_forward(float* out, const float* inp, const int32_t* pos, int64_t T, int64_t H, int64_t D,
                            float theta) = 0;
  // dinp (T, H, D) [+]= Rᵀ·dout (the inverse rotation). dinp may alias dout when !accumulate. Saved: pos only.
  virtual void rope_backward(float* dinp, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D,
                             float theta, bool accumulate) = 0;

  // ---- Causal GQA attention, scale 1/sqrt(D), flash-style (online softmax over key tiles; no T×T buffer).
  // q (B, Tq, Hq, D); k, v (B, Tkv, Hkv, D) where Tkv is the T-axis length of the k/v buffers (a KV cache's
  // capacity); out (B, Tq, Hq, D); lse (B, Hq, Tq) natural-log logsumexp of each query row's scaled scores,
  // saved for the backward (may be null when no backward follows). Query row i sits at absolute position
  // past + i and attends to keys [0, past + i]; requires past + Tq <= Tkv and Hq % Hkv == 0 (query head h
  // uses kv head h / (Hq / Hkv)). Training: past = 0, Tq = Tkv = T. Decode step with a KV cache: write the new
  // k/v rows at [past, past + n) first, then call with Tq = n.
  // rows (null: the layout above): a batched KV cache whose rows have their own lengths (continuous batching).
  // Batch row b then reads row rows->slot[b] of k / v (buffers of any number of rows of Tkv positions) and its
  // query i sits at rows->past[b] + i; `past` must be the largest rows->past[b] (backends may size work by it),
  // and past[b] + Tq <= Tkv. Keys of a row beyond its past[b] + Tq are never read for that row's result.
  virtual void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                                 int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D,
                                 const KvRows* rows) = 0;
  // Training shapes only (past = 0, Tq = Tkv = T). dq (B, T, Hq, D), dk / dv (B, T, Hkv, D) [+]= (dk, dv summed
  // over the query heads of each group). Saved: q, k, v, out (B, T, Hq, D) and lse (B, Hq, T) from the forward.
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                                  int64_t Hkv, int64_t D, bool accumulate) = 0;
  // ---- KV cache write (continuous batching): for b < B, t < T, cache row (slot[b], pos[b·T + t]) ← x row b·T + t,
  // where cache is (rows, Tmax, width) and x is (B·T, width); slot (B) and pos (B·T) in backend memory. Assumed
  // checked by the caller: slot[b] < rows, 0 <= pos < Tmax, and no cache row written twice.
  virtual void kv_write(float* cache, const float* x, const int32_t* slot, const int32_t* pos, int64_t B, int64_t T,
                        int64_t Tmax, int64_t width) = 0;

  // ---- SwiGLU: out (n) = silu(gate)·up, silu(x) = x·σ(x). out may alias gate or up.
  virtual void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) = 0;
  // dgate (n), dup (n) [+]=. Saved: gate, up. dgate / dup may alias dout when !accumulate.
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                               int64_t n, bool accumulate) = 0;

  // ---- bfloat16 storage (the decoder's saved activations with activation dtype BF16): dst (n) = bf16(src), round to
  // nearest even on the bit pattern, NaN stays NaN (cpu/vmath.h f32_to_bf16); from_bf16 widens exactly.
  virtual void to_bf16(uint16_t* dst, const float* src, int64_t n) = 0;
  virtual void from_bf16(float* dst, const uint16_t* src, int64_t n) = 0;

  // ---- bf16 activations written by their producers and read by the linear layers (the decoder's "direct" bf16
  // path, model/decoder_bf16.cc). Each equals, bit for bit, the fp32 op composed with to_bf16 / from_bf16:
  //   rmsnorm_forward_bf16 = to_bf16(rmsnorm_forward(...)),  swiglu_forward_bf16 = to_bf16(swiglu_forward(...)),
  //   matmul_forward_bf16 / matmul_backward_bf16 (inp bf16) = matmul_forward / matmul_backward on from_bf16(inp).
  // A backend whose GEMMs take bf16 operands (the CUDA BF16 instance) feeds inp to them as it is, with no fp32
  // round trip; the defaults (backends/ops_defaults.cc) compose the fp32 ops through workspace.
  virtual void rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T,
                                    int64_t C, float eps);
  virtual void swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n);
  virtual void matmul_forward_bf16(float* out, const uint16_t* inp, const float* weight, const float* bias, int64_t M,
                                   int64_t N, int64_t K, bool accumulate);
  virtual void matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const uint16_t* inp,
                                    const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate);

  // ---- Elementwise, reductions, optimizer (flat buffers of n floats).
  virtual void add(float* out, const float* a, const float* b, int64_t n) = 0;  // out = a + b; may alias a or b
  virtual void scale(float* x, float s, int64_t n) = 0;                         // x *= s
  virtual void zero(float* x, int64_t n) = 0;                                   // x = 0
  virtual double sumsq(const float* x, int64_t n) = 0;                          // Σ x² accumulated in double
  // One AdamW step (see AdamWParams) over param, m, v (n) with grad (n); grad is only read.
  virtual void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& p) = 0;
};

// A tracked buffer of n floats in a backend's memory (OpsBackend::alloc / release). Movable, not copyable. The
// backend must outlive the buffer (cpu_ops() and cuda_ops() are process-wide and never destroyed).
class OpsBuffer {
 public:
  OpsBuffer() = default;
  OpsBuffer(OpsBackend& ops, MemCategory c, size_t n) : ops_(&ops), data_(ops.alloc(c, n)), size_(n), cat_(c) {}
  ~OpsBuffer() { reset(); }
  OpsBuffer(OpsBuffer&& o) noexcept { *this = std::move(o); }
  OpsBuffer& operator=(OpsBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = std::exchange(o.ops_, nullptr);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cat_ = o.cat_;
    }
    return *this;
  }
  OpsBuffer(const OpsBuffer&) = delete;
  OpsBuffer& operator=(const OpsBuffer&) = delete;
  void reset() noexcept {
    if (ops_) ops_->release(data_, cat_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  MemCategory category() const { return cat_; }
  MemSpace space() const { return ops_ ? ops_->space() : MemSpace::Host; }
  OpsBackend* ops() const { return ops_; }

 private:
  OpsBackend* ops_ = nullptr;
  float* data_ = nullptr;
  size_t size_ = 0;
  MemCategory cat_ = MemCategory::Workspace;
};

}  // namespace rift
