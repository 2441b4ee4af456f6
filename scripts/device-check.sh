#!/usr/bin/env bash
# Every GPU check, as one script for a machine with an NVIDIA GPU (Hopper or newer for the numbers in README).
# Prepare on a build machine (nvcc needed for the CUDA kernels; the GPU machine may lack Node):
#   npm install && npx tsc -p tsconfig.json
# then, on the GPU machine, from the project root:
#   bash scripts/device-check.sh        ($OUT/summary.txt + $OUT/results.tgz with every log and JSON)
#
# Order: a preflight (node, the addon, a CUDA device, cuBLAS, torch, a tiny training step on cuda; stops at once
# when the addon sees no usable GPU or that step fails), then phase A — the correctness checks, run concurrently
# (they time nothing) — then phase B — the timed benchmarks, one after another on an otherwise idle GPU. Every step is bounded by its own cap, clamped to what is
# left of BUDGET_S (default 540 s); a step that would get under 20 s is skipped and named in the last line.
#
# Phase A (PAR_STEPS, default "cudajest hfparity memcheck"):
#   cudajest   the jest files with CUDA variants or CUDA paths ($CUDA_TESTS below), with CUDA present
#   opsjest    the whole jest suite with CUDA present (not by default: the rest is CPU-only, as in CI)
#   hfparity   scripts/hf_parity.py (torch fp32, TF32 off) for the tiny and qwen2.5-1.5b shapes, then
#              dist/bench/gpu-parity.js on each (engine fp32 on cuda; tiny on cpu too): logits rows, loss, token
#              log-probs and every gradient vs HF; writes parity-<gpu>-<date>.json
#   memcheck   compute-sanitizer memcheck on scripts/cuda-train-step.js (2 training steps, DPO, KV decode, bf16
#              and fp32), then the same pass with RIFT_CUDA_SYNC=1 (a check after every kernel and cuBLAS call)
# Phase B (SEQ_STEPS, default "engine hfbench bench torchloss kernels profile memcheckops"):
#   engine      dist/bench/run.js --only engine-cuda: Qwen2.5-1.5B shape, T=4096 bf16 train step, MFU, per-part
#               timings, the same step with bf16Direct: false (store-then-widen bf16 activations) for the
#               direct path's saving, KV-cache sampling, RIFT vs DPO-held device memory
#   hfbench     scripts/hf_train_bench.py: HF transformers eager and sdpa at the same shape and numerics
#   bench       dist/bench/run.js --only cuda: the fused loss kernels at 8192×151936 bf16 through the API
#   torchloss   scripts/torch_loss_bench.py: PyTorch cross-entropy (eager, compiled) on the same problem
#   kernels     Nsight Compute: each loss kernel's own duration (kernel alone, no API or sync overhead)
#   memcheckops compute-sanitizer memcheck on test/cuda.test.ts
#   selftest    (not by default) scripts/build-cuda-selftest.sh for this GPU's architecture (RIFT_CUDA_ARCH, default
#               from nvidia-smi), then build/selftest/rift-cuda-selftest: every OpsBackend method of both CUDA instances
#               vs the CPU twin on fixed random inputs, FAIL lines and the count in the log (exit 0 pass, 1 mismatch,
#               2 no device). A prebuilt binary is reused when its sources are unchanged. Needs nvcc on the GPU machine
#               unless built beforehand. Run only it: PAR_STEPS="" SEQ_STEPS="selftest" bash scripts/device-check.sh
#   memcheckself (not by default) compute-sanitizer memcheck on the self-test binary (built by selftest; both may
#               be named: SEQ_STEPS="selftest memcheckself")
#   profile     where the time goes: scripts/cuda-profile.js wall-clock parts at the 1.5B layer shape (also with
#               RIFT_CUDA_WEIGHT_COPY=0), then Nsight Compute over one training step and over 8 decode steps,
#               summed per kernel
#   parity      scripts/make_parity_fixture.py: regenerates the checked-in tiny HF fixtures (not by default)
#   nccl        scripts/nccl-check.js (not by default): data-parallel training over NCCL in a world of one rank —
#               ZeRO-0 and ZeRO-1 equal the model's own step bit for bit (fp32, bf16), a ZeRO-1 resume is exact.
#               NCCL: $RIFT_NCCL_LIB, else the system's libnccl.so.2, else the one in PyTorch's wheels (nvidia.nccl).
#               Run only it: PAR_STEPS="" SEQ_STEPS="nccl" bash scripts/device-check.sh
#   flash       scripts/cuda-flash-check.js (not by default): the fused tensor-core attention vs its CPU twin and the
#               chunked-GEMM path (errors), the engine hook and its fallback, both paths timed at T=4096 (flash-check.json);
#               then test/ops-attention-flash.test.ts with its CUDA variants
# Exit status: 0 all ran and passed, 1 a step failed or timed out, 2 none failed but some were skipped,
# 3 the preflight failed (no usable GPU, or the tiny step failed; PREFLIGHT=0 goes on regardless: a dry run of the
# script on a CPU machine). HF_DIR (default /tmp/rift-hf, ~13 GB) is removed at the end unless KEEP_HF=1.
set -uo pipefail
OUT=${OUT:-/tmp/rift-out}
W=${WORK_DIR:-/tmp/rift-device-check}   # every log and JSON; packed into $OUT/results.tgz after each step
rm -rf "$W"; mkdir -p "$OUT" "$W"
[[ -f .device/env.sh ]] && source .device/env.sh   # a packed Node + addon for a GPU host without Node, when present
export RIFT_ADDON=${RIFT_ADDON:-$PWD/build/Release/rift.node}
par_steps=${PAR_STEPS-"cudajest hfparity memcheck"}
seq_steps=${SEQ_STEPS-"engine hfbench bench torchloss kernels profile memcheckops"}
budget=${BUDGET_S:-540}
hf=${HF_DIR:-/tmp/rift-hf}
start=$SECONDS
S="$W/summary.txt"
: > "$S"

