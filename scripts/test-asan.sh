#!/usr/bin/env bash
# Runs the native CPU suites (loss, ops, model, safetensors, sizes, data parallel) against an AddressSanitizer + UBSan build of the addon (build-asan/).
# Node itself is not instrumented, so the sanitizer runtimes are preloaded; leak checking is off (V8 noise).
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/build-native.js --asan
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  RIFT_ADDON="$PWD/build-asan/Release/rift.node" npx jest --ci -i test/loss.test.ts test/loss-edges.test.ts \
  test/ops.test.ts test/model.test.ts test/model-device.test.ts test/ops-attention-bf16.test.ts test/sampler.test.ts test/engine-errors.test.ts test/ops-bf16-storage.test.ts test/safetensors.test.ts test/checkpoint.test.ts \
  test/native-args.test.ts test/async-ownership.test.ts test/model-dispose.test.ts test/sizes.test.ts test/dist.test.ts test/decoder-bf16-direct.test.ts "$@"
