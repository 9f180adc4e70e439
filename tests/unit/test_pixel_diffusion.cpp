// Pixel-diffusion inference (src/image/pixel_diffusion.h) against tests/ref/twin_pixel_diffusion.py:
// a random tiny checkpoint in the real file layout, whole generations (Euler and DPM++ 2M with CFG,
// a negative prompt, img2img, mask blending) from the same seeded noise, and the same weights as a
// v-prediction checkpoint (Euler, DDIM, the preview); the linear-beta schedule against
// torch.cumprod; the tokenizer; hostile checkpoints ("prediction" other than epsilon / v), the
// prediction's round trip through the file; `aigc image` end to end.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/compare.h"
#include "common/refdump.h"
#include "common/run_cli.h"
#include "common/safetensors_copy.h"
#include "core/error.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "image/noise.h"
#include "image/noise_schedule.h"
#include "image/pixel_diffusion.h"
#include "image/sampler.h"
#include "image/sd_parameters.h"
#include "server/pixel_image_backend.h"
#include "train/glyph_font.h"

#include <nlohmann/json.hpp>

namespace {

using namespace aigc;
using namespace aigc::image;
namespace fs = std::filesystem;

std::string tiny_path() { return test::ref_dir() + "/pixel_diffusion_tiny.safetensors"; }

// The twin's cases (tests/ref/twin_pixel_diffusion.py CASES), as prompts.
struct Case {
  SamplerKind sampler;
  int steps;
  float cfg;
  const char* prompt;
  const char* negative;
  uint64_t seed;
  int batch, size;
  double strength;  // 0: txt2img
  bool mask;
};
const Case kCases[] = {
    {SamplerKind::Euler, 3, 4.0f, "two red circles", "", 7, 2, 8, 0.0, false},
    {SamplerKind::Dpmpp2m, 3, 3.0f, "A blue circle.", "red", 11, 1, 12, 0.0, false},
    {SamplerKind::Euler, 4, 4.0f, "a red letter k", "", 5, 1, 8, 0.5, false},
    {SamplerKind::Dpmpp2m, 3, 2.0f, "a red circle on blue", "", 3, 1, 8, 1.0, true},
};

SdGenerateParams params_of(const Case& c, const test::RefDump& d) {
  SdGenerateParams p;
  p.prompt = c.prompt;
  p.negative_prompt = c.negative;
  p.width = p.height = c.size;
  p.sample.sampler = c.sampler;
  p.sample.steps = c.steps;
  p.sample.cfg_scale = c.cfg;
  p.seed = c.seed;
  p.batch_size = c.batch;
  if (c.strength > 0) {
    p.init_image = d.get("init");
    p.strength = c.strength;
  }
  if (c.mask) p.mask = d.get("mask");
  return p;
}

// Tolerances: the twin runs float64, we run f32 through a UNet of ~40 ops and 2-4 sampler steps
// from sigma_max ~ 157 (the linear schedule's last step). The random model's x0 estimates reach
// |x| ~ 600, and values that cancel down from there keep that absolute error (f32: ~1e-6 of 600;
// measured worst 4.9e-4, on a value of 36): atol 1e-3 + rtol 1e-5. A wrong timestep, guidance or
// token is off by far more.
constexpr float kAtol = 1e-3f, kRtol = 1e-5f;

TEST(PixelDiffusion, LinearScheduleMatchesTorchCumprod) {
  // twin_train_image_unet.py: torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000)) in float64.
  const test::RefDump d = test::RefDump::load("train_image_unet");
  const NoiseSchedule s = NoiseSchedule::linear(1e-4, 0.02, 1000);
  Tensor ac = Tensor::empty(DType::F32, {1000});
  for (int t = 0; t < 1000; ++t) ac.ptr<float>()[t] = static_cast<float>(s.alphas_cumprod(t));
  EXPECT_TENSORS_CLOSE(ac, d.get("alphas_cumprod"), 0.0f, 1e-6f);  // f32 rounding of the dump
  // sigma(t) = sqrt((1 - abar) / abar), and t_to_sigma at integers is sigma(t).
  EXPECT_NEAR(s.sigma(999), std::sqrt((1 - s.alphas_cumprod(999)) / s.alphas_cumprod(999)), 1e-9);
  EXPECT_NEAR(s.t_to_sigma(500.0), s.sigma(500), 1e-9);
  EXPECT_NEAR(s.sigma_to_t(s.sigma(250)), 250.0, 1e-6);
  // The SD schedule is unchanged by the refactor: scaled-linear, not linear.
  EXPECT_NE(NoiseSchedule::sd().alphas_cumprod(500), NoiseSchedule::linear(0.00085, 0.012, 1000).alphas_cumprod(500));
}

TEST(PixelDiffusion, GenerationsMatchTwin) {
  const test::RefDump d = test::RefDump::load("pixel_diffusion");
  PixelDiffusion model = PixelDiffusion::open(tiny_path());
  EXPECT_EQ(model.image_size(), 8);
  EXPECT_EQ(model.info().name, "pixel_diffusion_tiny");
  for (size_t c = 0; c < std::size(kCases); ++c) {
    SCOPED_TRACE("case " + std::to_string(c));
    const Case& k = kCases[c];
    SdGenerateParams p = params_of(k, d);
    std::vector<Tensor> lat;
    p.latents_out = &lat;
    std::vector<int> steps_seen;
    const std::vector<Tensor> images = pixel_diffusion_generate(
        model, p, [&](const SdProgress& pr) { steps_seen.push_back(pr.step); });
    const int run = k.strength > 0 ? static_cast<int>(k.steps * k.strength) : k.steps;
    ASSERT_EQ(lat.size(), 1u);
    EXPECT_TENSORS_CLOSE(lat[0], d.get("case" + std::to_string(c) + "_x" + std::to_string(run - 1)), kAtol, kRtol);
    ASSERT_EQ(images.size(), static_cast<size_t>(k.batch));
    const Tensor& want = d.get("case" + std::to_string(c) + "_image");
    for (int b = 0; b < k.batch; ++b) {
      EXPECT_EQ(images[static_cast<size_t>(b)].shape_str(), fmt::format("[1, 3, {}, {}] f32", k.size, k.size));
      EXPECT_TENSORS_CLOSE(images[static_cast<size_t>(b)], want.slice(0, b, 1), kAtol, kRtol);
    }
    ASSERT_EQ(steps_seen.size(), static_cast<size_t>(run + 1));  // the start, then every step
    EXPECT_EQ(steps_seen.back(), run);
  }
}

// The same weights in a checkpoint saying "prediction": "v" (twin VCASES): the samplers get
// Prediction::V, k-diffusion's v denoiser (Euler) and diffusers' v step (DDIM) on the linear schedule.
TEST(PixelDiffusion, VPredictionGenerationsMatchTwin) {
  const test::RefDump d = test::RefDump::load("pixel_diffusion");
  PixelDiffusion model = PixelDiffusion::open(test::ref_dir() + "/pixel_diffusion_tiny_v.safetensors");
  EXPECT_EQ(model.info().prediction, Prediction::V);
  EXPECT_NE(model.info().description.find("v-prediction"), std::string::npos) << model.info().description;
  struct VCase {
    SamplerKind sampler;
    float cfg;
    const char* prompt;
    const char* negative;
    uint64_t seed;
    int batch;
  };
  const VCase cases[] = {{SamplerKind::Euler, 4.0f, "two red circles", "", 7, 2},
                         {SamplerKind::Ddim, 3.0f, "a blue circle", "red", 11, 1}};
  for (size_t c = 0; c < std::size(cases); ++c) {
    SCOPED_TRACE("v case " + std::to_string(c));
    SdGenerateParams p;
    p.prompt = cases[c].prompt;
    p.negative_prompt = cases[c].negative;
    p.width = p.height = 8;
    p.sample.sampler = cases[c].sampler;
    p.sample.steps = 3;
    p.sample.cfg_scale = cases[c].cfg;
    p.seed = cases[c].seed;
    p.batch_size = cases[c].batch;
    p.preview_every = 1;
    std::vector<Tensor> lat;
    p.latents_out = &lat;
    std::map<int, Tensor> previews;
    const std::vector<Tensor> images =
        pixel_diffusion_generate(model, p, {}, [&](int, int step, const Tensor& rgb) { previews[step] = rgb; });
    const std::string k = "vcase" + std::to_string(c);
    ASSERT_EQ(lat.size(), 1u);
    EXPECT_TENSORS_CLOSE(lat[0], d.get(k + "_x2"), kAtol, kRtol);
    ASSERT_EQ(images.size(), static_cast<size_t>(cases[c].batch));
    for (int b = 0; b < cases[c].batch; ++b)
      EXPECT_TENSORS_CLOSE(images[static_cast<size_t>(b)], d.get(k + "_image").slice(0, b, 1), kAtol, kRtol);
    if (c == 0) {
      // The preview after step 1 is D of the first model call: x / (s^2 + 1) - s / sqrt(s^2 + 1) v.
      const Tensor& den = d.get("vcase0_den0");
      Tensor want = Tensor::empty(DType::F32, den.shape());
      int inside = 0;
      for (int64_t i = 0; i < den.numel(); ++i) {
        inside += std::abs(den.ptr<float>()[i]) < 1.0f;
        want.ptr<float>()[i] = std::clamp((den.ptr<float>()[i] + 1.0f) / 2.0f, 0.0f, 1.0f);
      }
      EXPECT_GT(inside, den.numel() / 4);  // the check is not all clamped values
      ASSERT_EQ(previews.count(1), 1u);
      EXPECT_TENSORS_CLOSE(previews[1], want, kAtol, kRtol);
    }
  }
  // The epsilon checkpoint with the same weights draws something else: the prediction is used.
  PixelDiffusion eps_model = PixelDiffusion::open(tiny_path());
  EXPECT_EQ(eps_model.info().prediction, Prediction::Epsilon);
  SdGenerateParams p;
  p.prompt = "two red circles";
  p.width = p.height = 8;
  p.sample.sampler = SamplerKind::Euler;
  p.sample.steps = 3;
  p.sample.cfg_scale = 4.0f;
  p.seed = 7;
  const Tensor e = pixel_diffusion_generate(eps_model, p)[0];
  const Tensor& v = d.get("vcase0_image");
  double diff = 0;
  for (int64_t i = 0; i < e.numel(); ++i) diff = std::max(diff, static_cast<double>(std::abs(e.ptr<float>()[i] - v.ptr<float>()[i])));
  EXPECT_GT(diff, 0.05);
}

// The ModelFn alone with the sampler: every step of case 0 (Euler, CFG 4, batch 2).
TEST(PixelDiffusion, EveryEulerStepMatchesTwin) {
  const test::RefDump d = test::RefDump::load("pixel_diffusion");
  PixelDiffusion model = PixelDiffusion::open(tiny_path());
  const Case& k = kCases[0];
  const int64_t B = k.batch, S = k.size, Tc = model.config().unet.text_len;
  std::vector<int32_t> cond(static_cast<size_t>(B * Tc)), uncond(static_cast<size_t>(B * Tc));
  for (int64_t b = 0; b < B; ++b) {
    model.tokenize(k.prompt, std::span<int32_t>(cond).subspan(static_cast<size_t>(b * Tc), static_cast<size_t>(Tc)));
    model.tokenize("", std::span<int32_t>(uncond).subspan(static_cast<size_t>(b * Tc), static_cast<size_t>(Tc)));
  }
  PixelUnetFn fn(model, cond, uncond, B, S);
  ModelFn mf = [&fn](const Tensor& x, double t, Tensor& c, Tensor* u) { fn(x, t, c, u); };
  SampleParams sp;
  sp.sampler = k.sampler;
  sp.steps = k.steps;
  sp.cfg_scale = k.cfg;
  SeededNoise rng(k.seed, static_cast<int>(B));
  Tensor noise = Tensor::empty(DType::F32, {B, 3, S, S});
  rng.noise_fill(noise);
  int seen = 0;
  sampler_run(mf, model.schedule(), sp, noise, nullptr, rng, [&](int step, const Tensor& x) {
    EXPECT_TENSORS_CLOSE(x, d.get("case0_x" + std::to_string(step)), kAtol, kRtol) << "step " << step;
    ++seen;
  });
  EXPECT_EQ(seen, k.steps);
}

// Previews show the denoised estimate D of the step's model call. For Euler,
// x_{j+1} = x_j + (x_j - D_j) / s_j (s_{j+1} - s_j), so D_0 follows from the twin's start and x_0.
// Case 2 (img2img, 2 of 4 Euler steps from the schedule's index 2) keeps D mostly inside [-1, 1].
TEST(PixelDiffusion, PreviewIsTheDenoisedEstimate) {
  const test::RefDump d = test::RefDump::load("pixel_diffusion");
  PixelDiffusion model = PixelDiffusion::open(tiny_path());
  SdGenerateParams p = params_of(kCases[2], d);
  p.preview_every = 1;
  std::map<int, Tensor> previews;
  pixel_diffusion_generate(model, p, {}, [&](int, int step, const Tensor& rgb) { previews[step] = rgb; });
  ASSERT_EQ(previews.size(), 1u);  // after step 1 of 2 (none after the last)
  const std::vector<double> sig = sigmas_normal(model.schedule(), 4);
  const Tensor& xs = d.get("case2_xstart");
  const Tensor& x0 = d.get("case2_x0");
  Tensor want = Tensor::empty(DType::F32, xs.shape());
  int inside = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double den = xs.ptr<float>()[i] - (x0.ptr<float>()[i] - xs.ptr<float>()[i]) * sig[2] / (sig[3] - sig[2]);
    inside += std::abs(den) < 1.0;
    want.ptr<float>()[i] = static_cast<float>(std::clamp((den + 1.0) / 2.0, 0.0, 1.0));
  }
  EXPECT_GT(inside, want.numel() / 4);  // the check is not all clamped values
  // D recovered from two x's: their difference times s / (s_next - s) (~ -1.3 here), so twice the tolerance.
  EXPECT_TENSORS_CLOSE(previews[1], want, 2 * kAtol, kRtol);
}

