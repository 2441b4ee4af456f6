// Decoder training: the forward that saves activations, the backward through every layer, gradient
// accumulation, the gradient norm and the AdamW step over the flat buffers (decoder.h).
#include <cmath>
#include <stdexcept>
#include <string>

#include "model/decoder_internal.h"

namespace rift {
namespace {

[[noreturn]] void bad(const std::string& arg, const std::string& msg) {
  throw ArgError{ArgError::Range, arg, arg + ": " + msg};
}

}  // namespace

void Decoder::ensure_acts(int64_t B, int64_t T) {
  const int64_t N = B * T;
  if (!acts_) acts_ = std::make_unique<Acts>();
  Acts& a = *acts_;
  using Mode = Acts::Mode;
  const Mode mode = recompute_ ? Mode::Recompute : act_dtype_ == DType::BF16 ? Mode::Bf16 : Mode::Full;
  // The direct bf16 path (decoder_bf16.cc) never writes ln1, ln2 and h in fp32: the shared set leaves them out.
  const bool direct = mode == Mode::Bf16 && direct_bf16();
  auto shared_fp32 = [&](int i) { return !direct || Acts::kWidened[i]; };
  if (N > a.cap || a.mode != mode || a.direct != direct) {
    const DecoderConfig& c = cfg_;
    const int64_t C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D, I = c.I;
    // Per layer: res, then (Full: all; Recompute: none; Bf16: rstd1, rstd2, lse + the bf16 copies) of its own; the
    // fp32 big tensors once per layer (Full) or once in all (Recompute, Bf16). See Decoder::Acts. Checked (k): the
    // sizes come from the caller's B × T and the config.
    SizeCalc k;
    const int64_t small = k.add(k.mul(k.r16(N), 2), k.r16(k.mul(N, c.Hq)));
    int64_t big = 0, z = 0;
    for (int i = 0; i < 10; ++i) {
      const int64_t n = k.mul(N, Acts::big_width(c, i));
      if (shared_fp32(i)) big = k.add(big, k.r16(n));
      z = k.add(z, k.r16(k.add(n, 1) / 2));  // bf16 values, two per float slot
    }
    const int64_t own = mode == Mode::Full ? k.add(small, big) : mode == Mode::Bf16 ? k.add(small, z) : 0;
    const int64_t shared = mode == Mode::Full ? 0 : mode == Mode::Bf16 ? big : k.add(small, big);
    const int64_t tail = k.add(k.mul(k.r16(k.mul(N, C)), 2), k.r16(N));
    int64_t bwd = 0;
    for (const int64_t width : {C, QD, KD, I}) bwd = k.add(bwd, k.mul(k.r16(k.mul(N, width)), 2));
    const int64_t floats = k.add(k.add(k.mul(c.L, k.add(k.r16(k.mul(N, C)), own)), shared), k.add(tail, bwd));
    checked_token_floats(k, floats, N, ops_.space(), "the training activations");
    a.buf = OpsBuffer();  // free the old one first
    a.buf = OpsBuffer(ops_, MemCategory::Activations, size_t(floats));
    float* p = a.buf.data();
    auto take = [&](int64_t n) {
      float* r = p;
      p += round16(n);
      return r;
    };
    a.layer.assign(size_t(c.L), Acts::Layer{});
    for (Acts::Layer& l : a.layer) l.res = take(N * C);
    auto take_small = [&](Acts::Layer& l) {
      l.rstd1 = take(N);
      l.rstd2 = take(N);
      l.lse = take(N * c.Hq);
    };
    auto take_big = [&](Acts::Layer& l) {
      for (int i = 0; i < 10; ++i) l.*Acts::kBig[i] = shared_fp32(i) ? take(N * Acts::big_width(c, i)) : nullptr;
    };
    if (mode == Mode::Full) {
      for (Acts::Layer& l : a.layer) {
        take_small(l);
        take_big(l);
      }
    } else {
      Acts::Layer one;
      if (mode == Mode::Recompute) take_small(one);
      take_big(one);
      for (Acts::Layer& l : a.layer) {
        if (mode == Mode::Bf16) {
          take_small(l);
          for (int i = 0; i < 10; ++i) l.z[i] = reinterpret_cast<uint16_t*>(take((N * Acts::big_width(c, i) + 1) / 2));
        } else {
          l.rstd1 = one.rstd1, l.rstd2 = one.rstd2, l.lse = one.lse;
        }
        for (int i = 0; i < 10; ++i) l.*Acts::kBig[i] = one.*Acts::kBig[i];
      }
    }
    a.res_out = take(N * C);
    a.lnf = take(N * C);
    a.rstdf = take(N);
    a.dres = take(N * C);
    a.dln = take(N * C);
    a.dq = take(N * QD);
    a.datt = take(N * QD);
    a.dk = take(N * KD);
    a.dv = take(N * KD);
    a.dI1 = take(N * I);
    a.dI2 = take(N * I);
    a.cap = N;
    a.mode = mode;
    a.direct = direct;
  }
  stage_positions(B, T, 0);
}

// Layer l's forward from a.layer[l].res, saving what its backward needs; the layer's output (the next residual)
// goes to out, or is not computed when out is null (a recompute before the backward needs only the saved tensors).
void Decoder::layer_forward(int64_t l, int64_t B, int64_t T, float* out) {
  const DecoderConfig& c = cfg_;
  const int64_t N = B * T, C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D, I = c.I;
  const float eps = float(c.eps), theta = float(c.theta);
  const float* P = params_->data();
  auto opt = [&](int64_t off) { return off < 0 ? nullptr : P + off; };
  const LayerOffsets& o = layers_[size_t(l)];
  Acts::Layer& s = acts_->layer[size_t(l)];
  ops_.rmsnorm_forward(s.ln1, s.rstd1, s.res, P + o.ln1, N, C, eps);
  ops_.matmul_forward(s.q, s.ln1, P + o.wq, opt(o.bq), N, QD, C, false);
  ops_.matmul_forward(s.k, s.ln1, P + o.wk, opt(o.bk), N, KD, C, false);
  ops_.matmul_forward(s.v, s.ln1, P + o.wv, opt(o.bv), N, KD, C, false);
  ops_.rope_forward(s.q, s.q, pos_ptr_, N, c.Hq, c.D, theta);
  ops_.rope_forward(s.k, s.k, pos_ptr_, N, c.Hkv, c.D, theta);
  ops_.attention_forward(s.att, s.lse, s.q, s.k, s.v, B, T, T, 0, c.Hq, c.Hkv, c.D, nullptr);
  ops_.matmul_forward(s.xmid, s.att, P + o.wo, opt(o.bo), N, C, QD, false);
  ops_.add(s.xmid, s.xmid, s.res, N * C);  // residual
  ops_.rmsnorm_forward(s.ln2, s.rstd2, s.xmid, P + o.ln2, N, C, eps);
  ops_.matmul_forward(s.gate, s.ln2, P + o.wg, nullptr, N, I, C, false);
  ops_.matmul_forward(s.up, s.ln2, P + o.wu, nullptr, N, I, C, false);
  ops_.swiglu_forward(s.h, s.gate, s.up, N * I);
  if (!out) return;
  ops_.matmul_forward(out, s.h, P + o.wd, nullptr, N, C, I, false);
  ops_.add(out, out, s.xmid, N * C);  // residual
}

void Decoder::train_forward(const int32_t* ids, int64_t B, int64_t T) {
  const DecoderConfig& c = cfg_;
  const int64_t N = B * T;
  const float* P = params_->data();
  Acts& a = *acts_;
  ops_.embedding_forward(a.layer[0].res, ids, P + off_embed_, N, c.vocab, c.C);
  for (int64_t l = 0; l < c.L; ++l) {
    float* out = l + 1 < c.L ? a.layer[size_t(l + 1)].res : a.res_out;
    if (a.direct) {
      layer_forward_bf16(l, B, T, out);  // writes the bf16 copies itself
      continue;
    }
    layer_forward(l, B, T, out);
    if (a.mode == Acts::Mode::Bf16) move_bf16(l, N, true);
  }
  ops_.rmsnorm_forward(a.lnf, a.rstdf, a.res_out, P + off_norm_, N, c.C, float(c.eps));
}

// Starts from a.dln = ∂loss/∂lnf (written by the lm_head pass); ADDS every parameter gradient.
void Decoder::train_backward(const int32_t* ids, int64_t B, int64_t T) {
  const DecoderConfig& c = cfg_;
  const int64_t N = B * T, C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D, I = c.I;
  const float theta = float(c.theta);
  const float* P = params_->data();
  float* G = grads_->data();
  auto opt = [](float* base, int64_t off) { return off < 0 ? nullptr : base + off; };
  Acts& a = *acts_;
  // Direct bf16 path: the linear layers' dweight GEMMs read the saved inputs (ln1, att, ln2, h) as bf16, and only
  // the tensors other ops read are widened (Acts::kWidened). Otherwise every input is fp32.
  // big: the saved input's index in Acts::kBig / z.
  auto linear_backward = [&](float* dinp, float* dw, float* db, const float* dout, const Acts::Layer& s, int big,
                             int64_t w, int64_t M, int64_t N_, int64_t K, bool acc) {
    if (a.direct)
      ops_.matmul_backward_bf16(dinp, dw, db, dout, s.z[big], P + w, M, N_, K, acc);
    else
      ops_.matmul_backward(dinp, dw, db, dout, s.*Acts::kBig[big], P + w, M, N_, K, acc);
  };
  // final norm: dres = ∂/∂res_out
  ops_.rmsnorm_backward(a.dres, G + off_norm_, a.dln, a.res_out, P + off_norm_, a.rstdf, N, C, false);
  // layer l's tensors are contiguous, between its first tensor and the next layer's (the final norm after the last)
  auto layer_start = [&](int64_t l) { return l < c.L ? layers_[size_t(l)].wq : off_norm_; };
  // the final norm and (untied) lm_head: complete (a tied lm_head is the embedding, complete last)
  if (grads_ready_) grads_ready_(off_norm_, nparams_ - off_norm_);
  for (int64_t l = c.L - 1; l >= 0; --l) {
    const LayerOffsets& o = layers_[size_t(l)];
    Acts::Layer& s = a.layer[size_t(l)];
    if (a.mode == Acts::Mode::Recompute && l + 1 < c.L) layer_forward(l, B, T, nullptr);  // the last is intact
    // Bf16: every layer, the last included, runs its backward on the widened bf16 values
    if (a.mode == Acts::Mode::Bf16) move_bf16(l, N, false);
    // MLP: out = xmid + down(swiglu(gate(ln2), up(ln2)))
    linear_backward(a.dI1, G + o.wd, nullptr, a.dres, s, Acts::kH, o.wd, N, C, I, false);
    ops_.swiglu_backward(a.dI1, a.dI2, a.dI1, s.gate, s.up, N * I, false);  // dgate in place, dup
    linear_backward(a.dln, G + o.wg, nullptr, a.dI1, s, Acts::kLn2, o.wg, N, I, C, false);
    linear_backward(a.dln, G + o.wu, nullptr, a.dI2, s, Acts::kLn2, o.wu, N, I, C, true);
    ops_.rmsnorm_backward(a.dres, G + o.ln2, a.dln, s.xmid, P + o.ln2, s.rstd2, N, C, true);  // dres = ∂/∂xmid
    // attention: xmid = res + o_proj(attn(rope(q), rope(k), v))
    linear_backward(a.datt, G + o.wo, opt(G, o.bo), a.dres, s, Acts::kAtt, o.wo, N, C, QD, false);
    ops_.attention_backward(a.dq, a.dk, a.dv, a.datt, s.q, s.k, s.v, s.att, s.lse, B, T, c.Hq, c.Hkv, c.D, false);
    ops_.rope_backward(a.dq, a.dq, pos_ptr_, N, c.Hq, c.D, theta, false);
    ops_.rope_backward(a.dk, a.dk, pos_ptr_, N, c.Hkv, c.D, theta, false);
    linear_backward(a.dln, G + o.wq, opt(G, o.bq), a.dq, s, Acts::kLn1, o.wq, N, QD, C, false);
    linear_backward(a.dln, G + o.wk, opt(G, o.bk), a.dk, s, Acts::kLn1, o.wk, N, KD, C, true);
    linear_backward(a.dln, G + o.wv, opt(G, o.bv), a.dv, s, Acts::kLn1, o.wv, N, KD, C, true);
    ops_.rmsnorm_backward(a.dres, G + o.ln1, a.dln, s.res, P + o.ln1, s.rstd1, N, C, true);  // dres = ∂/∂res
    if (grads_ready_) grads_ready_(layer_start(l), layer_start(l + 1) - layer_start(l));
  }
  ops_.embedding_backward(G + off_embed_, a.dres, ids, N, c.vocab, C);
  if (grads_ready_) grads_ready_(0, layer_start(0));
}

LossResult Decoder::loss_and_backward(const TrainBatch& batch) {
  const int64_t B = batch.B, T = batch.T;
  if (B < 1) bad("B", "must be >= 1");
  if (T < 1) bad("T", "must be >= 1");
  int64_t N = 0;
  if (!mul_ok(B, T, &N) || N >= (int64_t(1) << 31)) bad("T", "B × T must be < 2^31");
  check_ids(batch.ids, B * T, "ids");
  LossSpec spec = batch.loss;
  spec.N = B * T;
  spec.V = cfg_.vocab;
  validate(spec);  // before any work: a bad argument leaves the gradients untouched
  const bool backward = batch.backward && spec.method != Method::LOGPROB;
  if (!backward) return loss_forward_only(batch.ids, B, T, spec);
  grads_buffer();
  ensure_acts(B, T);
  const int32_t* ids = stage(ids_dev_, batch.ids, B * T);  // stays valid through the backward
  train_forward(ids, B, T);
  Acts& a = *acts_;
  ops_.zero(a.dln, B * T * cfg_.C);
  LmHeadLoss head(*this, a.lnf, a.dln, B * T);
  static char token;  // run_loss's logits/grad are opaque to the LmHeadLoss backend: any non-null pointer
  LossResult r = run_loss(spec, head, &token, &token, DType::F32);
  if (r.tokens > 0) train_backward(ids, B, T);  // no target: the gradient is 0
  return r;
}

std::shared_ptr<OpsBuffer> Decoder::m_buffer() {
  if (!m_) m_ = std::make_shared<OpsBuffer>(ops_, MemCategory::Optimizer, size_t(nparams_));
  return m_;
}
std::shared_ptr<OpsBuffer> Decoder::v_buffer() {
  if (!v_) v_ = std::make_shared<OpsBuffer>(ops_, MemCategory::Optimizer, size_t(nparams_));
  return v_;
}

void Decoder::zero_grad() {
  if (grads_) ops_.zero(grads_->data(), nparams_);
}

double Decoder::grad_norm() { return grads_ ? std::sqrt(ops_.sumsq(grads_->data(), nparams_)) : 0.0; }

double Decoder::step(AdamWParams hp, double max_grad_norm) {
  if (!grads_) throw std::runtime_error("step: no gradients yet (call lossAndBackward first)");
  if (!(std::isfinite(hp.lr) && hp.lr >= 0)) bad("lr", "must be a finite number >= 0");
  if (!(hp.beta1 >= 0 && hp.beta1 < 1)) bad("beta1", "must be in [0, 1)");
  if (!(hp.beta2 >= 0 && hp.beta2 < 1)) bad("beta2", "must be in [0, 1)");
  if (!(std::isfinite(hp.eps) && hp.eps >= 0)) bad("eps", "must be a finite number >= 0");
  if (!(std::isfinite(hp.weight_decay) && hp.weight_decay >= 0)) bad("weightDecay", "must be a finite number >= 0");
  if (!(std::isfinite(max_grad_norm) && max_grad_norm >= 0))
    bad("maxGradNorm", "must be a finite number >= 0 (0: no clipping)");
  const double norm = grad_norm();
  if (!std::isfinite(norm))
    throw std::runtime_error("step: the gradient norm is " + std::to_string(norm) +
                             "; parameters left unchanged (zeroGrad() and lower the learning rate)");
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1.
  hp.grad_scale = max_grad_norm > 0 ? float(std::min(1.0, max_grad_norm / (norm + 1e-6))) : 1.f;
  m_buffer();
  v_buffer();
  hp.step = ++steps_;
  ops_.adamw(params_->data(), grads_->data(), m_->data(), v_->data(), nparams_, hp);
  return norm;
}

}  // namespace rift
