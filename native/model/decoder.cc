// Decoder: config checks, the flat-buffer layout, the KV cache and the inference forward (decoder.h).
// The training forward/backward is in decoder_train.cc, the fused lm_head + loss in decoder_lmhead.cc.
#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "core/checked.h"
#include "model/decoder_internal.h"

namespace rift {
namespace {

[[noreturn]] void bad(const std::string& field, const std::string& msg) {
  throw ArgError{ArgError::Range, field, field + ": " + msg};
}

// The inference path's GEMMs are row-invariant while this lives (OpsBackend::set_row_invariant): a sampled row's
// logits are the same whichever rows are decoded with it, so continuous batching keeps every sample's tokens.
class RowInvariant {
 public:
  explicit RowInvariant(OpsBackend& ops) : ops_(ops), prev_(ops.set_row_invariant(true)) {}
  ~RowInvariant() { ops_.set_row_invariant(prev_); }
  RowInvariant(const RowInvariant&) = delete;
  RowInvariant& operator=(const RowInvariant&) = delete;

 private:
  OpsBackend& ops_;
  bool prev_;
};

}  // namespace

int64_t checked_token_floats(const SizeCalc& k, int64_t floats, int64_t N, MemSpace space, const char* what) {
  const std::string tokens = "B × T = " + std::to_string(N) + " tokens";
  if (!k.ok()) bad("T", tokens + ": " + what + " would exceed 2^63 − 1 floats (64-bit sizes)");
  const int64_t bytes = floats > kMaxInt64 / 4 ? kMaxInt64 : floats * 4;
  if (space == MemSpace::Host) check_fits_in_memory("T", std::string(what) + " for " + tokens, bytes);
  return floats;
}

int64_t default_chunk_rows(int64_t vocab, MemSpace space) {
  // Host: ~64 MB of fp32 logits. Device: ~1 GB — each chunk's dW += Gᵀ·H_c reads and writes the whole (V, C)
  // lm_head gradient, so fewer, taller chunks cut that traffic (at V = 151936: 1766 rows instead of 110).
  return space == MemSpace::Host ? std::clamp<int64_t>((int64_t(1) << 24) / vocab, 64, 1024)
                                 : std::clamp<int64_t>((int64_t(1) << 28) / vocab, 64, 4096);
}

void validate_config(const DecoderConfig& c) {
  constexpr int64_t kMax = int64_t(1) << 31;
  auto positive = [&](const char* f, int64_t v) {
    if (v < 1 || v >= kMax) bad(f, "must be an integer in [1, 2^31), got " + std::to_string(v));
  };
  positive("vocab_size", c.vocab);
  positive("hidden_size", c.C);
  positive("intermediate_size", c.I);
  positive("num_hidden_layers", c.L);
  positive("num_attention_heads", c.Hq);
  positive("num_key_value_heads", c.Hkv);
  positive("head_dim", c.D);
  if (c.Hq % c.Hkv != 0)
    bad("num_key_value_heads",
        "must divide num_attention_heads (" + std::to_string(c.Hq) + "), got " + std::to_string(c.Hkv));
  if (c.D % 2 != 0) bad("head_dim", "must be even (rotate-half RoPE), got " + std::to_string(c.D));
  if (!(std::isfinite(c.eps) && c.eps > 0 && c.eps < 1)) bad("rms_norm_eps", "must be a finite number in (0, 1)");
  if (!(std::isfinite(c.theta) && c.theta > 0 && c.theta < 1e30)) bad("rope_theta", "must be a finite number > 0");
  model_size(c);
}

ModelSize model_size(const DecoderConfig& c) {
  // Every field is in [1, 2^31) (validate_config): each product below is checked all the same.
  checked_product("num_attention_heads", {{"num_attention_heads", c.Hq}, {"head_dim", c.D}}, (int64_t(1) << 31) - 1,
                  "2147483647 (the engine's int32 sizes)");
  const int64_t C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D;  // KD <= QD: Hkv divides Hq
  const int64_t qo = checked_product("num_attention_heads",
                                     {{"2", 2}, {"num_attention_heads", c.Hq}, {"head_dim", c.D}, {"hidden_size", C}});
  const int64_t kv = checked_product("num_key_value_heads",
                                     {{"2", 2}, {"num_key_value_heads", c.Hkv}, {"head_dim", c.D}, {"hidden_size", C}});
  const int64_t mlp = checked_product("intermediate_size", {{"3", 3}, {"intermediate_size", c.I}, {"hidden_size", C}});
  const int64_t embed = checked_product(
      "vocab_size", {{c.tied ? "1" : "2", c.tied ? 1 : 2}, {"vocab_size", c.vocab}, {"hidden_size", C}});
  const int64_t small = (c.qkv_bias ? QD + 2 * KD : 0) + (c.o_bias ? C : 0) + 2 * C;  // biases, the two norms
  const int64_t per_layer =
      checked_sum("num_hidden_layers",
                  {{"q_proj + o_proj", qo}, {"k_proj + v_proj", kv}, {"mlp", mlp}, {"norms and biases", small}});
  ModelSize s;
  const int64_t layers =
      checked_product("num_hidden_layers", {{"num_hidden_layers", c.L}, {"parameters per layer", per_layer}});
  s.params = checked_sum(
      "num_hidden_layers",
      {{"num_hidden_layers × parameters per layer", layers}, {"embed_tokens + lm_head", embed}, {"model.norm", C}},
      kMaxSafeInteger, "2^53 − 1 (tensor offsets must be exact JS numbers)");
  const int64_t per_layer_tensors = 9 + (c.qkv_bias ? 3 : 0) + (c.o_bias ? 1 : 0);
  s.tensors =
      checked_product("num_hidden_layers", {{"num_hidden_layers", c.L}, {"tensors per layer", per_layer_tensors}},
                      kMaxTensors, "1048576 (the engine's limit on a model's tensors)") +
      (c.tied ? 2 : 3);
  s.bytes = s.params * int64_t(sizeof(float)) + s.tensors * kTableBytesPerTensor;  // < 2^56: no overflow
  s.dominant = layers >= embed ? "num_hidden_layers" : "vocab_size";
  return s;
}

// ------------------------------------------------------------------------------------------------------------
// KV cache

KvCache::KvCache(const DecoderConfig& c, int64_t B, int64_t Tmax, OpsBackend& ops)
    : L_(c.L), row_(c.Hkv * c.D), B_(B), Tmax_(Tmax), ops_(&ops) {
  if (B < 1 || B >= (int64_t(1) << 31)) bad("B", "must be an integer in [1, 2^31)");
  if (Tmax < 1 || Tmax >= (int64_t(1) << 31)) bad("Tmax", "must be an integer in [1, 2^31)");
  const int64_t bytes = checked_product("Tmax", {{"2 (k, v)", 2},
                                                 {"num_hidden_layers", L_},
                                                 {"B", B},
                                                 {"Tmax", Tmax},
                                                 {"num_key_value_heads × head_dim", row_},
                                                 {"4 bytes", 4}});
  if (ops.space() == MemSpace::Host)  // device memory: the allocation itself fails at once, with the CUDA error
    check_fits_in_memory(
        "Tmax", "a KV cache of B × Tmax = " + std::to_string(B) + " × " + std::to_string(Tmax) + " positions", bytes);
  buf_ = OpsBuffer(ops, MemCategory::KvCache, size_t(bytes / 4));
  len_.assign(size_t(B), 0);
}

int64_t KvCache::length() const { return *std::max_element(len_.begin(), len_.end()); }

void KvCache::reset_rows(int64_t row, int64_t count) {
  if (row < 0 || row >= B_) bad("row", "must be in [0, " + std::to_string(B_) + "), got " + std::to_string(row));
  if (count < 0 || count > B_ - row)
    bad("count",
        "rows [row, row + count) must lie in [0, " + std::to_string(B_) + "), got count " + std::to_string(count));
  std::fill(len_.begin() + row, len_.begin() + row + count, 0);
}

void KvCache::copy_rows(const KvCache& src, int64_t src_row, int64_t dst_row, int64_t count) {
  if (src.L_ != L_ || src.row_ != row_) bad("src", "belongs to a model of another shape");
  if (src.ops_->space() != ops_->space()) bad("src", "lives on another device");
  if (src.Tmax_ != Tmax_)
    bad("src", "capacity " + std::to_string(src.Tmax_) + " differs from this cache's " + std::to_string(Tmax_));
  if (src_row < 0 || src_row >= src.B_) bad("srcRow", "must be in [0, " + std::to_string(src.B_) + ")");
  if (count < 0 || dst_row < 0 || dst_row + count > B_)
    bad("dstRow", "rows [dstRow, dstRow + count) must lie in [0, " + std::to_string(B_) + ")");
  const int64_t n = src.len_[size_t(src_row)];
  for (int64_t r = dst_row; r < dst_row + count; ++r)
    if (len_[size_t(r)] != 0 && !(&src == this && r == src_row))
      bad("dstRow", "row " + std::to_string(r) + " holds " + std::to_string(len_[size_t(r)]) +
                        " tokens: it is in use (resetRows() it first)");
  const size_t bytes = size_t(n * row_) * sizeof(float);
  for (int64_t l = 0; l < L_; ++l)
    for (int64_t r = dst_row; r < dst_row + count; ++r) {
      if (&src == this && r == src_row) continue;
      ops_->copy2d(k(l) + r * Tmax_ * row_, bytes, src.k(l) + src_row * Tmax_ * row_, bytes, bytes, 1);
      ops_->copy2d(v(l) + r * Tmax_ * row_, bytes, src.v(l) + src_row * Tmax_ * row_, bytes, bytes, 1);
    }
  for (int64_t r = dst_row; r < dst_row + count; ++r) len_[size_t(r)] = n;
}

// ------------------------------------------------------------------------------------------------------------
// Layout

Decoder::Decoder(const DecoderConfig& c, int64_t chunk_rows, MemCategory params_category, OpsBackend& ops,
                 RowBackend& rows)
    : cfg_(c), ops_(ops), rows_(rows) {
  validate_config(c);
  // Refused up front when it cannot fit: the flat params (fp32) and the tensor table are allocated right here (a CUDA
  // model's params also pass through host memory once: Model.load / fromConfig stage them there).
  const ModelSize size = model_size(c);
  check_fits_in_memory(size.dominant,
                       "a model of " + std::to_string(size.params) + " parameters (fp32) in " +
                           std::to_string(size.tensors) + " tensors",
                       size.bytes);
  if (chunk_rows < 0 || chunk_rows >= (int64_t(1) << 31)) bad("chunkRows", "must be an integer in [0, 2^31)");
  chunk_rows_ = chunk_rows > 0 ? chunk_rows : default_chunk_rows(c.vocab, ops.space());
  const int64_t C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D;
  int64_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    tensors_.push_back({name, off, n, std::move(shape)});
    off += n;
    return off - n;
  };
  off_embed_ = add("model.embed_tokens.weight", {c.vocab, C});
  for (int64_t l = 0; l < c.L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerOffsets o;
    o.wq = add(p + "self_attn.q_proj.weight", {QD, C});
    o.bq = c.qkv_bias ? add(p + "self_attn.q_proj.bias", {QD}) : -1;
    o.wk = add(p + "self_attn.k_proj.weight", {KD, C});
    o.bk = c.qkv_bias ? add(p + "self_attn.k_proj.bias", {KD}) : -1;
    o.wv = add(p + "self_attn.v_proj.weight", {KD, C});
    o.bv = c.qkv_bias ? add(p + "self_attn.v_proj.bias", {KD}) : -1;
    o.wo = add(p + "self_attn.o_proj.weight", {C, QD});
    o.bo = c.o_bias ? add(p + "self_attn.o_proj.bias", {C}) : -1;
    o.wg = add(p + "mlp.gate_proj.weight", {c.I, C});
    o.wu = add(p + "mlp.up_proj.weight", {c.I, C});
    o.wd = add(p + "mlp.down_proj.weight", {C, c.I});
    o.ln1 = add(p + "input_layernorm.weight", {C});
    o.ln2 = add(p + "post_attention_layernorm.weight", {C});
    layers_.push_back(o);
  }
  off_norm_ = add("model.norm.weight", {C});
  off_lm_head_ = c.tied ? off_embed_ : add("lm_head.weight", {c.vocab, C});
  if (off != size.params) throw std::logic_error("Decoder: model_size() disagrees with the tensor layout");
  nparams_ = off;
  params_ = std::make_shared<OpsBuffer>(ops_, params_category, size_t(nparams_));
  ops_.register_weights(params_->data(), size_t(nparams_), params_category);  // bf16 CUDA: a bf16 copy for GEMMs
  // RMSNorm weights start at 1 (as HF initialises them), everything else at 0 until loaded.
  const std::vector<float> ones(size_t(C), 1.f);
  for (const LayerOffsets& o : layers_) {
    ops_.upload(params() + o.ln1, ones.data(), ones.size() * sizeof(float));
    ops_.upload(params() + o.ln2, ones.data(), ones.size() * sizeof(float));
  }
  ops_.upload(params() + off_norm_, ones.data(), ones.size() * sizeof(float));
}

