// Fast linear with quantised weights: y[M, N] = x[M, K] · dequant(w[N, K])^T.
// Activations are quantised on the fly (to Q8_0 blocks, or Q8_K for the K-quants) and dotted with
// integer SIMD (AVX2, or AVX-512 VNNI where present), as GGML does; the reference is ops::ref::linear.
#pragma once

#include <span>

#include "core/tensor.h"

namespace aigc::ops {

// x: contiguous f32 [M, K]; w: contiguous [N, K] of a type linear_quantized_supports; y:
// contiguous f32 [M, N].
void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y);

// Weight types with dot kernels: q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K.
bool linear_quantized_supports(DType w);

// Several linears that share their input x (a layer's Q, K and V projections; gate and up):
// y_i = x · w_i^T (+ bias_i). For decode (x: contiguous f32 [M <= gemv::kMaxRows, K]) with every
// w_i of one type that has GEMV kernels (Q4_0, Q8_0 where AVX-512 VNNI is present) and no bias, x
// is quantised once and one parallel region covers all the rows; otherwise each is ops::linear.
// The results are those of ops::linear on each, bit for bit.
struct LinearGroupItem {
  const Tensor* w;     // [N_i, K]
  const Tensor* bias;  // [N_i] or nullptr
  Tensor* y;           // [M, N_i]
};
void linear_group(std::span<const LinearGroupItem> items, const Tensor& x);

}  // namespace aigc::ops