pack() {  # the results so far, where they come back even if the caller is stopped
  cp "$S" "$OUT/summary.txt"
  tar -czf "$OUT/.results.$BASHPID" -C "$W" . 2>/dev/null && mv "$OUT/.results.$BASHPID" "$OUT/results.tgz"
}
note() { echo "$*" | tee -a "$S"; }

run() {  # name cap_seconds command...   (log: $W/<name>.log; the cap is clamped to the budget left)
  local name=$1 secs=$2; shift 2
  local left=$((budget - (SECONDS - start)))
  if (( left < 20 )); then note "== $name: SKIPPED (budget of ${budget} s spent)"; pack; return 1; fi
  (( secs > left )) && secs=$left
  local t0=$SECONDS
  timeout -k 10 "$secs" "$@" > "$W/$name.log" 2>&1
  local rc=$? verdict=ok
  (( rc == 124 || rc == 137 )) && verdict="TIMEOUT after ${secs} s"
  (( rc != 0 && rc != 124 && rc != 137 )) && verdict=FAIL
  note "== $name: rc=$rc $verdict in $((SECONDS - t0)) s (cap ${secs} s, at $((SECONDS - start)) s)"
  if (( rc == 0 )); then tail -n 4 "$W/$name.log"; else tail -n 30 "$W/$name.log"; fi
  pack
  return $rc
}

# ---- preflight ---------------------------------------------------------------------------------------------
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  echo "node: $(node --version 2>&1)"
  node -e "const r=require(process.env.RIFT_ADDON); const {Model}=require('./dist/lib/engine/model.js');
    console.log(JSON.stringify({build:r.buildInfo, devices:r.cuda&&r.cuda.devices(), modelDevices:Model.devices()}))" 2>&1
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" 2>&1
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
} > "$W/gpu.txt" 2>&1
cat "$W/gpu.txt"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
echo "compute-sanitizer: ${sanitizer:-none}; ncu: ${ncu:-none}" | tee -a "$W/gpu.txt"
if [[ ${PREFLIGHT:-1} != 0 ]] && ! node -e "const {Model}=require('./dist/lib/engine/model.js'); process.exit(Model.devices().includes('cuda')?0:1)" 2>/dev/null; then
  note "== preflight: FAIL: the addon sees no usable CUDA device (GPU + cuBLAS); see gpu.txt"
  pack; exit 3
