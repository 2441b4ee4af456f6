// Decoder: config checks, the flat-buffer layout, the KV cache and the inference forward (decoder.h).
// The training forward/backward is in decoder_train.cc, the fused lm_head + loss in decoder_lmhead.cc.
#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "model/decoder_internal.h"

namespace rift {
namespace {

[[noreturn]] void bad(const std::string& field, const std::string& msg) {
  throw ArgError{ArgError::Range, field, field + ": " + msg};
}

}  // namespace

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
    bad("num_key_value_heads", "must divide num_attention_heads (" + std::to_string(c.Hq) + "), got " +
                                   std::to_string(c.Hkv));
  if (c.D % 2 != 0) bad("head_dim", "must be even (rotate-half RoPE), got " + std::to_string(c.D));
  if (!(std::isfinite(c.eps) && c.eps > 0 && c.eps < 1)) bad("rms_norm_eps", "must be a finite number in (0, 1)");
  if (!(std::isfinite(c.theta) && c.theta > 0 && c.theta < 1e30)) bad("rope_theta", "must be a finite number > 0");
  if (c.Hq * c.D >= kMax || c.vocab * c.C >= (int64_t(1) << 40) || c.I * c.C >= (int64_t(1) << 40))
    bad("hidden_size", "model too large");
}

// ------------------------------------------------------------------------------------------------------------
// KV cache

KvCache::KvCache(const DecoderConfig& c, int64_t B, int64_t Tmax)
    : L_(c.L), row_(c.Hkv * c.D), B_(B), Tmax_(Tmax) {
  if (B < 1 || B >= (int64_t(1) << 31)) bad("B", "must be an integer in [1, 2^31)");
  if (Tmax < 1 || Tmax >= (int64_t(1) << 31)) bad("Tmax", "must be an integer in [1, 2^31)");
  buf_ = HostBuffer(MemCategory::KvCache, size_t(2 * L_ * layer_size()));
}

void KvCache::copy_rows(const KvCache& src, int64_t src_row, int64_t dst_row, int64_t count) {
  if (src.L_ != L_ || src.row_ != row_) bad("src", "belongs to a model of another shape");
  if (src.Tmax_ != Tmax_)
    bad("src", "capacity " + std::to_string(src.Tmax_) + " differs from this cache's " + std::to_string(Tmax_));
  if (src_row < 0 || src_row >= src.B_) bad("srcRow", "must be in [0, " + std::to_string(src.B_) + ")");
  if (count < 0 || dst_row < 0 || dst_row + count > B_)
    bad("dstRow", "rows [dstRow, dstRow + count) must lie in [0, " + std::to_string(B_) + ")");
  if (len_ != 0 && len_ != src.len_)
    bad("src", "holds " + std::to_string(src.len_) + " tokens but this cache holds " + std::to_string(len_) +
                   " (all rows of a cache share one length; reset() it first)");
  const size_t bytes = size_t(src.len_ * row_) * sizeof(float);
  for (int64_t l = 0; l < L_; ++l)
    for (int64_t r = dst_row; r < dst_row + count; ++r) {
      if (&src == this && r == src_row) continue;
      std::memcpy(k(l) + r * Tmax_ * row_, src.k(l) + src_row * Tmax_ * row_, bytes);
      std::memcpy(v(l) + r * Tmax_ * row_, src.v(l) + src_row * Tmax_ * row_, bytes);
    }
  len_ = src.len_;
}

// ------------------------------------------------------------------------------------------------------------
// Layout

Decoder::Decoder(const DecoderConfig& c, int64_t chunk_rows, MemCategory params_category, OpsBackend& ops,
                 RowBackend& rows)
    : cfg_(c), ops_(ops), rows_(rows) {
  validate_config(c);
  if (chunk_rows < 0 || chunk_rows >= (int64_t(1) << 31)) bad("chunkRows", "must be an integer in [0, 2^31)");
  chunk_rows_ = chunk_rows > 0 ? chunk_rows : std::clamp<int64_t>((int64_t(1) << 24) / c.vocab, 64, 1024);
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
  nparams_ = off;
  params_ = std::make_shared<HostBuffer>(params_category, size_t(nparams_));
  // RMSNorm weights start at 1 (as HF initialises them), everything else at 0 until loaded.
  for (const LayerOffsets& o : layers_) {
    std::fill(params() + o.ln1, params() + o.ln1 + C, 1.f);
    std::fill(params() + o.ln2, params() + o.ln2 + C, 1.f);
  }
  std::fill(params() + off_norm_, params() + off_norm_ + C, 1.f);
}

