#!/usr/bin/env bash
# Every CUDA check, as one script for the lent GPU machine (shared/device/README.md):
#   here:  npm install && npx tsc -p tsconfig.json && bash ../shared/device/pack.sh
#   there: bash scripts/device-check.sh        (device tool, carry [".device"]; logs land in $OUT)
# Steps are bounded with timeout so that one hang cannot eat the lease. STEPS="jest bench memcheck parity" picks.
set -uo pipefail
OUT=${OUT:-/tmp/rift-out}
mkdir -p "$OUT"
source .device/env.sh
export RIFT_ADDON=$PWD/build/Release/rift.node
steps=${STEPS:-"parity jest bench memcheck"}
jest_args=${JEST_ARGS:-test/cuda.test.ts}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
node -e "const r=require(process.env.RIFT_ADDON); console.log(JSON.stringify({build:r.buildInfo, devices:r.cuda&&r.cuda.devices()}))" | tee -a "$OUT/gpu.txt"

run() {  # name seconds command...
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  tail -n 25 "$OUT/$name.log"
}

for s in $steps; do
  case $s in
    jest) run jest 150 node node_modules/jest/bin/jest.js --ci -i $jest_args ;;
    bench) run bench 150 node dist/bench/run.js --only cuda; cp "$(ls -t bench/results/*.json | head -n 1)" "$OUT/" 2>/dev/null ;;
    memcheck) run memcheck ${MEMCHECK_S:-90} compute-sanitizer --tool memcheck --leak-check no --print-limit 20 \
                node node_modules/jest/bin/jest.js --ci -i test/cuda.test.ts ;;
    parity) run parity 120 python3 scripts/make_parity_fixture.py --out /tmp/parity
            tar -czf "$OUT/parity.tgz" -C /tmp parity 2>/dev/null ;;
  esac
done
