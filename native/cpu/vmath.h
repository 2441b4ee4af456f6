// Vectorisable scalar math for the CPU row kernels: plain loops over these inline functions compile to
// AVX2/AVX-512 (x86) or NEON (Arm) code at -O3; no intrinsics, so every target builds.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace rift {

// exp(x) for x <= 0-ish ranges used by softmax: 2^(x·log2 e) by range reduction and a degree-7 polynomial.
// Relative error < 2e-7 over [-87, 88]; inputs below -87.3 give ~1e-38 instead of 0 (harmless after scaling).
inline float vexp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);  // NaN passes through and makes the result NaN
  const float t = x * 1.44269504088896341f;
  // Round t to an integer with the 1.5·2^23 trick: no float→int conversion (undefined for NaN in C++).
  const float magic = 12582912.0f;
  const float nm = t + magic;
  const float n = nm - magic;
  const float f = (t - n) * 0.693147180559945309f;  // |f| <= ln2/2
  float p = 1.f / 5040.f;
  p = p * f + 1.f / 720.f;
  p = p * f + 1.f / 120.f;
  p = p * f + 1.f / 24.f;
  p = p * f + 1.f / 6.f;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  uint32_t ib;
  std::memcpy(&ib, &nm, 4);
  const uint32_t bits = (ib - 0x4B400000u + 127u) << 23;  // 2^n as float bits (n in [-126, 127])
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

}  // namespace rift
