// Host side of the fused loss: validation, normalisers, per-row weights, per-sequence sums, the loss value.
// The big N×V work is the backend's (rows_fused / rows_grad); everything here is O(N + S + P).
#include "core/loss.h"

#include <cmath>
#include <stdexcept>

namespace rift {
namespace {

[[noreturn]] void range_error(const std::string& arg, const std::string& msg) {
  throw ArgError{ArgError::Range, arg, arg + ": " + msg};
}

struct Workspace {  // reused across calls on the same thread: no per-call allocation once warm
  std::vector<float> a, b, w, lse, logp, ent;
  std::vector<double> scale, dS;
  std::vector<int64_t> count;
};
thread_local Workspace tls;

double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }

}  // namespace

void validate(const LossSpec& s) {
  if (s.N < 0) range_error("rows", "must be >= 0");
  if (s.V < 1) range_error("vocab", "must be >= 1");
  if (s.V > INT32_MAX) range_error("vocab", "must fit in int32");
  if (s.S < 0) range_error("offsets", "must hold at least one entry");
  if (s.N > 0 && !s.targets) range_error("targets", "missing");
  for (int64_t t = 0; t < s.N; ++t) {
    const int32_t y = s.targets[t];
    if (y != kIgnoreIndex && (y < 0 || y >= s.V))
      range_error("targets",
                  "targets[" + std::to_string(t) + "] = " + std::to_string(y) + " is outside [0, vocab) and not -100");
  }
  if (!s.offsets) range_error("offsets", "missing");
  if (s.offsets[0] != 0) range_error("offsets", "offsets[0] must be 0");
  for (int64_t i = 0; i < s.S; ++i)
    if (s.offsets[i + 1] < s.offsets[i]) range_error("offsets", "not non-decreasing at index " + std::to_string(i + 1));
  if (s.offsets[s.S] != s.N) range_error("offsets", "last offset must equal rows (" + std::to_string(s.N) + ")");
  if (!(std::isfinite(s.normalizer) && s.normalizer >= 0)) range_error("normalizer", "must be finite and > 0");
  if (s.method == Method::RIFT || s.method == Method::NAIVE) {
    if (s.S > 0 && !s.rewards)
      range_error("rewards", s.method == Method::RIFT ? "required for method 'rift'" : "required for method 'naive'");
    for (int64_t i = 0; i < s.S; ++i)
      if (!std::isfinite(s.rewards[i])) range_error("rewards", "rewards[" + std::to_string(i) + "] is not finite");
  }
  if (s.method == Method::DPO) {
    if (!(std::isfinite(s.beta) && s.beta > 0)) range_error("beta", "must be finite and > 0");
    if (s.S > 0 && !s.ref_logp) range_error("refLogps", "required for method 'dpo'");
    for (int64_t i = 0; i < s.S; ++i)
      if (!std::isfinite(s.ref_logp[i])) range_error("refLogps", "refLogps[" + std::to_string(i) + "] is not finite");
    if (s.P < 0 || (s.P > 0 && !s.pairs)) range_error("pairs", "missing");
    for (int64_t k = 0; k < 2 * s.P; ++k)
      if (s.pairs[k] < 0 || s.pairs[k] >= s.S)
        range_error("pairs", "pairs[" + std::to_string(k) + "] = " + std::to_string(s.pairs[k]) +
                                 " is not a sequence index in [0, " + std::to_string(s.S) + ")");
  }
}

