// The SD pipeline's own parts: resizing against PIL and PyTorch (tests/ref/twin_sd_pipeline.py),
// the analytic FLOP counts against the issue's figures, and parameter checks.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/compare.h"
#include "common/refdump.h"
#include "core/error.h"
#include "image/image_resize.h"
#include "image/sd_flops.h"
#include "image/sd_pipeline.h"
#include "image/taesd.h"

namespace {

using namespace aigc;
using namespace aigc::image;
using aigc::test::RefDump;

// PIL computes in double per pass and stores f32 between passes, as we do: only rounding differs.
constexpr float kResizeAtol = 2e-6f, kResizeRtol = 1e-5f;

TEST(SdResize, CropResizeMatchesPil) {
  const RefDump d = RefDump::load("sd_resize");
  EXPECT_TENSORS_CLOSE(image_resize_crop(d.get("big"), 24, 16), d.get("big_to_16x24"), kResizeAtol, kResizeRtol);
  EXPECT_TENSORS_CLOSE(image_resize_crop(d.get("small"), 8, 16), d.get("small_to_16x8"), kResizeAtol, kResizeRtol);
  EXPECT_TENSORS_CLOSE(image_resize_crop(d.get("mask"), 16, 16), d.get("mask_to_16x16"), kResizeAtol, kResizeRtol);
}

TEST(SdResize, LatentUpscaleMatchesTorchInterpolate) {
  const RefDump d = RefDump::load("sd_resize");
  const Tensor& lat = d.get("latent");
  // Two-tap lerps in f32 both sides: a few ulp.
  EXPECT_TENSORS_CLOSE(latent_upscale(lat, 2, false), d.get("latent_up2_bilinear"), 1e-6f, 1e-6f);
  EXPECT_TENSORS_CLOSE(latent_upscale(lat, 3, false), d.get("latent_up3_bilinear"), 1e-6f, 1e-6f);
  EXPECT_TENSORS_CLOSE(latent_upscale(lat, 2, true), d.get("latent_up2_nearest"), 0.0f, 0.0f);
}

TEST(SdResize, MaskToLatentIsCellMean) {
  Tensor m = Tensor::zeros(DType::F32, {1, 1, 16, 8});
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 4; ++x) m.at<float>(0, 0, y, x) = 1.0f;  // left half of the top cell
  const Tensor l = mask_to_latent(m);
  ASSERT_EQ(l.shape_str(), "[1, 1, 2, 1] f32");
  EXPECT_FLOAT_EQ(l.at<float>(0, 0, 0, 0), 0.5f);
  EXPECT_FLOAT_EQ(l.at<float>(0, 0, 1, 0), 0.0f);
}

TEST(SdFlops, MatchesTheIssueFigures) {
  // The issue: one CFG step of SD 1.5 at 512^2 is about 1.6 TFLOP, the 512^2 VAE decode about 2.5 TFLOP.
  const UNetConfig sd15;  // defaults are SD 1.5's
  const double step = 2 * unet_flops(sd15, 64, 64);
  EXPECT_NEAR(step / 1e12, 1.6, 0.15) << step;
  const VaeConfig vae;
  const double dec = vae_decode_flops(vae, 64, 64);
  EXPECT_NEAR(dec / 1e12, 2.5, 0.25) << dec;
  // Scales with the area (attention a bit faster).
  EXPECT_GT(unet_flops(sd15, 64, 64) / unet_flops(sd15, 32, 32), 4.0);
}

TEST(SdPipeline, LatentPreviewRange) {
  Tensor z = aigc::test::random_f32({2, 4, 3, 5}, 3, -4.0f, 4.0f);
  const Tensor rgb = sd_latent_preview(z);
  ASSERT_EQ(rgb.shape_str(), "[2, 3, 3, 5] f32");
  for (int64_t i = 0; i < rgb.numel(); ++i) {
    EXPECT_GE(rgb.ptr<float>()[i], 0.0f);
    EXPECT_LE(rgb.ptr<float>()[i], 1.0f);
  }
}

}  // namespace

