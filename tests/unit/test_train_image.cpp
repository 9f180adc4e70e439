// Image training end to end: the caption vocabulary, the UNet learning a fixed batch, the v target
// of image_batch_fill against the formula (PyTorch's alphas_cumprod), the weight EMA against a
// hand-computed sequence, train_image_run (the checkpoint reads back through
// image/pixel_diffusion_file with equal parameters; resume is exact, with v-prediction and EMA too;
// validation; curve PNG), and the CLI: `aigc train image`, `aigc bench train --model unet`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <map>

#include "common/refdump.h"
#include "common/run_cli.h"
#include "core/thread_pool.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "image/pixel_diffusion_file.h"
#include "train/ddpm.h"
#include "train/ema.h"
#include "train/shapes_dataset.h"
#include "train/train_image.h"

namespace aigc::train {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path = fs::path(::testing::TempDir()) / ("aigc_trainimg_" + std::to_string(getpid()) + "_" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

UnetConfig tiny_config() {
  return UnetConfig{.image = 16, .ch = 8, .groups = 2, .t_dim = 8, .text_vocab = shapes_vocab_size(),
                    .text_len = kShapesCaptionTokens, .text_dim = 8, .heads = 2};
}

// The short runs of the resume tests: 6 steps of batch 2, validation every 3 steps.
TrainImageOptions tiny_run_options() {
  TrainImageOptions o;
  o.model = tiny_config();
  o.model.text_vocab = 0;  // filled in from the data set
  o.model.text_len = 0;
  o.batch = 2;
  o.steps = 6;
  o.lr = {5e-3f, 1e-3f, 2, 6};
  o.eval_every = 3;
  o.eval_batches = 2;
  o.save_every = 100;
  return o;
}

TEST(TrainImage, VocabIsWhatTheTokenizerUses) {
  const std::vector<std::string>& v = shapes_vocab();
  ASSERT_EQ(static_cast<int>(v.size()), shapes_vocab_size());
  EXPECT_EQ(v[0], "<pad>");
  EXPECT_EQ(v[1], "<empty>");
  std::vector<int32_t> ids(kShapesCaptionTokens);
  for (size_t i = 2; i < v.size(); ++i) {
    shapes_caption_tokenize(v[i], ids);
    EXPECT_EQ(ids[0], static_cast<int32_t>(i)) << v[i];
    EXPECT_EQ(ids[1], 0);
  }
  shapes_caption_tokenize("two green squares on a white background", ids);
  std::string back;
  for (int32_t id : ids)
    if (id > 1) back += (back.empty() ? "" : " ") + v[static_cast<size_t>(id)];
  EXPECT_EQ(back, "two green squares on a white background");
  for (const char* w : {"digit", "letter", "7", "K", "triangles", "gray", "three"})
    EXPECT_NE(std::find(v.begin(), v.end(), w), v.end()) << w;
}

// The model can fit one fixed batch: the loss falls well below its start.
TEST(TrainImage, LossFallsOnAFixedBatch) {
  thread_count_set(1);
  UnetTrainer u(tiny_config(), 4);
  u.params_init(3);
  const std::vector<float> ac = ddpm_alphas_cumprod({});
  image_batch_fill(u, 4, 0, {.seed = 5, .glyphs = false, .caption_dropout = 0.0f}, ac);
  AdamW opt(u.graph().params_flat().size(), {.beta1 = 0.9f, .beta2 = 0.999f, .weight_decay = 0.0f, .grad_clip = 1.0f});
  const float first = u.forward();
  float last = first;
  for (int s = 0; s < 60; ++s) {
    last = u.forward_backward();
    opt.step(u.graph().params_flat(), u.graph().grads_flat(), 1e-2f);
  }
  last = u.forward();
  EXPECT_GT(first, 0.5f);        // eps-prediction starts near the noise's variance (1)
  EXPECT_LT(last, 0.6f * first) << "first " << first << " last " << last;
  thread_count_set(0);
}

// image_batch_fill's targets: epsilon is the noise in x_t; v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0
// (Salimans & Ho 2022), computed here in double from the data set's own pixels, the noise of the
// epsilon fill and abar_t of torch.cumprod (twin_train_image_unet.py's dump, passed as the schedule).
// The timestep of each sample is recovered from its embedding. The draws do not depend on the target.
TEST(TrainImage, VTargetIsTheFormula) {
  const test::RefDump d = test::RefDump::load("train_image_unet");
  const Tensor& ac_t = d.get("alphas_cumprod");
  const std::span<const float> ac(ac_t.ptr<float>(), static_cast<size_t>(ac_t.numel()));
  const int64_t B = 3;
  const UnetConfig c = tiny_config();
  const int64_t S = c.image, n = B * 3 * S * S;
  UnetTrainer ue(c, B), uv(c, B);
  ImageBatchOptions o{.seed = 9, .glyphs = false, .caption_dropout = 0.5f};
  image_batch_fill(ue, B, 4, o, ac);
  o.prediction = DiffusionTarget::V;
  image_batch_fill(uv, B, 4, o, ac);
  EXPECT_EQ(std::memcmp(ue.x().data(), uv.x().data(), ue.x().nbytes()), 0) << "x_t depends on the target";
  EXPECT_EQ(std::memcmp(ue.temb().data(), uv.temb().data(), ue.temb().nbytes()), 0);
  EXPECT_TRUE(std::equal(ue.text_ids().begin(), ue.text_ids().end(), uv.text_ids().begin()));
  const float* x = ue.x().ptr<float>();
  const float* eps = ue.noise().ptr<float>();
  const float* v = uv.noise().ptr<float>();
  std::vector<float> e(static_cast<size_t>(c.t_dim));
  int64_t high_t = 0;
  double worst_v = 0, worst_x = 0, v_minus_eps = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = -1;
    for (int64_t k = 0; k < ac_t.numel() && t < 0; ++k) {
      timestep_embedding(static_cast<double>(k), e);
      if (std::memcmp(e.data(), ue.temb().ptr<float>() + b * c.t_dim, e.size() * 4) == 0) t = k;
    }
    ASSERT_GE(t, 0) << "sample " << b << ": no timestep has this embedding";
    high_t += t > 100;
    const double ab = ac[static_cast<size_t>(t)], sa = std::sqrt(ab), sn = std::sqrt(1.0 - ab);
    const ShapesSample smp = shapes_sample(9, 4 * B + b, static_cast<int>(S), false);
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t p = 0; p < S * S; ++p) {
        const int64_t i = (b * 3 + ch) * S * S + p;
        const double x0 = smp.rgb[static_cast<size_t>(p * 3 + ch)] / 127.5 - 1.0;
        worst_x = std::max(worst_x, std::abs(x[i] - (sa * x0 + sn * eps[i])));
        worst_v = std::max(worst_v, std::abs(v[i] - (sa * eps[i] - sn * x0)));
        v_minus_eps = std::max(v_minus_eps, static_cast<double>(std::abs(v[i] - eps[i])));
      }
  }
  // f32 products of values below ~5: a few ulp, 2e-6. A swapped sign or coefficient is off by ~0.1-1.
  EXPECT_LT(worst_x, 2e-6);
  EXPECT_LT(worst_v, 2e-6);
  EXPECT_GT(v_minus_eps, 0.1);  // the v target is not the noise
  EXPECT_GT(high_t, 0);         // at least one sample where x0 weighs in v noticeably
  (void)n;
}