Decoder::~Decoder() = default;

std::shared_ptr<OpsBuffer> Decoder::grads_buffer() {
  if (!grads_) grads_ = std::make_shared<OpsBuffer>(ops_, MemCategory::Grads, size_t(nparams_));
  return grads_;
}

std::shared_ptr<OpsBuffer>& Decoder::flat(FlatBuffer which) {
  switch (which) {
    case FlatBuffer::Params: return params_;
    case FlatBuffer::Grads: grads_buffer(); return grads_;
    case FlatBuffer::M: m_buffer(); return m_;
    case FlatBuffer::V: break;
  }
  v_buffer();
  return v_;
}

float* Decoder::flat_range(FlatBuffer which, int64_t offset, int64_t n) {
  if (offset < 0 || n < 0 || offset > nparams_ || n > nparams_ - offset)
    bad("offset", "[offset, offset + n) = [" + std::to_string(offset) + ", " + std::to_string(offset + n) +
                      ") is outside [0, " + std::to_string(nparams_) + ")");
  return flat(which)->data() + offset;
}

void Decoder::read(FlatBuffer which, int64_t offset, int64_t n, float* host) {
  ops_.download(host, flat_range(which, offset, n), size_t(n) * sizeof(float));
}

void Decoder::write(FlatBuffer which, int64_t offset, int64_t n, const float* host) {
  ops_.upload(flat_range(which, offset, n), host, size_t(n) * sizeof(float));
}

