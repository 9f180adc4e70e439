#include "common/compare.h"

#include <cmath>
#include <random>

#include "backend/cpu/ops.h"
#include "core/quant.h"

namespace aigc::test {

Tensor to_f32(const Tensor& t) {
  std::vector<int64_t> shape = t.shape_vec();
  Tensor out = Tensor::empty(DType::F32, shape);
  if (t.type() == DType::I32) {
    for (int64_t i = 0; i < t.numel(); ++i) out.ptr<float>()[i] = static_cast<float>(t.ptr<int32_t>()[i]);
    return out;
  }
  if (t.is_contiguous()) {
    row_to_f32(t.type(), t.data(), out.ptr<float>(), t.numel());
    return out;
  }
  ops::ref::copy(t, out);
  return out;
}

::testing::AssertionResult tensors_close(const Tensor& a, const Tensor& b, float atol, float rtol) {
  if (!a.same_shape(b))
    return ::testing::AssertionFailure() << "shape " << a.shape_str() << " vs expected " << b.shape_str();
  Tensor fa = to_f32(a), fb = to_f32(b);
  const float* x = fa.ptr<float>();
  const float* y = fb.ptr<float>();
  int64_t bad = 0, first = -1, worst_i = 0;
  double worst = 0.0, max_abs = 0.0;
  for (int64_t i = 0; i < fa.numel(); ++i) {
    const double diff = std::fabs(static_cast<double>(x[i]) - y[i]);
    const bool ok = diff <= atol + rtol * std::fabs(y[i]) && !std::isnan(x[i]) == !std::isnan(y[i]);
    if (!ok) {
      if (first < 0) first = i;
      ++bad;
    }
    if (diff > worst || std::isnan(diff)) { worst = diff; worst_i = i; }
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(y[i])));
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << fa.numel() << " elements differ (atol " << atol << ", rtol " << rtol
         << "); first at flat index " << first << ": got " << x[first] << ", expected " << y[first]
         << "; worst |diff| " << worst << " at " << worst_i << "; max |expected| " << max_abs;
}

Tensor random_f32(std::initializer_list<int64_t> shape, uint32_t seed, float lo, float hi) {
  Tensor t = Tensor::empty(DType::F32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = dist(rng);
  return t;
}

}  // namespace aigc::test
