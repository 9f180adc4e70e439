// Autograd (src/train/autograd.h) and the backward kernels (src/train/backward.h):
//  - every backward kernel, fast and reference, against PyTorch autograd (tests/ref/twin_train_ops.py);
//  - every op through the Graph against central finite differences (f32 values, double sums);
//  - accumulation when a value feeds several ops; bad shapes throw; a step allocates nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "common/alloc_counter.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "train/adamw.h"
#include "train/autograd.h"

namespace aigc::train {
namespace {

// ---- against PyTorch -----------------------------------------------------------------------------

Tensor zeros_like(const Tensor& t) {
  Tensor z = Tensor::empty(DType::F32, t.shape());
  std::memset(z.data(), 0, z.nbytes());
  return z;
}

std::span<const int32_t> ids_of(const Tensor& t) { return {t.ptr<int32_t>(), static_cast<size_t>(t.numel())}; }

// Tolerances vs the float64 twin: inputs are exact f32, sums are short (<= 19 terms), so f32
// rounding stays below 1e-6 relative; 1e-5 + 1e-4 relative leaves margin and still fails any
// wrong term, sign or missing factor (errors of O(|grad|)).
constexpr float kAtol = 1e-5f, kRtol = 1e-4f;

class BackwardTwin : public ::testing::TestWithParam<bool> {  // param: reference kernels
 protected:
  test::RefDump ref = test::RefDump::load("train_ops");
  const Tensor& r(const std::string& n) { return ref.get(n); }
};

#define KERNEL(name) (GetParam() ? grad::ref::name : grad::name)

TEST_P(BackwardTwin, Linear) {
  Tensor dx = zeros_like(r("linear.x")), dw = zeros_like(r("linear.w"));
  Tensor scratch = Tensor::empty(DType::F32, {7 * 13});
  KERNEL(linear_backward)(r("linear.x"), r("linear.w"), r("linear.dy"), &dx, &dw, scratch);
  EXPECT_TENSORS_CLOSE(dx, r("linear.dx"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(dw, r("linear.dw"), kAtol, kRtol);
  // Accumulates: a second call doubles the gradients.
  KERNEL(linear_backward)(r("linear.x"), r("linear.w"), r("linear.dy"), &dx, nullptr, scratch);
  for (int64_t i = 0; i < dx.numel(); ++i) dx.ptr<float>()[i] *= 0.5f;
  EXPECT_TENSORS_CLOSE(dx, r("linear.dx"), kAtol, kRtol);
}

TEST_P(BackwardTwin, RmsNorm) {
  Tensor dx = zeros_like(r("rms_norm.x")), dg = zeros_like(r("rms_norm.g"));
  KERNEL(rms_norm_backward)(r("rms_norm.x"), r("rms_norm.g"), 1e-5f, r("rms_norm.dy"), dx, dg);
  EXPECT_TENSORS_CLOSE(dx, r("rms_norm.dx"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(dg, r("rms_norm.dg"), kAtol, kRtol);
}

TEST_P(BackwardTwin, Rope) {
  for (bool neox : {false, true}) {
    const std::string n = neox ? "rope_neox" : "rope";
    const int32_t pos_arr[] = {0, 1, 2, 3, 4};
    const std::span<const int32_t> pos(pos_arr);
    ops::RopeParams p;
    p.neox = neox;
    Tensor y = zeros_like(r(n + ".x")), dx = zeros_like(r(n + ".x"));
    ops::rope(r(n + ".x"), pos, p, y);  // the engine's forward agrees with the twin's rope
    EXPECT_TENSORS_CLOSE(y, r(n + ".y"), kAtol, kRtol) << n;
    KERNEL(rope_backward)(r(n + ".dy"), pos, p, dx);
    EXPECT_TENSORS_CLOSE(dx, r(n + ".dx"), kAtol, kRtol) << n;
  }
}

TEST_P(BackwardTwin, Attention) {
  // T = 5: the fast kernels' loop path; T = 21: their per-head oneDNN matmul path.
  for (const auto& [n, s] : {std::pair<std::string, grad::AttentionShape>{"attention", {2, 5, 4, 2, 3, 0.0f}},
                             std::pair<std::string, grad::AttentionShape>{"attention_long", {2, 21, 4, 2, 5, 0.0f}}}) {
    Tensor y = zeros_like(r(n + ".y")), probs = Tensor::empty(DType::F32, {s.H, s.B, s.T, s.T});
    Tensor scratch = Tensor::empty(DType::F32, {grad::attention_scratch_floats(s)});
    KERNEL(attention_forward)(r(n + ".q"), r(n + ".k"), r(n + ".v"), s, y, probs, scratch);
    EXPECT_TENSORS_CLOSE(y, r(n + ".y"), kAtol, kRtol) << n;
    EXPECT_TENSORS_CLOSE(probs.permute({1, 0, 2, 3}), r(n + ".probs"), kAtol, kRtol) << n;  // ours [H, B, T, T]
    Tensor dq = zeros_like(r(n + ".q")), dk = zeros_like(r(n + ".k")), dv = zeros_like(r(n + ".v"));
    KERNEL(attention_backward)(r(n + ".q"), r(n + ".k"), r(n + ".v"), probs, s, r(n + ".dy"), dq, dk, dv, scratch);
    EXPECT_TENSORS_CLOSE(dq, r(n + ".dq"), kAtol, kRtol) << n;
    EXPECT_TENSORS_CLOSE(dk, r(n + ".dk"), kAtol, kRtol) << n;
    EXPECT_TENSORS_CLOSE(dv, r(n + ".dv"), kAtol, kRtol) << n;
  }
}

TEST_P(BackwardTwin, SiluMulEmbedding) {
  Tensor dx = zeros_like(r("silu.x"));
  KERNEL(silu_backward)(r("silu.x"), r("silu.dy"), dx);
  EXPECT_TENSORS_CLOSE(dx, r("silu.dx"), kAtol, kRtol);
  Tensor da = zeros_like(r("mul.a")), db = zeros_like(r("mul.b"));
  KERNEL(mul_backward)(r("mul.a"), r("mul.b"), r("mul.dy"), &da, &db);
  EXPECT_TENSORS_CLOSE(da, r("mul.da"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(db, r("mul.db"), kAtol, kRtol);
  Tensor dt = zeros_like(r("embedding.table"));
  KERNEL(embedding_backward)(ids_of(r("embedding.ids")), r("embedding.dy"), dt);  // ids repeat: sums
  EXPECT_TENSORS_CLOSE(dt, r("embedding.dtable"), kAtol, kRtol);
}

TEST_P(BackwardTwin, CrossEntropy) {
  const Tensor& logits = r("cross_entropy.logits");
  Tensor rows = Tensor::empty(DType::F32, {7, 11}), dl = zeros_like(logits);
  const float loss = KERNEL(cross_entropy_forward)(logits, ids_of(r("cross_entropy.targets")), rows);
  EXPECT_NEAR(loss, r("cross_entropy.loss").ptr<float>()[0], 1e-5f);
  KERNEL(cross_entropy_backward)(logits, rows, ids_of(r("cross_entropy.targets")), 1.7f, dl);
  EXPECT_TENSORS_CLOSE(dl, r("cross_entropy.dlogits"), kAtol, kRtol);
  std::vector<int32_t> bad(7, 0);
  bad[3] = 11;
  EXPECT_THROW(KERNEL(cross_entropy_forward)(logits, bad, rows), Error);
}

INSTANTIATE_TEST_SUITE_P(Kernels, BackwardTwin, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "reference" : "fast"; });

// ---- finite differences through the Graph -----------------------------------------------------

void fill_random(Tensor& t, std::mt19937& rng, float scale, float offset = 0.0f) {
  std::normal_distribution<float> n(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = offset + n(rng);
}

// L = sum(y * R) (R fixed random), in double. Every element of every input is moved by +-h and the
// central difference compared with the graph's gradient. f32 values with h = 1e-2: the difference
// quotient carries f32 rounding of L (~1e-6 / 2h = 5e-5) plus h^2 truncation (~1e-4 |f'''|), so
// |fd - grad| <= 2e-3 + 1e-2 |grad|; a wrong backward is off by O(|grad|) (~0.1..1 here).
void fd_check(Graph& g, Var y, std::initializer_list<Var> inputs, bool reference, uint32_t seed) {
  g.kernels_reference_set(reference);
  std::mt19937 rng(seed);
  const int64_t ny = g.value(y).numel();
  std::vector<float> R(static_cast<size_t>(ny));
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (float& v : R) v = n(rng);
  auto loss = [&] {
    g.forward(y);
    double l = 0;
    for (int64_t i = 0; i < ny; ++i) l += static_cast<double>(g.value(y).ptr<float>()[i]) * R[i];
    return l;
  };
  loss();
  g.backward(y, R);
  for (Var in : inputs) {
    Tensor an = zeros_like(g.grad(in));
    std::memcpy(an.data(), g.grad(in).data(), an.nbytes());
    Tensor fd = zeros_like(an);
    float* x = g.value(in).ptr<float>();
    const float h = 1e-2f;
    for (int64_t i = 0; i < an.numel(); ++i) {
      const float keep = x[i];
      x[i] = keep + h;
      const double lp = loss();
      x[i] = keep - h;
      const double lm = loss();
      x[i] = keep;
      fd.ptr<float>()[i] = static_cast<float>((lp - lm) / (2.0 * h));
    }
    EXPECT_TENSORS_CLOSE(an, fd, 2e-3f, 1e-2f) << "input var " << in.id << (reference ? " (reference)" : " (fast)");
  }
}

class FiniteDiff : public ::testing::TestWithParam<bool> {};

TEST_P(FiniteDiff, LinearRmsNormSiluMulAdd) {
  std::mt19937 rng(1);
  Graph g;
  Var x = g.param("x", {5, 9}), w = g.param("w", {7, 9}), gm = g.param("g", {7}), w2 = g.param("w2", {7, 9});
  Var a = g.linear(x, w);                                 // [5, 7]
  Var b = g.rms_norm(a, gm, 1e-5f);
  Var c = g.mul(g.silu(b), g.linear(x, w2));              // x used twice: gradients accumulate
  Var y = g.add(c, g.mul(a, a));                          // a used three times, mul(a, a) included
  g.allocate();
  fill_random(g.value(x), rng, 1.0f);
  fill_random(g.value(w), rng, 0.4f);
  fill_random(g.value(w2), rng, 0.4f);
  fill_random(g.value(gm), rng, 0.2f, 1.0f);
  fd_check(g, y, {x, w, gm, w2}, GetParam(), 2);
}

TEST_P(FiniteDiff, RopeAttention) {
  std::mt19937 rng(3);
  const int64_t B = 2, T = 5, H = 4, G = 2, D = 6;
  Graph g;
  Var q = g.param("q", {B * T, H * D}), k = g.param("k", {B * T, G * D}), v = g.param("v", {B * T, G * D});
  ops::RopeParams rp;
  Var y = g.attention(g.rope(q, B, T, H, rp), g.rope(k, B, T, G, rp), v, {B, T, H, G, D, 0.0f});
  g.allocate();
  for (Var p : {q, k, v}) fill_random(g.value(p), rng, 1.0f);
  fd_check(g, y, {q, k, v}, GetParam(), 4);
}

TEST_P(FiniteDiff, EmbeddingCrossEntropy) {
  std::mt19937 rng(5);
  Graph g;
  Var table = g.param("table", {11, 6}), w = g.param("w", {13, 6});
  Ids ids = g.ids(8), tgt = g.ids(8);
  Var loss = g.cross_entropy(g.linear(g.embedding(table, ids), w), tgt);
  g.allocate();
  fill_random(g.value(table), rng, 1.0f);
  fill_random(g.value(w), rng, 1.0f);
  const int32_t in[] = {3, 0, 10, 3, 7, 3, 1, 10}, out[] = {12, 0, 5, 5, 1, 7, 3, 9};
  std::copy(std::begin(in), std::end(in), g.ids_data(ids).begin());
  std::copy(std::begin(out), std::end(out), g.ids_data(tgt).begin());
  fd_check(g, loss, {table, w}, GetParam(), 6);
}

INSTANTIATE_TEST_SUITE_P(Kernels, FiniteDiff, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "reference" : "fast"; });

// ---- graph behaviour ------------------------------------------------------------------------------

TEST(Autograd, PlanningErrorsThrow) {
  Graph g;
  Var a = g.param("a", {3, 4}), b = g.param("b", {4, 4}), gm = g.param("g", {5});
  EXPECT_THROW(g.add(a, b), Error);
  EXPECT_THROW(g.mul(a, b), Error);
  EXPECT_THROW(g.linear(a, g.param("w", {2, 5})), Error);
  EXPECT_THROW(g.rms_norm(a, gm, 1e-5f), Error);
  EXPECT_THROW(g.cross_entropy(a, g.ids(4)), Error);
  EXPECT_THROW(g.ids(0), Error);
}

TEST(Autograd, ParametersAreOneFlatArray) {
  Graph g;
  Var a = g.param("a", {3, 4}), b = g.param("b", {5});
  g.allocate();
  ASSERT_EQ(g.params().size(), 2u);
  EXPECT_EQ(g.params()[1].offset, 12);
  EXPECT_EQ(g.params_flat().size(), 17u);
  EXPECT_EQ(g.value(b).ptr<float>(), g.params_flat().data() + 12);
  EXPECT_EQ(g.grad(a).ptr<float>(), g.grads_flat().data());
}

// Every op except linear (whose oneDNN glue in ops::matmul allocates per call today; see
// test_train_gpt.cpp), with the fast kernels and an AdamW step: no heap allocation per step.
TEST(Autograd, StepAllocatesNothing) {
  std::mt19937 rng(9);
  const int64_t B = 2, T = 4, H = 2, D = 4, C = H * D;
  Graph g;
  Var table = g.param("table", {C, C}), gm = g.param("g", {C});
  Ids ids = g.ids(B * T), tgt = g.ids(B * T);
  Var x = g.rms_norm(g.embedding(table, ids), gm, 1e-5f);
  Var q = g.rope(x, B, T, H, {});
  Var a = g.attention(q, q, x, {B, T, H, H, D, 0.0f});
  Var loss = g.cross_entropy(g.add(x, g.mul(g.silu(a), x)), tgt);
  g.allocate();
  fill_random(g.value(table), rng, 1.0f);
  fill_random(g.value(gm), rng, 0.1f, 1.0f);
  for (int64_t i = 0; i < B * T; ++i) {
    g.ids_data(ids)[i] = static_cast<int32_t>(i % C);
    g.ids_data(tgt)[i] = static_cast<int32_t>((i * 3) % C);
  }
  AdamW opt(g.params_flat().size());
  g.forward(loss);
  g.backward(loss);
  opt.step(g.params_flat(), g.grads_flat(), 1e-2f);
  test::AllocCounter allocs;
  float first = 0, last = 0;
  for (int i = 0; i < 20; ++i) {
    const float l = g.forward(loss);
    g.backward(loss);
    opt.step(g.params_flat(), g.grads_flat(), 1e-2f);
    if (i == 0) first = l;
    last = l;
  }
  EXPECT_EQ(allocs.count(), 0);
  EXPECT_LT(last, first);  // and it learns
}

}  // namespace
}  // namespace aigc::train
