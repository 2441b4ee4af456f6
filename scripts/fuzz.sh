#!/usr/bin/env bash
# Fuzzes the parsers that turn untrusted input into sizes — safetensors headers and config.json (parseConfig, the
# engine's model size and memory estimate, KV cache sizes) — against the ASan + UBSan build (build-asan/), outside CI.
#   scripts/fuzz.sh [N=1000000] [SEED] [all|safetensors|config]
# N inputs per parser (CI runs a short slice of the same tests in jest: test/safetensors.test.ts, test/sizes.test.ts).
# RIFT_MEMORY_LIMIT (default 4 MB here) makes the engine refuse every model or cache above it, so every engine
# call is made and none allocates much. A crash, an ASan/UBSan report or a broken invariant fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
SEED="${2:-$RANDOM$RANDOM}"
case "${3:-all}" in
  all) tests=(test/safetensors.test.ts test/sizes.test.ts) ;;
  safetensors) tests=(test/safetensors.test.ts) ;;
  config) tests=(test/sizes.test.ts) ;;
  *) echo "fuzz.sh: the third argument must be all, safetensors or config" >&2; exit 2 ;;
esac
node scripts/build-native.js --asan
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
start=$(date +%s)
set +e
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  RIFT_ADDON="$PWD/build-asan/Release/rift.node" RIFT_FUZZ_N="$N" RIFT_FUZZ_SEED="$SEED" RIFT_MEMORY_LIMIT="${RIFT_MEMORY_LIMIT:-4000000}" \
  npx jest --ci -i --testTimeout=86400000 "${tests[@]}" -t '^fuzz: '
rc=$?
set -e
echo "fuzz (${3:-all}): N=$N per parser, seed $SEED, exit status $rc, $(( $(date +%s) - start )) s"
exit $rc