// The EMA against a hand-computed 3-step sequence (decay 0.9, so the warm-up rules all 3 steps:
// d = 1/10, 2/11, 3/12), from ema0 = [1, -2, 0.5]:
//   step 0, p = [2, 0, 1]:   ema = [1.9, -0.2, 0.95]
//   step 1, p = [0, 1, 1]:   ema = [3.8/11, 8.6/11, 10.9/11]
//   step 2, p = [4, -1, 1]:  ema = [33.95/11, -6.1/11, 10.975/11]
TEST(TrainImage, EmaFollowsTheHandComputedSequence) {
  EXPECT_FLOAT_EQ(ema_decay_at(0.999f, 0), 0.1f);
  EXPECT_FLOAT_EQ(ema_decay_at(0.999f, 1), 2.0f / 11.0f);
  EXPECT_FLOAT_EQ(ema_decay_at(0.9f, 100), 0.9f);  // 101/110 > 0.9: the decay itself
  EXPECT_FLOAT_EQ(ema_decay_at(0.0f, 5), 0.0f);
  std::vector<float> p{1.0f, -2.0f, 0.5f};
  WeightEma ema(p, 0.9f);
  const float steps[3][3] = {{2, 0, 1}, {0, 1, 1}, {4, -1, 1}};
  const double want[3][3] = {{1.9, -0.2, 0.95}, {3.8 / 11, 8.6 / 11, 10.9 / 11}, {33.95 / 11, -6.1 / 11, 10.975 / 11}};
  for (int s = 0; s < 3; ++s) {
    p.assign(steps[s], steps[s] + 3);
    ema.update(p, s);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(ema.values()[static_cast<size_t>(i)], want[s][i], 2e-6) << s << "," << i;
  }
  // swap exchanges the average and the parameters exactly; twice restores both.
  const std::vector<float> avg(ema.values().begin(), ema.values().end()), raw = p;
  ema.swap(p);
  EXPECT_EQ(p, avg);
  EXPECT_TRUE(std::equal(raw.begin(), raw.end(), ema.values().begin()));
  ema.swap(p);
  EXPECT_EQ(p, raw);
  EXPECT_THROW(WeightEma(p, 1.0f), Error);
}

