// The loss options every loss binding shares (lossAndGrad, Model.lossAndBackward): one LossSpec parser and one
// result builder.
#pragma once
#include <napi.h>

#include <vector>

#include "core/loss.h"
#include "napi/args.h"

namespace rift::napi {

// The keys parse_loss_spec reads: add them to the call's Opts with read() before any typed array is taken.
extern const std::vector<const char*> kLossSpecKeys;

// The arrays a LossSpec points into.
struct LossArrays {
  args::Span<int32_t> targets, offsets, pairs;
  args::Span<float> rewards;
  args::Span<double> ref;
  // Copies every array into native memory (an async call) and points spec at the copies. Throws std::bad_alloc.
  void own(LossSpec* spec);
};

// Parses method, negative, reduction, normalizer, beta, tokenLogps, entropy, targets (rows entries; rows_formula
// names that count in the length error: "rows", "B × T"), offsets, rewards and, for DPO, refLogps and pairs into
// spec (N = rows; V is the caller's) and arrays; spec's pointers point into arrays. Each error names its argument;
// value checks (target range, offsets order, finiteness) are run_loss's (core/loss.h).
void parse_loss_spec(const args::Opts& o, int64_t rows, const char* rows_formula, LossSpec* spec, LossArrays* arrays);

// { loss, normalizer, tokens, seqLogps: Float64Array, tokenLogps?: Float32Array, entropy?: Float32Array }
Napi::Object loss_result(Napi::Env env, const LossResult& r, const LossSpec& spec);

}  // namespace rift::napi
