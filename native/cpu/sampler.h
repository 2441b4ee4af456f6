// Token sampling over rows of float32 logits, in float64 — the native twin of lib/engine/sampler.ts's
// sampleToken() (temperature, top-k with ties kept, top-p nucleus, an inverse-CDF draw over the kept tokens in id
// order). The caller supplies each row's uniform draw u in [0, 1) (its RNG lives in TypeScript), so the streams
// and their consumption are the TypeScript sampler's. Rows run in parallel (rift::parallel_for).
#pragma once
#include <cstdint>

namespace rift::cpu {

struct SampleParams {
  double temperature = 1;  // 0: greedy (argmax, lowest id on ties; u unused)
  int64_t top_k = 0;       // 0: off
  double top_p = 1;        // 1: off
};

// logits (B, V); u (B); outputs (B). logprob: log_softmax(logits)[token] at temperature 1, unfiltered;
// sampling_logprob: log q(token) under the filtered, renormalised sampling distribution (0 when greedy).
// Throws ArgError (Range, "logits") for a NaN or +Inf value or a row with no finite value, naming row and index.
void sample_rows(const float* logits, int64_t B, int64_t V, const SampleParams& p, const double* u, int32_t* token,
                 double* logprob, double* sampling_logprob);

}  // namespace rift::cpu
