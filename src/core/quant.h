// GGUF quantised block layouts and their reference (plain C++) quantise/dequantise routines.
// Layouts are byte-exact with GGML (ggml-common.h): a file written by llama.cpp reads here as is.
//
//   Q8_0: 32 elements = f16 scale d, then 32 x int8 q;      x = d * q
//   Q4_0: 32 elements = f16 scale d, then 16 bytes nibbles; x = d * (nibble - 8), where element j
//         (0..15) is the low nibble of byte j and element j+16 its high nibble.
//   Q4_1: 32 elements = f16 d, f16 m, 16 bytes nibbles (as Q4_0);     x = q * d + m, q in [0, 15]
//   Q5_0: 32 elements = f16 d, u8 qh[4], 16 bytes nibbles;            x = d * (q - 16), q in [0, 31]:
//         low 4 bits as Q4_0's nibbles, bit 4 of element j is bit j of qh read as a little-endian u32.
//   Q5_1: 32 elements = f16 d, f16 m, qh[4], qs[16] (as Q5_0);        x = q * d + m
//   K-quants: super-blocks of 256 elements.
//   Q4_K: f16 d, f16 dmin, scales[12], qs[128]. Eight sub-blocks of 32, each with a 6-bit scale sc
//         and 6-bit min mn (unpacking in scale_min_k4_get); x = (d * sc) * q - (dmin * mn).
//         Elements 64i..64i+31 are the low nibbles of qs[32i..32i+31], 64i+32..64i+63 the high
//         nibbles; sub-block 2i holds the former, 2i+1 the latter.
//   Q5_K: f16 d, f16 dmin, scales[12], qh[32], qs[128]. As Q4_K plus a fifth bit: element
//         64i+l (l < 32) takes bit 2i of qh[l], element 64i+32+l bit 2i+1 of qh[l].
//   Q6_K: ql[128], qh[64], int8 scales[16], f16 d. Sixteen sub-blocks of 16; x = (d * sc) * (q - 32)
//         with q in [0, 63]. Per half h (128 elements; ql + 64h, qh + 32h), l < 32:
//           element 128h+l    : low nibble of ql[l],    bits 0-1 of qh[l]
//           element 128h+32+l : low nibble of ql[l+32], bits 2-3 of qh[l]
//           element 128h+64+l : high nibble of ql[l],   bits 4-5 of qh[l]
//           element 128h+96+l : high nibble of ql[l+32],bits 6-7 of qh[l]
//         element e's scale is scales[e / 16].
//   Q8_K: f32 d, int8 qs[256], int16 bsums[16] (sums of qs in groups of 16); x = d * q. Only an
//         activation format (the K-quant dots' other operand), never stored in files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/dtype.h"

namespace aigc {

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
constexpr int kQK5_1 = 32;
constexpr int kQK_K = 256;        // K-quant super-block
constexpr int kKScaleSize = 12;   // packed 6-bit scales and mins of Q4_K / Q5_K

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

struct BlockQ4_1 {
  uint16_t d;              // f16 scale
  uint16_t m;              // f16 min
  uint8_t qs[kQK4_1 / 2];  // nibbles
};
static_assert(sizeof(BlockQ4_1) == 20, "GGML block_q4_1 is 20 bytes");

struct BlockQ5_0 {
  uint16_t d;              // f16 scale
  uint8_t qh[4];           // fifth bits, little-endian u32
  uint8_t qs[kQK5_0 / 2];  // low nibbles
};
static_assert(sizeof(BlockQ5_0) == 22, "GGML block_q5_0 is 22 bytes");

struct BlockQ5_1 {
  uint16_t d;              // f16 scale
  uint16_t m;              // f16 min
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "GGML block_q5_1 is 24 bytes");

struct BlockQ4_K {
  uint16_t d;                    // f16 scale of the sub-block scales
  uint16_t dmin;                 // f16 scale of the sub-block mins
  uint8_t scales[kKScaleSize];   // 8 x (6-bit scale, 6-bit min), packed
  uint8_t qs[kQK_K / 2];         // nibbles
};
static_assert(sizeof(BlockQ4_K) == 144, "GGML block_q4_K is 144 bytes");

struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];         // fifth bits
  uint8_t qs[kQK_K / 2];         // low nibbles
};
static_assert(sizeof(BlockQ5_K) == 176, "GGML block_q5_K is 176 bytes");

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];         // low 4 bits
  uint8_t qh[kQK_K / 4];         // high 2 bits
  int8_t scales[kQK_K / 16];     // 8-bit sub-block scales
  uint16_t d;                    // f16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210, "GGML block_q6_K is 210 bytes");

struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];     // sum of qs in each group of 16
};
static_assert(sizeof(BlockQ8_K) == 292, "GGML block_q8_K is 292 bytes");

// Sub-block j (0..7) of a Q4_K / Q5_K `scales` array: its 6-bit scale and min. The first four
// scales and mins are the low 6 bits of bytes 0-3 and 4-7; the last four take their low 4 bits
// from the nibbles of bytes 8-11 (scale low, min high) and their top 2 bits from the top 2 bits
// of bytes 0-3 (scales) and 4-7 (mins).
void scale_min_k4_get(int j, const uint8_t* scales, uint8_t* sc, uint8_t* mn);

