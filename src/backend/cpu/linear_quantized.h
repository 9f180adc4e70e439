// Fast linear with quantised weights: y[M, N] = x[M, K] · dequant(w[N, K])^T.
// Activations are quantised to Q8_0 blocks on the fly and dotted with integer SIMD (AVX2, or
// AVX-512 VNNI where present), as GGML does; the reference is ops::ref::linear.
#pragma once

#include "core/tensor.h"

namespace aigc::ops {

// x: contiguous f32 [M, K]; w: contiguous Q8_0 or Q4_0 [N, K]; y: contiguous f32 [M, N].
void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y);

}  // namespace aigc::ops
