// linear_panel, the bf16 prefill GEMM (src/backend/cpu/linear_panel.h):
//  - its row conversions (AVX512-BF16 kernels) equal the plain ones bit for bit;
//  - ops::linear at M >= kPanelMinRows (the panel GEMM itself where quantised rows stay on the
//    integer kernels) for every panel weight type against PyTorch
//    (tests/ref/twin_linear_panel.py) and against ops::ref::linear;
//  - several panels with a partial last one, odd K, strided rows, small M called directly, threads.
//
// Tolerances. Outputs are O(1) (weights ~ 1/sqrt(K), x ~ N(0, 1)).
//  - Against PyTorch's bf16 linear (both operands rounded to bf16, float64 sum): what remains is f32
//    accumulation over K <= 8192 terms, a random walk of ~sqrt(K) * 6e-8 * |term| << 1e-4:
//    atol = rtol = 1e-4, as test_ops_gemm's kTol. A weight or activation left unrounded moves an
//    output by ~2^-9 * |y| ~ 1e-3, so the check sees it.
//  - Against the f32 result (ops::ref::linear, PyTorch's float64): each operand's rounding is
//    <= 2^-9 relative, so |y - y_f32| <= ~2^-8 * sum_k |x_k w_k|; we allow twice that plus 1e-4.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "backend/cpu/linear_panel.h"
#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "common/thread_guard.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc {
namespace {

constexpr float kTol = 1e-4f;

// ops::linear where it takes the panel GEMM (ops::linear_takes_panel); where quantised weights with
// few rows stay on the integer kernels, the panel GEMM called directly (x, y contiguous).
void linear_via_panel(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  if (ops::linear_takes_panel(w.type(), x.size(0)))
    return ops::linear(x, w, bias, y);
  ops::linear_panel(x.ptr<float>(), x.size(1), x.size(0), w, bias ? bias->ptr<float>() : nullptr, y.ptr<float>(),
                    y.size(1));
}

// |got - want| <= 4/512 * sum_k |x[m, k] w[n, k]| + kTol elementwise (w dequantised by ref::linear's
// row_to_f32, x [M, K] contiguous).
::testing::AssertionResult within_bf16_bound(const Tensor& got, const Tensor& want, const Tensor& x, const Tensor& w) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const size_t row_bytes = *dtype_row_bytes(w.type(), K);
  std::vector<float> wr(K);
  for (int64_t n = 0; n < N; ++n) {
    row_to_f32(w.type(), w.ptr<char>() + n * row_bytes, wr.data(), K);
    for (int64_t m = 0; m < M; ++m) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += std::fabs(double(x.ptr<float>()[m * K + k]) * wr[k]);
      const double diff = std::fabs(double(got.ptr<float>()[m * N + n]) - want.ptr<float>()[m * N + n]);
      if (!(diff <= 4.0 / 512 * s + kTol))
        return ::testing::AssertionFailure() << "[" << m << ", " << n << "]: got " << got.ptr<float>()[m * N + n]
                                             << ", want " << want.ptr<float>()[m * N + n] << ", bound "
                                             << 4.0 / 512 * s + kTol;
    }
  }
  return ::testing::AssertionSuccess();
}

// The bf16 linear written out: x and w rounded to bf16 (bf16_from_f32), products summed in double.
Tensor linear_bf16_expected(const Tensor& x, const Tensor& w, const float* bias) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const size_t row_bytes = *dtype_row_bytes(w.type(), K);
  std::vector<double> xb(M * K);
  for (int64_t i = 0; i < M * K; ++i) xb[i] = bf16_to_f32(bf16_from_f32(x.ptr<float>()[i]));
  Tensor y = Tensor::empty(DType::F32, {M, N});
  std::vector<float> wr(K);
  for (int64_t n = 0; n < N; ++n) {
    row_to_f32(w.type(), w.ptr<char>() + n * row_bytes, wr.data(), K);
    for (int64_t k = 0; k < K; ++k) wr[k] = bf16_to_f32(bf16_from_f32(wr[k]));
    for (int64_t m = 0; m < M; ++m) {
      double s = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += xb[m * K + k] * wr[k];
      y.ptr<float>()[m * N + n] = static_cast<float>(s);
    }
  }
  return y;
}

