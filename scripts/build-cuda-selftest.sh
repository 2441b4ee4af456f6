#!/usr/bin/env bash
# Builds the CUDA ops self-test (native/cuda/selftest/: every OpsBackend method of the CUDA backend against the CPU
# twin on fixed random inputs) into build/selftest/rift-cuda-selftest. Needs nvcc; runs anywhere afterwards: the
# CUDA runtime is linked statically (cudart_static) and cuBLAS is loaded at run time with dlopen, as in the addon.
#   bash scripts/build-cuda-selftest.sh && build/selftest/rift-cuda-selftest; echo rc=$?
# Exit status of the program: 0 every case passed, 1 a case failed (printed as FAIL), 2 no CUDA device or no
# loadable cuBLAS (after its host-only checks passed).
# Environment: RIFT_CUDA_ARCH (default "80 90": the addon's CMake default), NVCC (default: nvcc on PATH, else
# /usr/local/cuda/bin/nvcc), JOBS (parallel compiles, default: the CPU count), SELFTEST_DIR (output folder).
# Objects are rebuilt only when older than their source or than any header under native/ (a header change rebuilds
# everything).
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[[ -x $nvcc ]] || { echo "build-cuda-selftest: nvcc not found (set NVCC)" >&2; exit 1; }
out=${SELFTEST_DIR:-build/selftest}
jobs=${JOBS:-$(nproc)}
arch=()
for a in ${RIFT_CUDA_ARCH:-80 90}; do arch+=("-gencode=arch=compute_$a,code=sm_$a"); done
mkdir -p "$out/obj"

# The addon's CUDA objects are built with --use_fast_math (CMakeLists.txt): test what ships. Host code without
# -march=native, so the binary runs on the GPU machine whatever its CPU.
common=(-std=c++17 -Inative -DRIFT_WITH_CUDA=1)
cu_flags=("${common[@]}" -O3 --use_fast_math -lineinfo "${arch[@]}")
# .cc sources are plain C++: nvcc hands them to the host compiler.
cc_flags=("${common[@]}" -O2 -Xcompiler -fopenmp-simd,-Wall,-Wextra,-Wno-unused-parameter)

# The CUDA sources of the addon (top level of native/cuda only), the CPU twin and what it needs, the registry, and
# the self-test itself. No N-API, no model, no distributed code.
sources=(native/cuda/*.cu native/cuda/*.cc native/cpu/*.cc native/core/*.cc native/backends/*.cc native/cuda/selftest/*.cc)
newest_header=$(find native -name '*.h' -o -name '*.cuh' | xargs stat -c %Y | sort -n | tail -n 1)

compile() {  # source → object (prints the object's path)
  local src=$1 obj="$out/obj/$(echo "$1" | tr '/' '_').o"
  if [[ ! -f $obj || $(stat -c %Y "$obj") -lt $(stat -c %Y "$src") || $(stat -c %Y "$obj") -lt $newest_header ]]; then
    if [[ $src == *.cu ]]; then "$nvcc" "${cu_flags[@]}" -c "$src" -o "$obj"
    else "$nvcc" "${cc_flags[@]}" -c "$src" -o "$obj"; fi
  fi
}
export -f compile
export nvcc out newest_header
export cu_flags_s="${cu_flags[*]}" cc_flags_s="${cc_flags[*]}"
# xargs runs each compile in its own bash: the flag arrays travel as strings (no flag contains a space).
printf '%s\n' "${sources[@]}" | xargs -P "$jobs" -I{} bash -c '
  cu_flags=($cu_flags_s); cc_flags=($cc_flags_s); compile "$1"' _ {}
objs=()
for s in "${sources[@]}"; do objs+=("$out/obj/$(echo "$s" | tr '/' '_').o"); done
"$nvcc" "${arch[@]}" --cudart static -o "$out/rift-cuda-selftest" "${objs[@]}" -ldl -lpthread -lrt
echo "built $out/rift-cuda-selftest"
