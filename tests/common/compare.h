// Tensor comparison for tests: max |a - b| <= atol + rtol * |b| elementwise, with a readable report.
#pragma once

#include <gtest/gtest.h>

#include "core/tensor.h"

namespace aigc::test {

// Both tensors are converted to f32 (any convertible type, any strides). b is the reference.
::testing::AssertionResult tensors_close(const Tensor& a, const Tensor& b, float atol, float rtol);
// Contiguous f32 copy of any convertible tensor.
Tensor to_f32(const Tensor& t);
// Deterministic pseudo-random f32 tensor in [lo, hi).
Tensor random_f32(std::initializer_list<int64_t> shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f);

}  // namespace aigc::test

#define EXPECT_TENSORS_CLOSE(a, b, atol, rtol) EXPECT_TRUE(::aigc::test::tensors_close((a), (b), (atol), (rtol)))
