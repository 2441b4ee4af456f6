// A portable SIMD register type for the register-blocked CPU kernels (gemm, attention): GCC/Clang vector
// extensions — 512-bit with AVX-512, 256-bit with AVX, 128-bit otherwise (SSE, NEON) — so every target builds
// from the same plain C++ (no intrinsics); a struct of floats elsewhere. Arithmetic: a += vsplat(s) * b.
#pragma once
#include <cstring>

namespace rift::cpu {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

#if defined(__GNUC__) || defined(__clang__)
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
inline vf vsplat(float s) { return vf{} + s; }
#else
struct vf {
  float s[kLanes];
};
inline vf vsplat(float s) {
  vf x;
  for (int i = 0; i < kLanes; ++i) x.s[i] = s;
  return x;
}
inline vf operator*(vf a, vf b) {
  for (int i = 0; i < kLanes; ++i) a.s[i] *= b.s[i];
  return a;
}
inline vf& operator+=(vf& a, vf b) {
  for (int i = 0; i < kLanes; ++i) a.s[i] += b.s[i];
  return a;
}
#endif

inline vf vzero() { return vsplat(0.f); }
// Unaligned load / store (memcpy compiles to one vector move).
inline vf vload(const float* p) {
  vf x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
inline void vstore(float* p, vf x) { std::memcpy(p, &x, sizeof x); }

}  // namespace rift::cpu