// 6 steps straight equal 3 steps + resume + 3, bit for bit; the checkpoint reads back with the
// trainer's parameters, config and vocabulary; "aigc.training" records the run.
TEST(TrainImage, CheckpointReadsBackAndResumeIsExact) {
  thread_count_set(1);  // one thread: bitwise reproducible sums
  TempDir dir;
  TrainImageOptions o = tiny_run_options();
  o.out = dir / "straight.safetensors";
  const TrainImageResult straight = train_image_run(o);
  EXPECT_EQ(straight.steps_done, 6);
  EXPECT_GT(straight.val_loss, 0.0f);
  EXPECT_GT(straight.samples_per_second, 0.0);
  o.out = dir / "resumed.safetensors";
  o.steps = 3;
  EXPECT_EQ(train_image_run(o).steps_done, 3);
  o.steps = 6;
  o.resume = true;
  const TrainImageResult resumed = train_image_run(o);
  EXPECT_EQ(resumed.steps_done, 6);
  EXPECT_EQ(resumed.val_loss, straight.val_loss);  // same parameters, same fixed validation set

  const image::PixelDiffusionFile a = image::pixel_diffusion_read(dir / "straight.safetensors");
  const image::PixelDiffusionFile b = image::pixel_diffusion_read(dir / "resumed.safetensors");
  ASSERT_EQ(a.params.size(), b.params.size());
  for (const auto& [name, ta] : a.params) {
    const Tensor& tb = b.params.at(name);
    ASSERT_TRUE(ta.same_shape(tb)) << name;
    EXPECT_EQ(std::memcmp(ta.data(), tb.data(), ta.nbytes()), 0) << name << " differs after resume";
  }
  EXPECT_EQ(a.config.unet.ch, 8);
  EXPECT_EQ(a.config.unet.image, 16);
  EXPECT_EQ(a.config.unet.text_len, kShapesCaptionTokens);
  EXPECT_EQ(a.config.vocab, shapes_vocab());
  EXPECT_EQ(a.config.schedule.steps, 1000);
  const nlohmann::json tr = nlohmann::json::parse(b.config.training_json);
  EXPECT_EQ(tr.at("steps").get<int64_t>(), 6);
  EXPECT_EQ(tr.at("batch").get<int64_t>(), 2);
  EXPECT_NE(tr.at("data").get<std::string>().find("shapes"), std::string::npos);
  EXPECT_FLOAT_EQ(tr.at("val_loss").get<float>(), resumed.val_loss);

  // The file holds exactly the trainer's parameters: load them into a fresh trainer, compare.
  UnetTrainer fresh(a.config.unet, 1);
  image::pixel_diffusion_params_load(b, fresh);
  for (const Graph::ParamInfo& p : fresh.graph().params()) {
    const Tensor& t = fresh.graph().value(p.var);
    EXPECT_EQ(std::memcmp(t.data(), b.params.at(p.name).data(), t.nbytes()), 0) << p.name;
  }
  const Tensor png = image_read(dir / "resumed.safetensors.png");
  EXPECT_EQ(png.size(3), 800);

  // A bigger --ch does not resume a smaller model; nor does a finished run go on.
  o.model.ch = 16;
  EXPECT_THROW(train_image_run(o), Error);
  o.model.ch = 8;
  EXPECT_THROW(train_image_run(o), Error);  // already at step 6 of --steps 6
  thread_count_set(0);
}

