// The decoder engine (Qwen2 / Llama family, docs/design.md §3) over llm.c-style flat buffers.
//
//   params      ONE flat buffer (Params) holding every tensor in HF named_parameters() order — the order of
//               expectedTensors() in lib/engine/checkpoint.ts; tensors() gives each one's offset and shape.
//   grads       ONE flat buffer (Grads) with the same layout, allocated on the first backward; gradients
//               ACCUMULATE (+=) across loss_and_backward() calls until zero_grad().
//   m, v        AdamW state (Optimizer), allocated on the first step().
//   activations what the backward needs, sized for the largest B×T seen (Activations; regrown, never shrunk);
//               the inference path (forward / prefill / decode) has its own smaller scratch (Activations).
//   lm_head     fused with the loss over chunks of rows (decoder_lmhead.cc): logits never exist for all N rows.
//
// Every op goes through the OpsBackend (model/ops.h): the model never branches on the device. Every buffer lives
// in the backend's memory (OpsBuffer: host for the CPU backend, device for CUDA); the public methods take and
// return HOST arrays (ids, targets, logits) and stage them. fp32 master weights, gradients and AdamW state; the
// backend's gemm_dtype decides the GEMM operand precision (BF16: bf16 operands, fp32 accumulation).
// Not thread-safe: one call at a time per Decoder (the N-API layer refuses concurrent calls).
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/loss.h"
#include "core/memory.h"
#include "model/ops.h"

namespace rift {

// HF config.json fields (lib/engine/checkpoint.ts parseConfig() maps them; names in comments).
struct DecoderConfig {
  int64_t vocab = 0;      // vocab_size V
  int64_t C = 0;          // hidden_size
  int64_t I = 0;          // intermediate_size
  int64_t L = 0;          // num_hidden_layers
  int64_t Hq = 0;         // num_attention_heads
  int64_t Hkv = 0;        // num_key_value_heads (Hq % Hkv == 0)
  int64_t D = 0;          // head_dim (even)
  double eps = 1e-6;      // rms_norm_eps
  double theta = 10000;   // rope_theta
  bool tied = false;      // tie_word_embeddings: lm_head.weight is model.embed_tokens.weight
  bool qkv_bias = false;  // q/k/v_proj have biases (qwen2)
  bool o_bias = false;    // o_proj has a bias (llama with attention_bias)
};

// Throws ArgError (Range) naming the HF field when a value is out of range or a size it implies overflows
// (model_size).
void validate_config(const DecoderConfig& c);

// The engine's caps on a model's shape, machine-independent (lib/engine/checkpoint.ts parseConfig has the same):
constexpr int64_t kMaxTensors = int64_t(1) << 20;  // num_hidden_layers × tensors per layer (9..13) at most
constexpr int64_t kTableBytesPerTensor = 256;      // a TensorInfo with its name and shape, for the estimate below

// What a config makes the Decoder allocate at once, with checked arithmetic: ArgError (Range) naming the field
// and the size when a product or sum overflows int64, the parameter count exceeds 2^53 − 1 or the tensor count
// exceeds kMaxTensors. The Decoder then refuses `bytes` beyond this machine's physical memory (core/checked.h).
struct ModelSize {
  int64_t params = 0;                          // floats of the flat buffer
  int64_t tensors = 0;                         // entries of the tensor table
  int64_t bytes = 0;                           // 4 × params + tensors × kTableBytesPerTensor
  const char* dominant = "num_hidden_layers";  // the field the bytes mostly come from (named in the error)
};
ModelSize model_size(const DecoderConfig& c);
// Rows of the lm_head + loss chunk when none is given: clamp(2^24 / V, 64, 1024) on the host (~64 MB of fp32
// logits), clamp(2^28 / V, 64, 4096) on a device (~1 GB).
int64_t default_chunk_rows(int64_t vocab, MemSpace space);

struct TensorInfo {
  std::string name;              // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
  int64_t offset = 0, size = 0;  // in floats, into the flat params / grads / m / v buffers
  std::vector<int64_t> shape;    // [out, in] for Linear weights, as HF stores them
};

// Offsets (floats) of one layer's tensors in the flat buffers; -1 where a bias is absent.
struct LayerOffsets {
  int64_t wq, bq, wk, bk, wv, bv, wo, bo, wg, wu, wd, ln1, ln2;
};

// The loss arguments of loss_and_backward(): a LossSpec over the N = B·T rows (row b·T + t predicts the
// token after position t; build targets accordingly, −100 = no target). N and V are filled by the decoder.
struct TrainBatch {
  const int32_t* ids = nullptr;  // (B, T) token ids in [0, V)
  int64_t B = 0, T = 0;
  LossSpec loss;         // targets (B·T), offsets (S+1) over the B·T rows, method, rewards, DPO, ...
  bool backward = true;  // false: loss / log-probs only (always false for Method::LOGPROB)
};

// A key/value cache (KvCache category, in the backend's memory): per layer k and v of shape (B, Tmax, Hkv, D). Each
// of the B rows (slots) has its own length: prefill/decode append to every row, or to chosen rows, each at its own
// next position — the rows of one decode step may hold different prompts (continuous batching).
class KvCache {
 public:
  KvCache(const DecoderConfig& c, int64_t B, int64_t Tmax, OpsBackend& ops);
  int64_t B() const { return B_; }
  int64_t capacity() const { return Tmax_; }
  // The longest row's length (every row's, when they agree).
  int64_t length() const;
  int64_t row_length(int64_t row) const { return len_[size_t(row)]; }
  void reset() { std::fill(len_.begin(), len_.end(), 0); }
  // Forgets the tokens of rows [row, row + count) (a finished sample's slot, free for the next one). ArgError
  // (Range, "row" / "count") outside [0, B).
  void reset_rows(int64_t row, int64_t count);
  // Copies row src_row of src (its tokens so far) into rows [dst_row, dst_row + count) of this cache (same model
  // shape, same capacity), whose lengths become src's row's. Every destination row must be empty (length 0, e.g.
  // after reset_rows): refilling a slot in use is an ArgError naming dstRow. E.g. prefill one prompt with B = 1,
  // then copy it into K rows (or into free slots of a running batch) and decode them.
  void copy_rows(const KvCache& src, int64_t src_row, int64_t dst_row, int64_t count);
  float* k(int64_t layer) { return buf_.data() + layer * 2 * layer_size(); }  // (B, Tmax, Hkv, D)
  float* v(int64_t layer) { return k(layer) + layer_size(); }
  const float* k(int64_t layer) const { return buf_.data() + layer * 2 * layer_size(); }
  const float* v(int64_t layer) const { return k(layer) + layer_size(); }

