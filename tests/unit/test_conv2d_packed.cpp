// PackedConv2d (oneDNN, weights packed once) against ops::ref::conv2d and PyTorch
// (tests/ref/twin_ops_gemm.py, dump ops_gemm_conv2d), in both precisions.
//
// Tolerances:
//  - F32: the same f32 products as the reference, summed in another order over fan-in K <= 2880:
//    1e-4 absolute and relative (as ops::conv2d in test_ops_gemm.cpp).
//  - BF16: x and w are each rounded to bf16 (8 significant bits: relative error <= 2^-8 each), so
//    each product is off by at most (2^-7 + 2^-16) |x w| and the sum by at most that times
//    sum|x w|. We check that worst-case bound, got vs the f32 reference: |got - ref| <= 2^-7 *
//    (|x| (*) |w|) + 1e-4 (the 1e-4 covers the 2^-16 term and f32 summation). Random data lands
//    far inside it (errors of random sign grow like sqrt(K), not K), yet a wrong tap, a lost
//    channel or an unrounded operand in the wrong place exceed it. And tightly, 1e-4, against the
//    reference run on the bf16-rounded x and w, which is what the kernel computes up to f32
//    summation order. For unit-scale random data the bound is ~1e-2 of |y|.
#include "backend/cpu/conv2d_packed.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "common/thread_guard.h"
#include "core/half.h"
#include "core/thread_pool.h"

using namespace aigc;
using ops::PackedConv2d;
using ops::Precision;

namespace {

constexpr float kTol = 1e-4f;

Tensor f32_empty(std::span<const int64_t> shape) { return Tensor::empty(DType::F32, shape); }

// A copy with every element rounded to bf16 (kept in f32).
Tensor bf16_rounded(const Tensor& t) {
  Tensor b = Tensor::empty(DType::BF16, t.shape()), r = f32_empty(t.shape());
  ops::ref::copy(t, b);
  ops::ref::copy(b, r);
  return r;
}

Tensor abs_of(const Tensor& t) {
  Tensor a = test::to_f32(t);
  for (int64_t i = 0; i < a.numel(); ++i) a.ptr<float>()[i] = std::fabs(a.ptr<float>()[i]);
  return a;
}

// |got - want| <= factor * bound + atol elementwise (all contiguous f32, same shape).
::testing::AssertionResult within_bound(const Tensor& got, const Tensor& want, const Tensor& bound, float factor,
                                        float atol) {
  const Tensor g = test::to_f32(got), w = test::to_f32(want);
  for (int64_t i = 0; i < g.numel(); ++i) {
    const float d = std::fabs(g.ptr<float>()[i] - w.ptr<float>()[i]);
    const float lim = factor * bound.ptr<float>()[i] + atol;
    if (!(d <= lim))
      return ::testing::AssertionFailure() << "element " << i << ": got " << g.ptr<float>()[i] << ", want "
                                          << w.ptr<float>()[i] << ", |diff| " << d << " > bound " << lim;
  }
  return ::testing::AssertionSuccess();
}

// Checks one layer on x against the reference in the layer's precision (see the top comment).
void conv_check(const Tensor& x, const Tensor& w, const Tensor* b, int stride, int pad, Precision prec,
                const Tensor* torch_y = nullptr) {
  PackedConv2d conv(w, b, stride, pad, prec);
  int64_t ho = 0, wo = 0;
  conv.output_size(x.size(2), x.size(3), ho, wo);
  const std::vector<int64_t> ys{x.size(0), w.size(0), ho, wo};
  Tensor got = f32_empty(ys), want = f32_empty(ys);
  conv.run(x, got);
  ops::ref::conv2d(x, w, b, want, stride, pad);
  if (torch_y) { EXPECT_TENSORS_CLOSE(want, *torch_y, kTol, kTol); }  // the reference itself
  if (conv.precision() == Precision::F32) {
    EXPECT_TENSORS_CLOSE(got, want, kTol, kTol);
    if (torch_y) { EXPECT_TENSORS_CLOSE(got, *torch_y, kTol, kTol); }
    return;
  }
  ASSERT_EQ(conv.precision(), Precision::BF16);
  Tensor bound = f32_empty(ys), want_rounded = f32_empty(ys);
  ops::ref::conv2d(abs_of(x), abs_of(w), nullptr, bound, stride, pad);
  EXPECT_TRUE(within_bound(got, want, bound, 0x1p-7f, kTol));
  if (torch_y) { EXPECT_TRUE(within_bound(got, *torch_y, bound, 0x1p-7f, kTol)); }
  ops::ref::conv2d(bf16_rounded(x), bf16_rounded(w), b, want_rounded, stride, pad);
  EXPECT_TENSORS_CLOSE(got, want_rounded, kTol, kTol);
}

}  // namespace

