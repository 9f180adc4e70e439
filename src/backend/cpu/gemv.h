// GEMV kernels for linear at small M (decode: one token, or a few): y[m, n] = x[m, :] · w[n, :].
// This path is bound by memory bandwidth, not arithmetic: each weight row is streamed once and
// dotted with all M activation rows while it is in registers. Weights f32, f16 or bf16 are
// widened to f32 in registers (exact), activations stay f32, accumulation is f32.
// One kernel per instruction set (avx512/, avx2/), chosen at run time by linear.cpp.
#pragma once

#include <cstdint>

namespace aigc::ops::gemv {

// linear() takes this path for M <= kMaxRows and oneDNN's GEMM above it.
constexpr int kMaxRows = 4;

// For m < rows (1..kMaxRows) and n in [n0, n1):
//   y[m * ldy + n] = sum_i x[m * ldx + i] * w[n * ldw + i], i < k   (strides in elements)
using Kernel = void (*)(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                        int64_t n0, int64_t n1, float* y, int64_t ldy);

// Plain C++ (for CPUs without AVX2; defined in linear.cpp).
void gemv_f32_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                     int64_t n0, int64_t n1, float* y, int64_t ldy);
void gemv_f16_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                     int64_t n0, int64_t n1, float* y, int64_t ldy);
void gemv_bf16_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                      int64_t n0, int64_t n1, float* y, int64_t ldy);

void gemv_f32_avx512(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                     int64_t n0, int64_t n1, float* y, int64_t ldy);
void gemv_f16_avx512(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                     int64_t n0, int64_t n1, float* y, int64_t ldy);
void gemv_bf16_avx512(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                      int64_t n0, int64_t n1, float* y, int64_t ldy);

void gemv_f32_avx2(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                   int64_t n0, int64_t n1, float* y, int64_t ldy);
void gemv_f16_avx2(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                   int64_t n0, int64_t n1, float* y, int64_t ldy);
void gemv_bf16_avx2(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k,
                    int64_t n0, int64_t n1, float* y, int64_t ldy);

}  // namespace aigc::ops::gemv
