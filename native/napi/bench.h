// exports.bench: baselines for the benchmarks (bench/run.ts), not part of the library API.
//   bench.unfusedSft(logits, rows, vocab, targets, grad, vectorExp = false) → loss   (see cpu/bench_ops.h)
//   bench.copy(dst, src)   copies src.byteLength bytes on the thread pool (copy-bandwidth probe)
#pragma once
#include <napi.h>

namespace rift::napi {

void init_bench(Napi::Env env, Napi::Object exports);

}  // namespace rift::napi
