// PLACEHOLDER: replaced by the opsquant branch
// Lets the opsfloat branch build and test before the real quantised kernel lands: forwards to the
// reference linear (dequantise + f32 dot). Drop this file when merging opsquant.
#include "backend/cpu/linear_quantized.h"

#include "backend/cpu/ops.h"

namespace aigc::ops {

void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y) { ref::linear(x, w, nullptr, y); }

}  // namespace aigc::ops
