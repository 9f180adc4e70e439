// IEEE half (f16) and bfloat16 conversions, plain C++ (the SIMD kernels use F16C / AVX512-BF16).
#pragma once

#include <cstdint>
#include <cstring>

namespace aigc {

inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// f16 -> f32, exact for every f16 value (normals, subnormals, inf, nan).
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    if (man == 0) return f32_from_bits(sign);
    // subnormal: value = man * 2^-24
    float v = static_cast<float>(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

// f32 -> f16 with round-to-nearest-even, overflow to inf, nan kept quiet.
inline uint16_t f16_from_f32(float f) {
  uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return sign | 0x7c00 | (x > 0x7f800000u ? 0x200 : 0);  // inf / nan
  if (x >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow to inf
  if (x < 0x38800000u) {
    // result is subnormal (or zero): value / 2^-24, rounded to nearest even
    float a = f32_from_bits(x) * 16777216.0f;
    // nearbyint with default rounding mode is round-half-even
    return sign | static_cast<uint16_t>(__builtin_nearbyintf(a));
  }
  uint32_t mant_odd = (x >> 13) & 1;
  x += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return sign | static_cast<uint16_t>(x >> 13);
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// f32 -> bf16 with round-to-nearest-even; nan kept quiet.
inline uint16_t bf16_from_f32(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace aigc
