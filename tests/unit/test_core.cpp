// Core: dtype table, f16/bf16 conversion, tensor views, arena, Q8_0/Q4_0 reference rows.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "common/alloc_counter.h"
#include "common/compare.h"
#include "core/arena.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

using namespace aigc;

TEST(DType, GgmlIdsAndSizes) {
  EXPECT_EQ(static_cast<uint32_t>(DType::Q8_0), 8u);
  EXPECT_EQ(static_cast<uint32_t>(DType::BF16), 30u);
  EXPECT_EQ(dtype_traits(DType::Q4_0).block_bytes, 18u);
  EXPECT_EQ(*dtype_row_bytes(DType::Q8_0, 64), 68u);
  EXPECT_FALSE(dtype_row_bytes(DType::Q8_0, 33).has_value());
  EXPECT_FALSE(dtype_traits_find(4).has_value());  // removed Q4_2
  EXPECT_EQ(dtype_from_name("Q4_K"), DType::Q4_K);
}

TEST(Half, F16RoundTripAllValues) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f16_from_f32(f), h) << "h=" << h;
  }
}

TEST(Half, F16RoundsToNearestEven) {
  EXPECT_EQ(f16_to_f32(f16_from_f32(1.0f + 1.0f / 2048)), 1.0f);                 // tie -> even
  EXPECT_EQ(f16_to_f32(f16_from_f32(1.0f + 3.0f / 2048)), 1.0f + 4.0f / 2048);  // tie -> even
  EXPECT_TRUE(std::isinf(f16_to_f32(f16_from_f32(70000.0f))));
  EXPECT_EQ(f16_to_f32(f16_from_f32(65504.0f)), 65504.0f);
  EXPECT_EQ(f16_to_f32(f16_from_f32(5.960464477539063e-08f)), 5.960464477539063e-08f);  // min subnormal
}

TEST(Half, Bf16) {
  EXPECT_EQ(bf16_to_f32(bf16_from_f32(1.0f)), 1.0f);
  EXPECT_EQ(bf16_from_f32(1.00390625f), 0x3f80);  // tie -> even (down)
  EXPECT_EQ(bf16_from_f32(1.01171875f), 0x3f82);  // tie -> even (up)
  EXPECT_TRUE(std::isnan(bf16_to_f32(bf16_from_f32(NAN))));
}

TEST(Tensor, ViewsShareMemory) {
  Tensor x = Tensor::empty(DType::F32, {2, 3, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x.ptr<float>()[i] = static_cast<float>(i);
  EXPECT_TRUE(x.is_contiguous());
  Tensor t = x.transpose(0, 2);  // [4, 3, 2]
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.at<float>(3, 2, 1), x.at<float>(1, 2, 3));
  Tensor p = x.permute({1, 0, 2});
  EXPECT_EQ(p.at<float>(2, 1, 3), 23.0f);
  Tensor s = x.slice(1, 1, 2);
  EXPECT_EQ(s.at<float>(0, 0, 0), 4.0f);
  EXPECT_EQ(x.select(0, 1).at<float>(0, 0), 12.0f);
  EXPECT_EQ(x.reshape({6, -1}).size(0), 6);
  EXPECT_THROW(t.reshape({24}), Error);
  EXPECT_THROW(x.slice(1, 2, 2), Error);
}

TEST(Tensor, QuantisedRowsAreBlocks) {
  Tensor q = Tensor::empty(DType::Q8_0, {3, 64});
  EXPECT_EQ(q.nbytes(), 3u * 68u);
  EXPECT_EQ(q.stride_bytes(0), 68);
  EXPECT_THROW(Tensor::empty(DType::Q4_0, {2, 48}), Error);
}

TEST(Arena, CarvesAndResets) {
  Arena a(1 << 16);
  Tensor t1 = a.alloc(DType::F32, {10});
  Tensor t2 = a.alloc(DType::F32, {10});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t1.data()) % kTensorAlign, 0u);
  EXPECT_NE(t1.data(), t2.data());
  EXPECT_EQ(a.used(), 128u);
  a.reset();
  EXPECT_EQ(a.alloc(DType::F32, {10}).data(), t1.data());
  EXPECT_THROW(a.alloc(DType::F32, {1 << 20}), Error);
}

TEST(Quant, Q8_0RoundTripWithinHalfStep) {
  Tensor x = test::random_f32({4, 64}, 1, -3.0f, 3.0f);
  std::vector<BlockQ8_0> q(8);
  std::vector<float> y(256);
  quantize_row_q8_0_ref(x.ptr<float>(), q.data(), 256);
  dequantize_row_q8_0_ref(q.data(), y.data(), 256);
  for (int b = 0; b < 8; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x.ptr<float>()[b * 32 + j]));
    for (int j = 0; j < 32; ++j) EXPECT_NEAR(y[b * 32 + j], x.ptr<float>()[b * 32 + j], amax / 127 * 0.51 + 1e-3);
  }
}

TEST(Quant, Q4_0KnownBlock) {
  // max-magnitude value -8 gives d = 1, so every integer in [-8, 7] is exact.
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>((j % 16) - 8);
  BlockQ4_0 b;
  quantize_row_q4_0_ref(x, &b, 32);
  EXPECT_EQ(f16_to_f32(b.d), 1.0f);
  EXPECT_EQ(b.qs[0], 0x00);   // -8 -> 0 (low), -8 -> 0 (high)
  EXPECT_EQ(b.qs[15], 0xff);  // 7 -> 15
  float y[32];
  dequantize_row_q4_0_ref(&b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], x[j]);
}

TEST(ThreadPool, ParallelForCoversRange) {
  std::vector<int> hit(1000, 0);
  parallel_for(1000, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; ++i) hit[i]++; });
  for (int h : hit) EXPECT_EQ(h, 1);
  EXPECT_GE(thread_count(), 1);
}

TEST(AllocCounter, SeesOperatorNew) {
  test::AllocCounter allocs;
  auto v = std::make_unique<std::vector<int>>(100);
  EXPECT_GE(allocs.count(), 2);  // the vector object and its buffer
}

TEST(Half, RowF16ToF32MatchesScalarOnEveryValue) {
  // every f16 bit pattern, at an odd length so the SIMD tail runs too
  std::vector<uint16_t> h(65536 + 3);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint16_t>(i * 40503u);  // a permutation mod 2^16
  std::vector<float> got(h.size());
  row_f16_to_f32(h.data(), got.data(), static_cast<int64_t>(h.size()));
  for (size_t i = 0; i < h.size(); ++i) {
    const float want = f16_to_f32(h[i]);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got[i])) << i;
    } else {
      ASSERT_EQ(f32_bits(got[i]), f32_bits(want)) << "f16 bits " << h[i];
    }
  }
}
