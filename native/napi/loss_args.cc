// The loss options parser and result builder: see loss_args.h.
#include "napi/loss_args.h"

#include <cstring>
#include <string>

namespace rift::napi {

using args::length_error;

const std::vector<const char*> kLossSpecKeys = {"method",  "negative",   "reduction", "normalizer",
                                                "beta",    "tokenLogps", "entropy",   "targets",
                                                "offsets", "rewards",    "refLogps",  "pairs"};

void parse_loss_spec(const args::Opts& o, int64_t rows, const char* rows_formula, LossSpec* spec, LossArrays* a) {
  Napi::Env env = o.env();
  LossSpec& s = *spec;
  s.N = rows;
  s.method = Method(o.integer("method", 0, 5));
  s.neg = NegForm(o.integer_or("negative", 0, 0, 1));
  s.reduction = Reduction(o.integer_or("reduction", 0, 0, 2));
  s.normalizer = o.number("normalizer", 0);
  if (s.normalizer < 0) throw_range(env, "normalizer", "must be > 0 (or 0: derived from the batch)");
  s.beta = o.number("beta", 0.1);
  s.want_token_logp = o.boolean("tokenLogps");
  s.want_entropy = o.boolean("entropy");

  a->targets = o.typed<int32_t>("targets");
  if (a->targets.length != rows) length_error(env, "targets", rows_formula, rows, a->targets.length);
  a->offsets = o.typed<int32_t>("offsets");
  if (a->offsets.length < 1) throw_range(env, "offsets", "must hold S + 1 entries (at least one)");
  s.S = a->offsets.length - 1;
  a->rewards = o.typed<float>("rewards", true);
  if (a->rewards.present && a->rewards.length != s.S)
    length_error(env, "rewards", "the number of sequences S", s.S, a->rewards.length);
  if (s.method == Method::DPO) {
    a->ref = o.typed<double>("refLogps");
    if (a->ref.length != s.S) length_error(env, "refLogps", "the number of sequences S", s.S, a->ref.length);
    a->pairs = o.typed<int32_t>("pairs");
    if (a->pairs.length % 2) throw_range(env, "pairs", "length must be even (chosen, rejected)");
    s.P = a->pairs.length / 2;
  }
  s.targets = a->targets.data;
  s.offsets = a->offsets.data;
  s.rewards = a->rewards.present ? a->rewards.data : nullptr;
  s.ref_logp = a->ref.data;
  s.pairs = a->pairs.data;
}

void LossArrays::own(LossSpec* s) {
  targets.own();
  offsets.own();
  pairs.own();
  rewards.own();
  ref.own();
  s->targets = targets.data;
  s->offsets = offsets.data;
  s->pairs = pairs.data;
  s->rewards = rewards.present ? rewards.data : nullptr;
  s->ref_logp = ref.data;
}

Napi::Object loss_result(Napi::Env env, const LossResult& r, const LossSpec& spec) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", r.loss);
  out.Set("normalizer", r.normalizer);
  out.Set("tokens", double(r.tokens));
  auto seq = Napi::Float64Array::New(env, r.seq_logp.size());
  if (!r.seq_logp.empty()) std::memcpy(seq.Data(), r.seq_logp.data(), r.seq_logp.size() * sizeof(double));
  out.Set("seqLogps", seq);
  auto f32 = [&](const std::vector<float>& v) {
    auto arr = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(arr.Data(), v.data(), v.size() * sizeof(float));
    return arr;
  };
  if (spec.want_token_logp) out.Set("tokenLogps", f32(r.token_logp));
  if (spec.want_entropy) out.Set("entropy", f32(r.entropy));
  return out;
}

}  // namespace rift::napi
