// Prefill linear as a bf16 GEMM for weights of any 16-bit or quantised type:
//   y[M, N] = bf16(x[M, K]) · bf16(dequant(w[N, K]))^T (+ bias[N]), f32 accumulation.
//
//   if (linear_takes_panel(w.type(), M)) linear_panel(x, ldx, M, w, b, y, ldy);   (ops::linear)
//
// The activations are rounded to bf16 once per call; the weight is dequantised in panels of rows
// (several hundred output features x K, ~4 MiB) into one bf16 scratch buffer, and each panel runs
// through oneDNN's bf16 matmul (AVX512-BF16). No copy of the weight is kept between
// calls: the model file's bytes are the only resident copy.
//
// Precision: the same as PyTorch's bf16 linear: each operand rounded to nearest-even bf16 (relative
// error <= 2^-9 each), products summed in f32. |y - y_f32| <= ~2^-8 · sum_k |x_k · w_k|.
// Row conversions round exactly like bf16_from_f32 (round to nearest even), except that f32
// subnormal inputs (|v| < 2^-126) become zero in the AVX512-BF16 instructions.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace aigc::ops {

// ops::linear takes this path from this many rows up. Below it, dequantising the whole weight costs
// more than it saves: q4_0 [2048, 2048], 1 thread: M = 8: integer dots 1.5 ms, panels 1.8 ms;
// M = 16: 3.1 ms vs 2.1 ms; M = 32: 10 ms vs 2.8 ms.
constexpr int64_t kPanelMinRows = 16;

// True when this CPU runs the panel path (AVX512-BF16) and w's type is one it converts: f16, bf16,
// q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K and the R16 layouts (f32 weights keep the exact
// f32 GEMM).
bool linear_panel_supports(DType w);

// ops::linear's choice for M rows of x times a weight of type w: this path from kPanelMinRows rows
// where the CPU supports w, unless quantised weights stay on the integer kernels for these rows
// (linear_quantized_prefers). (Defined in linear.cpp.)
bool linear_takes_panel(DType w, int64_t M);

// x: f32 rows with stride ldx (elements); w: contiguous [N, K] of a supported type; bias: [N] or
// null; y: f32 rows with stride ldy. M >= 1, K >= 1.
void linear_panel(const float* x, int64_t ldx, int64_t M, const Tensor& w, const float* bias, float* y,
                  int64_t ldy);

// One weight row of `type` (n elements, n a multiple of its block size) to bf16, rounded to nearest
// even: the fastest kernel this CPU has. Exposed for tests.
void row_to_bf16(DType type, const void* src, uint16_t* dst, int64_t n);

namespace panel {

// Plain C++: row_to_f32 then bf16_from_f32 per element. The reference of every kernel below.
void row_to_bf16_scalar(DType type, const void* src, uint16_t* dst, int64_t n);

// AVX512-BF16 kernels (avx512/linear_panel_avx512.cpp); run only where cpu_has_avx512_bf16().
void row_f32_to_bf16_avx512(const float* src, uint16_t* dst, int64_t n);
void row_f16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q8_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q4_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q4_1_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q5_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q5_1_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
// R16 layouts (quant.h): the model loader's repacking of Q4_0, Q4_1, Q5_0, Q5_1.
void row_q4_0_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q4_1_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q5_0_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q5_1_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q4_K_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q5_K_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);
void row_q6_K_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n);

}  // namespace panel

}  // namespace aigc::ops