// Reference conversions of one row of n elements (n a multiple of the block size).
// GGML's reference rounding: Q8_0 d = amax/127, q = round(x/d); Q4_0 d = max/-8 (max = the
// value of largest magnitude, sign kept), q = min(15, (int8)(x/d + 8.5)).
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void dequantize_row_q8_0_ref(const BlockQ8_0* x, float* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void dequantize_row_q4_0_ref(const BlockQ4_0* x, float* y, int64_t n);

// GGML's reference quantisers, same rules and the same f32 operation order (tested byte for byte
// against the numpy twin for Q4_1, Q5_0, Q5_1):
//   Q4_1 / Q5_1: d = (max - min) / 15 (31), m = min, q = trunc((x - min) / d + 0.5), Q4_1 capped at 15.
//   Q5_0: d = max / -16 (max signed, as Q4_0), q = min(31, (int8)(x / d + 16.5)).
// K-quants follow GGML's quantize_row_*_ref search (make_qkx2_quants for Q4_K / Q5_K's scale and
// min per sub-block, make_qx_quants with the x^2 weighting for Q6_K); these are compiled here
// without FMA contraction, so a GGML build that contracts may differ in rare last-bit ties.
// The K-quant outputs are checked by their round-trip error, not byte for byte.
// Q8_K: iscale = -127 / max (max signed), q = min(127, rint(iscale * x)), d = 1 / iscale.
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n);
void dequantize_row_q4_1_ref(const BlockQ4_1* x, float* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n);
void dequantize_row_q5_0_ref(const BlockQ5_0* x, float* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n);
void dequantize_row_q5_1_ref(const BlockQ5_1* x, float* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n);
void dequantize_row_q4_K_ref(const BlockQ4_K* x, float* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n);
void dequantize_row_q5_K_ref(const BlockQ5_K* x, float* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n);
void dequantize_row_q6_K_ref(const BlockQ6_K* x, float* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n);
void dequantize_row_q8_K_ref(const BlockQ8_K* x, float* y, int64_t n);

// ---- R16 layouts: rows of Q4_0, Q4_1, Q5_0, Q5_1 repacked for the decode kernels --------------
// aigc's own (never in a file), the same bytes per row as the file type, rearranged per group of
// kR16Group blocks (the last group of a row holds the c = nb % 16 blocks left, if any, in the same
// layout with c in place of 16): the group's c f16 scales in block order (2c bytes); Q4_1 / Q5_1:
// the c f16 mins (2c bytes); Q5_0 / Q5_1: the fifth bits of block j as the little-endian u32 word j
// (4c bytes), block j's qh with its bits permuted: bit 8i + v = qh bit 4v + i and bit 8i + 4 + v =
// qh bit 16 + 4v + i (v < 4, i < 4), so that one 32-bit shift of the words by a constant (left by
// 4 - v, right by v) brings the fifth bits of the values of each nibble vector below to bit 4 of
// their bytes; then 16c bytes of nibbles where byte 4c v + 4j + i (from the nibbles' start) is byte
// 4v + i of block j's qs (v < 4, j < c, i < 4). In a full group, one 64-byte load (or two 32-byte
// ones) holds 4 bytes of each of the 16 blocks (32-bit lane j = block j), so an integer dot leaves
// the block sums in block order, and the scales load as vectors (the file layouts spend as many
// instructions gathering scales, 18-24 bytes apart, as on the dot itself); a last partial group
// is the same with lanes c.. masked off. The model loader repacks linear weights into them where
// the kernel set has a kernel for them (QuantKernels::gemv_*_r16).
constexpr int kR16Group = 16;

// Byte offsets within a group of c blocks (c <= kR16Group) of the R16 layout of `Block` (BlockQ4_0,
// BlockQ4_1, BlockQ5_0, BlockQ5_1: told apart by size), and a full group's size.
template <typename Block>
struct R16Layout {
  static constexpr bool kMin = sizeof(Block) == 20 || sizeof(Block) == 24;   // Q4_1, Q5_1
  static constexpr bool kHigh = sizeof(Block) == 22 || sizeof(Block) == 24;  // Q5_0, Q5_1
  static constexpr size_t mins(size_t c) { return 2 * c; }
  static constexpr size_t bits(size_t c) { return (kMin ? 4 : 2) * c; }
  static constexpr size_t qs(size_t c) { return bits(c) + (kHigh ? 4 * c : 0); }
  static constexpr size_t kGroupBytes = kR16Group * sizeof(Block);
  static_assert(qs(kR16Group) + 256 == kGroupBytes, "an R16 group holds its blocks' bytes");
};

// The R16 type of a file type (Q4_0 -> Q4_0_R16, ...), and back; nullopt for other types.
std::optional<DType> r16_of(DType file_type);
std::optional<DType> r16_file_type(DType r16);
// One row of n elements (n a multiple of 32) of an R16 type, from / to its file type's blocks;
// src and dst not overlapping.
void r16_pack(DType r16, const void* blocks, uint8_t* dst, int64_t n);
void r16_unpack(DType r16, const uint8_t* src, void* blocks, int64_t n);

