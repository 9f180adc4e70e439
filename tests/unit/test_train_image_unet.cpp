// The tiny text-conditioned UNet trainer against its PyTorch twin (tests/ref/twin_train_image_unet.py),
// in the style of llm.c's test_gpt2: same parameters and batch -> same loss, the gradient of every
// parameter (fast kernels with 1 and 2 threads, and the reference kernels), and the losses and
// gradient norms of 10 AdamW steps (clipping and the cosine schedule included). Two twins: the first
// version's graph (levels 1, one width) and the two-level option with a different width per level.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/compare.h"
#include "common/refdump.h"
#include "core/thread_pool.h"
#include "train/adamw.h"
#include "train/ddpm.h"
#include "train/shapes_dataset.h"
#include "train/unet_tiny.h"

namespace aigc::train {
namespace {

struct Twin {
  test::RefDump ref;
  UnetConfig cfg;
  int64_t B = 0;
};

// "train_image_unet": levels 1 (config of 9 entries); "train_image_unet_l2": + levels, ch1, ch2.
Twin twin_load(const std::string& name = "train_image_unet") {
  Twin t;
  t.ref = test::RefDump::load(name);
  const Tensor& config = t.ref.get("config");
  const int32_t* c = config.ptr<int32_t>();
  t.B = c[0];
  t.cfg = UnetConfig{.image = c[1], .ch = c[2], .groups = c[3], .t_dim = c[4], .text_vocab = c[5], .text_len = c[6],
                     .text_dim = c[7], .heads = c[8]};
  if (config.numel() >= 12) {
    t.cfg.levels = c[9];
    t.cfg.ch1 = c[10];
    t.cfg.ch2 = c[11];
  }
  return t;
}

void setup(UnetTrainer& u, const test::RefDump& ref) {
  for (const Graph::ParamInfo& p : u.graph().params()) {
    const Tensor& src = ref.get("p." + p.name);
    Tensor& dst = u.graph().value(p.var);
    ASSERT_TRUE(src.same_shape(dst)) << p.name << " " << src.shape_str() << " vs " << dst.shape_str();
    std::memcpy(dst.data(), src.data(), static_cast<size_t>(p.numel) * 4);
  }
  for (const char* n : {"x", "temb", "noise"}) {
    Tensor& dst = std::string(n) == "x" ? u.x() : std::string(n) == "temb" ? u.temb() : u.noise();
    ASSERT_EQ(dst.numel(), ref.get(n).numel()) << n;
    std::memcpy(dst.data(), ref.get(n).data(), dst.nbytes());
  }
  size_t twin_params = 0;  // the twin declares no parameter the graph lacks
  for (const auto& [k, v] : ref.all()) twin_params += k.rfind("p.", 0) == 0;
  ASSERT_EQ(twin_params, u.graph().params().size());
  const Tensor& ids = ref.get("ids");
  ASSERT_EQ(static_cast<size_t>(ids.numel()), u.text_ids().size());
  std::memcpy(u.text_ids().data(), ids.data(), u.text_ids().size() * 4);
}

// Gradient tolerance: float64 twin vs f32 here; the deepest path is ~12 ops with sums of <= 144
// terms (conv dw over 2 x 8 x 8 positions, attention over 16 tokens), f32 rounding ~1e-6 relative
// per op. atol 3e-5 + rtol 2e-3 leaves margin and still fails any wrong or missing term (which moves
// a gradient by O(10 %) or more).
constexpr float kGradAtol = 3e-5f, kGradRtol = 2e-3f;

void gradients_check(const Twin& t) {
  for (int threads : {1, 2}) {
    thread_count_set(threads);
    for (bool reference : {false, true}) {
      UnetTrainer u(t.cfg, t.B);
      setup(u, t.ref);
      u.graph().kernels_reference_set(reference);
      const float loss = u.forward_backward();
      // loss O(1): f32 vs float64, 1e-5 relative
      EXPECT_NEAR(loss, t.ref.get("loss").ptr<float>()[0], 2e-5f) << threads << " threads, reference " << reference;
      for (const Graph::ParamInfo& p : u.graph().params())
        EXPECT_TENSORS_CLOSE(u.graph().grad(p.var), t.ref.get("g." + p.name), kGradAtol, kGradRtol)
            << p.name << ", " << threads << " threads, reference " << reference;
      if (reference) break;  // the reference kernels are single-threaded
    }
  }
  thread_count_set(0);
}

// learned: the twin's 10th loss is below this fraction of its first (so the check can fail).
void adamw_steps_check(const Twin& t, float learned) {
  const float* h = t.ref.get("hparams").ptr<float>();
  UnetTrainer u(t.cfg, t.B);
  setup(u, t.ref);
  AdamW opt(u.graph().params_flat().size(),
            {.beta1 = h[6], .beta2 = h[7], .eps = h[8], .weight_decay = h[4], .grad_clip = h[5]});
  opt.decay_mask_set(u.decay_mask());
  const CosineSchedule sched{.lr_max = h[0], .lr_min = h[1], .warmup = static_cast<int64_t>(h[2]),
                             .total = static_cast<int64_t>(h[3])};
  const float* want_loss = t.ref.get("losses").ptr<float>();
  const float* want_norm = t.ref.get("norms").ptr<float>();
  for (int step = 0; step < 10; ++step) {
    const float loss = u.forward_backward();
    const float norm = opt.step(u.graph().params_flat(), u.graph().grads_flat(), lr_cosine(step, sched));
    // f32 vs float64 differences grow through Adam's normalised steps: 1e-3 relative + 1e-4.
    EXPECT_NEAR(loss, want_loss[step], 1e-4f + 1e-3f * want_loss[step]) << "step " << step;
    EXPECT_NEAR(norm, want_norm[step], 1e-4f + 1e-3f * want_norm[step]) << "step " << step;
  }
  EXPECT_LT(want_loss[9], want_loss[0] * learned);  // the twin's run does learn (the test can fail)
}

TEST(TrainImageUnet, LossAndEveryGradientMatchTwin) { gradients_check(twin_load()); }

TEST(TrainImageUnet, TenAdamWStepsMatchTwin) { adamw_steps_check(twin_load(), 0.5f); }

// levels 2, ch 4 -> ch1 8 -> ch2 12 at 8 -> 4 -> 2 px: every new parameter (down2, res3..res5 with
// their skips, attn2, up2) and the wider res1 / attn / up, with the same tolerances.
TEST(TrainImageUnet, TwoLevelsLossAndEveryGradientMatchTwin) {
  const Twin t = twin_load("train_image_unet_l2");
  ASSERT_EQ(t.cfg.levels, 2);
  ASSERT_TRUE(t.cfg.ch1 != t.cfg.ch && t.cfg.ch2 != t.cfg.ch1);
  gradients_check(t);
}

TEST(TrainImageUnet, TwoLevelsTenAdamWStepsMatchTwin) { adamw_steps_check(twin_load("train_image_unet_l2"), 0.7f); }

TEST(TrainImageUnet, DdpmScheduleAndTimestepEmbeddingMatchTwin) {
  Twin t = twin_load();
  const std::vector<float> ab = ddpm_alphas_cumprod({});
  const Tensor& want = t.ref.get("alphas_cumprod");
  ASSERT_EQ(static_cast<int64_t>(ab.size()), want.numel());
  // a product of 1000 factors accumulated in double, stored in f32: 1e-6 relative
  for (size_t i = 0; i < ab.size(); ++i) EXPECT_NEAR(ab[i], want.ptr<float>()[i], 1e-6f * want.ptr<float>()[i] + 1e-9f) << i;
  const Tensor& ts = t.ref.get("tsteps");
  const Tensor& temb = t.ref.get("temb");
  for (int64_t b = 0; b < t.B; ++b) {
    std::vector<float> e(static_cast<size_t>(t.cfg.t_dim));
    timestep_embedding(ts.ptr<float>()[b], e);
    for (int64_t i = 0; i < t.cfg.t_dim; ++i)  // sin/cos in double, rounded to f32: 1e-6
      EXPECT_NEAR(e[static_cast<size_t>(i)], temb.ptr<float>()[b * t.cfg.t_dim + i], 1e-6f) << b << "," << i;
  }
}

// A few dozen steps on real batches of the shapes data set (16x16): the noise-prediction loss falls.
TEST(TrainImageUnet, LearnsOnShapesBatches) {
  const UnetConfig cfg{.image = 16, .ch = 8, .groups = 2, .t_dim = 8, .text_vocab = shapes_vocab_size(),
                       .text_len = kShapesCaptionTokens, .text_dim = 8, .heads = 2};
  const int64_t B = 4;
  UnetTrainer u(cfg, B);
  u.params_init(3);
  AdamW opt(u.graph().params_flat().size(), {.weight_decay = 0.0f});
  const std::vector<float> ab = ddpm_alphas_cumprod({});
  double first = 0, last = 0;
  const int steps = 60;
  for (int step = 0; step < steps; ++step) {
    image_batch_fill(u, B, step % 10, {.seed = 5}, ab);  // 10 batches, seen 6 times each
    const float loss = u.forward_backward();
    ASSERT_TRUE(std::isfinite(loss)) << step;
    opt.step(u.graph().params_flat(), u.graph().grads_flat(), 1e-2f);
    if (step < 10) first += loss / 10.0;
    if (step >= steps - 10) last += loss / 10.0;
  }
  // Same 10 batches at the start and the end: an untrained net predicts noise with loss ~1.
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;
}

TEST(TrainImageUnet, BadConfigThrows) {
  EXPECT_THROW(UnetTrainer(UnetConfig{.image = 7}, 1), Error);
  EXPECT_THROW(UnetTrainer(UnetConfig{.ch = 6, .groups = 4}, 1), Error);
  EXPECT_THROW(UnetTrainer(UnetConfig{}, 0), Error);
  EXPECT_THROW(UnetTrainer(UnetConfig{.levels = 3}, 1), Error);
  EXPECT_THROW(UnetTrainer(UnetConfig{.levels = 0}, 1), Error);
  EXPECT_THROW(UnetTrainer(UnetConfig{.image = 6, .levels = 2}, 1), Error);    // not a multiple of 4
  EXPECT_THROW(UnetTrainer(UnetConfig{.ch2 = 8}, 1), Error);                   // ch2 needs levels 2
  EXPECT_THROW(UnetTrainer(UnetConfig{.heads = 4, .ch1 = 6}, 1), Error);       // heads 4 does not divide ch1 6
  EXPECT_THROW(UnetTrainer(UnetConfig{.groups = 4, .levels = 2, .ch2 = 6}, 1), Error);  // groups 4 vs ch2 6
  EXPECT_THROW(UnetTrainer(UnetConfig{.ch1 = -8}, 1), Error);
  EXPECT_NO_THROW(UnetTrainer(UnetConfig{.image = 4, .levels = 2, .ch1 = 12, .ch2 = 16}, 1));
  try {  // one message naming the broken rule
    UnetTrainer(UnetConfig{.image = 6, .levels = 2}, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("image 6 must be a multiple of 4 with levels 2"), std::string::npos) << e.what();
  }
}

// The defaults build the first version's graph: its parameter names, in its order.
TEST(TrainImageUnet, DefaultConfigKeepsFirstVersionParameters) {
  UnetTrainer one(UnetConfig{}, 1), explicit_one(UnetConfig{.levels = 1, .ch1 = 8}, 1);
  std::vector<std::string> a, b;
  for (const Graph::ParamInfo& p : one.graph().params()) a.push_back(p.name);
  for (const Graph::ParamInfo& p : explicit_one.graph().params()) b.push_back(p.name);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 66u);  // text 4, time 4, in 2, res0 10, down 2, res1 10, attn 16, up 2, res2 12, out 4
  // levels 2 adds parameters and renames none of the first version's
  UnetTrainer two(UnetConfig{.image = 8, .levels = 2}, 1);
  std::vector<std::string> c;
  for (const Graph::ParamInfo& p : two.graph().params()) c.push_back(p.name);
  EXPECT_GT(c.size(), a.size());
  for (const std::string& n : a) EXPECT_NE(std::find(c.begin(), c.end(), n), c.end()) << n;
}

}  // namespace
}  // namespace aigc::train
