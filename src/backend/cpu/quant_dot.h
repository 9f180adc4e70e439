// Quantised dot products and row conversions for the CPU, as GGML does them for decode speed:
// each activation row is quantised once (to Q8_0 for the 32-element types Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1; to Q8_K for the K-quants Q4_K, Q5_K, Q6_K), then every weight row is dotted with it in
// integer SIMD. Each kernel exists as a plain scalar reference (`*_ref`) and in SIMD
// versions (AVX2; AVX-512 with VNNI); the best one for this CPU is chosen once, at run time.
//
//   const QuantKernels& k = quant_kernels();          // best for this CPU
//   k.quantize_row_q8_0(x, xq, K);                    // x: f32 [K] -> xq: K/32 Q8_0 blocks
//   float s = k.vec_dot_q4_0_q8_0(K, w_row, xq);      // sum_j dequant(w_row)_j * dequant(xq)_j
//
// Contract of every vec_dot: n is a multiple of the weight's block size (32, or 256 for K-quants;
// nb blocks, nb may be 0); `x` is the weight row, any bytes; `y` is the activation row as
// quantize_row_q8_0 / quantize_row_q8_K writes it (for the K-quant kernels of a set with a
// q8_K_reorder, then reordered by it), so its qs lie in [-127, 127] (-128 never
// occurs: |x/d| <= 127) and a Q8_K's bsums are the sums of its qs. The AVX2 q8_0 x q8_0 kernel
// relies on the range; the K-quant kernels take their min / offset terms from the bsums; the rest
// are exact for any int8. Results agree with the reference up to f32 rounding order (each
// block's integer sums are exact in every kernel).
//
// Q4_1 / Q5_1 against Q8_0, not GGML's Q8_1: sum_j (d q_j + m) dy y_j = d dy sum(q y) + m dy sum(y),
// and sum(y) is one more integer dot per block (with a vector of ones). GGML's Q8_1 instead
// stores dy * sum(y) rounded to f16 (relative error 2^-11 on the min term), so ours is the more
// exact of the two and lets every 32-element type share one activation format.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/quant.h"