TEST(PixelDiffusion, HiresFixRunsASecondPassAtTheLargerSize) {
  PixelDiffusion model = PixelDiffusion::open(tiny_path());
  SdGenerateParams p;
  p.prompt = "a red circle";
  p.width = p.height = 8;
  p.sample.steps = 2;
  p.hires_scale = 2;
  p.hires_steps = 2;
  std::vector<int> hires_steps;
  const std::vector<Tensor> img = pixel_diffusion_generate(model, p, [&](const SdProgress& pr) {
    if (pr.stage == SdProgress::Stage::Hires) hires_steps.push_back(pr.step);
  });
  ASSERT_EQ(img.size(), 1u);
  EXPECT_EQ(img[0].shape_str(), "[1, 3, 16, 16] f32");
  EXPECT_EQ(hires_steps, (std::vector<int>{0, 1}));  // strength 0.5 of 2 steps: 1 step
}

TEST(PixelDiffusion, TokenizerAndItsErrors) {
  PixelDiffusion model = PixelDiffusion::open(tiny_path());
  // vocab: <pad> <empty> a two red blue circle circles on background letter K
  auto ids = [&](const std::string& s) {
    std::vector<int32_t> v(5);
    model.tokenize(s, v);
    return v;
  };
  EXPECT_EQ(ids("Two  red, circles."), (std::vector<int32_t>{3, 4, 7, 0, 0}));
  EXPECT_EQ(ids("a red letter k"), (std::vector<int32_t>{2, 4, 10, 11, 0}));  // a letter is in capitals
  EXPECT_EQ(ids("A red circle"), (std::vector<int32_t>{2, 4, 6, 0, 0}));      // "A" starting a sentence is "a"
  EXPECT_EQ(ids(""), (std::vector<int32_t>{1, 0, 0, 0, 0}));                  // the empty caption
  EXPECT_EQ(ids(" ... "), (std::vector<int32_t>{1, 0, 0, 0, 0}));
  try {
    ids("a red cat");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown word 'cat'"), std::string::npos) << m;
    EXPECT_NE(m.find("knows only these words: a two red blue circle circles on background letter K"), std::string::npos) << m;
    EXPECT_NE(m.find("circles, squares or triangles"), std::string::npos) << m;
    EXPECT_EQ(m.find("<pad>"), std::string::npos) << m;
  }
  EXPECT_THROW(ids("a red circle on a blue background"), Error);  // 7 words, the model reads 5
  EXPECT_THROW(ids("<empty>"), Error);                              // the special tokens are no words
}