float* Decoder::grow(OpsBuffer& buf, MemCategory c, int64_t floats) {
  if (int64_t(buf.size()) < floats) {
    buf = OpsBuffer();  // free first: the peak is the larger buffer, not both
    buf = OpsBuffer(ops_, c, size_t(floats));
  }
  return buf.data();
}

const int32_t* Decoder::stage(OpsBuffer& buf, const int32_t* host, int64_t n) {
  if (ops_.space() == MemSpace::Host) return host;
  grow(buf, MemCategory::Workspace, n);
  static_assert(sizeof(float) == sizeof(int32_t), "ints are staged in float buffers");
  ops_.upload(buf.data(), host, size_t(n) * sizeof(int32_t));
  return reinterpret_cast<const int32_t*>(buf.data());
}

void Decoder::stage_positions(int64_t B, int64_t T, int64_t past, const int64_t* past_rows) {
  pos_.resize(size_t(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) pos_[size_t(b * T + t)] = int32_t((past_rows ? past_rows[b] : past) + t);
  pos_ptr_ = stage(pos_dev_, pos_.data(), B * T);
}

void Decoder::gather_rows(float* dst, const float* src, int64_t rows, int64_t first, int64_t stride) {
  const size_t C = size_t(cfg_.C) * sizeof(float);
  ops_.copy2d(dst, C, src + first * cfg_.C, size_t(stride) * C, C, size_t(rows));
}

void Decoder::lm_head_to_host(const float* h, int64_t rows, float* host_logits) {
  const int64_t V = cfg_.vocab;
  if (ops_.space() == MemSpace::Host) {
    lm_head_rows(h, rows, host_logits);
    return;
  }
  // Device: chunks of at most chunk_rows_ rows through the lm_head chunk buffer, each downloaded.
  const int64_t R = std::min(rows, chunk_rows_);
  grow(chunk_, MemCategory::LogitsChunk, R * V);
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const int64_t r = std::min(R, rows - r0);
    lm_head_rows(h + r0 * cfg_.C, r, chunk_.data());
    ops_.download(host_logits + r0 * V, chunk_.data(), size_t(r * V) * sizeof(float));
  }
}