Decoder::~Decoder() = default;

std::shared_ptr<HostBuffer> Decoder::grads_buffer() {
  if (!grads_) grads_ = std::make_shared<HostBuffer>(MemCategory::Grads, size_t(nparams_));
  return grads_;
}

const float* Decoder::lm_head_weight() const { return params_->data() + off_lm_head_; }
float* Decoder::lm_head_grad() { return grads_buffer()->data() + off_lm_head_; }

void Decoder::check_ids(const int32_t* ids, int64_t n, const char* arg) const {
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] < 0 || ids[t] >= cfg_.vocab)
      throw ArgError{ArgError::Range, arg, std::string(arg) + ": " + arg + "[" + std::to_string(t) + "] = " +
                                               std::to_string(ids[t]) + " is outside [0, vocab_size = " +
                                               std::to_string(cfg_.vocab) + ")"};
}

float* Decoder::scratch(int64_t floats) {
  if (int64_t(infer_.size()) < floats) {
    infer_ = HostBuffer();  // free first: the peak is the larger buffer, not both
    infer_ = HostBuffer(MemCategory::Activations, size_t(floats));
  }
  return infer_.data();
}

void Decoder::lm_head_rows(const float* h, int64_t rows, float* logits) {
  ops_.gemm(false, true, rows, cfg_.vocab, cfg_.C, 1.f, h, cfg_.C, lm_head_weight(), cfg_.C, 0.f, logits, cfg_.vocab);
}

// ------------------------------------------------------------------------------------------------------------
// Inference: embedding → layers (k/v into the cache when there is one) → final norm → lm_head.

namespace {

int64_t rup(int64_t n) { return (n + 15) / 16 * 16; }  // 64-byte aligned sub-buffers

}  // namespace

void Decoder::infer_layers(float* x, int64_t B, int64_t T, KvCache* cache) {
  const DecoderConfig& c = cfg_;
  const int64_t n = B * T, C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D;
  const int64_t past = cache ? cache->len_ : 0;
  const float eps = float(c.eps), theta = float(c.theta);
  // x lives at the start of the scratch; the rest is carved after it.
  float* base = infer_.data() + rup(n * C);
  float* ln = base;                    // (n, C)
  float* rstd = ln + rup(n * C);       // (n)
  float* q = rstd + rup(n);            // (n, QD)
  float* k = q + rup(n * QD);          // (n, KD)
  float* v = k + rup(n * KD);          // (n, KD)
  float* att = v + rup(n * KD);        // (n, QD)
  float* gate = att + rup(n * QD);     // (n, I)
  float* up = gate + rup(n * c.I);     // (n, I)
  pos_.resize(size_t(n));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) pos_[size_t(b * T + t)] = int32_t(past + t);
  const float* P = params_->data();
  for (int64_t l = 0; l < c.L; ++l) {
    const LayerOffsets& o = layers_[size_t(l)];
    auto opt = [&](int64_t off) { return off < 0 ? nullptr : P + off; };
    ops_.rmsnorm_forward(ln, rstd, x, P + o.ln1, n, C, eps);
    ops_.matmul_forward(q, ln, P + o.wq, opt(o.bq), n, QD, C, false);
    ops_.matmul_forward(k, ln, P + o.wk, opt(o.bk), n, KD, C, false);
    ops_.matmul_forward(v, ln, P + o.wv, opt(o.bv), n, KD, C, false);
    ops_.rope_forward(q, q, pos_.data(), n, c.Hq, c.D, theta);
    ops_.rope_forward(k, k, pos_.data(), n, c.Hkv, c.D, theta);
    if (cache) {
      // Append the new rows at [past, past + T) of each batch row. (A host copy: a CUDA backend needs a
      // strided copy op here.)
      const int64_t Tm = cache->Tmax_;
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(cache->k(l) + (b * Tm + past) * KD, k + b * T * KD, size_t(T * KD) * sizeof(float));
        std::memcpy(cache->v(l) + (b * Tm + past) * KD, v + b * T * KD, size_t(T * KD) * sizeof(float));
      }
      ops_.attention_forward(att, nullptr, q, cache->k(l), cache->v(l), B, T, Tm, past, c.Hq, c.Hkv, c.D);
    } else {
      ops_.attention_forward(att, nullptr, q, k, v, B, T, T, 0, c.Hq, c.Hkv, c.D);
    }
    ops_.matmul_forward(x, att, P + o.wo, opt(o.bo), n, C, QD, true);  // x += att·Woᵀ (+ bo)
    ops_.rmsnorm_forward(ln, rstd, x, P + o.ln2, n, C, eps);
    ops_.matmul_forward(gate, ln, P + o.wg, nullptr, n, c.I, C, false);
    ops_.matmul_forward(up, ln, P + o.wu, nullptr, n, c.I, C, false);
    ops_.swiglu_forward(gate, gate, up, n * c.I);
    ops_.matmul_forward(x, gate, P + o.wd, nullptr, n, C, c.I, true);  // x += swiglu·Wdᵀ
  }
  if (cache) cache->len_ += T;
}