Tensor quantised_random(DType t, int64_t N, int64_t K, uint32_t seed) {
  const Tensor wf = test::random_f32({N, K}, seed, -1.0f / std::sqrt(float(K)), 1.0f / std::sqrt(float(K)));
  Tensor w = Tensor::empty(t, {N, K});
  ops::copy(wf, w);
  return w;
}

#define SKIP_WITHOUT_PANEL()                                                                      \
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX512-BF16: ops::linear does not take the panel path here"

// ---- row conversions --------------------------------------------------------------------------

TEST(LinearPanel, RowKernelsEqualPlainConversion) {
  SKIP_WITHOUT_PANEL();
  // f16: every bit pattern (NaNs included: both quiet them the same way).
  {
    std::vector<uint16_t> h(65536), got(65536), want(65536);
    for (int i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
    ops::panel::row_f16_to_bf16_avx512(h.data(), got.data(), 65536);
    for (int i = 0; i < 65536; ++i) want[i] = bf16_from_f32(f16_to_f32(h[i]));
    EXPECT_EQ(got, want);
    for (int64_t n : {1, 3, 17, 33, 65}) {  // tails
      std::vector<uint16_t> g(n + 1, 0xdead);
      ops::panel::row_f16_to_bf16_avx512(h.data() + 1000, g.data(), n);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(g[i], want[1000 + i]) << n << " " << i;
      EXPECT_EQ(g[n], 0xdead) << "wrote past the end, n = " << n;
    }
  }
  // f32 (activations): normal values of every magnitude, ties, tails; subnormals excluded (the
  // instruction flushes them to zero, see linear_panel.h).
  {
    const int64_t n = 4099;
    std::vector<float> x(n);
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; ++i) {
      s = s * 1664525u + 1013904223u;
      uint32_t bits = s;
      if (((bits >> 23) & 0xff) == 0) bits |= 1u << 23;  // no subnormals
      if (i % 7 == 0) bits = (bits & 0xffff0000u) | 0x8000u;  // exact ties: round to even
      std::memcpy(&x[i], &bits, 4);
    }
    std::vector<uint16_t> got(n + 1, 0xdead);
    ops::panel::row_f32_to_bf16_avx512(x.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i)
      if (!std::isnan(x[i])) {
        ASSERT_EQ(got[i], bf16_from_f32(x[i])) << i;
      }
    EXPECT_EQ(got[n], 0xdead);
  }
  // Quantised rows: each SIMD kernel against row_to_f32 + bf16_from_f32.
  struct Q { DType t; void (*k)(const void*, uint16_t*, int64_t); };
  for (const Q q : {Q{DType::Q8_0, ops::panel::row_q8_0_to_bf16_avx512}, Q{DType::Q4_0, ops::panel::row_q4_0_to_bf16_avx512},
                    Q{DType::Q4_1, ops::panel::row_q4_1_to_bf16_avx512}, Q{DType::Q5_0, ops::panel::row_q5_0_to_bf16_avx512},
                    Q{DType::Q5_1, ops::panel::row_q5_1_to_bf16_avx512}, Q{DType::Q4_K, ops::panel::row_q4_K_to_bf16_avx512}, Q{DType::Q5_K, ops::panel::row_q5_K_to_bf16_avx512},
                    Q{DType::Q6_K, ops::panel::row_q6_K_to_bf16_avx512}}) {
    SCOPED_TRACE(dtype_name(q.t));
    const int64_t K = 1280;  // 5 K-quant super-blocks, 40 blocks of 32
    const Tensor w = quantised_random(q.t, 3, K, 77);
    const size_t rb = *dtype_row_bytes(q.t, K);
    for (int64_t r = 0; r < 3; ++r) {
      std::vector<uint16_t> got(K), want(K);
      q.k(w.ptr<char>() + r * rb, got.data(), K);
      ops::panel::row_to_bf16_scalar(q.t, w.ptr<char>() + r * rb, want.data(), K);
      EXPECT_EQ(got, want) << "row " << r;
    }
  }
  // R16 rows (the loader's repacking): each kernel against the plain conversion, which unpacks the
  // groups to the file type's blocks (r16_unpack) and converts those. K = 1312: 2 full groups of 16
  // blocks and a tail of 9 file-layout blocks.
  for (const Q q : {Q{DType::Q4_0_R16, ops::panel::row_q4_0_r16_to_bf16_avx512},
                    Q{DType::Q4_1_R16, ops::panel::row_q4_1_r16_to_bf16_avx512},
                    Q{DType::Q5_0_R16, ops::panel::row_q5_0_r16_to_bf16_avx512},
                    Q{DType::Q5_1_R16, ops::panel::row_q5_1_r16_to_bf16_avx512}}) {
    SCOPED_TRACE(dtype_name(q.t));
    const int64_t K = 1312;
    const Tensor w = quantised_random(q.t, 3, K, 79);
    const size_t rb = *dtype_row_bytes(q.t, K);
    for (int64_t r = 0; r < 3; ++r) {
      std::vector<uint16_t> got(K + 1, 0xdead), want(K);
      q.k(w.ptr<char>() + r * rb, got.data(), K);
      ops::panel::row_to_bf16_scalar(q.t, w.ptr<char>() + r * rb, want.data(), K);
      EXPECT_EQ(std::vector<uint16_t>(got.begin(), got.begin() + K), want) << "row " << r;
      EXPECT_EQ(got[K], 0xdead) << "wrote past the end";
    }
  }
  // row_to_bf16 (the dispatcher) for every type, incl. those without a SIMD kernel.
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q4_0_R16, DType::Q4_1_R16, DType::Q5_0_R16,
                  DType::Q5_1_R16}) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t K = 512;
    const Tensor w = quantised_random(t, 1, K, 78);
    std::vector<uint16_t> got(K), want(K);
    ops::row_to_bf16(t, w.data(), got.data(), K);
    ops::panel::row_to_bf16_scalar(t, w.data(), want.data(), K);
    EXPECT_EQ(got, want);
  }
}