const float* Decoder::lm_head_weight() const { return params_->data() + off_lm_head_; }
float* Decoder::lm_head_grad() { return grads_buffer()->data() + off_lm_head_; }

void Decoder::check_ids(const int32_t* ids, int64_t n, const char* arg) const {
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] < 0 || ids[t] >= cfg_.vocab)
      throw ArgError{ArgError::Range, arg,
                     std::string(arg) + ": " + arg + "[" + std::to_string(t) + "] = " + std::to_string(ids[t]) +
                         " is outside [0, vocab_size = " + std::to_string(cfg_.vocab) + ")"};
}

float* Decoder::scratch(int64_t floats) { return grow(infer_, MemCategory::Activations, floats); }

void Decoder::lm_head_rows(const float* h, int64_t rows, float* logits) {
  ops_.gemm(false, true, rows, cfg_.vocab, cfg_.C, 1.f, h, cfg_.C, lm_head_weight(), cfg_.C, 0.f, logits, cfg_.vocab);
}

// ------------------------------------------------------------------------------------------------------------
// Inference: embedding → layers (k/v into the cache when there is one) → final norm → lm_head.

namespace {

int64_t rup(int64_t n) { return (n + 15) / 16 * 16; }  // 64-byte aligned sub-buffers

}  // namespace

