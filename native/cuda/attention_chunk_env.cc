// RIFT_CUDA_ATTENTION_CHUNK_BYTES: the parser of the bf16 attention's chunk budget (cuda_attention_gemm.h). Host
// code only, so the CUDA self-test checks it on machines without a GPU.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cuda/cuda_attention_gemm.h"

namespace rift::cuda {

size_t attention_chunk_bytes(const char* value, std::string* warning) {
  if (!value) return kAttentionChunkBytesDefault;
  const std::string s(value);
  const uint64_t limit = uint64_t(1) << 48;
  uint64_t x = 0;
  bool ok = !s.empty() && s.size() <= 15;
  for (char ch : s) {
    if (!ok) break;
    ok = ch >= '0' && ch <= '9';
    x = x * 10 + uint64_t(ch - '0');
  }
  ok = ok && x >= 1 && x <= limit;
  if (ok) return size_t(x);
  if (warning)
    *warning = "RIFT_CUDA_ATTENTION_CHUNK_BYTES='" + s +
               "' is not a whole number of bytes in [1, 2^48]; using the default " +
               std::to_string(kAttentionChunkBytesDefault);
  return kAttentionChunkBytesDefault;
}

size_t attention_chunk_bytes_from_env() {
  static const size_t bytes = [] {
    std::string warning;
    const size_t b = attention_chunk_bytes(std::getenv("RIFT_CUDA_ATTENTION_CHUNK_BYTES"), &warning);
    if (!warning.empty()) std::fprintf(stderr, "rift: %s\n", warning.c_str());
    return b;
  }();
  return bytes;
}

}  // namespace rift::cuda