TEST(PackedConv2d, MatchesTorch) {
  const test::RefDump d = test::RefDump::load("ops_gemm_conv2d");
  int cases = 0;
  for (int i = 0; d.has("cv" + std::to_string(i) + "_x"); ++i, ++cases) {
    const std::string p = "cv" + std::to_string(i) + "_";
    const Tensor& x = d.get(p + "x");
    const Tensor* b = d.has(p + "b") ? &d.get(p + "b") : nullptr;
    const int stride = d.get(p + "p").ptr<int32_t>()[0], pad = d.get(p + "p").ptr<int32_t>()[1];
    for (const char* wname : {"w", "w16", "wb"}) {
      const Tensor& w = d.get(p + wname);
      const Tensor& y = d.get(p + (std::string(wname) == "w" ? "y" : std::string(wname) == "w16" ? "y16" : "yb"));
      for (Precision prec : {Precision::F32, Precision::BF16, Precision::Auto}) {
        SCOPED_TRACE(p + wname + " " + std::string(ops::precision_name(prec)) + " x " + x.shape_str());
        conv_check(x, w, b, stride, pad, prec, &y);
      }
    }
  }
  EXPECT_GE(cases, 7);
}

TEST(PackedConv2d, OddShapesMatchReference) {
  struct Shape { int64_t n, c, h, w, o, k; int stride, pad; bool bias; };
  const Shape shapes[] = {
      {2, 3, 17, 13, 5, 3, 1, 1, true},     // odd everything, batch 2
      {1, 17, 9, 9, 33, 1, 1, 0, true},     // 1x1
      {2, 8, 15, 15, 16, 3, 2, 1, false},   // stride 2 (UNet downsample), odd size
      {1, 64, 8, 8, 80, 3, 1, 1, true},     // channel counts that use full register blocks
      {1, 33, 5, 7, 65, 3, 1, 0, true},     // no padding
      {2, 16, 1, 1, 3, 1, 1, 0, true},      // a 1x1 image
      {1, 4, 9, 9, 320, 3, 1, 1, true},     // UNet conv_in shape class: few input channels
      {1, 320, 6, 6, 4, 3, 1, 1, true},     // UNet conv_out shape class: few output channels
      {1, 5, 6, 6, 7, 5, 1, 2, true},       // 5x5 kernel
  };
  uint32_t seed = 100;
  for (const Shape& s : shapes) {
    const Tensor x = test::random_f32({s.n, s.c, s.h, s.w}, seed++);
    const float ws = 1.0f / std::sqrt(static_cast<float>(s.c * s.k * s.k));
    const Tensor w = test::random_f32({s.o, s.c, s.k, s.k}, seed++, -ws, ws);
    const Tensor b = test::random_f32({s.o}, seed++);
    for (Precision prec : {Precision::F32, Precision::BF16}) {
      SCOPED_TRACE(fmt::format("x {} w {} stride {} pad {} {}", x.shape_str(), w.shape_str(), s.stride, s.pad,
                               ops::precision_name(prec)));
      conv_check(x, w, s.bias ? &b : nullptr, s.stride, s.pad, prec);
    }
  }
}