// ---- against PyTorch --------------------------------------------------------------------------

TEST(LinearPanel, EveryWeightTypeMatchesTorch) {
  SKIP_WITHOUT_PANEL();
  const test::RefDump d = test::RefDump::load("linear_panel");
  const std::pair<const char*, DType> types[] = {
      {"f16", DType::F16},   {"bf16", DType::BF16}, {"q8_0", DType::Q8_0}, {"q4_0", DType::Q4_0}, {"q4_1", DType::Q4_1},
      {"q5_0", DType::Q5_0}, {"q5_1", DType::Q5_1}, {"q4_K", DType::Q4_K}, {"q5_K", DType::Q5_K}, {"q6_K", DType::Q6_K}};
  int cases = 0, r16_cases = 0;
  // (appended, not "c" + std::to_string(c): GCC 12 warns falsely about that form)
  for (int c = 0;; ++c) {
    std::string p = "c";
    p.append(std::to_string(c)).append("_");
    if (!d.has(p + "x")) break;
    const Tensor& x = d.get(p + "x");  // [M, K]
    const int64_t M = x.size(0), K = x.size(1);
    ASSERT_GE(M, ops::kPanelMinRows);
    const Tensor* bias = d.has(p + "b") ? &d.get(p + "b") : nullptr;
    for (const auto& [name, t] : types) {
      SCOPED_TRACE(p + name);
      const Tensor& raw = d.get(p + name + "_w");  // u8 [N, row bytes]
      const Tensor& want = d.get(p + name + "_y_bf16");
      const int64_t N = want.size(1);
      ASSERT_EQ(static_cast<size_t>(raw.numel()), *dtype_row_bytes(t, K) * N);
      const int64_t shape[] = {N, K};
      const Tensor w = Tensor::view_of(t, shape, const_cast<void*>(raw.data()), raw.owner());
      Tensor y = Tensor::empty(DType::F32, {M, N}), yr = Tensor::empty(DType::F32, {M, N});
      linear_via_panel(x, w, bias, y);
      EXPECT_TENSORS_CLOSE(y, want, kTol, kTol);
      ops::ref::linear(x, w, bias, yr);
      EXPECT_TENSORS_CLOSE(yr, d.get(p + name + "_y_f32"), kTol, kTol);  // the twin's dequantisation is ours
      EXPECT_TRUE(within_bf16_bound(y, yr, x, w));
      EXPECT_FALSE(test::tensors_close(y, yr, 1e-6f, 0.0f)) << "the bf16 rounding should show";
      ++cases;
      // The same weights repacked as the model loader repacks them (R16 layouts, where a row has a
      // full group of 16 blocks): the same expected result.
      if (const std::optional<DType> r16 = r16_of(t); r16 && K / 32 >= kR16Group) {
        SCOPED_TRACE(dtype_name(*r16));
        Tensor wr = Tensor::empty(*r16, {N, K});
        ops::linear_repack(w, wr);
        Tensor y16 = Tensor::empty(DType::F32, {M, N});
        linear_via_panel(x, wr, bias, y16);
        EXPECT_TENSORS_CLOSE(y16, want, kTol, kTol);
        ++r16_cases;
      }
    }
  }
  EXPECT_EQ(cases, 30);
  EXPECT_EQ(r16_cases, 8);  // 4 types x the 2 shapes with K >= 512
}

