// The lm_head fused with the loss over chunks of rows (docs/design.md §2.5; design in decoder_internal.h).
#include <algorithm>
#include <cstring>

#include "model/decoder_internal.h"

namespace rift {

void LmHeadLoss::move_rows(float* dst, const float* src, const int64_t* ix, int64_t r, bool scatter) {
  const int64_t C = d_.cfg_.C;
  const size_t w = size_t(C) * sizeof(float);
  for (int64_t i = 0; i < r;) {
    int64_t j = i + 1;  // [i, j): a run of consecutive row indices
    while (j < r && ix[j] == ix[j - 1] + 1) ++j;
    const size_t bytes = size_t(j - i) * w;
    if (scatter)
      d_.ops_.copy2d(dst + ix[i] * C, bytes, src + i * C, bytes, bytes, 1);
    else
      d_.ops_.copy2d(dst + i * C, bytes, src + ix[i] * C, bytes, bytes, 1);
    i = j;
  }
}

void LmHeadLoss::pass(RowsIO& io, bool grad_pass) {
  const int64_t C = d_.cfg_.C, V = d_.cfg_.vocab;
  const bool want_grad = grad_pass || io.grad != nullptr;
  // Rows that take part: a target, and (pass B) a non-zero weight.
  idx_.clear();
  for (int64_t r = 0; r < io.N; ++r) {
    if (io.targets[r] == kIgnoreIndex) {
      if (!grad_pass) {
        io.lse[r] = io.logp[r] = 0.f;
        if (io.entropy) io.entropy[r] = 0.f;
      }
      continue;
    }
    if (grad_pass && io.weight[r] == 0.f) continue;
    idx_.push_back(r);
  }
  const int64_t active = int64_t(idx_.size());
  if (active == 0) return;
  const int64_t R = std::min(d_.chunk_rows_, active);
  // logits first, then the gathered rows at a 64-byte boundary (cuBLAS picks its fast kernels for aligned operands)
  float* logits = d_.grow(d_.chunk_, MemCategory::LogitsChunk, round16(R * V) + 2 * round16(R * C));
  // logits (R, V), the gradient G in place
  float* hbuf = logits + round16(R * V);  // (R, C) gathered lm_head inputs
  float* dbuf = hbuf + round16(R * C);    // (R, C) dH of the chunk before the scatter
  const float* W = d_.lm_head_weight();   // (V, C)
  float* dW = want_grad ? d_.lm_head_grad() : nullptr;
  for (auto* v : {&a_, &b_, &w_, &lse_, &logp_, &ent_}) v->resize(size_t(R));
  tg_.resize(size_t(R));

  for (int64_t c0 = 0; c0 < active; c0 += R) {
    const int64_t r = std::min(R, active - c0);
    const int64_t* ix = idx_.data() + c0;
    const bool contiguous = ix[r - 1] - ix[0] == r - 1;
    const float* H = h_ + ix[0] * C;
    if (!contiguous) {
      move_rows(hbuf, h_, ix, r, false);
      H = hbuf;
    }
    d_.ops_.gemm(false, true, r, V, C, 1.f, H, C, W, C, 0.f, logits, V);  // logits = H·Wᵀ

    RowsIO cio;
    cio.logits = logits;
    cio.grad = want_grad ? logits : nullptr;
    cio.dtype = DType::F32;
    cio.N = r;
    cio.V = V;
    cio.targets = tg_.data();
    cio.lse = lse_.data();
    cio.logp = logp_.data();
    for (int64_t i = 0; i < r; ++i) tg_[size_t(i)] = io.targets[ix[i]];
    if (grad_pass) {
      for (int64_t i = 0; i < r; ++i) {
        w_[size_t(i)] = io.weight[ix[i]];
        lse_[size_t(i)] = io.lse[ix[i]];
        logp_[size_t(i)] = io.logp[ix[i]];
      }
      cio.weight = w_.data();
      d_.rows_.rows_grad(cio);
    } else {
      if (want_grad)
        for (int64_t i = 0; i < r; ++i) {
          a_[size_t(i)] = io.coef_a[ix[i]];
          b_[size_t(i)] = io.coef_b[ix[i]];
        }
      cio.coef_a = a_.data();
      cio.coef_b = b_.data();
      cio.entropy = io.entropy ? ent_.data() : nullptr;
      d_.rows_.rows_fused(cio);
      for (int64_t i = 0; i < r; ++i) {
        io.lse[ix[i]] = lse_[size_t(i)];
        io.logp[ix[i]] = logp_[size_t(i)];
        if (io.entropy) io.entropy[ix[i]] = ent_[size_t(i)];
      }
      if (cio.bad_row >= 0) {  // stop before a NaN/Inf row's logits reach the gradients; run_loss throws
        io.bad_row = ix[cio.bad_row];
        return;
      }
    }
    if (!want_grad) continue;
    // dH_c = G·W (rows of dH without a target stay 0: the caller zeroed dH), dW += Gᵀ·H_c.
    float* dH = contiguous ? dh_ + ix[0] * C : dbuf;
    d_.ops_.gemm(false, false, r, C, V, 1.f, logits, V, W, C, 0.f, dH, C);
    if (!contiguous) move_rows(dh_, dbuf, ix, r, true);
    d_.ops_.gemm(true, false, V, C, r, 1.f, logits, V, H, C, 1.f, dW, C);
  }
}

}  // namespace rift
