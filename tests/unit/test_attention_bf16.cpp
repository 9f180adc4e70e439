// ops::attention with AttentionParams::precision = BF16 (oneDNN bf16 matmuls on query blocks, an
// AVX-512 softmax that writes bf16 weights) against ops::ref::attention and PyTorch
// (tests/ref/twin_ops_misc.py, dump ops_attention).
//
// Error bounds, per output element (b, h, i, c), first order in the roundings (u = 2^-8, the
// largest relative error of rounding to bf16's 8 significant bits):
//  - the kernel computes out = sum_j bf16(p_j) v_j / sum_j p_j from bf16 q, k, v. Against the
//    reference run on the same rounded q, k, v, only the rounding of p_j (<= u relative) and f32
//    summation / the exp polynomial (< 1e-5) differ: |err| <= u * sum_j p_j |v_jc| + 1e-5, and
//    sum_j p_j |v_jc| is exactly ref::attention(q, k, |v|).
//  - against the exact f32 attention (reference, PyTorch): rounding q and k moves score j by at most
//    ds_i = 2u * scale * max_j sum_d |q_id k_jd|; a shift of all scores by at most ds moves the
//    softmax weights by a factor within e^(+-2 ds), so |err| <= (2 ds_i + 2u) * sum_j p_j |v_jc|
//    (v rounding adds u, p rounding u); we allow 1.5x that for second-order terms, + 1e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "common/thread_guard.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"

using namespace aigc;
using ops::AttentionParams;
using ops::Precision;

namespace {

constexpr float kU = 0x1p-8f;

Tensor f32_empty(std::span<const int64_t> shape) { return Tensor::empty(DType::F32, shape); }

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

float scale_of(const Tensor& q, const AttentionParams& p) {
  return p.scale != 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(q.size(3)));
}

// Checks |got - want| <= factor_ic * weight_ic + 1e-5, factor per query row (b, h, i).
template <typename Factor>
::testing::AssertionResult within(const Tensor& got, const Tensor& want, const Tensor& weight, Factor factor) {
  for (int64_t b = 0; b < got.size(0); ++b)
    for (int64_t h = 0; h < got.size(1); ++h)
      for (int64_t i = 0; i < got.size(2); ++i) {
        const float f = factor(b, h, i);
        for (int64_t c = 0; c < got.size(3); ++c) {
          const float g = got.at<float>(b, h, i, c), w = want.at<float>(b, h, i, c);
          const float lim = f * weight.at<float>(b, h, i, c) + 1e-5f;
          if (!(std::fabs(g - w) <= lim))
            return ::testing::AssertionFailure() << "at (" << b << ", " << h << ", " << i << ", " << c << "): got " << g
                                                << ", want " << w << ", bound " << lim;
        }
      }
  return ::testing::AssertionSuccess();
}

// Runs the bf16 kernel and checks it against both references (see the top comment).
void attention_check(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p0,
                     const Tensor* torch_y = nullptr) {
  AttentionParams p = p0;
  p.precision = Precision::BF16;
  const std::vector<int64_t> os{q.size(0), q.size(1), q.size(2), v.size(3)};
  Tensor got = f32_empty(os), want = f32_empty(os), want_r = f32_empty(os), wsum = f32_empty(os),
         wsum_r = f32_empty(os);
  ops::attention(q, k, v, got, p);
  ops::ref::attention(q, k, v, want, p0);
  const Tensor qr = bf16_rounded(q), kr = bf16_rounded(k), vr = bf16_rounded(v);
  ops::ref::attention(qr, kr, vr, want_r, p0);
  ops::ref::attention(qr, kr, abs_of(vr), wsum_r, p0);  // sum_j p_j |v_jc| on the rounded inputs
  ops::ref::attention(q, k, abs_of(v), wsum, p0);
  // Under 16 queries or keys the op runs the f32 kernel (q, k, v not rounded): the second bound only.
  const bool bf16_taken = q.size(2) >= 16 && k.size(2) >= 16;
  if (bf16_taken) { EXPECT_TRUE(within(got, want_r, wsum_r, [](int64_t, int64_t, int64_t) { return kU; })); }
  // ds per query row: 2u * scale * max_j sum_d |q_id k_jd| (key heads shared by query groups)
  const float scale = scale_of(q, p0);
  const int64_t group = q.size(1) / k.size(1);
  auto factor = [&](int64_t b, int64_t h, int64_t i) {
    double mx = 0.0;
    for (int64_t j = 0; j < k.size(2); ++j) {
      double s = 0.0;
      for (int64_t d = 0; d < q.size(3); ++d)
        s += std::fabs(static_cast<double>(q.at<float>(b, h, i, d)) * k.at<float>(b, h / group, j, d));
      mx = std::max(mx, s);
    }
    const double ds = 2.0 * kU * scale * mx;
    return static_cast<float>(1.5 * (2.0 * ds + 2.0 * kU));
  };
  EXPECT_TRUE(within(got, want, wsum, factor));
  if (torch_y) { EXPECT_TRUE(within(got, *torch_y, wsum, factor)); }
}

bool bf16_path_runs() { return cpu_has_avx512_bf16(); }

}  // namespace