// ---- panels, strides, small M, threads ---------------------------------------------------------

TEST(LinearPanel, SeveralPanelsStridesAndThreads) {
  SKIP_WITHOUT_PANEL();
  test::ThreadCountGuard guard;
  // K = 8192: 256-row panels, so N = 300 is a full panel and a partial one.
  const int64_t M = 16, K = 8192, N = 300;
  const Tensor x = test::random_f32({M, K}, 5);
  const Tensor bias = test::random_f32({N}, 6);
  for (DType t : {DType::F16, DType::Q4_0}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor w = quantised_random(t, N, K, 7);
    const Tensor want = linear_bf16_expected(x, w, bias.ptr<float>());
    Tensor y1 = Tensor::empty(DType::F32, {M, N}), y2 = Tensor::empty(DType::F32, {M, N});
    thread_count_set(1);
    linear_via_panel(x, w, &bias, y1);
    thread_count_set(2);
    linear_via_panel(x, w, &bias, y2);
    EXPECT_TENSORS_CLOSE(y1, want, kTol, kTol);
    EXPECT_TENSORS_CLOSE(y2, want, kTol, kTol);
  }
  // Odd K (f16 / bf16 rows need no blocks): SIMD tails in the row conversions, odd GEMM shapes.
  for (int64_t k : {1, 7, 37, 100})
    for (DType t : {DType::F16, DType::BF16}) {
      SCOPED_TRACE("K " + std::to_string(k) + " " + std::string(dtype_name(t)));
      const Tensor xo = test::random_f32({17, k}, 11 + k);
      const Tensor w = quantised_random(t, 19, k, 12 + k);
      Tensor y = Tensor::empty(DType::F32, {17, 19});
      ops::linear(xo, w, nullptr, y);
      EXPECT_TENSORS_CLOSE(y, linear_bf16_expected(xo, w, nullptr), kTol, kTol);
    }
  // Called directly: M below kPanelMinRows (1, 5), rows of x and y with padding (ldx > K, ldy > N).
  for (int64_t m : {1, 5, 17}) {
    SCOPED_TRACE("M " + std::to_string(m));
    const int64_t k = 96, n = 33, ldx = 100, ldy = 40;
    const Tensor xs = test::random_f32({m, ldx}, 8 + m);
    const Tensor w = quantised_random(DType::Q8_0, n, k, 9);
    const Tensor b = test::random_f32({n}, 10);
    std::vector<float> y(m * ldy, 12345.0f);
    ops::linear_panel(xs.ptr<float>(), ldx, m, w, b.ptr<float>(), y.data(), ldy);
    Tensor x = Tensor::empty(DType::F32, {m, k});
    for (int64_t r = 0; r < m; ++r) std::memcpy(x.ptr<float>() + r * k, xs.ptr<float>() + r * ldx, k * 4);
    const Tensor want = linear_bf16_expected(x, w, b.ptr<float>());
    Tensor got = Tensor::empty(DType::F32, {m, n});
    for (int64_t r = 0; r < m; ++r) {
      std::memcpy(got.ptr<float>() + r * n, y.data() + r * ldy, n * 4);
      for (int64_t c = n; c < ldy; ++c) EXPECT_EQ(y[r * ldy + c], 12345.0f) << "padding overwritten";
    }
    EXPECT_TENSORS_CLOSE(got, want, kTol, kTol);
  }
}

}  // namespace
}  // namespace aigc