void Decoder::infer_layers(float* x, int64_t B, int64_t T, KvCache* cache, const int32_t* slots) {
  const DecoderConfig& c = cfg_;
  const int64_t n = B * T, C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D;
  const float eps = float(c.eps), theta = float(c.theta);
  // x lives at the start of the scratch; the rest is carved after it.
  float* base = infer_.data() + rup(n * C);
  float* ln = base;                 // (n, C)
  float* rstd = ln + rup(n * C);    // (n)
  float* q = rstd + rup(n);         // (n, QD)
  float* k = q + rup(n * QD);       // (n, KD)
  float* v = k + rup(n * KD);       // (n, KD)
  float* att = v + rup(n * KD);     // (n, QD)
  float* gate = att + rup(n * QD);  // (n, I)
  float* up = gate + rup(n * c.I);  // (n, I)
  // The rows this call appends to and their lengths. Every row of the cache at one shared length (the common
  // case) keeps the strided copy and the scalar past; otherwise (chosen rows, rows of different lengths) the new
  // k/v rows are scattered by kv_write and attention reads each row's slot at its own past (KvRows).
  std::vector<int64_t> past_rows;
  int64_t past = 0;
  bool shared = true;
  if (cache) {
    past_rows.resize(size_t(B));
    for (int64_t b = 0; b < B; ++b) {
      past_rows[size_t(b)] = cache->len_[size_t(slots ? slots[b] : b)];
      shared = shared && (slots ? slots[b] == b : true) && past_rows[size_t(b)] == past_rows[0];
      past = std::max(past, past_rows[size_t(b)]);
    }
    shared = shared && B == cache->B_;
  }
  KvRows kv;
  if (cache && !shared) {
    kv_rows_.resize(size_t(2 * B));
    for (int64_t b = 0; b < B; ++b) {
      kv_rows_[size_t(b)] = slots ? slots[b] : int32_t(b);
      kv_rows_[size_t(B + b)] = int32_t(past_rows[size_t(b)]);
    }
    const int32_t* staged = stage(kv_rows_dev_, kv_rows_.data(), 2 * B);
    kv.slot = staged;
    kv.past = staged + B;
    stage_positions(B, T, 0, past_rows.data());
  } else {
    stage_positions(B, T, past);
  }
  const float* P = params_->data();
  for (int64_t l = 0; l < c.L; ++l) {
    const LayerOffsets& o = layers_[size_t(l)];
    auto opt = [&](int64_t off) { return off < 0 ? nullptr : P + off; };
    ops_.rmsnorm_forward(ln, rstd, x, P + o.ln1, n, C, eps);
    ops_.matmul_forward(q, ln, P + o.wq, opt(o.bq), n, QD, C, false);
    ops_.matmul_forward(k, ln, P + o.wk, opt(o.bk), n, KD, C, false);
    ops_.matmul_forward(v, ln, P + o.wv, opt(o.bv), n, KD, C, false);
    ops_.rope_forward(q, q, pos_ptr_, n, c.Hq, c.D, theta);
    ops_.rope_forward(k, k, pos_ptr_, n, c.Hkv, c.D, theta);
    if (cache && shared) {
      // Append the new rows at [past, past + T) of each batch row: one strided copy each for k and v.
      const int64_t Tm = cache->Tmax_;
      const size_t w = size_t(T * KD) * sizeof(float), dp = size_t(Tm * KD) * sizeof(float);
      ops_.copy2d(cache->k(l) + past * KD, dp, k, w, w, size_t(B));
      ops_.copy2d(cache->v(l) + past * KD, dp, v, w, w, size_t(B));
      ops_.attention_forward(att, nullptr, q, cache->k(l), cache->v(l), B, T, Tm, past, c.Hq, c.Hkv, c.D, nullptr);
    } else if (cache) {
      const int64_t Tm = cache->Tmax_;
      ops_.kv_write(cache->k(l), k, kv.slot, pos_ptr_, B, T, Tm, KD);
      ops_.kv_write(cache->v(l), v, kv.slot, pos_ptr_, B, T, Tm, KD);
      ops_.attention_forward(att, nullptr, q, cache->k(l), cache->v(l), B, T, Tm, past, c.Hq, c.Hkv, c.D, &kv);
    } else {
      ops_.attention_forward(att, nullptr, q, k, v, B, T, T, 0, c.Hq, c.Hkv, c.D, nullptr);
    }
    ops_.matmul_forward(x, att, P + o.wo, opt(o.bo), n, C, QD, true);  // x += att·Woᵀ (+ bo)
    ops_.rmsnorm_forward(ln, rstd, x, P + o.ln2, n, C, eps);
    ops_.matmul_forward(gate, ln, P + o.wg, nullptr, n, c.I, C, false);
    ops_.matmul_forward(up, ln, P + o.wu, nullptr, n, c.I, C, false);
    ops_.swiglu_forward(gate, gate, up, n * c.I);
    ops_.matmul_forward(x, gate, P + o.wd, nullptr, n, C, c.I, true);  // x += swiglu·Wdᵀ
  }
  if (cache)
    for (int64_t b = 0; b < B; ++b) cache->len_[size_t(slots ? slots[b] : b)] += T;
}