// ---- whole pipeline against tests/ref/twin_sd_pipeline.py -----------------------------------------
// The twin's tiny SD 1.5 / 2.1 / inpainting checkpoints (single files, CompVis keys, f16 weights),
// run by sd_generate in f32 from the prompt "a photo of a cat" (tokenized here with CLIP's real
// vocabulary from ../shared; the twin uses the ids OpenAI's tokenizer gives) and the negative "".

namespace {

std::string vocab_path() {
  const std::string s = aigc::test::shared_dir();
  return s.empty() ? std::string() : s + "/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz";
}

SdModel model_open(const std::string& name, bool sd21 = false) {
  SdModelOptions o;
  o.precision = ops::Precision::F32;
  o.clip_vocab = vocab_path();
  if (sd21) {
    UNetConfig h;
    h.num_head_channels = 8;  // the tiny SD 2.1 UNet's heads (SD 2.x: 64-channel heads at full size)
    o.unet_heads = h;
    o.prediction = Prediction::V;
  }
  return SdModel::open(aigc::test::ref_dir() + "/sd_pipe_" + name + ".safetensors", o);
}

SdGenerateParams params_base(uint64_t seed, int steps) {
  SdGenerateParams p;
  p.prompt = "a photo of a cat";
  p.negative_prompt = "";
  p.width = p.height = 64;
  p.sample.sampler = SamplerKind::Euler;
  p.sample.steps = steps;
  p.sample.cfg_scale = 7.0f;
  p.seed = seed;
  return p;
}

// f32 both sides with the same f16-exact weights; the differences are summation order in the
// convolutions / attention (~1e-6 relative per layer), amplified by sigma_max = 14.6 in the first
// Euler step and by CFG 7. Measured worst |diff|: SD 1.5 latent 1.3e-4 (values up to 42), SD 2.1
// latent 1.2e-5; images 3e-6 .. 5e-5 (in [0, 1]). The bounds leave a 15-20x margin.
constexpr float kLatentAtol = 2e-3f, kLatentRtol = 1e-3f;
constexpr float kImageAtol = 1e-3f;

class SdPipelineTwin : public ::testing::Test {
 protected:
  void SetUp() override {
    if (vocab_path().empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED): CLIP's vocabulary is needed";
  }
};

TEST_F(SdPipelineTwin, Sd15Txt2ImgTwoEulerSteps) {
  const RefDump d = RefDump::load("sd_pipe_sd15");
  SdModel m = model_open("sd15");
  EXPECT_EQ(m.info().family, SdFamily::Sd1);
  SdGenerateParams p = params_base(42, 2);
  std::vector<Tensor> lat;
  p.latents_out = &lat;
  std::vector<SdProgress> seen;
  const std::vector<Tensor> img = sd_generate(m, p, [&](const SdProgress& pr) { seen.push_back(pr); });
  ASSERT_EQ(img.size(), 1u);
  ASSERT_EQ(lat.size(), 1u);
  EXPECT_TENSORS_CLOSE(lat[0], d.get("x2"), kLatentAtol, kLatentRtol);
  EXPECT_TENSORS_CLOSE(img[0], d.get("image"), kImageAtol, 0.0f);
  int steps = 0;
  for (const SdProgress& pr : seen) steps += pr.stage == SdProgress::Stage::Sample && pr.step > 0;
  EXPECT_EQ(steps, 2);
  EXPECT_EQ(seen.back().stage, SdProgress::Stage::Decode);
}

TEST_F(SdPipelineTwin, LongPromptTwoChunksNegativePadded) {
  const RefDump d = RefDump::load("sd_pipe_sd15");
  SdModel m = model_open("sd15");
  SdGenerateParams p = params_base(42, 2);
  p.prompt.clear();
  for (int i = 0; i < 20; ++i) p.prompt += "a photo of a cat ";  // 100 tokens: chunks of 75 + 25
  EXPECT_TENSORS_CLOSE(sd_generate(m, p)[0], d.get("long_image"), kImageAtol, 0.0f);
}

TEST_F(SdPipelineTwin, Sd15DiffusersFolderGivesTheSameImage) {
  const RefDump d = RefDump::load("sd_pipe_sd15");
  SdModelOptions o;
  o.precision = ops::Precision::F32;
  o.clip_vocab = vocab_path();
  SdModel m = SdModel::open(aigc::test::ref_dir() + "/sd_pipe_sd15_diffusers", o);
  EXPECT_EQ(m.info().layout, KeyLayout::Diffusers);
  EXPECT_EQ(m.info().family, SdFamily::Sd1);
  const std::vector<Tensor> img = sd_generate(m, params_base(42, 2));
  EXPECT_TENSORS_CLOSE(img[0], d.get("image"), kImageAtol, 0.0f);
}

TEST_F(SdPipelineTwin, Sd21VPredictionPenultimateLayer) {
  const RefDump d = RefDump::load("sd_pipe_sd21");
  SdModel m = model_open("sd21", true);
  EXPECT_EQ(m.info().family, SdFamily::Sd2);
  EXPECT_EQ(m.info().clip_skip_default, 2);
  SdGenerateParams p = params_base(43, 2);
  std::vector<Tensor> lat;
  p.latents_out = &lat;
  const std::vector<Tensor> img = sd_generate(m, p);
  EXPECT_TENSORS_CLOSE(lat[0], d.get("x2"), kLatentAtol, kLatentRtol);
  EXPECT_TENSORS_CLOSE(img[0], d.get("image"), kImageAtol, 0.0f);
}

TEST_F(SdPipelineTwin, Sd21DiffusersFolderGivesTheSameImage) {
  // Heads from unet/config.json, v-prediction from scheduler_config.json, gelu from text_encoder's
  // config, and the text encoder's last layer already dropped (clip skip 1 = the penultimate).
  const RefDump d = RefDump::load("sd_pipe_sd21");
  SdModelOptions o;
  o.precision = ops::Precision::F32;
  o.clip_vocab = vocab_path();
  SdModel m = SdModel::open(aigc::test::ref_dir() + "/sd_pipe_sd21_diffusers", o);
  EXPECT_EQ(m.info().family, SdFamily::Sd2);
  EXPECT_EQ(m.info().prediction, Prediction::V);
  const std::vector<Tensor> img = sd_generate(m, params_base(43, 2));
  EXPECT_TENSORS_CLOSE(img[0], d.get("image"), kImageAtol, 0.0f);
}

TEST_F(SdPipelineTwin, Img2ImgAndMaskBlending) {
  const RefDump d = RefDump::load("sd_pipe_sd15");
  SdModel m = model_open("sd15");
  SdGenerateParams p = params_base(7, 4);
  p.init_image = d.get("init_image");
  p.strength = 0.5;
  p.release_components = false;
  EXPECT_TENSORS_CLOSE(sd_generate(m, p)[0], d.get("img2img_image"), kImageAtol, 0.0f);
  p.mask = d.get("mask");
  EXPECT_TENSORS_CLOSE(sd_generate(m, p)[0], d.get("blend_image"), kImageAtol, 0.0f);
}

TEST_F(SdPipelineTwin, InpaintingUnetNineChannels) {
  const RefDump d = RefDump::load("sd_pipe_inpaint");
  const RefDump d15 = RefDump::load("sd_pipe_sd15");
  SdModel m = model_open("inpaint");
  EXPECT_TRUE(m.info().inpainting);
  SdGenerateParams p = params_base(5, 2);
  p.init_image = d15.get("init_image");
  p.mask = d15.get("mask");
  p.strength = 1.0;
  EXPECT_TENSORS_CLOSE(sd_generate(m, p)[0], d.get("image"), kImageAtol, 0.0f);
}

TEST_F(SdPipelineTwin, SeedsBatchesAndHiresFix) {
  SdModel m = model_open("sd15");
  SdGenerateParams p = params_base(42, 2);
  p.release_components = false;
  // Batch count 2 x batch size 2: image i has seed 42 + i; image 0 is the seed-42 image above.
  p.batch_count = 2;
  p.batch_size = 2;
  const std::vector<Tensor> four = sd_generate(m, p);
  ASSERT_EQ(four.size(), 4u);
  SdGenerateParams one = params_base(45, 2);
  one.release_components = false;
  const Tensor img45 = sd_generate(m, one)[0];
  EXPECT_TENSORS_CLOSE(four[3], img45, 1e-5f, 0.0f);  // batching changes nothing but summation order
  EXPECT_TENSORS_CLOSE(four[0], RefDump::load("sd_pipe_sd15").get("image"), kImageAtol, 0.0f);
  EXPECT_FALSE(aigc::test::tensors_close(four[0], four[1], 1e-3f, 0.0f));
  // Hires fix: 64 -> 128, the second pass runs int(3 * 0.5) = 1 step.
  SdGenerateParams h = params_base(42, 2);
  h.hires_scale = 2;
  h.hires_steps = 3;
  h.release_components = false;
  int hires_steps = 0;
  const std::vector<Tensor> big = sd_generate(m, h, [&](const SdProgress& pr) {
    hires_steps += pr.stage == SdProgress::Stage::Hires && pr.step > 0;
  });
  ASSERT_EQ(big[0].shape_str(), "[1, 3, 128, 128] f32");
  EXPECT_EQ(hires_steps, 1);
}

TEST_F(SdPipelineTwin, TaesdAsDecoderAndForPreviews) {
  // tests/ref/twin_taesd.py's tiny 4-channel TAESD decoder (checked against PyTorch in test_taesd):
  // the final image must be its decoding of the sampled latent (the twin's x2), clamped.
  const RefDump d = RefDump::load("sd_pipe_sd15");
  Taesd taesd = Taesd::load(aigc::test::ref_dir() + "/taesd_tiny_decoder.safetensors");
  Tensor want = taesd.decode(d.get("x2"));
  for (int64_t i = 0; i < want.numel(); ++i) want.ptr<float>()[i] = std::clamp(want.ptr<float>()[i], 0.0f, 1.0f);
  SdModel m = model_open("sd15");
  SdGenerateParams p = params_base(42, 2);
  p.taesd = &taesd;
  p.preview_every = 1;
  std::vector<std::pair<int, std::string>> previews;
  const std::vector<Tensor> img = sd_generate(m, p, {}, [&](int batch, int step, const Tensor& rgb) {
    previews.emplace_back(step, rgb.shape_str());
    EXPECT_EQ(batch, 0);
  });
  // The latent differs from the twin's by <= 2e-3 (see above); TAESD's convolutions stay Lipschitz-small.
  EXPECT_TENSORS_CLOSE(img[0], want, 2e-3f, 0.0f);
  ASSERT_EQ(previews.size(), 1u);  // after step 1 of 2 (the final image is no preview)
  EXPECT_EQ(previews[0].first, 1);
  EXPECT_EQ(previews[0].second, "[1, 3, 64, 64] f32");
}

TEST_F(SdPipelineTwin, BadParameters) {
  SdModel m = model_open("sd15");
  SdGenerateParams p = params_base(1, 2);
  p.width = 60;
  EXPECT_THROW(sd_generate(m, p), Error);
  p.width = 72;  // a multiple of 8, not of 64: fine (the UNet upsamples to each skip's size)
  EXPECT_EQ(sd_generate(m, p).at(0).size(3), 72);
  p = params_base(1, 2);
  p.mask = Tensor::zeros(DType::F32, {1, 1, 64, 64});
  EXPECT_THROW(sd_generate(m, p), Error);  // a mask without an init image
  p = params_base(1, 2);
  p.init_image = Tensor::zeros(DType::F32, {1, 3, 64, 64});
  p.strength = 0.0;
  EXPECT_THROW(sd_generate(m, p), Error);
  p = params_base(1, 0);
  EXPECT_THROW(sd_generate(m, p), Error);
}

}  // namespace
