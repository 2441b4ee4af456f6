// The CPU twin of the fused tensor-core attention (cuda/cuda_attention_flash*.cu, docs/design.md "Fused flash
// attention"): the same causal GQA attention as OpsBackend::attention_* (model/ops.h), computed in the kernel's tile
// order with its roundings (ops_attention_flash.cc gives them). Plain C++: the CUDA files include this header for the
// tile sizes, so the twin and the kernels cannot disagree on them.
#pragma once
#include <cstdint>
#include <string>

namespace rift::flash {

constexpr int kTileQ = 64;  // query rows per block of the forward and of the dq pass (4 warps × 16 rows)
constexpr int kTileK = 64;  // keys per tile of the forward / dq pass, and per block of the dk / dv pass
constexpr int kMmaK = 16;   // the k extent of one mma.sync.m16n8k16: products are summed in groups of 16
constexpr int kWarps = 4;   // warps per block (every kernel)

// "" when the fused kernels take head dimension D, else the reason (they are instantiated for 64 and 128).
inline std::string head_dim_unsupported(int64_t D) {
  if (D == 64 || D == 128) return "";
  return "head dimension " + std::to_string(D) + " (the fused kernels take 64 or 128)";
}

// The twin takes any D that is a positive multiple of kMmaK up to 256 (the kernel's arithmetic does not depend on
// D beyond that); "" when D is one of those, else the reason.
inline std::string twin_head_dim_unsupported(int64_t D) {
  if (D > 0 && D % kMmaK == 0 && D <= 256) return "";
  return "D = " + std::to_string(D) + " must be a positive multiple of 16, at most 256";
}

// Forward: out (B, Tq, Hq, D), lse (B, Hq, Tq) or null; q (B, Tq, Hq, D); k, v (B, Tkv, Hkv, D) with Tkv >= past + Tq.
void attention_forward_twin(float* out, float* lse, const float* q, const float* k, const float* v, int64_t B,
                            int64_t Tq, int64_t Tkv, int64_t past, int64_t Hq, int64_t Hkv, int64_t D);
// Backward (past = 0, Tq = Tkv = T): dq, dk, dv written (accumulate: added). lse from a forward (either path).
void attention_backward_twin(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                             const float* v, const float* out, const float* lse, int64_t B, int64_t T, int64_t Hq,
                             int64_t Hkv, int64_t D, bool accumulate);

}  // namespace rift::flash