TEST(AttentionBf16, MatchesTorch) {
  if (!bf16_path_runs()) GTEST_SKIP() << "no AVX512-BF16 on this CPU: BF16 attention runs the f32 kernel";
  const test::RefDump d = test::RefDump::load("ops_attention");
  // All cases: those under 16 queries or keys take the f32 kernel (still within the bound).
  for (std::string c : {"att_self", "att_cross", "att_gqa", "att_decode", "att_chunk", "att_scale", "att_dv"}) {
    SCOPED_TRACE(c);
    const Tensor& prm = d.get(c + ".params");
    AttentionParams p;
    p.scale = prm.ptr<float>()[0];
    p.causal = prm.ptr<float>()[1] != 0.0f;
    p.q_offset = static_cast<int64_t>(prm.ptr<float>()[2]);
    Tensor q = d.get(c + ".q"), k = d.get(c + ".k"), v = d.get(c + ".v");
    if (prm.ptr<float>()[3] != 0.0f) {  // stored [B, T, H, D]: strided [B, H, T, D] views
      q = q.permute({0, 2, 1, 3});
      k = k.permute({0, 2, 1, 3});
      v = v.permute({0, 2, 1, 3});
    }
    attention_check(q, k, v, p, &d.get(c + ".y"));
  }
}

TEST(AttentionBf16, OddShapesMatchReference) {
  if (!bf16_path_runs()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  struct Case { int64_t b, hq, hkv, tq, tk, d, dv; bool causal; int64_t q_offset; float scale; bool bthd; };
  const Case cases[] = {
      {2, 3, 3, 50, 77, 40, 40, false, 0, 0.0f, false},   // cross-attention: 77 keys, 2 blocks + tail
      {1, 1, 1, 100, 33, 17, 23, false, 0, 0.0f, false},  // odd D and Dv (masked SIMD tails)
      {1, 4, 2, 70, 70, 64, 64, true, 0, 0.0f, true},     // causal, grouped heads, [B, T, H, D] views
      {1, 2, 2, 20, 45, 16, 16, true, 25, 0.3f, false},   // causal with offset, explicit scale
      {2, 2, 2, 16, 16, 80, 80, false, 0, 0.0f, false},   // the smallest sizes that take the bf16 path
      {1, 1, 1, 96, 96, 512, 512, false, 0, 0.0f, false}, // VAE mid-block shape class: one wide head
  };
  uint32_t seed = 300;
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("B{} Hq{} Hkv{} Tq{} Tk{} D{} Dv{} causal{} off{}", c.b, c.hq, c.hkv, c.tq, c.tk, c.d,
                             c.dv, c.causal, c.q_offset));
    AttentionParams p;
    p.causal = c.causal;
    p.q_offset = c.q_offset;
    p.scale = c.scale;
    // unit-variance-ish values (uniform [-1.7, 1.7))
    Tensor q = test::random_f32({c.b, c.tq, c.hq, c.d}, seed++, -1.7f, 1.7f);
    Tensor k = test::random_f32({c.b, c.tk, c.hkv, c.d}, seed++, -1.7f, 1.7f);
    Tensor v = test::random_f32({c.b, c.tk, c.hkv, c.dv}, seed++, -1.7f, 1.7f);
    Tensor qv = q.permute({0, 2, 1, 3}), kv = k.permute({0, 2, 1, 3}), vv = v.permute({0, 2, 1, 3});
    if (!c.bthd) {  // contiguous [B, H, T, D]
      qv = test::to_f32(qv), kv = test::to_f32(kv), vv = test::to_f32(vv);
    }
    attention_check(qv, kv, vv, p);
  }
}

TEST(AttentionBf16, LongSequenceAndThreads) {
  if (!bf16_path_runs()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  // 300 queries and keys: many query blocks and a partial last one.
  test::ThreadCountGuard guard;
  const Tensor q = test::random_f32({1, 2, 300, 40}, 400, -1.7f, 1.7f);
  const Tensor k = test::random_f32({1, 2, 300, 40}, 401, -1.7f, 1.7f);
  const Tensor v = test::random_f32({1, 2, 300, 40}, 402, -1.7f, 1.7f);
  attention_check(q, k, v, {});
  AttentionParams p;
  p.precision = Precision::BF16;
  // Every (head, query block) task runs alone on one thread with 1-thread primitives, so the thread
  // count cannot change a single bit. Repeated: threads running tasks side by side must not share
  // any scratch (a shared oneDNN scratchpad once corrupted whole blocks here).
  Tensor y1 = f32_empty(std::vector<int64_t>{1, 2, 300, 40}), y2 = f32_empty(std::vector<int64_t>{1, 2, 300, 40});
  thread_count_set(1);
  ops::attention(q, k, v, y1, p);
  thread_count_set(2);
  for (int rep = 0; rep < 20; ++rep) {
    ops::attention(q, k, v, y2, p);
    ASSERT_TRUE(test::tensors_close(y2, y1, 0.0f, 0.0f)) << "repetition " << rep;
  }
}

TEST(AttentionBf16, OutputMayBeAStridedView) {
  if (!bf16_path_runs()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const Tensor q = test::random_f32({1, 2, 40, 32}, 500), k = test::random_f32({1, 2, 48, 32}, 501),
               v = test::random_f32({1, 2, 48, 32}, 502);
  AttentionParams p;
  p.precision = Precision::BF16;
  Tensor want = f32_empty(std::vector<int64_t>{1, 2, 40, 32});
  ops::attention(q, k, v, want, p);
  Tensor store = f32_empty(std::vector<int64_t>{1, 40, 2, 32});
  Tensor out = store.permute({0, 2, 1, 3});  // [B, H, T, D] view of [B, T, H, D] storage
  ops::attention(q, k, v, out, p);
  EXPECT_TENSORS_CLOSE(out, want, 0.0f, 0.0f);
}