namespace {

int64_t infer_floats(const DecoderConfig& c, int64_t n) {
  const int64_t C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D;
  return rup(n * C) * 2 + rup(n) + rup(n * QD) * 2 + rup(n * KD) * 2 + rup(n * c.I) * 2;
}

}  // namespace

void Decoder::forward(const int32_t* ids, int64_t B, int64_t T, bool last_only, float* logits) {
  if (B < 1) bad("B", "must be >= 1");
  if (T < 1) bad("T", "must be >= 1");
  check_ids(ids, B * T, "ids");
  const int64_t n = B * T, C = cfg_.C;
  float* x = scratch(infer_floats(cfg_, n));
  ops_.embedding_forward(x, ids, params_->data() + off_embed_, n, cfg_.vocab, C);
  infer_layers(x, B, T, nullptr);
  float* ln = infer_.data() + rup(n * C);
  float* rstd = ln + rup(n * C);
  const float* w = params_->data() + off_norm_;
  if (!last_only) {
    ops_.rmsnorm_forward(ln, rstd, x, w, n, C, float(cfg_.eps));
    lm_head_rows(ln, n, logits);
    return;
  }
  for (int64_t b = 0; b < B; ++b)  // the last row of each sequence, gathered (B, C)
    std::memcpy(ln + b * C, x + (b * T + T - 1) * C, size_t(C) * sizeof(float));
  ops_.rmsnorm_forward(ln, rstd, ln, w, B, C, float(cfg_.eps));
  lm_head_rows(ln, B, logits);
}

void Decoder::prefill(KvCache& cache, const int32_t* ids, int64_t B, int64_t T, float* logits) {
  if (cache.L_ != cfg_.L || cache.row_ != cfg_.Hkv * cfg_.D) bad("cache", "was made for a model of another shape");
  if (B != cache.B_)
    bad("B", "must equal the cache's batch size " + std::to_string(cache.B_) + ", got " + std::to_string(B));
  if (T < 1) bad("T", "must be >= 1");
  if (cache.len_ + T > cache.Tmax_)
    bad("cache", "holds " + std::to_string(cache.len_) + " of " + std::to_string(cache.Tmax_) +
                     " positions: no room for " + std::to_string(T) + " more");
  check_ids(ids, B * T, T == 1 ? "tokens" : "ids");
  const int64_t n = B * T, C = cfg_.C;
  float* x = scratch(infer_floats(cfg_, n));
  ops_.embedding_forward(x, ids, params_->data() + off_embed_, n, cfg_.vocab, C);
  infer_layers(x, B, T, &cache);
  float* ln = infer_.data() + rup(n * C);
  float* rstd = ln + rup(n * C);
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(ln + b * C, x + (b * T + T - 1) * C, size_t(C) * sizeof(float));
  ops_.rmsnorm_forward(ln, rstd, ln, params_->data() + off_norm_, B, C, float(cfg_.eps));
  lm_head_rows(ln, B, logits);
}

}  // namespace rift
