//===- FloatBits.h - f16, bf16 and FP8 E4M3FN bit conversions ---*- C++ -*-===//
//
// Scalar conversions between f32 and the narrow float formats checkpoints
// store. Bit manipulation, not APFloat: the packer converts every element of
// a checkpoint. Rounding is to nearest, ties to even.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_FRONTEND_FLOATBITS_H
#define MOIR_FRONTEND_FLOATBITS_H

#include "llvm/ADT/bit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace moir::frontend {

inline float fromBF16(uint16_t bits) {
  return llvm::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

/// NaN stays a (quiet) NaN.
inline uint16_t toBF16(float value) {
  uint32_t bits = llvm::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float fromF16(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in f32.
    float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  if (exponent == 31)
    return llvm::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return llvm::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline uint16_t toF16(float value) {
  uint32_t x = llvm::bit_cast<uint32_t>(value);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u)
    return sign | (x > 0x7f800000u ? 0x7e00 : 0x7c00);
  if (x >= 0x477ff000u) // 65520 and above round to infinity
    return sign | 0x7c00;
  if (x < 0x38800000u) // below 2^-14: subnormal, value * 2^24 rounded
    return sign | static_cast<uint16_t>(
                      std::nearbyint(llvm::bit_cast<float>(x) * 16777216.0f));
  x += 0xfffu + ((x >> 13) & 1u);
  return sign | static_cast<uint16_t>((x - 0x38000000u) >> 13);
}

/// E4M3FN: bias 7, no infinities, 0x7f and 0xff are NaN, largest 448.
inline float fromFP8E4M3(uint8_t bits) {
  int exponent = (bits >> 3) & 15, mantissa = bits & 7;
  if (exponent == 15 && mantissa == 7)
    return std::numeric_limits<float>::quiet_NaN();
  float value = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                              : std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return bits & 0x80 ? -value : value;
}

/// Saturates to +-448 (the format has no infinity); NaN stays NaN.
inline uint8_t toFP8E4M3(float value) {
  uint32_t x = llvm::bit_cast<uint32_t>(value);
  uint8_t sign = static_cast<uint8_t>((x >> 24) & 0x80u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u)
    return sign | 0x7f;
  float magnitude = llvm::bit_cast<float>(x);
  if (magnitude >= 448.0f)
    return sign | 0x7e;
  if (magnitude < 0.015625f) // below 2^-6: subnormal, magnitude * 2^9 rounded
    return sign | static_cast<uint8_t>(std::nearbyint(magnitude * 512.0f));
  x += 0x7ffffu + ((x >> 20) & 1u);
  return sign | static_cast<uint8_t>(std::min<uint32_t>((x - (120u << 23)) >> 20, 0x7e));
}

} // namespace moir::frontend

#endif // MOIR_FRONTEND_FLOATBITS_H