TEST(PackedConv2d, ChannelsLastAndStridedViews) {
  // x and y as NHWC buffers seen as NCHW (the zero-copy layout), and as an arbitrary strided view
  // (copied internally): same values as the contiguous run.
  const Tensor w = test::random_f32({24, 16, 3, 3}, 7, -0.1f, 0.1f), b = test::random_f32({24}, 8);
  const Tensor x = test::random_f32({2, 16, 11, 9}, 9);
  for (Precision prec : {Precision::F32, Precision::BF16}) {
    SCOPED_TRACE(ops::precision_name(prec));
    PackedConv2d conv(w, &b, 1, 1, prec);
    Tensor y = f32_empty(std::vector<int64_t>{2, 24, 11, 9});
    conv.run(x, y);
    Tensor x_nhwc_store = f32_empty(std::vector<int64_t>{2, 11, 9, 16});
    Tensor x_cl = x_nhwc_store.permute({0, 3, 1, 2});
    ops::copy(x, x_cl);
    Tensor y_nhwc_store = f32_empty(std::vector<int64_t>{2, 11, 9, 24});
    Tensor y_cl = y_nhwc_store.permute({0, 3, 1, 2});
    conv.run(x_cl, y_cl);
    EXPECT_TENSORS_CLOSE(y_cl, y, 1e-6f, 1e-6f);
    conv.run(x_cl, y);  // mixed layouts
    EXPECT_TENSORS_CLOSE(y_cl, y, 1e-6f, 1e-6f);
    // x as a [2, 16, 11, 9] slice of a wider buffer: neither layout, copied first
    Tensor wide = test::random_f32({2, 16, 11, 12}, 10);
    Tensor x_slice = wide.slice(3, 1, 9);
    ops::copy(x, x_slice);
    Tensor y2 = f32_empty(std::vector<int64_t>{2, 24, 11, 9});
    conv.run(x_slice, y2);
    EXPECT_TENSORS_CLOSE(y2, y, 1e-6f, 1e-6f);
  }
}

TEST(PackedConv2d, ManyShapesOneLayerAndThreads) {
  // One layer run at several image sizes and batch sizes (one cached primitive each), at 1 and 2
  // threads, interleaved: every result equals a fresh reference run.
  test::ThreadCountGuard guard;
  const Tensor w = test::random_f32({32, 16, 3, 3}, 11, -0.1f, 0.1f), b = test::random_f32({32}, 12);
  PackedConv2d conv(w, &b, 2, 1, Precision::BF16);
  for (int round = 0; round < 2; ++round)
    for (int64_t n : {1, 2})
      for (int64_t hw : {4, 9, 16}) {
        thread_count_set(1 + (hw + n + round) % 2);
        SCOPED_TRACE(fmt::format("n {} hw {} threads {}", n, hw, thread_count()));
        const Tensor x = test::random_f32({n, 16, hw, hw}, static_cast<uint32_t>(20 + hw + n));
        int64_t ho = 0, wo = 0;
        conv.output_size(hw, hw, ho, wo);
        Tensor got = f32_empty(std::vector<int64_t>{n, 32, ho, wo}), want = f32_empty(std::vector<int64_t>{n, 32, ho, wo});
        conv.run(x, got);
        ops::ref::conv2d(bf16_rounded(x), bf16_rounded(w), &b, want, 2, 1);
        EXPECT_TENSORS_CLOSE(got, want, kTol, kTol);
      }
}