fi
if [[ ${PREFLIGHT:-1} != 0 ]] && ! timeout 60 node scripts/cuda-train-step.js --device cuda > "$W/preflight-step.log" 2>&1; then
  note "== preflight: FAIL: a tiny training step on cuda failed; see preflight-step.log"
  tail -n 20 "$W/preflight-step.log"; pack; exit 3
fi
note "== preflight: ok at $((SECONDS - start)) s"
pack

# The test files with CUDA variants or CUDA paths (the rest is CPU-only and runs in CI).
CUDA_TESTS="test/cuda.test.ts test/ops.test.ts test/ops-bf16-storage.test.ts test/ops-attention-bf16.test.ts
  test/model.test.ts test/model-device.test.ts test/model-dispose.test.ts test/engine-errors.test.ts
  test/gpu-parity.test.ts test/device-pointer.test.ts test/sampler.test.ts test/async-ownership.test.ts
  test/native-args.test.ts test/loss.test.ts test/loss-edges.test.ts test/decoder-bf16-direct.test.ts"

# ---- steps -------------------------------------------------------------------------------------------------
step() {
  case $1 in
    opsjest) run opsjest 200 node node_modules/jest/bin/jest.js --ci -i ;;
    cudajest) run cudajest 200 node node_modules/jest/bin/jest.js --ci -i $CUDA_TESTS ;;
    jest) run jest 150 node node_modules/jest/bin/jest.js --ci -i ${JEST_ARGS:-test/cuda.test.ts} ;;
    hfparity)
      if run hfparity-py-tiny 90 python3 scripts/hf_parity.py --shape tiny --out "$hf/tiny"; then
        run hfparity-node-tiny-cuda 60 node dist/bench/gpu-parity.js "$hf/tiny" --device cuda
        run hfparity-node-tiny-cpu 60 node dist/bench/gpu-parity.js "$hf/tiny" --device cpu
      fi
      if run hfparity-py-1.5b 200 python3 scripts/hf_parity.py --shape qwen2.5-1.5b --out "$hf/qwen2.5-1.5b"; then
        run hfparity-node-1.5b 200 node dist/bench/gpu-parity.js "$hf/qwen2.5-1.5b" --device cuda
      fi
      cp bench/results/parity-*.json "$W/" 2>/dev/null
      for d in "$hf"/*/; do [[ -f $d/ref.json ]] && cp "$d/ref.json" "$W/hf-ref-$(basename "$d").json"; done
      pack ;;
    memcheck)
      if [[ -z $sanitizer ]]; then note "== memcheck: FAIL (compute-sanitizer not found)"
      else run memcheck 180 "$sanitizer" --tool memcheck --leak-check no --print-limit 20 --error-exitcode 99 \
             node scripts/cuda-train-step.js --device cuda
      fi
      RIFT_CUDA_SYNC=1 run syncstep 60 node scripts/cuda-train-step.js --device cuda ;;
    memcheckops)
      if [[ -z $sanitizer ]]; then note "== memcheckops: FAIL (compute-sanitizer not found)"
      else run memcheckops 90 "$sanitizer" --tool memcheck --leak-check no --print-limit 20 --error-exitcode 99 \
             node node_modules/jest/bin/jest.js --ci -i test/cuda.test.ts
      fi ;;
    engine)
      local model_dir=()
      [[ -f $hf/qwen2.5-1.5b/model/config.json ]] && model_dir=(--model-dir "$hf/qwen2.5-1.5b/model")
      run engine 200 node dist/bench/run.js --only engine-cuda ${model_dir[@]+"${model_dir[@]}"}
      cp bench/results/engine-gpu-*.json "$W/" 2>/dev/null; pack ;;
    hfbench) run hfbench 180 python3 scripts/hf_train_bench.py --out "$W/hf-train.json" ;;
    bench) run bench 100 node dist/bench/run.js --only cuda
           cp "$(ls -t bench/results/gpu-*.json 2>/dev/null | head -n 1)" "$W/" 2>/dev/null; pack ;;
    torchloss) run torchloss 120 python3 scripts/torch_loss_bench.py --out "$W/torch-loss.json" ;;
    kernels)
      if [[ -z $ncu ]]; then note "== kernels: FAIL (ncu not found)"
      else run kernels 90 "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$W/ncu-kernels.csv" \
             node dist/bench/run.js --only cuda --iterations 3
      fi ;;
    profile)  # wall-clock parts, then Nsight Compute on one training step and on 8 decode steps (4 of 28 layers)
      run profile-wall 120 node scripts/cuda-profile.js --layers 4
      RIFT_CUDA_WEIGHT_COPY=0 run profile-wall-nocopy 90 node scripts/cuda-profile.js --layers 4 --phase train
      if [[ -z $ncu ]]; then note "== profile-ncu: FAIL (ncu not found)"
      else
        for ph in train decode; do
          run profile-ncu-$ph 150 "$ncu" --clock-control none --profile-from-start off --metrics gpu__time_duration.sum \
            --csv --log-file "$W/ncu-$ph.csv" node scripts/cuda-profile.js --phase $ph --layers 4 \
            && node scripts/ncu-summary.js "$W/ncu-$ph.csv" --top 30 > "$W/ncu-$ph-summary.md" && cat "$W/ncu-$ph-summary.md"
        done
        pack
      fi ;;
    nccl)
      local nccl=${RIFT_NCCL_LIB:-}
      if [[ -z $nccl ]] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
        nccl=$(timeout 30 python3 -c 'import glob, os, nvidia.nccl as n; print(glob.glob(os.path.join(list(n.__path__)[0], "lib", "libnccl.so.2"))[0])' 2>/dev/null \
          || timeout 30 python3 -c 'import glob, os, torch; print(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libnccl.so*"))[0])' 2>/dev/null)
      fi
      RIFT_NCCL_LIB=$nccl run nccl 120 node scripts/nccl-check.js ;;
    flash) run flash 240 node scripts/cuda-flash-check.js --out "$W/flash-check.json"
           run flashjest 120 node node_modules/jest/bin/jest.js --ci -i test/ops-attention-flash.test.ts ;;
    selftest)
      local sarch=${RIFT_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '.')}
      RIFT_CUDA_ARCH=${sarch:-90} run selftest-build 300 bash scripts/build-cuda-selftest.sh \
        && run selftest 120 build/selftest/rift-cuda-selftest ;;
    memcheckself)
      if [[ -z $sanitizer ]]; then note "== memcheckself: FAIL (compute-sanitizer not found)"
      elif [[ ! -x build/selftest/rift-cuda-selftest ]]; then note "== memcheckself: FAIL (no build/selftest/rift-cuda-selftest: run the selftest step first)"
      else run memcheckself 240 "$sanitizer" --tool memcheck --leak-check no --print-limit 20 --error-exitcode 99 \
             build/selftest/rift-cuda-selftest
      fi ;;
    parity) run parity 90 python3 scripts/make_parity_fixture.py --out /tmp/parity
            tar -czf "$W/parity-fixtures.tgz" -C /tmp parity 2>/dev/null; pack ;;
    *) note "== $1: FAIL (unknown step; known: cudajest opsjest jest hfparity memcheck memcheckops engine hfbench bench torchloss kernels profile selftest memcheckself parity nccl flash)" ;;
  esac
}

pids=()
for s in $par_steps; do step "$s" & pids+=($!); done
for p in ${pids[@]+"${pids[@]}"}; do wait "$p"; done
note "== phase A done at $((SECONDS - start)) s"
for s in $seq_steps; do step "$s"; done

[[ ${KEEP_HF:-0} == 1 ]] || rm -rf "$hf"
code=0 status=PASS
if grep -q "SKIPPED" "$S"; then
  skipped=$(grep "SKIPPED" "$S" | sed 's/^== \([^:]*\):.*/\1/' | tr '\n' ' ')
  status="INCOMPLETE (skipped: $skipped)"; code=2
fi
grep -qE "FAIL|TIMEOUT" "$S" && { status="FAIL${skipped:+ (also skipped: $skipped)}"; code=1; }
note "== all: $status in $((SECONDS - start)) s"
pack
exit $code
