// The decoder's Bf16 activation layout (Decoder::Acts::Mode::Bf16): the saved big tensors of every layer live as
// bfloat16, and one fp32 set is shared by all layers.
//
// Two paths, the same results bit for bit (test/decoder-bf16-direct.test.ts):
// - store-then-widen (any backend): a layer's forward computes in fp32, then every big tensor is rounded into its
//   bf16 copy; the backward widens all ten back before the layer's backward.
// - direct (backends whose GEMMs round their operands to bf16, gemm_dtype BF16): the ops that feed a linear layer
//   write bf16 themselves (rmsnorm → ln1 / ln2, swiglu → h; att is rounded once, right after attention), the
//   linear layers read those bf16 values in the forward and in the backward's dweight GEMM, and the backward
//   widens only the seven tensors other ops read (Acts::kWidened). On CUDA that removes, per layer and step, the
//   fp32 writes of ln1 / ln2 / h, the separate rounding pass over all ten tensors, the rounding of each linear
//   layer's input inside every GEMM (ln1 three times, ln2 twice) and the widening of four tensors.
// The paths agree because a bf16-operand GEMM rounds its fp32 input exactly as to_bf16 does.
#include "model/decoder_internal.h"

namespace rift {

bool Decoder::direct_bf16() const {
  return bf16_direct_ && act_dtype_ == DType::BF16 && !recompute_ && ops_.info().gemm_dtype == DType::BF16;
}

// Layer l's big tensors: fp32 (shared) → its bf16 copies (store), or back (load: all ten on the store-then-widen
// path, only those other ops read on the direct path).
void Decoder::move_bf16(int64_t l, int64_t N, bool store) {
  Acts::Layer& s = acts_->layer[size_t(l)];
  const bool direct = !store && acts_->direct;
  for (int i = 0; i < 10; ++i) {
    const int64_t n = N * Acts::big_width(cfg_, i);
    if (store)
      ops_.to_bf16(s.z[i], s.*Acts::kBig[i], n);
    else if (!direct || Acts::kWidened[i])
      ops_.from_bf16(s.*Acts::kBig[i], s.z[i], n);
  }
}

// layer_forward on the direct path: the same ops and the same values, with the linear layers' inputs as bf16.
void Decoder::layer_forward_bf16(int64_t l, int64_t B, int64_t T, float* out) {
  const DecoderConfig& c = cfg_;
  const int64_t N = B * T, C = c.C, QD = c.Hq * c.D, KD = c.Hkv * c.D, I = c.I;
  const float eps = float(c.eps), theta = float(c.theta);
  const float* P = params_->data();
  auto opt = [&](int64_t off) { return off < 0 ? nullptr : P + off; };
  const LayerOffsets& o = layers_[size_t(l)];
  Acts::Layer& s = acts_->layer[size_t(l)];
  uint16_t* const* z = s.z;
  ops_.rmsnorm_forward_bf16(z[Acts::kLn1], s.rstd1, s.res, P + o.ln1, N, C, eps);
  ops_.matmul_forward_bf16(s.q, z[Acts::kLn1], P + o.wq, opt(o.bq), N, QD, C, false);
  ops_.matmul_forward_bf16(s.k, z[Acts::kLn1], P + o.wk, opt(o.bk), N, KD, C, false);
  ops_.matmul_forward_bf16(s.v, z[Acts::kLn1], P + o.wv, opt(o.bv), N, KD, C, false);
  ops_.rope_forward(s.q, s.q, pos_ptr_, N, c.Hq, c.D, theta);
  ops_.rope_forward(s.k, s.k, pos_ptr_, N, c.Hkv, c.D, theta);
  ops_.attention_forward(s.att, s.lse, s.q, s.k, s.v, B, T, T, 0, c.Hq, c.Hkv, c.D, nullptr);
  for (int i : {Acts::kQ, Acts::kK, Acts::kV, Acts::kAtt})
    ops_.to_bf16(z[i], s.*Acts::kBig[i], N * Acts::big_width(c, i));  // q k v att
  ops_.matmul_forward_bf16(s.xmid, z[Acts::kAtt], P + o.wo, opt(o.bo), N, C, QD, false);
  ops_.add(s.xmid, s.xmid, s.res, N * C);  // residual
  ops_.to_bf16(z[Acts::kXmid], s.xmid, N * C);
  ops_.rmsnorm_forward_bf16(z[Acts::kLn2], s.rstd2, s.xmid, P + o.ln2, N, C, eps);
  ops_.matmul_forward_bf16(s.gate, z[Acts::kLn2], P + o.wg, nullptr, N, I, C, false);
  ops_.matmul_forward_bf16(s.up, z[Acts::kLn2], P + o.wu, nullptr, N, I, C, false);
  ops_.to_bf16(z[Acts::kGate], s.gate, N * I);
  ops_.to_bf16(z[Acts::kUp], s.up, N * I);
  ops_.swiglu_forward_bf16(z[Acts::kH], s.gate, s.up, N * I);
  if (!out) return;
  ops_.matmul_forward_bf16(out, z[Acts::kH], P + o.wd, nullptr, N, C, I, false);
  ops_.add(out, out, s.xmid, N * C);  // residual
}

}  // namespace rift
