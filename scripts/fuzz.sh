#!/usr/bin/env bash
# Fuzzes the parsers that turn untrusted input into sizes — safetensors headers and config.json (parseConfig, the
# engine's model size and memory estimate, KV cache sizes) — against the ASan + UBSan build (build-asan/), outside CI.
#   scripts/fuzz.sh [N=1000000] [SEED]     N inputs per parser (CI runs a short slice of the same tests in jest)
# RIFT_MEMORY_LIMIT (default 4 MB here) makes the engine refuse every model or cache above it, so every engine
# call is made and none allocates much. A crash, an ASan/UBSan report or a broken invariant fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
SEED="${2:-$RANDOM$RANDOM}"
node scripts/build-native.js --asan
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
start=$(date +%s)
set +e
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  RIFT_ADDON="$PWD/build-asan/Release/rift.node" RIFT_FUZZ_N="$N" RIFT_FUZZ_SEED="$SEED" RIFT_MEMORY_LIMIT="${RIFT_MEMORY_LIMIT:-4000000}" \
  npx jest --ci -i --testTimeout=0 test/safetensors.test.ts test/sizes.test.ts -t '^fuzz: '
rc=$?
set -e
echo "fuzz: N=$N per parser, seed $SEED, exit status $rc, $(( $(date +%s) - start )) s"
exit $rc