TEST(PackedConv2d, DoesNotKeepTheWeightAlive) {
  Tensor w = test::random_f32({8, 4, 3, 3}, 13);
  Tensor b = test::random_f32({8}, 14);
  const std::weak_ptr<void> w_owner = w.owner(), b_owner = b.owner();
  PackedConv2d bf(w, &b, 1, 1, Precision::BF16), f(w, &b, 1, 1, Precision::F32);
  const Tensor x = test::random_f32({1, 4, 5, 5}, 15);
  Tensor want = f32_empty(std::vector<int64_t>{1, 8, 5, 5});
  ops::ref::conv2d(x, w, &b, want, 1, 1);
  w = Tensor();
  b = Tensor();
  EXPECT_TRUE(w_owner.expired());
  EXPECT_TRUE(b_owner.expired());
  Tensor y = f32_empty(std::vector<int64_t>{1, 8, 5, 5});
  f.run(x, y);
  EXPECT_TENSORS_CLOSE(y, want, kTol, kTol);
  bf.run(x, y);
  EXPECT_TENSORS_CLOSE(y, want, 2e-2f, 2e-2f);  // bf16: unit-scale data, fan-in 36 (bound above)
  EXPECT_GT(bf.weight_bytes(), 0u);
  if (onednn::bf16_supported())
    EXPECT_LT(bf.weight_bytes(), f.weight_bytes());  // bf16 packs half the bytes
  else
    EXPECT_EQ(bf.weight_bytes(), f.weight_bytes());  // bf16 runs in f32 (AVX2 CPUs: onednn.h)
}

TEST(PackedConv2d, AutoPrecisionFollowsTheWeightType) {
  const Tensor w = test::random_f32({8, 4, 3, 3}, 16);
  Tensor w16 = Tensor::empty(DType::F16, w.shape()), wb = Tensor::empty(DType::BF16, w.shape());
  ops::copy(w, w16);
  ops::copy(w, wb);
  EXPECT_EQ(PackedConv2d(w, nullptr, 1, 1, Precision::Auto).precision(), Precision::F32);
  EXPECT_EQ(PackedConv2d(w16, nullptr, 1, 1, Precision::Auto).precision(), Precision::F32);
  EXPECT_EQ(PackedConv2d(wb, nullptr, 1, 1, Precision::Auto).precision(), Precision::BF16);
  EXPECT_EQ(PackedConv2d(wb, nullptr, 1, 1, Precision::F32).precision(), Precision::F32);
}

TEST(PackedConv2d, Errors) {
  const Tensor w = test::random_f32({8, 4, 3, 3}, 17);
  const Tensor b_bad = test::random_f32({7}, 18), w_3d = test::random_f32({8, 4, 3}, 19);
  const Tensor w_rect = test::random_f32({8, 4, 3, 1}, 20);
  EXPECT_THROW(PackedConv2d(w, &b_bad, 1, 1), Error);
  EXPECT_THROW(PackedConv2d(w_3d, nullptr, 1, 1), Error);
  EXPECT_THROW(PackedConv2d(w_rect, nullptr, 1, 1), Error);
  EXPECT_THROW(PackedConv2d(w, nullptr, 0, 1), Error);
  EXPECT_THROW(PackedConv2d(w, nullptr, 1, -1), Error);
  PackedConv2d conv(w, nullptr, 1, 1, Precision::BF16);
  const Tensor x = test::random_f32({1, 4, 7, 7}, 21), x_bad_c = test::random_f32({1, 3, 7, 7}, 22);
  const Tensor x_small = test::random_f32({1, 4, 0, 7}, 23);
  Tensor y = f32_empty(std::vector<int64_t>{1, 8, 7, 7}), y_bad = f32_empty(std::vector<int64_t>{1, 8, 5, 5});
  EXPECT_NO_THROW(conv.run(x, y));
  EXPECT_THROW(conv.run(x_bad_c, y), Error);
  EXPECT_THROW(conv.run(x, y_bad), Error);
  PackedConv2d big(test::random_f32({2, 4, 5, 5}, 24), nullptr, 1, 0);
  Tensor y_big = f32_empty(std::vector<int64_t>{1, 2, 3, 3});
  EXPECT_THROW(big.run(x_small, y_big), Error);  // 0x7 image, 5x5 kernel, no padding
  PackedConv2d empty;
  EXPECT_THROW(empty.run(x, y), Error);
}

