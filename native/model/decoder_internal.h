// Internal to native/model/decoder*.cc: the saved activations and the fused lm_head + loss row backend.
#pragma once
#include <cstdint>
#include <vector>

#include "core/checked.h"
#include "model/decoder.h"

namespace rift {

inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }  // 64-byte aligned sub-buffers

// `floats` of a buffer for N = B·T tokens, computed by k (core/checked.h). Throws ArgError (Range, "T") naming the
// tokens and `what` when k overflowed, or when a host buffer would not fit in this machine's memory.
int64_t checked_token_floats(const SizeCalc& k, int64_t floats, int64_t N, MemSpace space, const char* what);

// The training forward's saved activations for up to `cap` tokens (N = B·T), carved from ONE buffer (backend memory).
// Three layouts (Mode):
//   Full       every layer owns an fp32 set of everything below
//   Recompute  every layer owns res; the rest is ONE fp32 set shared by all layers (the backward reruns each
//              layer's forward first: Decoder::set_recompute)
//   Bf16       every layer owns res, rstd1, rstd2, lse (fp32) and a bfloat16 copy of the ten big tensors (kBig);
//              the fp32 big tensors are ONE shared set: the forward computes a layer there and stores its bf16 copy,
//              the backward widens that copy back before the layer's backward (Decoder::set_activation_dtype). On
//              the direct path (decoder_bf16.cc) the shared set holds only the seven kWidened tensors: ln1, ln2
//              and h are written and read as bf16 only, and their fp32 pointers are null
struct Decoder::Acts {
  enum class Mode { Full, Recompute, Bf16 };
  struct Layer {
    float* res;            // (N, C) the layer's input (the residual stream)
    float* ln1;            // (N, C) input_layernorm output
    float* rstd1;          // (N)
    float* q;              // (N, Hq·D) after RoPE
    float* k;              // (N, Hkv·D) after RoPE
    float* v;              // (N, Hkv·D)
    float* att;            // (N, Hq·D) attention output (before o_proj)
    float* lse;            // (B, Hq, T) attention logsumexp
    float* xmid;           // (N, C) residual after attention
    float* ln2;            // (N, C) post_attention_layernorm output
    float* rstd2;          // (N)
    float* gate;           // (N, I)
    float* up;             // (N, I)
    float* h;              // (N, I) silu(gate)·up
    uint16_t* z[10] = {};  // Bf16: the bf16 copies of kBig, in that order
  };
  // The big tensors a Bf16 layout stores as bfloat16, and their element counts per token.
  static constexpr float* Layer::*kBig[10] = {&Layer::ln1,  &Layer::q,   &Layer::k,    &Layer::v,  &Layer::att,
                                              &Layer::xmid, &Layer::ln2, &Layer::gate, &Layer::up, &Layer::h};
  // Indices into kBig / z. ln1, att, ln2 and h are read only by linear layers in the backward: with the direct bf16
  // path (decoder_bf16.cc) they are never widened back.
  static constexpr int kLn1 = 0, kQ = 1, kK = 2, kV = 3, kAtt = 4, kXmid = 5, kLn2 = 6, kGate = 7, kUp = 8, kH = 9;
  static constexpr bool kWidened[10] = {false, true, true, true, true, true, false, true, true, false};
  static int64_t big_width(const DecoderConfig& c, int i) {  // per token
    const int64_t C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D;
    const int64_t w[10] = {C, QD, KD, KD, QD, C, C, c.I, c.I, c.I};
    return w[i];
  }
  int64_t cap = 0;
  Mode mode = Mode::Full;
  bool direct = false;  // Bf16: the direct path's layout (decoder_bf16.cc): the forward and backward take it
  OpsBuffer buf;
  std::vector<Layer> layer;
  float* res_out = nullptr;  // (N, C) output of the last layer
  float* lnf = nullptr;      // (N, C) final norm output = lm_head input
  float* rstdf = nullptr;    // (N)
  // backward scratch (one set, reused by every layer)
  float *dres = nullptr, *dln = nullptr;  // (N, C) residual grad; normed-input grad (dlnf first)
  float *dq = nullptr, *datt = nullptr;   // (N, Hq·D)
  float *dk = nullptr, *dv = nullptr;     // (N, Hkv·D)
  float *dI1 = nullptr, *dI2 = nullptr;   // (N, I)
};

// The fused lm_head + loss as a RowBackend for run_loss (core/loss.h). run_loss does all the loss math
// (normalisers, per-row coefficients, S_i, DPO/RIFT-sequence weights, the loss value); its "logits" are never
// materialised: this backend walks the rows that have a target in chunks of R rows and, per chunk,
//   logits (R, V) = H_c·Wᵀ                  (LogitsChunk buffer)
//   rows_fused / rows_grad of the device     (statistics; gradient G written in place of the logits)
//   dH_c = G·W  (scattered into dH)   and   dW += Gᵀ·H_c.
// Token-level methods: one pass (rows_fused with a gradient). Sequence-level ones (RIFT-sequence with negative
// rewards, DPO): run_loss calls rows_fused without a gradient (pass A: lse_t, ℓ_t only), forms S_i and w_t,
// then rows_grad (pass B) — which recomputes each chunk's logits (one extra R×V×C gemm per chunk) and skips rows
// whose weight is 0. Recomputing beats the G = diag(w)·G₁ factorisation here: dW needs w_t while G₁ exists,
// and w_t (DPO pairs, exp(S_i)) is only known after every chunk of every sequence has been seen.
class LmHeadLoss final : public RowBackend {
 public:
  // h: (N, C) lm_head input; dh: (N, C) written (rows without a target get 0), null for no gradient.
  LmHeadLoss(Decoder& d, const float* h, float* dh, int64_t N) : d_(d), h_(h), dh_(dh), N_(N) {}
  const char* name() const override { return "lm_head"; }
  void rows_fused(RowsIO& io) override { pass(io, false); }
  void rows_grad(RowsIO& io) override { pass(io, true); }

 private:
  void pass(RowsIO& io, bool grad_pass);
  Decoder& d_;
  const float* h_;
  float* dh_;
  int64_t N_;
  // Copies rows ix[0..r) of src (C floats each) to consecutive rows of dst, or back (scatter), one copy2d per
  // run of consecutive indices.
  void move_rows(float* dst, const float* src, const int64_t* ix, int64_t r, bool scatter);
  std::vector<int64_t> idx_;
  std::vector<int32_t> tg_;
  std::vector<float> a_, b_, w_, lse_, logp_, ent_;
};

}  // namespace rift