namespace {

// Floats of the inference scratch for n tokens: 2 r(n·C) + r(n) + 2 r(n·Hq·D) + 2 r(n·Hkv·D) + 2 r(n·I), checked.
int64_t infer_floats(const DecoderConfig& c, int64_t n, MemSpace space) {
  const int64_t QD = c.Hq * c.D, KD = c.Hkv * c.D;
  SizeCalc k;
  int64_t floats = 0;
  using Term = std::pair<int64_t, int64_t>;  // (floats per token, buffers)
  for (const auto& [width, count] : std::initializer_list<Term>{{c.C, 2}, {1, 1}, {QD, 2}, {KD, 2}, {c.I, 2}})
    floats = k.add(floats, k.mul(k.r16(k.mul(n, width)), count));
  return checked_token_floats(k, floats, n, space, "the inference scratch");
}

}  // namespace

void Decoder::forward(const int32_t* ids, int64_t B, int64_t T, bool last_only, float* logits) {
  if (B < 1) bad("B", "must be >= 1");
  if (T < 1) bad("T", "must be >= 1");
  checked_product("T", {{"B", B}, {"T", T}});
  check_ids(ids, B * T, "ids");
  const int64_t n = B * T, C = cfg_.C;
  RowInvariant invariant(ops_);
  float* x = scratch(infer_floats(cfg_, n, ops_.space()));
  ops_.embedding_forward(x, stage(ids_dev_, ids, n), params_->data() + off_embed_, n, cfg_.vocab, C);
  infer_layers(x, B, T, nullptr);
  if (last_only) return last_logits(x, B, T, logits);
  float* ln = infer_.data() + rup(n * C);
  float* rstd = ln + rup(n * C);
  ops_.rmsnorm_forward(ln, rstd, x, params_->data() + off_norm_, n, C, float(cfg_.eps));
  lm_head_to_host(ln, n, logits);
}

