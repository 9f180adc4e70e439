// GGUF quantised block layouts and their reference (plain C++) quantise/dequantise routines.
// Layouts are byte-exact with GGML (ggml-common.h): a file written by llama.cpp reads here as is.
//
//   Q8_0: 32 elements = f16 scale d, then 32 x int8 q;      x = d * q
//   Q4_0: 32 elements = f16 scale d, then 16 bytes nibbles; x = d * (nibble - 8), where element j
//         (0..15) is the low nibble of byte j and element j+16 its high nibble.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace aigc {

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;

struct BlockQ8_0 {
  uint16_t d;          // f16 scale
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "GGML block_q8_0 is 34 bytes");

struct BlockQ4_0 {
  uint16_t d;              // f16 scale
  uint8_t qs[kQK4_0 / 2];  // nibbles
};
static_assert(sizeof(BlockQ4_0) == 18, "GGML block_q4_0 is 18 bytes");

// Reference conversions of one row of n elements (n a multiple of the block size).
// GGML's reference rounding: Q8_0 d = amax/127, q = round(x/d); Q4_0 d = max/-8 (max = the
// value of largest magnitude, sign kept), q = min(15, (int8)(x/d + 8.5)).
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void dequantize_row_q8_0_ref(const BlockQ8_0* x, float* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void dequantize_row_q4_0_ref(const BlockQ4_0* x, float* y, int64_t n);

// Any supported type (f32, f16, bf16, q8_0, q4_0 now; more with the text issue) to and from f32.
bool dtype_can_convert(DType type);
void row_to_f32(DType type, const void* src, float* dst, int64_t n);
void row_from_f32(DType type, const float* src, void* dst, int64_t n);

}  // namespace aigc
