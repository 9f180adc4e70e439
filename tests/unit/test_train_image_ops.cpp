// Image backward kernels (src/train/backward_image.h):
//  - every kernel, fast and reference, against PyTorch autograd (tests/ref/twin_train_image_ops.py);
//  - conv2d (stride 1 and 2), group_norm, layer_norm and attention against central finite
//    differences of the forward ops (f32 values, double sums);
//  - gradients accumulate; bad shapes throw; the non-matmul kernels allocate nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include "common/alloc_counter.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "train/autograd.h"
#include "train/backward_image.h"

namespace aigc::train {
namespace {

Tensor zeros_like(const Tensor& t) {
  Tensor z = Tensor::empty(DType::F32, t.shape());
  std::memset(z.data(), 0, z.nbytes());
  return z;
}

Tensor clone(const Tensor& t) {
  Tensor z = Tensor::empty(DType::F32, t.shape());
  std::memcpy(z.data(), t.data(), z.nbytes());
  return z;
}

// Tolerances vs the float64 twin: inputs are exact f32 and the sums are short (<= 189 terms for
// conv2d's dw, values O(1)), so f32 accumulation error stays below ~1e-5 absolute; 3e-5 + 1e-4
// relative leaves margin and still fails any wrong term, sign or missing factor (errors O(|grad|)).
constexpr float kAtol = 3e-5f, kRtol = 1e-4f;

class ImageBackwardTwin : public ::testing::TestWithParam<bool> {  // param: reference kernels
 public:
  test::RefDump ref = test::RefDump::load("train_image_ops");
  const Tensor& r(const std::string& n) { return ref.get(n); }
};

#define KERNEL(name) (GetParam() ? grad::ref::name : grad::name)

void conv_case(ImageBackwardTwin& t, bool reference, const std::string& name, int stride, int pad) {
  const Tensor &x = t.ref.get(name + ".x"), &w = t.ref.get(name + ".w"), &dy = t.ref.get(name + ".dy");
  // The forward is the engine's ops::conv2d: check it produces what the twin differentiated.
  Tensor y = zeros_like(dy);
  ops::conv2d(x, w, &t.ref.get(name + ".b"), y, stride, pad);
  EXPECT_TENSORS_CLOSE(y, t.ref.get(name + ".y"), kAtol, kRtol);
  Tensor dx = zeros_like(x), dw = zeros_like(w), db = zeros_like(t.ref.get(name + ".b"));
  Tensor scratch = Tensor::empty(DType::F32, {grad::conv2d_scratch_floats(x, w, stride, pad)});
  auto fn = reference ? grad::ref::conv2d_backward : grad::conv2d_backward;
  fn(x, w, dy, stride, pad, &dx, &dw, &db, scratch);
  EXPECT_TENSORS_CLOSE(dx, t.ref.get(name + ".dx"), kAtol, kRtol) << name;
  EXPECT_TENSORS_CLOSE(dw, t.ref.get(name + ".dw"), kAtol, kRtol) << name;
  EXPECT_TENSORS_CLOSE(db, t.ref.get(name + ".db"), kAtol, kRtol) << name;
  // Accumulates: a second call (dx only) doubles dx.
  fn(x, w, dy, stride, pad, &dx, nullptr, nullptr, scratch);
  for (int64_t i = 0; i < dx.numel(); ++i) dx.ptr<float>()[i] *= 0.5f;
  EXPECT_TENSORS_CLOSE(dx, t.ref.get(name + ".dx"), kAtol, kRtol) << name;
}

TEST_P(ImageBackwardTwin, Conv2d) {
  conv_case(*this, GetParam(), "conv2d", 1, 1);
  conv_case(*this, GetParam(), "conv2d_s2", 2, 1);
  conv_case(*this, GetParam(), "conv2d_1x1", 1, 0);
}

TEST_P(ImageBackwardTwin, GroupNorm) {
  Tensor y = zeros_like(r("group_norm.x"));
  ops::group_norm(r("group_norm.x"), r("group_norm.gamma"), r("group_norm.beta"), 3, 1e-5f, y);
  EXPECT_TENSORS_CLOSE(y, r("group_norm.y"), kAtol, kRtol);
  Tensor dx = zeros_like(y), dg = zeros_like(r("group_norm.gamma")), db = zeros_like(dg);
  KERNEL(group_norm_backward)(r("group_norm.x"), r("group_norm.gamma"), 3, 1e-5f, r("group_norm.dy"), dx, dg, db);
  EXPECT_TENSORS_CLOSE(dx, r("group_norm.dx"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(dg, r("group_norm.dgamma"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(db, r("group_norm.dbeta"), kAtol, kRtol);
}

TEST_P(ImageBackwardTwin, LayerNorm) {
  Tensor y = zeros_like(r("layer_norm.x"));
  ops::layer_norm(r("layer_norm.x"), &r("layer_norm.gamma"), &r("layer_norm.beta"), 1e-5f, y);
  EXPECT_TENSORS_CLOSE(y, r("layer_norm.y"), kAtol, kRtol);
  Tensor dx = zeros_like(y), dg = zeros_like(r("layer_norm.gamma")), db = zeros_like(dg);
  KERNEL(layer_norm_backward)(r("layer_norm.x"), r("layer_norm.gamma"), 1e-5f, r("layer_norm.dy"), dx, dg, db);
  EXPECT_TENSORS_CLOSE(dx, r("layer_norm.dx"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(dg, r("layer_norm.dgamma"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(db, r("layer_norm.dbeta"), kAtol, kRtol);
}

TEST_P(ImageBackwardTwin, UpsampleConcatAddChannelTranspose) {
  Tensor dx = zeros_like(r("upsample.x"));
  KERNEL(upsample_nearest2_backward)(r("upsample.dy"), dx);
  EXPECT_TENSORS_CLOSE(dx, r("upsample.dx"), kAtol, kRtol);

  Tensor da = zeros_like(r("concat.a")), db = zeros_like(r("concat.b"));
  KERNEL(concat_channels_backward)(r("concat.dy"), da, db);
  EXPECT_TENSORS_CLOSE(da, r("concat.da"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(db, r("concat.db"), kAtol, kRtol);

  Tensor de = zeros_like(r("add_channel.e"));
  KERNEL(add_channel_backward)(r("add_channel.dy"), de);
  EXPECT_TENSORS_CLOSE(de, r("add_channel.de"), kAtol, kRtol);
  Tensor y = zeros_like(r("add_channel.y"));
  KERNEL(add_channel_forward)(r("add_channel.x"), r("add_channel.e"), y);
  EXPECT_TENSORS_CLOSE(y, r("add_channel.y"), kAtol, kRtol);

  Tensor dbias = Tensor::zeros(DType::F32, {3});
  KERNEL(bias_backward)(r("bias.dy"), dbias);
  EXPECT_TENSORS_CLOSE(dbias, r("bias.db"), kAtol, kRtol);

  Tensor ty = zeros_like(r("transpose12.y")), tdx = zeros_like(r("transpose12.x"));
  KERNEL(transpose12_forward)(r("transpose12.x"), ty);
  EXPECT_TENSORS_CLOSE(ty, r("transpose12.y"), 0.0f, 0.0f);  // a copy: exact
  KERNEL(transpose12_backward)(r("transpose12.dy"), tdx);
  EXPECT_TENSORS_CLOSE(tdx, r("transpose12.dx"), 0.0f, 0.0f);
}

TEST_P(ImageBackwardTwin, Attention) {
  for (const auto& [name, s] : {std::pair<std::string, grad::MhaShape>{"mha", {2, 5, 5, 3, 4, 0.0f}},
                                std::pair<std::string, grad::MhaShape>{"mha_cross", {2, 7, 4, 2, 3, 0.0f}}}) {
    const Tensor &q = r(name + ".q"), &k = r(name + ".k"), &v = r(name + ".v");
    Tensor out = zeros_like(q), probs = zeros_like(r(name + ".probs"));
    KERNEL(mha_forward)(q, k, v, s, out, probs);
    EXPECT_TENSORS_CLOSE(out, r(name + ".y"), kAtol, kRtol) << name;
    EXPECT_TENSORS_CLOSE(probs, r(name + ".probs"), kAtol, kRtol) << name;
    Tensor dq = zeros_like(q), dk = zeros_like(k), dv = zeros_like(v);
    KERNEL(mha_backward)(q, k, v, probs, s, r(name + ".dy"), dq, dk, dv);
    EXPECT_TENSORS_CLOSE(dq, r(name + ".dq"), kAtol, kRtol) << name;
    EXPECT_TENSORS_CLOSE(dk, r(name + ".dk"), kAtol, kRtol) << name;
    EXPECT_TENSORS_CLOSE(dv, r(name + ".dv"), kAtol, kRtol) << name;
  }
}

TEST_P(ImageBackwardTwin, Mse) {
  const float loss = KERNEL(mse_forward)(r("mse.pred"), r("mse.target"));
  EXPECT_NEAR(loss, r("mse.loss").ptr<float>()[0], 1e-5f * (1.0f + std::fabs(loss)));
  Tensor dp = zeros_like(r("mse.pred"));
  KERNEL(mse_backward)(r("mse.pred"), r("mse.target"), 1.3f, dp);
  EXPECT_TENSORS_CLOSE(dp, r("mse.dpred"), 1e-6f, kRtol);
}

INSTANTIATE_TEST_SUITE_P(Kernels, ImageBackwardTwin, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "reference" : "fast"; });

// ---- finite differences ---------------------------------------------------------------------------

void fill_random(Tensor& t, std::mt19937& rng, float scale, float offset = 0.0f) {
  std::normal_distribution<float> n(0.0f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = offset + n(rng);
}

// L = sum(y * R) in double, R fixed random; every element of each input moved by +-h, central
// difference against the analytic gradient. f32 forwards with h = 1e-2: rounding of L (~1e-6 / 2h
// = 5e-5) plus h^2 truncation (~1e-4 |f'''|): |fd - grad| <= 2e-3 + 1e-2 |grad|, while a wrong
// backward is off by O(|grad|) (~0.1..1 here).
void fd_check(const std::function<void()>& forward, const Tensor& y, const Tensor& R, std::vector<Tensor*> inputs,
              std::vector<const Tensor*> grads, const char* what) {
  auto loss = [&] {
    forward();
    double l = 0;
    for (int64_t i = 0; i < y.numel(); ++i) l += static_cast<double>(y.ptr<float>()[i]) * R.ptr<float>()[i];
    return l;
  };
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor fd = zeros_like(*inputs[k]);
    float* x = inputs[k]->ptr<float>();
    const float h = 1e-2f;
    for (int64_t i = 0; i < fd.numel(); ++i) {
      const float keep = x[i];
      x[i] = keep + h;
      const double lp = loss();
      x[i] = keep - h;
      const double lm = loss();
      x[i] = keep;
      fd.ptr<float>()[i] = static_cast<float>((lp - lm) / (2.0 * h));
    }
    EXPECT_TENSORS_CLOSE(*grads[k], fd, 2e-3f, 1e-2f) << what << " input " << k;
  }
}

class ImageFiniteDiff : public ::testing::TestWithParam<bool> {};

TEST_P(ImageFiniteDiff, Conv2d) {
  std::mt19937 rng(5);
  for (int stride : {1, 2}) {
    Tensor x = Tensor::empty(DType::F32, {2, 3, 5, 6}), w = Tensor::empty(DType::F32, {4, 3, 3, 3});
    Tensor b = Tensor::empty(DType::F32, {4});
    fill_random(x, rng, 1.0f);
    fill_random(w, rng, 0.3f);
    fill_random(b, rng, 1.0f);
    const int64_t Ho = (5 + 2 - 3) / stride + 1, Wo = (6 + 2 - 3) / stride + 1;
    Tensor y = Tensor::empty(DType::F32, {2, 4, Ho, Wo}), R = Tensor::empty(DType::F32, {2, 4, Ho, Wo});
    fill_random(R, rng, 1.0f);
    Tensor dx = zeros_like(x), dw = zeros_like(w), db = zeros_like(b);
    Tensor scratch = Tensor::empty(DType::F32, {grad::conv2d_scratch_floats(x, w, stride, 1)});
    (GetParam() ? grad::ref::conv2d_backward : grad::conv2d_backward)(x, w, R, stride, 1, &dx, &dw, &db, scratch);
    fd_check([&] { ops::ref::conv2d(x, w, &b, y, stride, 1); }, y, R, {&x, &w, &b}, {&dx, &dw, &db}, "conv2d");
  }
}

TEST_P(ImageFiniteDiff, GroupNormLayerNorm) {
  std::mt19937 rng(6);
  Tensor x = Tensor::empty(DType::F32, {2, 4, 3, 3}), gm = Tensor::empty(DType::F32, {4}), bt = Tensor::empty(DType::F32, {4});
  fill_random(x, rng, 1.0f, 0.3f);
  fill_random(gm, rng, 0.3f, 1.0f);
  fill_random(bt, rng, 1.0f);
  Tensor y = zeros_like(x), R = zeros_like(x);
  fill_random(R, rng, 1.0f);
  Tensor dx = zeros_like(x), dg = zeros_like(gm), db = zeros_like(bt);
  (GetParam() ? grad::ref::group_norm_backward : grad::group_norm_backward)(x, gm, 2, 1e-5f, R, dx, dg, db);
  fd_check([&] { ops::ref::group_norm(x, gm, bt, 2, 1e-5f, y); }, y, R, {&x, &gm, &bt}, {&dx, &dg, &db}, "group_norm");

  Tensor lx = Tensor::empty(DType::F32, {5, 7}), lg = Tensor::empty(DType::F32, {7}), lb = Tensor::empty(DType::F32, {7});
  fill_random(lx, rng, 1.0f);
  fill_random(lg, rng, 0.3f, 1.0f);
  fill_random(lb, rng, 1.0f);
  Tensor ly = zeros_like(lx), lR = zeros_like(lx);
  fill_random(lR, rng, 1.0f);
  Tensor ldx = zeros_like(lx), ldg = zeros_like(lg), ldb = zeros_like(lb);
  (GetParam() ? grad::ref::layer_norm_backward : grad::layer_norm_backward)(lx, lg, 1e-5f, lR, ldx, ldg, ldb);
  fd_check([&] { ops::ref::layer_norm(lx, &lg, &lb, 1e-5f, ly); }, ly, lR, {&lx, &lg, &lb}, {&ldx, &ldg, &ldb},
           "layer_norm");
}

TEST_P(ImageFiniteDiff, CrossAttention) {
  std::mt19937 rng(7);
  const grad::MhaShape s{2, 3, 5, 2, 3, 0.0f};
  Tensor q = Tensor::empty(DType::F32, {2, 3, 6}), k = Tensor::empty(DType::F32, {2, 5, 6}), v = zeros_like(k);
  fill_random(q, rng, 1.0f);
  fill_random(k, rng, 1.0f);
  fill_random(v, rng, 1.0f);
  Tensor y = zeros_like(q), R = zeros_like(q), probs = Tensor::empty(DType::F32, {2, 2, 3, 5});
  fill_random(R, rng, 1.0f);
  const bool refk = GetParam();
  (refk ? grad::ref::mha_forward : grad::mha_forward)(q, k, v, s, y, probs);
  Tensor dq = zeros_like(q), dk = zeros_like(k), dv = zeros_like(v);
  (refk ? grad::ref::mha_backward : grad::mha_backward)(q, k, v, probs, s, R, dq, dk, dv);
  Tensor p2 = clone(probs);
  fd_check([&] { grad::ref::mha_forward(q, k, v, s, y, p2); }, y, R, {&q, &k, &v}, {&dq, &dk, &dv}, "attention");
}

INSTANTIATE_TEST_SUITE_P(Kernels, ImageFiniteDiff, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "reference" : "fast"; });

// ---- through the Graph: a miniature text-conditioned UNet -------------------------------------------

// conv -> group_norm -> silu -> + time embedding (linear) -> strided conv -> upsample -> concat (skip)
// -> tokens -> layer_norm -> cross-attention on a "text" context -> back to NCHW -> 1x1 conv -> MSE.
// Every parameter and the image input are checked against central differences of the loss.
TEST_P(ImageFiniteDiff, MiniUnetGraph) {
  Graph g;
  Var x = g.input({2, 2, 4, 4}), temb = g.input({2, 3}), ctx = g.input({2, 3, 5}), target = g.input({2, 2, 4, 4});
  Var w1 = g.param("w1", {4, 2, 3, 3}), b1 = g.param("b1", {4}), g1 = g.param("g1", {4}), be1 = g.param("be1", {4});
  Var we = g.param("we", {4, 3}), bee = g.param("bee", {4});
  Var w2 = g.param("w2", {4, 4, 3, 3}), b2 = g.param("b2", {4});
  Var lg = g.param("lg", {8}), lb = g.param("lb", {8});
  Var wq = g.param("wq", {8, 8}), wk = g.param("wk", {8, 5}), wv = g.param("wv", {8, 5});
  Var w3 = g.param("w3", {2, 8, 1, 1}), b3 = g.param("b3", {2});
  Var h = g.silu(g.group_norm(g.conv2d(x, w1, b1, 1, 1), g1, be1, 2, 1e-5f));
  h = g.add_channel(h, g.linear(temb, we, bee));
  Var c = g.concat_channels(g.upsample2(g.conv2d(h, w2, b2, 2, 1)), h);             // [2, 8, 4, 4]
  Var tok = g.layer_norm(g.transpose12(g.view(c, {2, 8, 16})), lg, lb, 1e-5f);       // [2, 16, 8]
  Var q = g.view(g.linear(g.view(tok, {32, 8}), wq), {2, 16, 8});
  Var k = g.view(g.linear(g.view(ctx, {6, 5}), wk), {2, 3, 8});
  Var v = g.view(g.linear(g.view(ctx, {6, 5}), wv), {2, 3, 8});
  Var a = g.mha(q, k, v, grad::MhaShape{2, 16, 3, 2, 4, 0.0f});
  Var out = g.conv2d(g.view(g.transpose12(a), {2, 8, 4, 4}), w3, b3, 1, 0);
  Var loss = g.mse(out, target);
  g.allocate();
  g.kernels_reference_set(GetParam());
  std::mt19937 rng(11);
  for (Var in : {x, temb, ctx, target}) fill_random(g.value(in), rng, 1.0f);
  for (const auto& p : g.params()) fill_random(g.value(p.var), rng, 0.4f, p.name[0] == 'g' || p.name == "lg" ? 1.0f : 0.0f);
  g.forward(loss);
  g.backward(loss);
  std::vector<Tensor*> ins;
  std::vector<Tensor> grads;
  for (const auto& p : g.params()) grads.push_back(clone(g.grad(p.var)));
  grads.push_back(clone(g.grad(x)));
  for (const auto& p : g.params()) ins.push_back(&g.value(p.var));
  ins.push_back(&g.value(x));
  std::vector<const Tensor*> gp;
  for (const Tensor& t : grads) gp.push_back(&t);
  Tensor one = Tensor::empty(DType::F32, {1});
  one.ptr<float>()[0] = 1.0f;
  fd_check([&] { g.forward(loss); }, g.value(loss), one, ins, gp, "mini unet");
}

// ---- the fast conv2d (oneDNN training primitives) against the reference loops ---------------------

// Shapes the layouts oneDNN picks treat differently: channel counts below, at and off its 16-wide
// blocks (3, 5, 16, 17, 32, 33, 65), odd image sides, stride 2, pad 0/1/2, 1x1 kernels, batch 1 and
// more. Tolerance: the fast kernel sums in f32 (blocked, in its own order), the reference in
// double; dw sums up to N*Ho*Wo = 1024 products of O(1) values, whose f32 rounding stays near
// sqrt(1024) * 6e-8 * 30 ~ 6e-5; 5e-4 absolute + 1e-4 relative is well above that and far below
// what a wrong tap, channel or sample costs (O(1)).
struct ConvCase {
  int64_t N, C, H, W, O, k;
  int stride, pad;
};

class ConvFastVsRef : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvFastVsRef, ForwardAndBackward) {
  const ConvCase c = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(c.N * 1000 + c.C * 10 + c.k));
  Tensor x = Tensor::empty(DType::F32, {c.N, c.C, c.H, c.W}), w = Tensor::empty(DType::F32, {c.O, c.C, c.k, c.k});
  Tensor b = Tensor::empty(DType::F32, {c.O});
  fill_random(x, rng, 1.0f);
  fill_random(w, rng, 0.3f);
  fill_random(b, rng, 1.0f);
  const int64_t Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1, Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
  Tensor y = Tensor::empty(DType::F32, {c.N, c.O, Ho, Wo}), y_ref = zeros_like(y), dy = zeros_like(y);
  fill_random(dy, rng, 1.0f);
  const Tensor* biases[2] = {&b, nullptr};
  for (const Tensor* bias : biases) {
    fill_random(y, rng, 5.0f);  // overwritten, not accumulated
    grad::conv2d_forward(x, w, bias, y, c.stride, c.pad);
    grad::ref::conv2d_forward(x, w, bias, y_ref, c.stride, c.pad);
    EXPECT_TENSORS_CLOSE(y, y_ref, 5e-4f, 1e-4f) << "forward, bias " << (bias != nullptr);
  }
  // Gradients start from the same non-zero values: both kernels must add to them.
  Tensor dx0 = zeros_like(x), dw0 = zeros_like(w), db0 = zeros_like(b);
  fill_random(dx0, rng, 1.0f);
  fill_random(dw0, rng, 1.0f);
  fill_random(db0, rng, 1.0f);
  Tensor scratch = Tensor::empty(DType::F32, {grad::conv2d_scratch_floats(x, w, c.stride, c.pad)});
  // every combination of wanted gradients: all, dx only, dw + db, dw only, db only
  const bool want[5][3] = {{true, true, true}, {true, false, false}, {false, true, true}, {false, true, false},
                           {false, false, true}};
  for (const auto& wt : want) {
    Tensor dx = clone(dx0), dw = clone(dw0), db = clone(db0), rdx = clone(dx0), rdw = clone(dw0), rdb = clone(db0);
    grad::conv2d_backward(x, w, dy, c.stride, c.pad, wt[0] ? &dx : nullptr, wt[1] ? &dw : nullptr,
                          wt[2] ? &db : nullptr, scratch);
    grad::ref::conv2d_backward(x, w, dy, c.stride, c.pad, wt[0] ? &rdx : nullptr, wt[1] ? &rdw : nullptr,
                               wt[2] ? &rdb : nullptr, scratch);
    const std::string what = fmt::format("dx {} dw {} db {}", wt[0], wt[1], wt[2]);
    EXPECT_TENSORS_CLOSE(dx, rdx, 5e-4f, 1e-4f) << what;
    EXPECT_TENSORS_CLOSE(dw, rdw, 5e-4f, 1e-4f) << what;
    EXPECT_TENSORS_CLOSE(db, rdb, 5e-4f, 1e-4f) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvFastVsRef,
                         ::testing::Values(ConvCase{1, 3, 7, 9, 5, 3, 1, 1}, ConvCase{3, 17, 9, 11, 33, 3, 2, 1},
                                           ConvCase{2, 16, 8, 8, 16, 1, 1, 0}, ConvCase{2, 5, 6, 5, 3, 1, 2, 0},
                                           ConvCase{4, 32, 16, 16, 32, 3, 1, 1}, ConvCase{2, 65, 5, 5, 17, 3, 2, 2},
                                           ConvCase{1, 8, 4, 4, 8, 3, 1, 0}, ConvCase{3, 32, 9, 9, 3, 3, 1, 1}));

// Attention with 32 keys or more runs on GEMMs (oneDNN, per (sequence, head) on the worker thread),
// shorter key sets on loops; the twin and finite-difference cases above are short, so the GEMM
// path is checked here against the reference on odd sizes, self- and cross-attention. Tolerance:
// f32 sums of <= 64 terms of O(1) values against double: 2e-5 absolute + 1e-4 relative.
TEST(ImageBackward, MhaGemmPathVsRef) {
  std::mt19937 rng(21);
  for (const grad::MhaShape s : {grad::MhaShape{2, 33, 40, 2, 5, 0.0f}, grad::MhaShape{1, 64, 64, 3, 8, 0.0f},
                                 grad::MhaShape{3, 1, 32, 1, 7, 0.3f}}) {
    const int64_t E = s.H * s.D;
    Tensor q = Tensor::empty(DType::F32, {s.B, s.Tq, E}), k = Tensor::empty(DType::F32, {s.B, s.Tk, E});
    Tensor v = zeros_like(k), dout = zeros_like(q);
    for (Tensor* t : {&q, &k, &v, &dout}) fill_random(*t, rng, 1.0f);
    Tensor out = zeros_like(q), rout = zeros_like(q), probs = Tensor::empty(DType::F32, {s.B, s.H, s.Tq, s.Tk});
    Tensor rprobs = zeros_like(probs);
    grad::mha_forward(q, k, v, s, out, probs);
    grad::ref::mha_forward(q, k, v, s, rout, rprobs);
    EXPECT_TENSORS_CLOSE(out, rout, 2e-5f, 1e-4f) << "Tq " << s.Tq << " Tk " << s.Tk;
    EXPECT_TENSORS_CLOSE(probs, rprobs, 2e-5f, 1e-4f);
    Tensor dq = zeros_like(q), dk = zeros_like(k), dv = zeros_like(v);
    fill_random(dq, rng, 1.0f);  // accumulates onto what is there
    fill_random(dk, rng, 1.0f);
    fill_random(dv, rng, 1.0f);
    Tensor rdq = clone(dq), rdk = clone(dk), rdv = clone(dv);
    grad::mha_backward(q, k, v, probs, s, dout, dq, dk, dv);
    grad::ref::mha_backward(q, k, v, rprobs, s, dout, rdq, rdk, rdv);
    EXPECT_TENSORS_CLOSE(dq, rdq, 2e-5f, 1e-4f) << "Tq " << s.Tq << " Tk " << s.Tk;
    EXPECT_TENSORS_CLOSE(dk, rdk, 2e-5f, 1e-4f);
    EXPECT_TENSORS_CLOSE(dv, rdv, 2e-5f, 1e-4f);
  }
}

// Once warm (primitives made, layout buffers grown), the training convolution allocates nothing in
// our code (cached entries, bound memory objects, reused key string). oneDNN's execute() itself
// copies each argument map into its own (~6-7 small allocations per primitive run, 11 runs here:
// 4 forward, 7 backward with their layout reorders): the count must be steady and within that.
TEST(ImageBackward, ConvNoAllocationOnceWarm) {
  Tensor x = Tensor::zeros(DType::F32, {2, 16, 8, 8}), w = Tensor::zeros(DType::F32, {16, 16, 3, 3});
  Tensor b = Tensor::zeros(DType::F32, {16}), y = zeros_like(x), dx = zeros_like(x), dw = zeros_like(w),
         db = zeros_like(b), scratch = Tensor::zeros(DType::F32, {1});
  auto step = [&] {
    grad::conv2d_forward(x, w, &b, y, 1, 1);
    grad::conv2d_backward(x, w, y, 1, 1, &dx, &dw, &db, scratch);
  };
  step();
  test::AllocCounter allocs;
  step();
  const int64_t per_step = allocs.count();
  test::AllocCounter allocs2;
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(allocs2.count(), 3 * per_step) << "allocations grow with use";
  EXPECT_LE(per_step, 11 * 8) << "more than oneDNN execute() bookkeeping";
}

// ---- shape checks and allocation -------------------------------------------------------------------

TEST(ImageBackward, BadShapesThrow) {
  Tensor x = Tensor::zeros(DType::F32, {1, 3, 4, 4}), w = Tensor::zeros(DType::F32, {2, 3, 3, 3});
  Tensor dy_bad = Tensor::zeros(DType::F32, {1, 2, 3, 4}), s = Tensor::zeros(DType::F32, {1000});
  Tensor dx = zeros_like(x);
  EXPECT_THROW(grad::conv2d_backward(x, w, dy_bad, 1, 1, &dx, nullptr, nullptr, s), Error);
  EXPECT_THROW(grad::ref::conv2d_backward(x, w, dy_bad, 1, 1, &dx, nullptr, nullptr, s), Error);
  Tensor y_bad = Tensor::zeros(DType::F32, {1, 2, 4, 3});
  EXPECT_THROW(grad::conv2d_forward(x, w, nullptr, y_bad, 1, 1), Error);
  EXPECT_THROW(grad::ref::conv2d_forward(x, w, nullptr, y_bad, 1, 1), Error);
  Tensor g5 = Tensor::zeros(DType::F32, {5});
  EXPECT_THROW(grad::group_norm_backward(x, g5, 3, 1e-5f, x, dx, g5, g5), Error);
  Tensor up_bad = Tensor::zeros(DType::F32, {1, 3, 7, 8});
  EXPECT_THROW(grad::upsample_nearest2_backward(up_bad, dx), Error);
  Tensor de_bad = Tensor::zeros(DType::F32, {1, 4});
  EXPECT_THROW(grad::add_channel_backward(x, de_bad), Error);
  Tensor q = Tensor::zeros(DType::F32, {1, 2, 6}), probs = Tensor::zeros(DType::F32, {1, 2, 2, 3});
  EXPECT_THROW(grad::mha_forward(q, q, q, grad::MhaShape{1, 2, 3, 2, 3, 0.0f}, q, probs), Error);  // k has Tk=2
  Tensor p3 = Tensor::zeros(DType::F32, {4});
  EXPECT_THROW(grad::mse_forward(q, p3), Error);
}

TEST(ImageBackward, NoAllocationOutsideMatmul) {
  Tensor x = Tensor::zeros(DType::F32, {2, 4, 6, 6}), gm = Tensor::zeros(DType::F32, {4});
  Tensor dx = zeros_like(x), dg = zeros_like(gm), db = zeros_like(gm), up = Tensor::zeros(DType::F32, {2, 4, 12, 12});
  Tensor de = Tensor::zeros(DType::F32, {2, 4}), t = Tensor::zeros(DType::F32, {2, 36, 4});
  Tensor q = Tensor::zeros(DType::F32, {2, 5, 6}), probs = Tensor::zeros(DType::F32, {2, 2, 5, 5}), o = zeros_like(q);
  Tensor dq = zeros_like(q), dk = zeros_like(q), dv = zeros_like(q);
  const grad::MhaShape s{2, 5, 5, 2, 3, 0.0f};
  const Tensor x3 = x.reshape({2, 4, 36});
  Tensor dx3 = dx.reshape({2, 4, 36});
  grad::mha_forward(q, q, q, s, o, probs);  // warm the thread pool
  test::AllocCounter allocs;
  grad::group_norm_backward(x, gm, 2, 1e-5f, x, dx, dg, db);
  grad::upsample_nearest2_backward(up, dx);
  grad::add_channel_backward(x, de);
  grad::transpose12_forward(x3, t);
  grad::transpose12_backward(t, dx3);
  grad::mha_forward(q, q, q, s, o, probs);
  grad::mha_backward(q, q, q, probs, s, o, dq, dk, dv);
  grad::mse_backward(q, o, 1.0f, dq);
  EXPECT_EQ(allocs.count(), 0);
}

}  // namespace
}  // namespace aigc::train