TEST(TrainImage, CliTrainsAndReportsProgress) {
  TempDir dir;
  test::CliResult r = test::cli_run({"-t", "1", "train", "image", "-o", dir / "m.safetensors", "--image", "16", "--ch",
                                     "8", "--groups", "2", "--heads", "2", "--text-dim", "8", "--t-dim", "8", "--batch",
                                     "2", "--steps", "3", "--eval-every", "2", "--eval-batches", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 3/3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("samples/s"), std::string::npos);
  EXPECT_NE(r.err.find("ETA"), std::string::npos);
  EXPECT_NE(r.err.find("validation loss"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "m.safetensors.optim"));
  EXPECT_TRUE(fs::exists(dir / "m.safetensors.png"));
  EXPECT_NO_THROW(image::pixel_diffusion_read(dir / "m.safetensors"));
  // User errors: one line, exit 1.
  auto args_with = [&](const std::map<std::string, std::string>& over) {
    std::map<std::string, std::string> m{{"-o", dir / "x.safetensors"}, {"--image", "16"}, {"--ch", "8"},
                                         {"--groups", "2"}, {"--heads", "2"}, {"--batch", "1"}, {"--steps", "1"}};
    for (const auto& [k, v] : over) m[k] = v;
    std::vector<std::string> a{"train", "image"};
    for (const auto& [k, v] : m) {
      a.push_back(k);
      if (!v.empty()) a.push_back(v);
    }
    return a;
  };
  for (const std::map<std::string, std::string>& bad :
       {std::map<std::string, std::string>{{"--ch", "10"}, {"--groups", "4"}}, {{"--image", "15"}}, {{"--steps", "0"}},
        {{"--caption-dropout", "1.5"}}, {{"--t-dim", "7"}}, {{"--ema", "1"}}, {{"--ema", "-0.5"}}, {{"--resume", ""}, {"-o", dir / "missing.safetensors"}}}) {
    r = test::cli_run(args_with(bad));
    EXPECT_EQ(r.exit_code, 1) << bad.begin()->first;
    EXPECT_NE(r.err.find("aigc: error:"), std::string::npos) << r.err;
  }
}

// With --prediction v --ema: the resumed run equals the straight one bit for bit (model = the EMA,
// OUT.optim's raw weights and average too); the model file is the EMA of the raw weights (one step:
// 0.1 init + 0.9 raw, the warm-up's first decay); the file says "v"; resuming with another target fails.
TEST(TrainImage, VPredictionAndEmaResumeIsExact) {
  thread_count_set(1);
  TempDir dir;
  TrainImageOptions o = tiny_run_options();
  o.prediction = DiffusionTarget::V;
  o.ema = 0.99f;
  o.out = dir / "straight.safetensors";
  const TrainImageResult straight = train_image_run(o);
  o.out = dir / "resumed.safetensors";
  o.steps = 3;
  train_image_run(o);
  o.steps = 6;
  o.resume = true;
  const TrainImageResult resumed = train_image_run(o);
  EXPECT_EQ(resumed.steps_done, 6);
  EXPECT_EQ(resumed.val_loss, straight.val_loss);
  const image::PixelDiffusionFile a = image::pixel_diffusion_read(dir / "straight.safetensors");
  const image::PixelDiffusionFile b = image::pixel_diffusion_read(dir / "resumed.safetensors");
  EXPECT_EQ(a.config.prediction, DiffusionTarget::V);
  for (const auto& [name, ta] : a.params)
    EXPECT_EQ(std::memcmp(ta.data(), b.params.at(name).data(), ta.nbytes()), 0) << name << " differs after resume";
  const SafetensorsFile oa = SafetensorsFile::open(dir / "straight.safetensors.optim");
  const SafetensorsFile ob = SafetensorsFile::open(dir / "resumed.safetensors.optim");
  for (const char* t : {"params", "ema", "adam.m", "adam.v"}) {
    const Tensor x = oa.tensor(t), y = ob.tensor(t);
    ASSERT_TRUE(x.same_shape(y)) << t;
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.nbytes()), 0) << t << " differs after resume";
  }
  // The model file is the average: OUT.optim's "ema", laid out as the graph's flat parameters.
  {
    UnetTrainer u(a.config.unet, 1);
    image::pixel_diffusion_params_load(a, u);
    const Tensor e = oa.tensor("ema"), raw = oa.tensor("params");
    EXPECT_EQ(std::memcmp(u.graph().params_flat().data(), e.data(), e.nbytes()), 0);
    EXPECT_NE(std::memcmp(raw.data(), e.data(), e.nbytes()), 0);
  }
  const nlohmann::json tr = nlohmann::json::parse(a.config.training_json);
  EXPECT_EQ(tr.at("prediction"), "v");
  EXPECT_FLOAT_EQ(tr.at("ema").get<float>(), 0.99f);
  // Resuming a v checkpoint as epsilon is refused.
  o.prediction = DiffusionTarget::Epsilon;
  o.steps = 8;
  EXPECT_THROW(train_image_run(o), Error);

  // One step: the file holds 0.1 * init + 0.9 * raw (d = min(0.99, 1/10)).
  o = TrainImageOptions{};
  o.model = tiny_config();
  o.model.text_vocab = 0;
  o.model.text_len = 0;
  o.batch = 2;
  o.steps = 1;
  o.lr = {1e-2f, 1e-3f, 1, 1};  // the full rate on the one step: the weights move
  o.eval_batches = 1;
  o.ema = 0.99f;
  o.seed = 3;
  o.out = dir / "one.safetensors";
  train_image_run(o);
  const image::PixelDiffusionFile one = image::pixel_diffusion_read(o.out);
  UnetTrainer init(one.config.unet, 1), file(one.config.unet, 1);
  init.params_init(3);
  image::pixel_diffusion_params_load(one, file);
  const Tensor raw = SafetensorsFile::open(o.out + ".optim").tensor("params");
  const std::span<float> pi = init.graph().params_flat(), pf = file.graph().params_flat();
  ASSERT_EQ(static_cast<int64_t>(pi.size()), raw.numel());
  double worst = 0, moved = 0;
  for (size_t i = 0; i < pi.size(); ++i) {
    const double r = raw.ptr<float>()[i];
    worst = std::max(worst, std::abs(pf[i] - (0.1 * pi[i] + 0.9 * r)) / (1.0 + std::abs(r)));
    moved = std::max(moved, std::abs(r - pi[i]));
  }
  EXPECT_LT(worst, 1e-6);  // f32 rounding of one multiply-add
  EXPECT_GT(moved, 1e-4);  // the step changed the weights: the check can fail
  thread_count_set(0);
}

