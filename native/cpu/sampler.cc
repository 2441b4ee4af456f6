// The native twin of sampleToken() (cpu/sampler.h; lib/engine/sampler.ts is the reference and documents the
// semantics). Every step mirrors the TypeScript in float64 and in the same order, so both pick the same tokens.
#include "cpu/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/loss.h"
#include "cpu/thread_pool.h"

namespace rift::cpu {
namespace {

// The k-th largest of a[0, n) (1-based k), by quickselect with a median-of-three pivot; reorders a.
double kth_largest(std::vector<double>& a, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  const int64_t target = k - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    const double x = a[size_t(lo)], y = a[size_t(mid)], z = a[size_t(hi)];
    const double pivot = x > y ? (y > z ? y : x > z ? z : x) : x > z ? x : y > z ? z : y;
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[size_t(i)] > pivot) ++i;
      while (a[size_t(j)] < pivot) --j;
      if (i <= j) {
        std::swap(a[size_t(i)], a[size_t(j)]);
        ++i;
        --j;
      }
    }
    if (target <= j)
      hi = j;
    else if (target >= i)
      lo = i;
    else
      return a[size_t(target)];
  }
  return a[size_t(target)];
}

struct Scratch {
  std::vector<double> prob, work;
  std::vector<int32_t> order;
  std::vector<uint8_t> keep;
};

void sample_row(const float* z, int64_t row, int64_t V, const SampleParams& p, double u, Scratch& s, int32_t& token,
                double& logprob, double& slp) {
  // row max (first index) and log-sum-exp
  double m = -INFINITY;
  int64_t argmax = -1;
  for (int64_t v = 0; v < V; ++v) {
    const float x = z[v];
    if (std::isnan(x) || x == INFINITY)
      throw ArgError{ArgError::Range, "logits",
                     "logits: row " + std::to_string(row) + ": logits[" + std::to_string(v) +
                         "] = " + (std::isnan(x) ? "NaN" : "Infinity")};
    if (x > m) {
      m = x;
      argmax = v;
    }
  }
  if (argmax < 0)
    throw ArgError{ArgError::Range, "logits", "logits: row " + std::to_string(row) + ": every value is -Infinity"};
  double sum = 0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) - m);
  const double lse = m + std::log(sum);
  if (p.temperature == 0) {
    token = int32_t(argmax);
    logprob = double(z[argmax]) - lse;
    slp = 0;
    return;
  }
  std::vector<double>& prob = s.prob;
  prob.resize(size_t(V));
  const double invT = 1 / p.temperature;
  for (int64_t v = 0; v < V; ++v) prob[size_t(v)] = std::exp((double(z[v]) - m) * invT);
  if (p.top_k > 0 && p.top_k < V) {
    s.work.assign(prob.begin(), prob.end());
    const double kth = kth_largest(s.work, V, p.top_k);
    for (int64_t v = 0; v < V; ++v)
      if (prob[size_t(v)] < kth) prob[size_t(v)] = 0;
  }
  double total = 0;
  for (int64_t v = 0; v < V; ++v) total += prob[size_t(v)];
  if (p.top_p < 1) {
    const double target = p.top_p * total;
    s.order.resize(size_t(V));
    int64_t n = 0;
    for (double t = total * 1e-2;; t = t > total * 1e-12 ? t / 16 : 0) {
      n = 0;
      double mass = 0;
      for (int64_t v = 0; v < V; ++v)
        if (prob[size_t(v)] > 0 && prob[size_t(v)] >= t) {
          s.order[size_t(n++)] = int32_t(v);
          mass += prob[size_t(v)];
        }
      if (mass >= target || t == 0) break;
    }
    std::sort(s.order.begin(), s.order.begin() + n, [&](int32_t a, int32_t b) {
      return prob[size_t(a)] != prob[size_t(b)] ? prob[size_t(a)] > prob[size_t(b)] : a < b;
    });
    s.keep.assign(size_t(V), 0);
    double before = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (before >= target) break;
      const int32_t v = s.order[size_t(i)];
      s.keep[size_t(v)] = 1;
      before += prob[size_t(v)];
    }
    total = 0;
    for (int64_t v = 0; v < V; ++v) {
      if (!s.keep[size_t(v)]) prob[size_t(v)] = 0;
      total += prob[size_t(v)];
    }
  }
  // draw: walk the kept tokens in id order
  const double x = u * total;
  double acc = 0;
  int64_t pick = -1, last = -1;
  for (int64_t v = 0; v < V; ++v) {
    if (prob[size_t(v)] == 0) continue;
    last = v;
    acc += prob[size_t(v)];
    if (x < acc) {
      pick = v;
      break;
    }
  }
  if (pick < 0) pick = last;  // u·total rounded up to total
  token = int32_t(pick);
  logprob = double(z[pick]) - lse;
  slp = std::log(prob[size_t(pick)] / total);
}

}  // namespace

void sample_rows(const float* logits, int64_t B, int64_t V, const SampleParams& p, const double* u, int32_t* token,
                 double* logprob, double* sampling_logprob) {
  parallel_for(B, [&](int64_t b0, int64_t b1) {
    Scratch s;
    for (int64_t b = b0; b < b1; ++b)
      sample_row(logits + b * V, b, V, p, u[b], s, token[b], logprob[b], sampling_logprob[b]);
  });
}

}  // namespace rift::cpu