// The loss without a gradient (log-probs for a DPO reference, evaluation): the inference layers over ONE
// temporary scratch (Activations, freed on return: nothing of the training path's saved activations is allocated),
// the final norm, and the fused lm_head + loss over chunks.
LossResult Decoder::loss_forward_only(const int32_t* ids, int64_t B, int64_t T, const LossSpec& spec) {
  const int64_t n = B * T, C = cfg_.C;
  struct Restore {  // the persistent inference scratch comes back however this call ends
    Decoder& d;
    OpsBuffer saved;
    ~Restore() { d.infer_ = std::move(saved); }
  } restore{*this, std::move(infer_)};
  infer_ = OpsBuffer(ops_, MemCategory::Activations, size_t(infer_floats(cfg_, n, ops_.space())));
  float* x = infer_.data();
  ops_.embedding_forward(x, stage(ids_dev_, ids, n), params_->data() + off_embed_, n, cfg_.vocab, C);
  infer_layers(x, B, T, nullptr);
  float* ln = infer_.data() + rup(n * C);
  float* rstd = ln + rup(n * C);
  ops_.rmsnorm_forward(ln, rstd, x, params_->data() + off_norm_, n, C, float(cfg_.eps));
  LmHeadLoss head(*this, ln, nullptr, n);
  static char token;  // opaque to the LmHeadLoss backend (see loss_and_backward)
  return run_loss(spec, head, &token, nullptr, DType::F32);
}

void Decoder::prefill(KvCache& cache, const int32_t* ids, int64_t B, int64_t T, float* logits, const int32_t* rows) {
  if (cache.L_ != cfg_.L || cache.row_ != cfg_.Hkv * cfg_.D) bad("cache", "was made for a model of another shape");
  if (!rows && B != cache.B_)
    bad("B", "must equal the cache's batch size " + std::to_string(cache.B_) + ", got " + std::to_string(B));
  if (rows && (B < 1 || B > cache.B_))
    bad("rows", "must hold 1 to " + std::to_string(cache.B_) + " rows (the cache's batch), got " + std::to_string(B));
  if (T < 1) bad("T", "must be >= 1");
  if (rows) {
    std::vector<char> seen(size_t(cache.B_), 0);
    for (int64_t b = 0; b < B; ++b) {
      const int32_t r = rows[b];
      if (r < 0 || r >= cache.B_)
        bad("rows", "rows[" + std::to_string(b) + "] = " + std::to_string(r) + " is outside [0, " +
                        std::to_string(cache.B_) + ")");
      if (seen[size_t(r)]) bad("rows", "rows[" + std::to_string(b) + "] = " + std::to_string(r) + " appears twice");
      seen[size_t(r)] = 1;
    }
  }
  bool uniform = true;
  for (int64_t b = 0; b < B; ++b) uniform = uniform && cache.len_[size_t(rows ? rows[b] : b)] == cache.len_[0];
  for (int64_t b = 0; b < B; ++b) {
    const int64_t r = rows ? rows[b] : b, len = cache.len_[size_t(r)];
    if (T <= cache.Tmax_ - len) continue;
    if (!rows && uniform)
      bad("cache", "holds " + std::to_string(len) + " of " + std::to_string(cache.Tmax_) + " positions: no room for " +
                       std::to_string(T) + " more");
    bad("cache", "row " + std::to_string(r) + " holds " + std::to_string(len) + " of " + std::to_string(cache.Tmax_) +
                     " positions: no room for " + std::to_string(T) + " more");
  }
  check_ids(ids, B * T, T == 1 ? "tokens" : "ids");  // B, T < 2^31: B·T fits
  const int64_t n = B * T, C = cfg_.C;
  if (cache.ops_->space() != ops_.space()) bad("cache", "lives on another device than this model");
  RowInvariant invariant(ops_);
  float* x = scratch(infer_floats(cfg_, n, ops_.space()));
  ops_.embedding_forward(x, stage(ids_dev_, ids, n), params_->data() + off_embed_, n, cfg_.vocab, C);
  infer_layers(x, B, T, &cache, rows);
  last_logits(x, B, T, logits);
}

// The last position's logits (B, V) to the host from the layers' output x (B·T, C) at the start of the inference
// scratch: gather each row's last token, the final norm, the lm_head.
void Decoder::last_logits(const float* x, int64_t B, int64_t T, float* logits) {
  const int64_t C = cfg_.C;
  float* ln = infer_.data() + rup(B * T * C);
  float* rstd = ln + rup(B * T * C);
  gather_rows(ln, x, B, T - 1, T);
  ops_.rmsnorm_forward(ln, rstd, ln, params_->data() + off_norm_, B, C, float(cfg_.eps));
  lm_head_to_host(ln, B, logits);
}

}  // namespace rift