// ---- X16 layouts: K-quant weight rows interleaved 16 at a time, for the decode kernels --------
// aigc's own (never in a file). A weight [N, K] with N a multiple of kX16Rows is stored as N / 16
// groups of 16 rows, each group in the bytes its rows take in the file (16 x row_bytes: rows are no
// longer apart, so a row alone cannot be read; convert whole groups). Group g holds rows 16g ..
// 16g + 15 as K / 256 columns, column c holding block c of each of the 16 rows. Q4_K_X16, a
// column of kX16ColumnQ4K = 2304 bytes (r: the row within the group, 0..15):
//   [0, 32)      d of row r at 2r (f16)          [32, 64)     dmin of row r at 32 + 2r
//   [64, 128)    scales bytes 0..3 of row r at 64 + 4r,  [128, 192) bytes 4..7,  [192, 256) bytes 8..11
//   [256, 2304)  qs bytes 4t .. 4t + 3 of row r at 256 + 64 (4 (t % 8) + t / 8) + 4r (t < 32): the
//                words of the four 32-byte chunks of qs taken in turn (chunk 0's word 0, chunk 1's,
//                2's, 3's, chunk 0's word 1, ...), the order in which a decode step reads them, so
//                that it reads each column front to back
// So one 64-byte load holds four bytes of each of the 16 rows, a 32-bit lane per row: an integer
// dot product (vpdpbusd with the activations' four bytes broadcast) leaves each row's sum in its
// own lane with no shuffle or reduction, and the scales, mins, d and dmin of 16 rows load and
// convert as vectors, once per 16 rows instead of once per row (Q4_K's file layout spends more
// instructions on those than on the dot itself). Q5_K_X16, a column of kX16ColumnQ5K = 2816 bytes:
//   [0, 256)     d, dmin and the scales as Q4_K_X16's
//   [256, 2816)  for each tp < 8, 320 bytes at 256 + 320 tp: eight 64-bit masks, then four 64-byte
//                slots h < 4 holding qs bytes 32h + 4tp .. + 3 of row r at + 64 (1 + h) + 4r (the
//                words Q4_K_X16 has at slot 4tp + h); bit 4r + i of mask j is bit j of qh[4tp + i]
//                of row r, the fifth bit of the value at byte 4r + i of the slot's low (j = 2h) or
//                high (j = 2h + 1) nibbles: a kmask for a masked add, no shifts per vector
// Q6_K_X16, a column of kX16ColumnQ6K = 3360 bytes:
//   [0, 32)      d of row r at 2r (f16)
//   [32, 288)    scales bytes 4k .. 4k + 3 of row r at 32 + 64k + 4r (k < 4)
//   [288, 3360)  for each half h < 2 of the block and i < 8, three 64-byte slots j = 3 (8h + i) +
//                0, 1, 2 holding, for row r at 288 + 64j + 4r, the words ql[64h + 4i ..],
//                ql[64h + 32 + 4i ..] and qh[32h + 4i ..]: each slot triple gives the 16 values of
//                four elements at 128h + 4i + {0, 32, 64, 96}, read front to back.
// The model loader repacks linear weights into them where the CPU's kernel set has a kernel for
// them (QuantKernels::vec_dot_rows_q4_K_x16 / _q5_K_x16 / _q6_K_x16).
constexpr int kX16Rows = 16;
constexpr size_t kX16ColumnQ4K = kX16Rows * sizeof(BlockQ4_K);
constexpr size_t kX16ColumnQ5K = kX16Rows * sizeof(BlockQ5_K);
constexpr size_t kX16ColumnQ6K = kX16Rows * sizeof(BlockQ6_K);

// The X16 type of a file type (Q4_K -> Q4_K_X16, Q5_K -> Q5_K_X16, Q6_K -> Q6_K_X16), and back; nullopt for other types.
std::optional<DType> x16_of(DType file_type);
std::optional<DType> x16_file_type(DType x16);
// One group: 16 rows of n elements (n a multiple of 256) of the file type, one after another
// (16 x row_bytes), to / from the X16 layout; src and dst not overlapping.
void x16_pack(DType x16, const void* rows, uint8_t* dst, int64_t n);
void x16_unpack(DType x16, const uint8_t* src, void* rows, int64_t n);
// Rows of a weight of this type come in groups of this many: kX16Rows for the X16 layouts, else 1
// (threads, tiles and conversions split rows at multiples of it).
int64_t x16_row_unit(DType type);

// Any supported type (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K, and aigc's
// R16 layouts) to and from f32. Q8_K is an activation format only and not listed; the X16 layouts
// have no rows of their own (row_to_f32 throws: x16_unpack a group).
bool dtype_can_convert(DType type);
void row_to_f32(DType type, const void* src, float* dst, int64_t n);
// f16 -> f32 (F16C where the CPU has it; exact either way).
void row_f16_to_f32(const uint16_t* src, float* dst, int64_t n);
void row_from_f32(DType type, const float* src, void* dst, int64_t n);

}  // namespace aigc