TEST(PixelDiffusion, SizeChecks) {
  PixelDiffusion model = PixelDiffusion::open(tiny_path());
  SdGenerateParams p;
  p.prompt = "a red circle";
  p.sample.steps = 1;
  for (auto [w, h] : {std::pair{8, 10}, std::pair{9, 9}, std::pair{0, 0}, std::pair{512, 512}}) {
    p.width = w;
    p.height = h;
    EXPECT_THROW(pixel_diffusion_generate(model, p), Error) << w << "x" << h;
  }
  p.width = p.height = 8;
  p.clip_skip = 2;
  EXPECT_THROW(pixel_diffusion_generate(model, p), Error);
}

// A two-level model (levels 2, ch 4 / ch1 8 / ch2 12: the train twin's train_image_unet_l2 parameters)
// written by pixel_diffusion_write and opened for inference: the config round-trips, the model call
// predicts the twin's noise with the twin's loss (each sample at its own timestep), and sizes that
// are not a multiple of 4 are one clear error.
TEST(PixelDiffusion, TwoLevelModelFollowsItsConfig) {
  const test::RefDump d = test::RefDump::load("train_image_unet_l2");
  const int32_t* c = d.get("config").ptr<int32_t>();
  ASSERT_EQ(d.get("config").numel(), 12);
  PixelDiffusionConfig cfg;
  cfg.unet = train::UnetConfig{.image = c[1], .ch = c[2], .groups = c[3], .t_dim = c[4], .text_vocab = c[5],
                               .text_len = c[6], .text_dim = c[7], .heads = c[8], .levels = c[9], .ch1 = c[10],
                               .ch2 = c[11]};
  ASSERT_EQ(cfg.unet.levels, 2);
  cfg.vocab = {"<pad>", "<empty>"};
  for (int64_t i = 2; i < cfg.unet.text_vocab; ++i) cfg.vocab.push_back("w" + std::to_string(i));
  const int64_t B = c[0], S = cfg.unet.image, Tc = cfg.unet.text_len;
  const fs::path dir = test::temp_dir_make("pixel_levels2");
  const std::string path = (dir / "l2.safetensors").string();
  {
    train::UnetTrainer trainer(cfg.unet, 1);
    for (const train::Graph::ParamInfo& p : trainer.graph().params()) {
      Tensor& dst = trainer.graph().value(p.var);
      const Tensor& src = d.get("p." + p.name);
      ASSERT_TRUE(src.same_shape(dst)) << p.name;
      std::memcpy(dst.ptr<float>(), src.ptr<float>(), static_cast<size_t>(p.numel) * 4);
    }
    pixel_diffusion_write(path, cfg, trainer);
  }
  PixelDiffusion model = PixelDiffusion::open(path);
  const train::UnetConfig& u = model.config().unet;
  EXPECT_EQ(u.levels, 2);
  EXPECT_EQ(u.ch1, cfg.unet.ch1);
  EXPECT_EQ(u.ch2, cfg.unet.ch2);

  const Tensor& x = d.get("x");  // [B, 3, S, S]
  const int32_t* ids = d.get("ids").ptr<int32_t>();
  const int64_t n = 3 * S * S;
  double sq = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> cond(ids + b * Tc, ids + (b + 1) * Tc);
    PixelUnetFn fn(model, cond, cond, 1, S);
    Tensor xb = Tensor::empty(DType::F32, {1, 3, S, S}), eps = Tensor::empty(DType::F32, {1, 3, S, S});
    std::memcpy(xb.ptr<float>(), x.ptr<float>() + b * n, static_cast<size_t>(n) * 4);
    fn(xb, d.get("tsteps").ptr<float>()[b], eps, nullptr);
    const float* want = d.get("noise").ptr<float>() + b * n;
    for (int64_t i = 0; i < n; ++i) sq += (eps.ptr<float>()[i] - want[i]) * (eps.ptr<float>()[i] - want[i]);
  }
  // the twin's loss (float64) from our f32 forward: 2e-5 as in test_train_image_unet.cpp
  EXPECT_NEAR(sq / static_cast<double>(B * n), d.get("loss").ptr<float>()[0], 2e-5);

  SdGenerateParams p;
  p.prompt = "w2 w3";
  p.sample.steps = 2;
  for (int side : {8, 12}) {
    p.width = p.height = side;
    const std::vector<Tensor> img = pixel_diffusion_generate(model, p);
    ASSERT_EQ(img.size(), 1u);
    EXPECT_EQ(img[0].shape_str(), fmt::format("[1, 3, {}, {}] f32", side, side));
  }
  for (int side : {6, 10, 2}) {
    p.width = p.height = side;
    try {
      pixel_diffusion_generate(model, p);
      ADD_FAILURE() << "no error at " << side;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("must be a multiple of 4"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

// Hostile checkpoints: each is one aigc::Error naming the problem, never a crash or a huge allocation.
class PixelDiffusionHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir_make("pixel_hostile");
    tensors_ = test::safetensors_tensors_copy(tiny_path());
    metadata_ = SafetensorsFile::open(tiny_path()).metadata();
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Writes the altered file and expects one aigc::Error whose text holds `needle`.
  void expect_error(const std::map<std::string, Tensor>& t, const std::map<std::string, std::string>& md,
                    const std::string& needle) {
    const std::string path = (dir_ / "bad.safetensors").string();
    safetensors_write(path, t, md);
    try {
      PixelDiffusion::open(path);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  std::string config_with(const std::string& key, const std::string& value) {
    std::string c = metadata_.at("aigc.config");
    const size_t at = c.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << c;
    const size_t v = at + key.size() + 4, end = c.find_first_of(",}", v);
    return c.substr(0, v) + value + c.substr(end);
  }
  fs::path dir_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

TEST_F(PixelDiffusionHostile, BadConfigJson) {
  auto md = metadata_;
  md["aigc.config"] = "{\"image\": 8,";
  expect_error(tensors_, md, "\"aigc.config\" is not a JSON object");
  md["aigc.config"] = config_with("ch", "\"eight\"");
  expect_error(tensors_, md, "\"ch\" missing or not an integer");
  md["aigc.config"] = config_with("heads", "3");
  expect_error(tensors_, md, "divisible by groups");
  md.erase("aigc.config");
  expect_error(tensors_, md, "without \"aigc.config\"");
}

TEST_F(PixelDiffusionHostile, PredictionIsEpsilonOrV) {
  auto md = metadata_;
  md["aigc.config"] = config_with("prediction", "\"x\"");
  expect_error(tensors_, md, "\"prediction\" must be \"epsilon\" or \"v\"");
  md["aigc.config"] = config_with("prediction", "1");
  expect_error(tensors_, md, "\"prediction\" must be \"epsilon\" or \"v\"");
  // "v" round-trips: written by pixel_diffusion_write, read back as V, run as Prediction::V.
  const PixelDiffusionFile f = pixel_diffusion_read(tiny_path());
  EXPECT_EQ(f.config.prediction, train::DiffusionTarget::Epsilon);
  train::UnetTrainer u(f.config.unet, 1);
  pixel_diffusion_params_load(f, u);
  PixelDiffusionConfig c = f.config;
  c.prediction = train::DiffusionTarget::V;
  const std::string path = (dir_ / "v.safetensors").string();
  pixel_diffusion_write(path, c, u);
  EXPECT_NE(SafetensorsFile::open(path).metadata().at("aigc.config").find("\"prediction\":\"v\""), std::string::npos);
  const PixelDiffusionFile back = pixel_diffusion_read(path);
  EXPECT_EQ(back.config.prediction, train::DiffusionTarget::V);
  EXPECT_EQ(PixelDiffusion::open(path).info().prediction, Prediction::V);
  c.prediction = train::DiffusionTarget::Epsilon;
  pixel_diffusion_write(path, c, u);
  EXPECT_EQ(pixel_diffusion_read(path).config.prediction, train::DiffusionTarget::Epsilon);
  // A file without "prediction" (older writers) is epsilon.
  md = metadata_;
  nlohmann::json j = nlohmann::json::parse(md.at("aigc.config"));
  j.erase("prediction");
  md["aigc.config"] = j.dump();
  safetensors_write(path, tensors_, md);
  EXPECT_EQ(pixel_diffusion_read(path).config.prediction, train::DiffusionTarget::Epsilon);
}

TEST_F(PixelDiffusionHostile, HugeConfigInASmallFileAllocatesNothing) {
  auto md = metadata_;
  md["aigc.config"] = config_with("ch", "4096");  // would be gigabytes of parameters
  expect_error(tensors_, md, "parameter \"in.w\" is [8, 3, 3, 3] but the config needs [4096, 3, 3, 3]");
}

TEST_F(PixelDiffusionHostile, WrongMissingAndExtraTensors) {
  auto t = tensors_;
  t["res1.conv2.w"] = Tensor::zeros(DType::F32, {8, 8, 1, 1});
  expect_error(t, metadata_, "parameter \"res1.conv2.w\" is [8, 8, 1, 1] f32 but the config needs [8, 8, 3, 3]");
  t = tensors_;
  t.erase("attn.co.b");
  expect_error(t, metadata_, "parameter \"attn.co.b\" missing");
  t = tensors_;
  t["lora.up"] = Tensor::zeros(DType::F32, {2});
  expect_error(t, metadata_, "unexpected tensor \"lora.up\"");
  t = tensors_;
  t["out.b"] = Tensor::zeros(DType::F16, {3});
  expect_error(t, metadata_, "parameter \"out.b\"");
}

// The fields of the two-level option: bounds, the levels-1 rule for ch2, and widths against the
// file's own tensors before anything is allocated (the tiny file is levels 1, ch 8).
TEST_F(PixelDiffusionHostile, LevelsAndWidthsAreChecked) {
  auto md = metadata_;
  const std::string config = metadata_.at("aigc.config");
  ASSERT_EQ(config.find("\"levels\""), std::string::npos);  // a first-version file: defaults apply
  auto with = [&](const std::string& field) { return "{" + field + ", " + config.substr(1); };
  md["aigc.config"] = with("\"levels\": 3");
  expect_error(tensors_, md, "\"levels\" = 3 is outside [1, 2]");
  md["aigc.config"] = with("\"ch2\": 8");
  expect_error(tensors_, md, "ch2 0 with levels 1");
  md["aigc.config"] = with("\"ch1\": 4096");
  expect_error(tensors_, md, "parameter \"res1.conv1.w\" is [8, 8, 3, 3] but the config needs [4096, 8, 3, 3]");
  md["aigc.config"] = with("\"levels\": 2");
  expect_error(tensors_, md, "parameter \"res3.conv1.w\" missing");
}

TEST_F(PixelDiffusionHostile, VocabMismatch) {
  auto md = metadata_;
  md["aigc.vocab"] = "[\"<pad>\", \"<empty>\", \"a\"]";
  expect_error(tensors_, md, "\"aigc.vocab\" has 3 words but the config says text_vocab 12");
  md["aigc.vocab"] = "{\"a\": 1}";
  expect_error(tensors_, md, "\"aigc.vocab\" is not a JSON array");
  md["aigc.vocab"] = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]";
  expect_error(tensors_, md, "non-string");
  md = metadata_;
  md["aigc.model"] = "something-else";
  expect_error(tensors_, md, "not a pixel-diffusion checkpoint");
}

// ---- aigc image ----

std::string png_parameters(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string key = std::string("tEXtparameters") + '\0';
  const size_t at = png.find(key);
  if (at == std::string::npos) return {};
  const uint8_t* lp = reinterpret_cast<const uint8_t*>(png.data() + at - 4);
  const size_t len = size_t{lp[0]} << 24 | size_t{lp[1]} << 16 | size_t{lp[2]} << 8 | lp[3];
  return png.substr(at + key.size(), len - (key.size() - 4));
}

TEST(PixelDiffusionCli, ImageEndToEndWritesThePngWithParameters) {
  const test::RefDump d = test::RefDump::load("pixel_diffusion");
  const fs::path dir = test::temp_dir_make("pixel_cli");
  const std::string out = (dir / "circles.png").string();
  // Case 0's first image: -W/-H default to the model's size (8).
  const auto r = test::cli_run({"-t", "1", "image", "-m", tiny_path(), "-p", "two red circles", "--steps", "3",
                                "--sampler", "euler", "--cfg-scale", "4", "-s", "7", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 3/3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pixel-diffusion"), std::string::npos) << r.err;
  const Tensor img = image_read(out);
  ASSERT_EQ(img.shape_str(), "[1, 3, 8, 8] f32");
  // 8-bit rounding (half a level) plus the generation tolerance.
  EXPECT_TENSORS_CLOSE(img, d.get("case0_image").slice(0, 0, 1), 0.5f / 255 + kAtol, 0.0f);
  const SdParameters p = sd_parameters_parse(png_parameters(out));
  EXPECT_EQ(p.prompt, "two red circles");
  ASSERT_NE(p.field("Steps"), nullptr);
  EXPECT_EQ(*p.field("Steps"), "3");
  EXPECT_EQ(*p.field("Sampler"), "Euler");
  EXPECT_EQ(*p.field("CFG scale"), "4");
  EXPECT_EQ(*p.field("Seed"), "7");
  EXPECT_EQ(*p.field("Size"), "8x8");
  EXPECT_EQ(*p.field("Model"), "pixel_diffusion_tiny");
  fs::remove_all(dir);
}

TEST(PixelDiffusionCli, UnknownWordAndBadSizeAreOneLineErrors) {
  auto one_error = [](const test::CliResult& r, const std::string& needle) {
    EXPECT_EQ(r.exit_code, 1) << r.err;
    const size_t at = r.err.find("aigc: error: ");
    ASSERT_NE(at, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\n', at), r.err.size() - 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  };
  one_error(test::cli_run({"image", "-m", tiny_path(), "-p", "a red cat", "-o", "/tmp/never.png"}),
            "unknown word 'cat'");
  one_error(test::cli_run({"image", "-m", tiny_path(), "-p", "a red circle", "-W", "9", "-o", "/tmp/never.png"}),
            "even number");
  one_error(test::cli_run({"image", "-m", tiny_path(), "-p", "a red circle", "-W", "8", "-H", "16", "-o",
                           "/tmp/never.png"}),
            "square");
}

TEST(PixelDiffusionCli, MissingBuiltinImageModelSaysHowToMakeIt) {
  // A copy of the binary in a folder with no models/ beside it, and AIGC_MODELS_DIR pointing nowhere.
  const fs::path dir = test::temp_dir_make("pixel_builtin");
  fs::create_directories(dir / "bin");
  fs::copy_file(AIGC_AIGC_BIN, dir / "bin" / "aigc");
  const std::string cmd = "AIGC_MODELS_DIR=" + (dir / "none").string() + " " + (dir / "bin" / "aigc").string() +
                          " image -p 'a red circle' 2> " + (dir / "err").string();
  const int status = std::system(cmd.c_str());
  std::ifstream f(dir / "err");
  const std::string err((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  fs::remove_all(dir);
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(err.find("built-in model shapes.safetensors was not found"), std::string::npos) << err;
  EXPECT_NE(err.find("scripts/train_image_default.sh"), std::string::npos) << err;
}

}  // namespace

// ---- aigc eval image ----

namespace {

using nlohmann::json;

TEST(PixelDiffusionEval, RandomModelRunsAndReportsEveryAttribute) {
  const fs::path dir = test::temp_dir_make("pixel_eval");
  const std::string grid = (dir / "grid.png").string();
  const auto r = test::cli_run({"-t", "1", "eval", "image", "-m", test::ref_dir() + "/pixel_diffusion_shapes16.safetensors",
                                "-n", "6", "--steps", "2", "--batch-size", "4", "--json", "--grid", grid, "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["captions"], 6);
  EXPECT_EQ(j["glyphs"], false);  // the checkpoint's aigc.training says so
  EXPECT_EQ(j["size"], 16);
  for (const char* k : {"match", "colour", "background", "shape", "count", "glyph", "images_per_s"})
    EXPECT_TRUE(j.contains(k) && j[k].is_number()) << k;
  EXPECT_EQ(j["shape_captions"], 6);
  EXPECT_GE(j["match"].get<double>(), 0.0);
  EXPECT_LE(j["match"].get<double>(), 1.0);
  // 6 images of 16 px, each x4 = 64, in a 3 x 2 grid with 2 px gaps.
  EXPECT_EQ(image_read(grid).shape_str(), "[1, 3, 134, 200] f32");
  fs::remove_all(dir);
}

TEST(PixelDiffusionEval, RealImagesGiveTheCheckersCeiling) {
  // The data set's own images: the checker recognises every shape caption (the grammar is drawn
  // exactly), and nearly every glyph (a few letters are near-identical at 32 px).
  const auto r = test::cli_run({"eval", "image", "--real", "-n", "100", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["match"].get<double>(), 1.0);
  if (!train::glyph_font_available()) GTEST_SKIP() << "no DejaVu font (fonts-dejavu-core): glyph captions need it";
  const auto g = test::cli_run({"eval", "image", "--real", "-n", "200", "--glyphs", "--json"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const json k = json::parse(g.out);
  EXPECT_GT(k["glyph_captions"].get<int>(), 20);
  EXPECT_GE(k["glyph"].get<double>(), 0.9);
  EXPECT_EQ(k["shape"].get<double>(), 1.0);
}

TEST(PixelDiffusionEval, ModelsTheDataSetCannotFitAreOneError) {
  const auto r = test::cli_run({"eval", "image", "-m", tiny_path(), "-n", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("16 px or more"), std::string::npos) << r.err;
}

}  // namespace

// ---- the server's backend ----

namespace {

server::ImageRequest backend_request() {
  server::ImageRequest r;
  r.prompt = "two red circles";
  r.width = r.height = 64;
  r.steps = 3;
  r.sampler = "euler";
  r.cfg_scale = 4.0f;
  r.seed = 7;
  r.n = 2;
  return r;
}

TEST(PixelDiffusionBackend, GeneratesTheTwinsImagesScaledToTheRequest) {
  const test::RefDump d = test::RefDump::load("pixel_diffusion");
  server::PixelImageBackend b(tiny_path());
  EXPECT_GT(b.memory_bytes(), 0);
  std::atomic<bool> cancel{false};
  int steps_seen = 0, previews = 0;
  const std::vector<std::string> pngs = b.generate(backend_request(), [&](const server::ImageProgress& p) {
    EXPECT_EQ(p.total, 3);
    if (p.preview_png.empty()) ++steps_seen; else ++previews;
  }, cancel);
  ASSERT_EQ(pngs.size(), 2u);
  EXPECT_EQ(steps_seen, 6);  // 3 steps x 2 images
  EXPECT_GT(previews, 0);
  // Image i has seed 7 + i; twin case 0 drew seeds 7 and 8 (each image its own noise stream).
  const Tensor& want = d.get("case0_image");
  for (int i = 0; i < 2; ++i) {
    const std::string& png = pngs[static_cast<size_t>(i)];
    const Tensor img = image_decode({reinterpret_cast<const uint8_t*>(png.data()), png.size()}, "png");
    ASSERT_EQ(img.shape_str(), "[1, 3, 64, 64] f32");
    Tensor small = Tensor::empty(DType::F32, {1, 3, 8, 8});  // every 8th pixel: the nearest upscale's source
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x) small.ptr<float>()[(c * 8 + y) * 8 + x] = img.ptr<float>()[(c * 64 + y * 8) * 64 + x * 8];
    EXPECT_TENSORS_CLOSE(small, want.slice(0, i, 1), 0.5f / 255 + kAtol, 0.0f);
    const std::string key = std::string("tEXtparameters") + '\0';
    ASSERT_NE(png.find(key), std::string::npos);
  }
  EXPECT_GT(b.memory_bytes(), 0);
}

TEST(PixelDiffusionBackend, CancelAndBadRequests) {
  server::PixelImageBackend b(tiny_path());
  std::atomic<bool> cancel{false};
  EXPECT_THROW(b.generate(backend_request(), [&](const server::ImageProgress&) { cancel = true; }, cancel),
               server::ImageCancelled);
  server::ImageRequest r = backend_request();
  r.prompt = "a photo of a cat";
  EXPECT_THROW(b.validate(r), Error);
  r = backend_request();
  r.steps = 0;
  EXPECT_THROW(b.validate(r), Error);
  r = backend_request();
  r.sampler = "lcm";
  EXPECT_THROW(b.validate(r), Error);
  EXPECT_THROW(server::PixelImageBackend("/nonexistent.safetensors"), Error);
}

}  // namespace

namespace {

// img2img through the backend: 2 of 4 steps run, and every event (previews too) says 2.
TEST(PixelDiffusionBackend, Img2imgEventsCountTheStepsRun) {
  server::PixelImageBackend b(tiny_path());
  server::ImageRequest r = backend_request();
  r.mode = server::ImageMode::Img2Img;
  r.steps = 4;
  r.strength = 0.5f;
  r.n = 1;
  const Tensor init = Tensor::zeros(DType::F32, {1, 3, 8, 8});
  const std::vector<uint8_t> png = image_encode_png(init);
  r.init_image.assign(png.begin(), png.end());
  std::atomic<bool> cancel{false};
  int events = 0;
  b.generate(r, [&](const server::ImageProgress& p) {
    EXPECT_EQ(p.total, 2) << "step " << p.step;
    ++events;
  }, cancel);
  EXPECT_GE(events, 2);
}

}  // namespace