LossResult run_loss(const LossSpec& s, RowBackend& backend, const void* logits, void* grad, DType dtype) {
  validate(s);
  if (s.method == Method::LOGPROB && grad) range_error("grad", "method 'logprob' computes no gradient");
  const int64_t N = s.N, S = s.S;
  Workspace& ws = tls;
  ws.a.assign(N, 0.f);
  ws.b.assign(N, 0.f);
  ws.lse.resize(N);
  ws.logp.resize(N);
  ws.ent.resize(s.want_entropy ? N : 0);
  ws.scale.assign(S, 0.0);
  ws.count.assign(S, 0);

  LossResult out;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t t = s.offsets[i]; t < s.offsets[i + 1]; ++t) ws.count[i] += s.targets[t] != kIgnoreIndex;
  for (int64_t i = 0; i < S; ++i) out.tokens += ws.count[i];

  // c_i: what each of sequence i's terms is multiplied by.
  const bool dpo = s.method == Method::DPO;
  if (s.reduction == Reduction::Sum) {
    out.normalizer = 1;
  } else if (dpo) {
    out.normalizer = s.normalizer > 0 ? s.normalizer : double(s.P);
  } else if (s.reduction == Reduction::TokenMean) {
    out.normalizer = s.normalizer > 0 ? s.normalizer : double(out.tokens);
  } else {
    int64_t seqs = 0;
    for (int64_t i = 0; i < S; ++i) seqs += ws.count[i] > 0;
    out.normalizer = s.normalizer > 0 ? s.normalizer : double(seqs);
  }
  const double inv = out.normalizer > 0 ? 1.0 / out.normalizer : 0.0;
  for (int64_t i = 0; i < S; ++i) {
    if (ws.count[i] == 0) continue;
    ws.scale[i] = (s.reduction == Reduction::SequenceMean && !dpo) ? inv / double(ws.count[i]) : inv;
  }

  const bool has_neg_seq = s.method == Method::RIFT && s.neg == NegForm::Sequence && [&] {
    for (int64_t i = 0; i < S; ++i)
      if (s.rewards[i] < 0) return true;
    return false;
  }();
  const bool fused = grad && (s.method == Method::SFT || s.method == Method::DFT || s.method == Method::NAIVE ||
                              (s.method == Method::RIFT && !has_neg_seq));
  if (fused) {
    for (int64_t i = 0; i < S; ++i) {
      const double c = ws.scale[i];
      double a = 0, b = 0;
      if (s.method == Method::SFT)
        a = c;
      else if (s.method == Method::DFT)
        b = c;
      else if (s.method == Method::NAIVE)
        a = s.rewards[i] * c;  // every sign: −r·c·ℓ_t
      else if (s.rewards[i] > 0)
        a = s.rewards[i] * c;
      else
        b = s.rewards[i] * c;  // r < 0, token form; r = 0 gives 0
      for (int64_t t = s.offsets[i]; t < s.offsets[i + 1]; ++t) {
        ws.a[t] = float(a);
        ws.b[t] = float(b);
      }
    }
  }

  RowsIO io;
  io.logits = logits;
  io.grad = fused ? grad : nullptr;
  io.dtype = dtype;
  io.N = N;
  io.V = s.V;
  io.targets = s.targets;
  io.coef_a = ws.a.data();
  io.coef_b = ws.b.data();
  io.lse = ws.lse.data();
  io.logp = ws.logp.data();
  io.entropy = s.want_entropy ? ws.ent.data() : nullptr;
  if (N > 0) backend.rows_fused(io);
  if (io.bad_row >= 0) range_error("logits", "row " + std::to_string(io.bad_row) + " holds NaN or Inf");

  out.seq_logp.assign(S, 0.0);
  for (int64_t i = 0; i < S; ++i)
    for (int64_t t = s.offsets[i]; t < s.offsets[i + 1]; ++t) out.seq_logp[i] += ws.logp[t];

  // The loss value, in double, from the per-row log-probs.
  double loss = 0;
  for (int64_t i = 0; i < S; ++i) {
    const double c = ws.scale[i];
    if (c == 0 || s.method == Method::LOGPROB || dpo) continue;
    const int64_t t0 = s.offsets[i], t1 = s.offsets[i + 1];
    if (s.method == Method::SFT) {
      loss -= c * out.seq_logp[i];
    } else if (s.method == Method::NAIVE) {
      loss -= double(s.rewards[i]) * c * out.seq_logp[i];  // unbounded below when r < 0 (§1.4)
    } else if (s.method == Method::DFT) {
      for (int64_t t = t0; t < t1; ++t)
        if (s.targets[t] != kIgnoreIndex) loss -= c * std::exp(double(ws.logp[t])) * ws.logp[t];
    } else {
      const double r = s.rewards[i];
      if (r > 0) {
        loss -= r * c * out.seq_logp[i];
      } else if (r < 0 && s.neg == NegForm::Sequence) {
        loss -= r * c * std::exp(out.seq_logp[i]);
      } else if (r < 0) {
        for (int64_t t = t0; t < t1; ++t)
          if (s.targets[t] != kIgnoreIndex) loss -= r * c * std::exp(double(ws.logp[t]));
      }
    }
  }

  if (dpo || has_neg_seq) {  // sequence-level weights: dL/dS_i, then w_t = -dL/dS_i (pass B)
    ws.dS.assign(S, 0.0);
    if (dpo) {
      for (int64_t k = 0; k < s.P; ++k) {
        const int32_t c = s.pairs[2 * k], j = s.pairs[2 * k + 1];
        const double x = s.beta * ((out.seq_logp[c] - s.ref_logp[c]) - (out.seq_logp[j] - s.ref_logp[j]));
        loss += inv * softplus(-x);
        const double g = s.beta * sigmoid(-x) * inv;
        ws.dS[c] -= g;
        ws.dS[j] += g;
      }
    } else {
      for (int64_t i = 0; i < S; ++i) {
        const double r = s.rewards[i], c = ws.scale[i];
        ws.dS[i] = r > 0 ? -r * c : (r < 0 ? -r * c * std::exp(out.seq_logp[i]) : 0.0);
      }
    }
    if (grad) {
      ws.w.assign(N, 0.f);
      for (int64_t i = 0; i < S; ++i)
        for (int64_t t = s.offsets[i]; t < s.offsets[i + 1]; ++t) ws.w[t] = float(-ws.dS[i]);
      io.grad = grad;
      io.weight = ws.w.data();
      backend.rows_grad(io);
    }
  }
  out.loss = loss;
  if (s.want_token_logp) out.token_logp.assign(ws.logp.begin(), ws.logp.end());
  if (s.want_entropy) out.entropy.assign(ws.ent.begin(), ws.ent.end());
  return out;
}

}  // namespace rift
