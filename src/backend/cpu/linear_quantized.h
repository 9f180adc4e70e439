// Fast linear with quantised weights: y[M, N] = x[M, K] · dequant(w[N, K])^T.
// Activations are quantised on the fly (to Q8_0 blocks, or Q8_K for the K-quants) and dotted with
// integer SIMD (AVX2, or AVX-512 VNNI where present), as GGML does; the reference is ops::ref::linear.
#pragma once

#include "core/tensor.h"

namespace aigc::ops {

// x: contiguous f32 [M, K]; w: contiguous [N, K] of a type linear_quantized_supports; y:
// contiguous f32 [M, N].
void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y);

// Weight types with dot kernels: q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K.
bool linear_quantized_supports(DType w);

}  // namespace aigc::ops
