// The CUDA ops self-test: every OpsBackend method of the CUDA backend (cuda_ops(), both gemm dtypes) against the
// CPU twin (cpu_ops()) on fixed random inputs. Exit status: 0 every case passed; 1 a case failed (each is printed
// as FAIL); 2 no CUDA device or no loadable cuBLAS (the host-only checks still ran and passed). Built by
// scripts/build-cuda-selftest.sh; run on a GPU machine by scripts/device-check.sh (steps selftest, memcheckself).
#include <cstdio>
#include <exception>
#include <string>

#include "cuda/cublas_loader.h"
#include "cuda/device_mem.h"
#include "cuda/selftest/harness.h"

using namespace rift;
using namespace rift::selftest;

namespace {

int report() {
  std::printf("%d of %d cases failed\n", failures(), cases());
  return failures() ? 1 : 0;
}

}  // namespace

int main() {
  try {
    host_checks();
    if (failures()) return report();
    OpsBackend* g = cuda_ops();
    OpsBackend* gb = cuda_ops(DType::BF16);
    if (!g || !gb) {
      std::printf("no CUDA ops backend: devices=%d, cuBLAS: %s\n", cuda::device_count(),
                  cuda::cublas_available() ? "loaded" : cuda::cublas_load_error().c_str());
      std::printf("%d host-only cases passed; exit 2 (no device)\n", cases());
      return 2;
    }
    const cuda::DeviceProps p = cuda::device_props(0);
    std::printf("device: %s (sm_%d%d, %d SMs); cuBLAS: %s\n", p.name.c_str(), p.major, p.minor, p.multiprocessors,
                g->info().blas_path.c_str());
    OpsBackend& c = cpu_ops();
    OpsBackend& cb = cpu_ops(DType::BF16);
    test_memory(c, *g);
    test_gemm(c, *g);
    test_gemm_bf16(cb, *gb, *g);
    test_layers(c, *g);
    test_flat(c, *g);
    test_bf16_acts(c, *g, *gb);
    test_attention(c, *g, "fp32", 1e-5, 3e-5);
    // The bf16 attention: GEMMs on bf16 operands in chunks (cuda_attention_gemm.cu) vs the twin's loops. Both
    // round the same operands; P̃ / dS̃ near a rounding tie may land one bf16 step apart (see
    // test/ops-attention-bf16.test.ts), hence the looser bounds.
    test_attention(cb, *gb, "bf16", 5e-4, 1e-3);
    test_attention_chunks();
    cuda::synchronize();
  } catch (const ArgError& e) {
    std::printf("FAIL unexpected ArgError (%s): %s\n", e.arg.c_str(), e.message.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::printf("FAIL unexpected exception: %s\n", e.what());
    return 1;
  }
  return report();
}