 private:
  friend class Decoder;
  int64_t layer_size() const { return B_ * Tmax_ * row_; }
  int64_t L_, row_, B_, Tmax_;  // row_: Hkv·D floats per token
  std::vector<int64_t> len_;    // (B) tokens held by each row
  OpsBackend* ops_;
  OpsBuffer buf_;
};

// Which flat buffer Decoder::read / write address (all share the params layout).
enum class FlatBuffer : int { Params = 0, Grads, M, V };

class Decoder {
 public:
  // chunk_rows: rows of the lm_head + loss chunk; 0 picks default_chunk_rows(vocab, ops.space()).
  // params_category: Params, or Reference for a frozen DPO reference model (memory() tells them apart).
  Decoder(const DecoderConfig& c, int64_t chunk_rows, MemCategory params_category, OpsBackend& ops, RowBackend& rows);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  const DecoderConfig& config() const { return cfg_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  int64_t num_params() const { return nparams_; }
  int64_t chunk_rows() const { return chunk_rows_; }
  int64_t optimizer_steps() const { return steps_; }

  OpsBackend& ops() const { return ops_; }
  MemSpace space() const { return ops_.space(); }
  float* params() { return params_->data(); }  // backend memory
  // The flat buffers are shared_ptrs so that zero-copy JS views (host space only) can keep them alive past the
  // Decoder.
  std::shared_ptr<OpsBuffer> params_buffer() { return params_; }
  std::shared_ptr<OpsBuffer> grads_buffer();  // allocates (zeroed) on first use
  bool has_grads() const { return grads_ != nullptr; }
  // AdamW state (exact resume from a checkpoint): the flat m and v buffers (same layout as params), allocated
  // zeroed on first use, and the step counter the bias corrections use.
  std::shared_ptr<OpsBuffer> m_buffer();
  std::shared_ptr<OpsBuffer> v_buffer();
  // Copies n floats at `offset` of a flat buffer to / from host memory (any space; grads / m / v are allocated
  // zeroed on first use). Throws ArgError (Range, "offset") when [offset, offset + n) is outside [0, numParams).
  void read(FlatBuffer which, int64_t offset, int64_t n, float* host);
  void write(FlatBuffer which, int64_t offset, int64_t n, const float* host);
  void set_optimizer_steps(int64_t steps) { steps_ = steps; }

  // ---- inference (no saved activations). ids and logits are host arrays.
  // logits (B·T, V), or (B, V) of the last position of each row when last_only.
  void forward(const int32_t* ids, int64_t B, int64_t T, bool last_only, float* logits);
  // Appends ids (B, T) to B rows of the cache — rows[b] (host, B distinct rows of the cache) or, when rows is
  // null, every row (B == cache.B()) — each at its own positions len .. len + T − 1 (len + T <= capacity), and
  // writes the last position's logits (B, V) in that order. Other rows are untouched. decode() is prefill with
  // T = 1. Bad arguments throw ArgError (cache, B, T, ids / tokens, rows) before any work.
  void prefill(KvCache& cache, const int32_t* ids, int64_t B, int64_t T, float* logits, const int32_t* rows = nullptr);
  void decode(KvCache& cache, const int32_t* tokens, int64_t B, float* logits, const int32_t* rows = nullptr) {
    prefill(cache, tokens, B, 1, logits, rows);
  }

  // ---- training
  // Forward over (B, T), the fused lm_head + loss, and (unless !backward) the backward: gradients are ADDED to
  // the flat grad buffer. Without a backward (Method::LOGPROB, backward = false) the forward is the inference
  // path over one temporary scratch: no training activations are kept. Returns what run_loss returns (loss, S_i, token
  // log-probs, entropies, ...). Bad arguments throw ArgError before any work. NaN/Inf logits throw ArgError("logits")
  // after part of the lm_head gradient may have been added: zero_grad() before going on.
  LossResult loss_and_backward(const TrainBatch& batch);
  // Activation recomputation: when on, the training forward keeps only each layer's input (the residual stream)
  // plus ONE shared set of the other saved tensors, and the backward reruns each layer's forward just before that
  // layer's backward (one extra forward per step, ~1/3 more FLOPs; the gradients are the same, the ops being
  // deterministic). Activations then scale as L·N·C + one layer's worth instead of L × a layer's worth.
  void set_recompute(bool on) { recompute_ = on; }
  bool recompute() const { return recompute_; }
  // Saved-activation storage: F32, or BF16 — each layer keeps its ten big saved tensors (normed inputs, q/k/v,
  // attention output, the mid residual, gate/up/h) as bfloat16 and the backward widens them back, one layer at a
  // time, into one shared fp32 set: about half the activation bytes, no extra FLOPs; the backward then sees those
  // tensors rounded to bf16 (the residual inputs, rstd and lse stay fp32). Recompute, when on, takes precedence.
  // On a backend whose GEMMs round their operands to bf16 (gemm_dtype BF16) the producers write the bf16 copies
  // directly and the linear layers read them (model/decoder_bf16.cc): the same results, bit for bit, without the
  // fp32 round trips. set_bf16_direct(false) keeps the store-then-widen path (for comparisons).
  void set_activation_dtype(DType d) { act_dtype_ = d; }
  DType activation_dtype() const { return act_dtype_; }
  void set_bf16_direct(bool on) { bf16_direct_ = on; }
  bool direct_bf16() const;  // a training step now stores bf16 activations on the direct path (decoder_bf16.cc)
  // Called during the backward of loss_and_backward() each time a contiguous range of the flat grad buffer has
  // received this call's last contribution: (offset, n) in floats, in decreasing offset order — the final norm and
  // lm_head tail, then layer L−1 … 0, then the embedding — so that a data-parallel reduction of those gradients can
  // start while the backward goes on (native/distributed/grad_sync.h). Runs on the thread of the backward; an
  // exception it throws ends the call. Not called for a call without backward or without targets. Empty: no calls.
  using GradsReady = std::function<void(int64_t offset, int64_t n)>;
  void set_grads_ready(GradsReady f) { grads_ready_ = std::move(f); }
  void zero_grad();
  double grad_norm();  // sqrt(Σ g²) over the flat grad buffer (0 before any backward)
  // Clips (scale min(1, max_norm / (‖g‖ + 1e-6)) when max_norm > 0, as torch's clip_grad_norm_) and runs one
  // AdamW pass over the whole flat buffer (hp.step and hp.grad_scale are set here). Returns ‖g‖ before clipping.
  double step(AdamWParams hp, double max_grad_norm);

 private:
  struct Acts;  // saved activations of the training forward (decoder.cc)
  void check_ids(const int32_t* ids, int64_t n, const char* arg) const;
  // ints (ids, positions) in the backend's memory: the host array itself on the CPU, a copy in buf on a device.
  const int32_t* stage(OpsBuffer& buf, const int32_t* host, int64_t n);
  // pos_ (host) and pos_dev_ for B rows of T tokens: row b at past (past_rows null) or past_rows[b] (host).
  void stage_positions(int64_t B, int64_t T, int64_t past, const int64_t* past_rows = nullptr);
  std::shared_ptr<OpsBuffer>& flat(FlatBuffer which);
  float* flat_range(FlatBuffer which, int64_t offset, int64_t n);  // checked [offset, offset + n)
  // buf holds at least `floats` (category c): grown by freeing first, so the peak is the larger buffer only.
  float* grow(OpsBuffer& buf, MemCategory c, int64_t floats);
  void last_logits(const float* x, int64_t B, int64_t T, float* logits);
  void ensure_acts(int64_t B, int64_t T);
  float* scratch(int64_t floats);  // inference scratch (Activations), grown on demand
  // Logits of `rows` rows of h (backend memory) into host memory: directly on the CPU, through chunk_ on a device.
  void lm_head_to_host(const float* h, int64_t rows, float* host_logits);
  // dst row i = src row (first + i·stride) for i < rows; rows of C floats (backend memory).
  void gather_rows(float* dst, const float* src, int64_t rows, int64_t first, int64_t stride);
  void train_forward(const int32_t* ids, int64_t B, int64_t T);
  LossResult loss_forward_only(const int32_t* ids, int64_t B, int64_t T, const LossSpec& spec);
  void layer_forward(int64_t l, int64_t B, int64_t T, float* out);
  void move_bf16(int64_t l, int64_t N, bool store);
  void layer_forward_bf16(int64_t l, int64_t B, int64_t T, float* out);
  void train_backward(const int32_t* ids, int64_t B, int64_t T);
  // The inference layers over x (B·T, C) in place; k/v go to the cache when cache != null: to every row (slots
  // null) or to rows slots[b] (host), each at its own length, which grows by T.
  void infer_layers(float* x, int64_t B, int64_t T, KvCache* cache, const int32_t* slots = nullptr);
  void lm_head_rows(const float* h, int64_t rows, float* logits);  // logits (rows, V) = h·Wᵀ
  const float* lm_head_weight() const;
  float* lm_head_grad();

  DecoderConfig cfg_;
  OpsBackend& ops_;
  RowBackend& rows_;  // the loss row kernels (core/loss.h) of the same device
  std::vector<TensorInfo> tensors_;
  std::vector<LayerOffsets> layers_;
  int64_t off_embed_ = 0, off_norm_ = 0, off_lm_head_ = 0, nparams_ = 0;
  int64_t chunk_rows_ = 0, steps_ = 0;
  bool recompute_ = false;
  DType act_dtype_ = DType::F32;
  bool bf16_direct_ = true;
  std::shared_ptr<OpsBuffer> params_, grads_, m_, v_;
  std::unique_ptr<Acts> acts_;
  GradsReady grads_ready_;
  OpsBuffer infer_;                   // inference scratch
  OpsBuffer chunk_;                   // lm_head chunk: logits (R, V) + gathered rows (R, C) + dH rows (R, C)
  std::vector<int32_t> pos_;          // positions of the tokens of the current call (host)
  OpsBuffer ids_dev_, pos_dev_;       // staged ids / positions (device backends only; Workspace)
  std::vector<int32_t> kv_rows_;      // a batched cache call's slots (B) then pasts (B) (host)
  OpsBuffer kv_rows_dev_;             // the same, staged (device backends only; Workspace)
  const int32_t* pos_ptr_ = nullptr;  // positions in backend memory

  friend class LmHeadLoss;
};

}  // namespace rift
