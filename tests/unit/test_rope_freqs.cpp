// ops::rope with per-frequency factors (RopeParams::freq_factors, Llama 3.1's rope_freqs): the fast
// kernel against the reference kernel on odd shapes, both kernels against the formula evaluated
// here, and bad factors rejected. The end-to-end check against PyTorch is the llama31_f32 case of
// test_model_llama.cpp (tests/ref/twin_llama.py).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/ops.h"
#include "common/compare.h"

namespace aigc {
namespace {

TEST(RopeFreqFactors, FastMatchesReferenceAndFormula) {
  // (T, H, D, n_dims, neox): partial rotation, odd T and H, both pair layouts.
  struct Case { int64_t T, H, D, n_dims; bool neox; };
  for (const Case c : {Case{7, 3, 64, 0, false}, Case{5, 1, 40, 24, true}, Case{1, 2, 2, 0, false},
                       Case{33, 5, 18, 18, true}}) {
    SCOPED_TRACE(::testing::Message() << "T " << c.T << " H " << c.H << " D " << c.D << " n_dims " << c.n_dims
                                      << (c.neox ? " neox" : " normal"));
    const Tensor x = test::random_f32({c.T, c.H, c.D}, 7 + c.T);
    const int64_t n = c.n_dims ? c.n_dims : c.D, half = n / 2;
    std::vector<float> ff(half);
    for (int64_t i = 0; i < half; ++i) ff[i] = 1.0f + 7.0f * static_cast<float>(i * 37 % 11) / 10.0f;  // 1 .. 8
    std::vector<int32_t> pos(c.T);
    for (int64_t t = 0; t < c.T; ++t) pos[t] = static_cast<int32_t>(3 + 97 * t);
    ops::RopeParams p;
    p.n_dims = c.n_dims;
    p.freq_base = 500000.0f;
    p.freq_scale = 0.5f;
    p.neox = c.neox;
    p.freq_factors = ff.data();
    Tensor yr = Tensor::empty(DType::F32, x.shape()), yf = Tensor::empty(DType::F32, x.shape());
    ops::ref::rope(x, pos, p, yr);
    ops::rope(x, pos, p, yf);
    // f32 outputs of O(1) values rotated with float cos/sin tables: 1e-5 relative covers the table's
    // f32 rounding (~6e-8) with room; a missing or misindexed factor moves outputs by O(0.1..1).
    EXPECT_TENSORS_CLOSE(yf, yr, 1e-5f, 1e-5f);
    // The formula, in double, written out here.
    Tensor ye = Tensor::empty(DType::F32, x.shape());
    const float* xp = x.ptr<float>();
    float* ep = ye.ptr<float>();
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < c.H; ++h) {
        const float* xr = xp + (t * c.H + h) * c.D;
        float* er = ep + (t * c.H + h) * c.D;
        for (int64_t d = 0; d < c.D; ++d) er[d] = xr[d];
        for (int64_t i = 0; i < half; ++i) {
          const double theta = pos[t] * 0.5 * std::pow(500000.0, -2.0 * i / n) / ff[i];
          const int64_t a = c.neox ? i : 2 * i, b = c.neox ? i + half : 2 * i + 1;
          er[a] = static_cast<float>(xr[a] * std::cos(theta) - xr[b] * std::sin(theta));
          er[b] = static_cast<float>(xr[a] * std::sin(theta) + xr[b] * std::cos(theta));
        }
      }
    EXPECT_TENSORS_CLOSE(yr, ye, 1e-6f, 1e-6f);
    // Without the factors the result is different (the check above can fail).
    p.freq_factors = nullptr;
    Tensor y0 = Tensor::empty(DType::F32, x.shape());
    ops::rope(x, pos, p, y0);
    if (c.T > 1) EXPECT_FALSE(test::tensors_close(y0, yr, 1e-3f, 1e-3f));
  }
}

TEST(RopeFreqFactors, BadFactorsAreRejected) {
  const Tensor x = test::random_f32({2, 1, 4}, 1);
  Tensor y = Tensor::empty(DType::F32, x.shape());
  const int32_t pos[] = {0, 1};
  for (float bad : {0.0f, -1.0f, NAN, INFINITY}) {
    const float ff[] = {1.0f, bad};
    ops::RopeParams p;
    p.freq_factors = ff;
    EXPECT_THROW(ops::rope(x, pos, p, y), Error) << bad;
    EXPECT_THROW(ops::ref::rope(x, pos, p, y), Error) << bad;
  }
}

}  // namespace
}  // namespace aigc