namespace aigc {

class Tensor;

// Scalar references: sum over blocks of d_x * d_y * sum_j(qx_j * qy_j), in block order.
float vec_dot_q8_0_q8_0_ref(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y);
float vec_dot_q4_0_q8_0_ref(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y);
// + m_x * d_y * sum_j(qy_j) per block for the types with a min.
float vec_dot_q4_1_q8_0_ref(int64_t n, const BlockQ4_1* x, const BlockQ8_0* y);
float vec_dot_q5_0_q8_0_ref(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y);
float vec_dot_q5_1_q8_0_ref(int64_t n, const BlockQ5_1* x, const BlockQ8_0* y);
// K-quants, per 256 block: d_y * (d * sum_s sc_s * sum_{j in s} q_j qy_j - dmin * sum_s mn_s * sum_{j in s} qy_j)
// with exact int32 sums (Q6_K: d_y * d * sum_s sc_s * sum_{j in s} (q_j - 32) qy_j).
float vec_dot_q4_K_q8_K_ref(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y);
float vec_dot_q5_K_q8_K_ref(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y);
float vec_dot_q6_K_q8_K_ref(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y);

// ---- decode (GEMV) kernels ------------------------------------------------------------------
// For one activation row (decode: M = 1) the per-block work of vec_dot (two f16 scale conversions
// and a multiply per block, the -8 / +128 offset dot, a horizontal sum per output) makes the
// kernel compute-bound. The decode kernels instead take the row prepared once per linear, in the
// order the kernel consumes it:
//   - blocks are taken in groups of kDecodeGroup (16); per group and weight row the 16 blocks'
//     int32 dots are reduced to one 512-bit vector of 16 block sums (AVX2: two 256-bit vectors of
//     8, positions 0-7 and 8-15; in the weight type's order, decode_order), the offset term
//     (8 * sum(qy) for Q4_0, 16 * sum(qy) for Q5_0, 128 * sum(qy) for Q8_0, precomputed here as
//     `bias`; AVX2's Q8_0 kernel moves the sign instead and leaves it) is subtracted in int32, then
//     one multiply-add with the 16 weight scales x the 16 activation scales; Q4_1 and Q5_1 have
//     no offset but a min: their `bias` is sum(qy), and a second multiply-add adds it times the
//     weight mins x the activation scales;
//   - the blocks after the last full group (nb % 16) are done one at a time, in natural order
//     (R16 weights: as a partial group, the same operations on masked lanes).
// Results are the reference's up to f32 summation order (every block's integer sum is exact).
constexpr int kDecodeGroup = 16;
// Position p of a group's reduced vector holds block kDecodeOrderQ4_0[p] (Q4_0: four quads of 4
// blocks, position 4k + q = block 4q + k) or kDecodeOrderQ8_0[p] (Q8_0, Q4_1, Q5_0, Q5_1: eight
// pairs) of the group.
constexpr int kDecodeOrderQ4_0[kDecodeGroup] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
constexpr int kDecodeOrderQ8_0[kDecodeGroup] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
// R16 weights (quant.h): blocks in order.
constexpr int kDecodeOrderNatural[kDecodeGroup] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

// One activation row in decode layout (views of the caller's buffers).
struct DecodeRow {
  const int8_t* qs;      // [K] Q8_0 values; within full groups in the weight type's order (below)
  const float* d;        // [nb] f32 block scales; within full groups in the type's decode order (the
                         // kDecodeOrderQ8_0 types also within a row's last half group of 8)
  const int32_t* bias;   // [nb] offset * sum of the block's qs (Q4_1, Q5_1: the sum), same order as d
};

// Fills qs[K], d[nb], bias[nb] from the Q8_0 blocks of one row, for weights of type w (Q4_0,
// Q8_0, Q4_1, Q5_0, Q5_1, or an R16 type). Q8_0, Q4_1, Q5_0, Q5_1: qs in natural order. Q4_0: each
// quad of blocks (4j..4j+3) of a full group as the 128 bytes [b0 0..15, b1 0..15, b2 0..15,
// b3 0..15, b0 16..31, ..., b3 16..31] (a Q4_0 quad's low nibbles, then its high ones). R16 types
// (all alike): a group of c blocks (16, or fewer in a row's last group) as, for v < 4, 8c bytes:
// byte 4j + i holds element 4v + i of block j (the weights' low nibbles; j < c, i < 4), byte
// 4c + 4j + i element 16 + 4v + i (high nibbles); scales and biases in natural order. So the 64
// bytes of 16 blocks that one 512-bit vector of weight nibbles meets are contiguous (AVX2 takes
// each 32-byte half), and a partial group's are the first 4c of them.
void decode_row_prepare(DType w, const BlockQ8_0* xq, int64_t K, int8_t* qs, float* d, int32_t* bias);

// What every set's decode_row_prepare follows for weights of type w and a row of nb blocks: block
// ib's scale and bias go to slot ib < ordered ? ib / 16 * 16 + position[ib % 16] : ib (the type's
// decode order within full groups, and within a last half group of 8 for the kDecodeOrderQ8_0
// types); its bias is offset * sum(qs). Throws for a type without a decode layout.
struct DecodeRowLayout {
  int32_t offset;                  // Q4_0 8, Q5_0 16, Q8_0 128, Q4_1 / Q5_1 1 (an R16 type: its file type's)
  bool r16;                        // an R16 type (its qs layout, above)
  int position[kDecodeGroup];      // inverse of the type's order: where block j of a group goes
  int64_t ordered;                 // blocks placed by position, the rest in natural order
};
DecodeRowLayout decode_row_layout(DType w, int64_t nb);

// The K-quant activation order of the AVX-512 sets (QuantKernels::q8_K_reorder), in place on nb
// Q8_K blocks. qs: in each 128 activations, the 32 at 64..95 come before those at 32..63 (0..31,
// 64..95, 32..63, 96..127), as one 64-byte load of Q4_K / Q5_K quants unpacks (low nibbles: 0..31
// and 64..95, high: 32..63 and 96..127). bsums: bsums[i] becomes the sum of group
// kQ8KPairedBsums[i], the order in which the Q6_K kernel pairs its groups' offset terms. d stays.
inline constexpr int kQ8KPairedBsums[16] = {0, 8, 2, 10, 1, 9, 3, 11, 4, 12, 6, 14, 5, 13, 7, 15};
void q8_K_reorder_paired(BlockQ8_K* y, int64_t nb);

// Activation rows a multi-row kernel dots per pass over a weight row (below), at most.
constexpr int kVecDotRowsMax = 8;

// y[m * ldy + n - n0] = sum_k dequant(w row n)_k * dequant(a[m])_k for m < rows (1..kVecDotRowsMax),
// n in [n0, n1); w rows are row_bytes apart, K a multiple of 32. Each weight row is unpacked once
// for all the rows, and each output is the same bits whatever `rows` is (one output's operations
// keep their order). prefetch: stream w from memory ahead (the first pass over these weight rows;
// later passes find them in cache).
using DecodeGemv = void (*)(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0,
                            int64_t n1, float* y, int64_t ldy, bool prefetch);

// out[r * ldo + i] = the vec_dot of weight row i (x + i * row_bytes, n elements) with activation
// row y + r * y_stride (in blocks), for i < nw and r < rows (1..kVecDotRowsMax), each bitwise the
// single vec_dot's result: each weight row is unpacked once for all the activation rows (short
// prompts), and a call covers a run of weight rows (no call and set-up per row: rows of a few
// blocks are common). prefetch: as DecodeGemv's.
using VecDotRowsK = void (*)(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                             int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch);

// kernel.template operator()<R>() for R = rows (1..kVecDotRowsMax): how the ISA files instantiate
// a several-rows kernel template per row count. (Their kernels are lambdas local to each file, so
// each file's instances are its own, compiled with its own instruction set.)
template <typename Kernel>
void rows_dispatch(int rows, Kernel kernel) {
  switch (rows) {
    case 1: return kernel.template operator()<1>();
    case 2: return kernel.template operator()<2>();
    case 3: return kernel.template operator()<3>();
    case 4: return kernel.template operator()<4>();
    case 5: return kernel.template operator()<5>();
    case 6: return kernel.template operator()<6>();
    case 7: return kernel.template operator()<7>();
    default: return kernel.template operator()<8>();
  }
}

// Weight rows [0, nw) of x (row_bytes apart) one after another through kernel.template
// operator()<R>(row, o) for R = rows, out[r * ldo + i] = o[r]: how the ISA files' VecDotRowsK
// kernels run a run of rows, the row kernel inlined so its constants are set up once per call.
template <typename RowKernel>
__attribute__((always_inline)) inline void rows_run(int64_t nw, const uint8_t* x, int64_t row_bytes, int rows,
                                                    float* out, int64_t ldo, RowKernel kernel) {
  rows_dispatch(rows, [&]<int R>() {
    for (int64_t i = 0; i < nw; ++i) {
      float o[R];
      kernel.template operator()<R>(x + i * row_bytes, o);
      for (int r = 0; r < R; ++r) out[r * ldo + i] = o[r];
    }
  });
}

// One instruction set's kernels. The quantisers and dequantisers of every set are bit-exact with
// quantize_row_q8_0_ref / quantize_row_q8_K_ref / dequantize_row_*_ref (tests check it).
struct QuantKernels {
  const char* name;  // "ref", "avx2", "avx512vnni", "avx512vbmi"
  void (*quantize_row_q8_0)(const float* x, BlockQ8_0* y, int64_t n);
  void (*dequantize_row_q8_0)(const BlockQ8_0* x, float* y, int64_t n);
  void (*dequantize_row_q4_0)(const BlockQ4_0* x, float* y, int64_t n);
  float (*vec_dot_q8_0_q8_0)(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y);
  float (*vec_dot_q4_0_q8_0)(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y);
  void (*quantize_row_q8_K)(const float* x, BlockQ8_K* y, int64_t n);
  float (*vec_dot_q4_1_q8_0)(int64_t n, const BlockQ4_1* x, const BlockQ8_0* y);
  float (*vec_dot_q5_0_q8_0)(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y);
  float (*vec_dot_q5_1_q8_0)(int64_t n, const BlockQ5_1* x, const BlockQ8_0* y);
  float (*vec_dot_q4_K_q8_K)(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y);
  float (*vec_dot_q5_K_q8_K)(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y);
  float (*vec_dot_q6_K_q8_K)(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y);
  // Decode kernels (DecodeRow layout); nullptr where the set has none (linear_quantized then
  // uses the vec_dot kernels for every M).
  DecodeGemv gemv_q4_0;
  DecodeGemv gemv_q8_0;
  // Lays out one activation row for the decode kernels: decode_row_prepare (below) or the set's
  // faster version, the same bytes.
  void (*decode_row_prepare)(DType w, const BlockQ8_0* xq, int64_t K, int8_t* qs, float* d, int32_t* bias);
  // Several activation rows per pass over a K-quant weight row; nullptr where the set has none
  // (linear_quantized then calls the vec_dot kernel per row).
  VecDotRowsK vec_dot_rows_q4_K, vec_dot_rows_q5_K, vec_dot_rows_q6_K;
  // Q4_0_R16 weights (quant.h); nullptr where the set has no kernel for them (the model loader
  // repacks only where the CPU's best set has one).
  DecodeGemv gemv_q4_0_r16;
  // Q4_1, Q5_0, Q5_1 weights (the file's layout; DecodeRow in kDecodeOrderQ8_0); nullptr: vec_dot.
  DecodeGemv gemv_q4_1, gemv_q5_0, gemv_q5_1;
  // Q4_1_R16, Q5_0_R16, Q5_1_R16 weights (quant.h), as gemv_q4_0_r16.
  DecodeGemv gemv_q4_1_r16, gemv_q5_0_r16, gemv_q5_1_r16;
  // Reorders Q8_K activation blocks (quantize_row_q8_K's, in place) into the order this set's
  // K-quant kernels (vec_dot_q*_K_q8_K, vec_dot_rows_q*_K) read; nullptr: they read them as
  // quantised.
  void (*q8_K_reorder)(BlockQ8_K* y, int64_t nb);
  // Q4_K_X16 weights (quant.h): `x` at the first row of a group, nw a multiple of kX16Rows,
  // row_bytes the file type's (a group is 16 x row_bytes); otherwise VecDotRowsK's contract, each
  // output the same bits whatever `rows` is. nullptr where the set has none (the model loader
  // repacks only where the CPU's best set has one).
  VecDotRowsK vec_dot_rows_q4_K_x16;
  VecDotRowsK vec_dot_rows_q5_K_x16;  // Q5_K_X16 weights, the same contract
  VecDotRowsK vec_dot_rows_q6_K_x16;  // Q6_K_X16 weights, the same contract
};

// The scalar reference of vec_dot_rows_q4_K_x16: each group back to the file's blocks
// (x16_unpack), then vec_dot_q4_K_q8_K_ref per row; activations as quantised.
void vec_dot_rows_q4_K_x16_ref(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                               int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch);
// The same for Q5_K_X16 and Q6_K_X16 (vec_dot_q5_K_q8_K_ref, vec_dot_q6_K_q8_K_ref per row).
void vec_dot_rows_q5_K_x16_ref(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                               int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch);
void vec_dot_rows_q6_K_x16_ref(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                               int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch);

// The set's several-rows kernel for K-quant weights of `type` (Q4_K, Q5_K, Q6_K and the X16
// layouts), or nullptr where it has none.
VecDotRowsK vec_dot_rows_kernel(const QuantKernels& k, DType type);

// The set's decode kernel for weights of `type` (the 32-element types and the R16 layouts), or
// nullptr where it has none (the ref set has the scalar R16 kernels, the reference of the SIMD ones).
DecodeGemv decode_gemv(const QuantKernels& k, DType type);

// Avx512Vbmi: the Avx512Vnni set with the Q4_0 decode kernel that uses VBMI byte permutes.
enum class QuantIsa { Ref, Avx2, Avx512Vnni, Avx512Vbmi };

// The best kernels this CPU runs (decided once, by __builtin_cpu_supports).
const QuantKernels& quant_kernels();
// A given set, or nullptr when this CPU lacks its instructions (tests run every available set).
const QuantKernels* quant_kernels_find(QuantIsa isa);

// Tables defined in avx2/quant_dot_avx2.cpp and avx512/quant_dot_avx512.cpp; call only after
// checking the CPU (quant_kernels_find does).
const QuantKernels& quant_kernels_avx2();
const QuantKernels& quant_kernels_avx512vnni();
const QuantKernels& quant_kernels_avx512vbmi();
// The AVX2 decode kernels of Q4_1, Q5_0 and Q5_1 (avx2/quant_dot_avx2.cpp), which the AVX-512
// sets take too (no 512-bit versions yet).
void gemv_q4_1_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch);
void gemv_q5_0_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch);
void gemv_q5_1_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch);

namespace ops {
// linear_quantized (linear_quantized.h) with a chosen kernel set: tests and benchmarks use it to
// run the same driver on every instruction set.
void linear_quantized_with(const QuantKernels& k, const Tensor& x, const Tensor& w, Tensor& y);
}  // namespace ops

}  // namespace aigc