TEST(TrainImage, CliPredictionAndEma) {
  TempDir dir;
  const test::CliResult r = test::cli_run(
      {"-t", "1", "train", "image", "-o", dir / "m.safetensors", "--image", "16", "--ch", "8", "--groups", "2",
       "--heads", "2", "--text-dim", "8", "--t-dim", "8", "--batch", "2", "--steps", "2", "--eval-every", "2",
       "--eval-batches", "1", "--prediction", "v", "--ema", "0.999"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("validation loss"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(EMA weights)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("target v"), std::string::npos) << r.err;
  EXPECT_EQ(image::pixel_diffusion_read(dir / "m.safetensors").config.prediction, DiffusionTarget::V);
  const test::CliResult h = test::cli_run({"train", "image", "--help"});
  EXPECT_NE(h.out.find("--prediction"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("(1 + step) / (10 + step)"), std::string::npos) << h.out;
  // An unknown target is a usage error (CLI11's exit 2), one line naming the choices.
  const test::CliResult bad = test::cli_run({"train", "image", "-o", dir / "x.safetensors", "--prediction", "x0"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("aigc: error: --prediction: x0 not in {epsilon,v}"), std::string::npos) << bad.err;
}

TEST(TrainImage, BenchTrainTimesTheUnet) {
  const test::CliResult r =
      test::cli_run({"bench", "train", "--model", "unet", "--unet-image", "16", "--unet-ch", "8", "--unet-groups", "2",
                     "--unet-heads", "2", "--unet-text-dim", "8", "--unet-t-dim", "8", "--unet-batch", "2", "--steps",
                     "1", "--threads-list", "1,2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| ms/step |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| unet S16 c8 G2 H2 text8 t8 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 | 1 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 | 2 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("tokens/s"), std::string::npos) << "--model unet times the GPT too";
}

}  // namespace
}  // namespace aigc::train