// ---- the ops around a convolution, on channels-last views -------------------------------------
// group_norm, silu, gelu and add have fast paths for channels-last [N, C, H, W] views (NHWC
// memory), so a model can keep activations in the layout PackedConv2d runs on. Each is checked
// against its reference kernel (which reads any strides, and is itself checked against PyTorch in
// test_ops_misc.cpp) on odd sizes at 1 and 2 threads. Tolerances: group_norm 1e-5 (statistics in
// double either way, f32 summation order differs); silu/gelu as the contiguous fast kernels (their
// polynomial error, kernels_f32.h: < 1.2e-6 relative near the origin, we allow 1e-5); add exact.

namespace {

// A channels-last view [n, c, h, w] holding the values of `src` (NCHW contiguous).
Tensor channels_last_copy(const Tensor& src) {
  Tensor store = Tensor::empty(DType::F32, {src.size(0), src.size(2), src.size(3), src.size(1)});
  Tensor v = store.permute({0, 3, 1, 2});
  ops::ref::copy(src, v);
  return v;
}

Tensor channels_last_empty(int64_t n, int64_t c, int64_t h, int64_t w) {
  return Tensor::empty(DType::F32, {n, h, w, c}).permute({0, 3, 1, 2});
}

}  // namespace

TEST(ChannelsLastOps, MatchReference) {
  test::ThreadCountGuard guard;
  struct S { int64_t n, c, h, w; int groups; };
  for (const S& s : {S{2, 64, 9, 7, 32}, S{1, 96, 17, 33, 32}, S{2, 6, 3, 5, 3}, S{1, 128, 32, 32, 32}})
    for (int threads : {1, 2}) {
      thread_count_set(threads);
      SCOPED_TRACE(fmt::format("[{}, {}, {}, {}] groups {} threads {}", s.n, s.c, s.h, s.w, s.groups, threads));
      const Tensor x = test::random_f32({s.n, s.c, s.h, s.w}, 31, -3.0f, 5.0f);  // mean far from 0
      const Tensor z = test::random_f32({s.n, s.c, s.h, s.w}, 32);
      const Tensor gamma = test::random_f32({s.c}, 33), beta = test::random_f32({s.c}, 34);
      const Tensor bias = test::random_f32({s.n, s.c, 1, 1}, 35);  // time-embedding add
      const Tensor xc = channels_last_copy(x), zc = channels_last_copy(z);
      Tensor want = Tensor::empty(DType::F32, {s.n, s.c, s.h, s.w});
      Tensor got = channels_last_empty(s.n, s.c, s.h, s.w);

      ops::ref::group_norm(x, gamma, beta, s.groups, 1e-6f, want);
      ops::group_norm(xc, gamma, beta, s.groups, 1e-6f, got);
      EXPECT_TENSORS_CLOSE(got, want, 1e-5f, 1e-5f);

      ops::ref::silu(x, want);
      ops::silu(xc, got);
      EXPECT_TENSORS_CLOSE(got, want, 1e-5f, 1e-5f);

      ops::ref::gelu(x, want);
      ops::gelu(xc, got);
      EXPECT_TENSORS_CLOSE(got, want, 1e-5f, 1e-5f);

      ops::ref::add(x, z, want);
      ops::add(xc, zc, got);
      EXPECT_TENSORS_CLOSE(got, want, 0.0f, 0.0f);

      ops::ref::add(x, bias, want);
      ops::add(xc, bias, got);
      EXPECT_TENSORS_CLOSE(got, want, 0.0f, 0.0f);

      Tensor inplace = channels_last_copy(x);  // y aliasing a
      ops::add(inplace, zc, inplace);
      ops::ref::add(x, z, want);
      EXPECT_TENSORS_CLOSE(inplace, want, 0.0f, 0.0f);
    }
}
