// aigc image as a user runs it: argument and input errors (one line, exit 1, before any model
// loading where possible), --help, and unsupported checkpoints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/compare.h"
#include "common/refdump.h"
#include "common/run_cli.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "image/sd_parameters.h"

namespace {

using aigc::test::cli_run;
namespace fs = std::filesystem;

std::string tmp(const std::string& name) {
  return ::testing::TempDir() + "/cli_image_" + std::to_string(getpid()) + "_" + name;
}

// One line "aigc: error: ..." naming the problem.
void expect_one_error(const aigc::test::CliResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("aigc: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(CliImage, HelpListsEveryOptionWithDefaults) {
  const auto r = cli_run({"image", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* opt : {"--model", "--prompt", "--negative-prompt", "--steps", "--sampler", "--schedule",
                          "--cfg-scale", "--seed", "--width", "--height", "--batch-count", "--batch-size",
                          "--init-img", "--strength", "--mask", "--hires-scale", "--hires-steps", "--hires-strength",
                          "--taesd", "--preview-every", "--preview-file", "--clip-skip", "--prediction",
                          "--precision", "--no-mmap", "--output", "--clip-vocab"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
  for (const char* def : {"--steps INT=20", "--sampler TEXT=euler_a", "--cfg-scale FLOAT=7", "--width INT=512",
                          "--strength FLOAT=0.75", "--hires-strength FLOAT=0.5", "--precision TEXT=bf16"})
    EXPECT_NE(r.out.find(def), std::string::npos) << def;
}

TEST(CliImage, BadSizeIsOneClearError) {
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "a cat", "-W", "500"}),
                   "width must be a multiple of 8, got 500");
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "a cat", "-H", "0"}), "height");
}

TEST(CliImage, MissingModel) {
  expect_one_error(cli_run({"image", "-m", "/nonexistent/model.safetensors", "-p", "a cat", "-o", tmp("x.png")}),
                   "the model does not exist");
  // Without -m the built-in image model is used (test_pixel_diffusion.cpp: PixelDiffusionCli).
}

TEST(CliImage, UnreadableInitImageAndMask) {
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "x", "--init-img", "/nonexistent/in.png"}),
                   "/nonexistent/in.png");
  const std::string junk = tmp("junk.png");
  std::ofstream(junk) << "this is not an image";
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "x", "--init-img", junk}), junk);
  // A good init image, a bad mask.
  const std::string ok = tmp("ok.bmp");
  {
    // 1x1 24-bit BMP.
    const unsigned char bmp[] = {'B', 'M', 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
                                 1, 0, 24, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0x13, 0x0b, 0, 0, 0x13, 0x0b, 0, 0, 0, 0, 0, 0,
                                 0, 0, 0, 0, 255, 0, 0, 0};
    std::ofstream(ok, std::ios::binary).write(reinterpret_cast<const char*>(bmp), sizeof bmp);
  }
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "x", "--init-img", ok, "--mask", junk}),
                   junk);
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "x", "--mask", ok}),
                   "--mask needs --init-img");
  fs::remove(junk);
  fs::remove(ok);
}

TEST(CliImage, UnsupportedCheckpointsNamed) {
  const std::string xl = tmp("xl.safetensors");
  aigc::safetensors_write(
      xl, {{"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
            aigc::Tensor::zeros(aigc::DType::F32, {2, 4})}});
  expect_one_error(cli_run({"image", "-m", xl, "-p", "x", "-o", tmp("o.png")}), "SDXL is not supported (yet)");
  const std::string ckpt = tmp("m.ckpt");
  std::ofstream(ckpt, std::ios::binary) << std::string("PK\x03\x04zzzz", 8);
  expect_one_error(cli_run({"image", "-m", ckpt, "-p", "x", "-o", tmp("o.png")}), "not supported");
  fs::remove(xl);
  fs::remove(ckpt);
}

TEST(CliImage, BadOptionValues) {
  expect_one_error(cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "x", "--hires-upscaler", "lanczos"}),
                   "hires upscaler");
  const auto r = cli_run({"image", "-m", "/nonexistent.safetensors", "-p", "x", "--sampler", "plms"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown sampler 'plms'"), std::string::npos) << r.err;
}

// The whole command on the tiny SD 1.5 checkpoint of tests/ref/twin_sd_pipeline.py: the PNG holds
// the twin's image (8-bit) and its parameters chunk reads back; progress lines on stderr (not a TTY).
TEST(CliImage, TinySd15EndToEnd) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED): CLIP's vocabulary is needed";
  const aigc::test::RefDump d = aigc::test::RefDump::load("sd_pipe_sd15");
  const std::string model = aigc::test::ref_dir() + "/sd_pipe_sd15.safetensors";
  const std::string out = tmp("tiny.png");
  const auto r = cli_run({"-t", "1", "image", "-m", model, "-p", "a photo of a cat", "-W", "64", "-H", "64", "--steps",
                          "2", "--sampler", "euler", "--seed", "42", "--precision", "f32", "--clip-vocab",
                          shared + "/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 1/2, "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step 2/2, "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ETA"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("wrote " + out), std::string::npos) << r.err;
  // Pixels: the twin's image rounded to 8 bits (half a level of rounding + the pipeline's 1e-3).
  const aigc::Tensor img = aigc::image_read(out);
  EXPECT_TENSORS_CLOSE(img, d.get("image"), 0.5f / 255 + 1e-3f, 0.0f);
  // The parameters chunk: PNG bytes -> tEXt "parameters" -> A1111 fields.
  std::ifstream f(out, std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string key = std::string("tEXtparameters") + '\0';
  const size_t at = png.find(key);
  ASSERT_NE(at, std::string::npos);
  const uint8_t* lp = reinterpret_cast<const uint8_t*>(png.data() + at - 4);
  const size_t len = size_t{lp[0]} << 24 | size_t{lp[1]} << 16 | size_t{lp[2]} << 8 | lp[3];
  const std::string text = png.substr(at + key.size(), len - (key.size() - 4));
  const aigc::image::SdParameters p = aigc::image::sd_parameters_parse(text);
  EXPECT_EQ(p.prompt, "a photo of a cat");
  EXPECT_EQ(p.negative_prompt, "");
  ASSERT_NE(p.field("Steps"), nullptr) << text;
  EXPECT_EQ(*p.field("Steps"), "2");
  EXPECT_EQ(*p.field("Sampler"), "Euler");
  EXPECT_EQ(*p.field("CFG scale"), "7");
  EXPECT_EQ(*p.field("Seed"), "42");
  EXPECT_EQ(*p.field("Size"), "64x64");
  EXPECT_EQ(*p.field("Model"), "sd_pipe_sd15");
  fs::remove(out);
}

TEST(CliImage, BatchCountNamesFilesPreviewsAndSeeds) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED): CLIP's vocabulary is needed";
  const std::string model = aigc::test::ref_dir() + "/sd_pipe_sd15.safetensors";
  const std::string out = tmp("batch.png");
  const auto r = cli_run({"-t", "1", "image", "-m", model, "-p", "a cat", "-W", "64", "-H", "64", "--steps", "2",
                          "--seed", "42", "--batch-count", "2", "--preview-every", "1", "--precision", "f32",
                          "--clip-vocab", shared + "/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string base = out.substr(0, out.size() - 4);
  for (int i = 0; i < 2; ++i) {
    const std::string path = base + "-" + std::to_string(i) + ".png";
    ASSERT_TRUE(fs::exists(path)) << path << "\n" << r.err;
    const std::string name = fs::path(path).filename().string();
    EXPECT_NE(r.err.find(name + " (seed " + std::to_string(42 + i) + ")"), std::string::npos) << r.err;
    EXPECT_EQ(aigc::image_read(path).shape_str(), "[1, 3, 64, 64] f32");
    fs::remove(path);
  }
  EXPECT_NE(r.err.find("batch 2/2 step 2/2"), std::string::npos) << r.err;
  // The preview after step 1 of 2 (none after the last): the latent-to-RGB approximation, 8 x 8.
  const std::string preview = base + "-preview.png";
  ASSERT_TRUE(fs::exists(preview));
  EXPECT_EQ(aigc::image_read(preview).shape_str(), "[1, 3, 8, 8] f32");
  fs::remove(preview);
}

TEST(CliImage, BenchImageOnTheTinyCheckpoint) {
  const std::string model = aigc::test::ref_dir() + "/sd_pipe_sd15.safetensors";
  const auto r = cli_run({"-t", "1", "bench", "image", "-m", model, "--sizes", "64", "-r", "1", "--no-probe",
                          "--precision", "f32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* k : {"\"UNet step (CFG, batch 2)\"", "\"VAE decode\"", "\"peak_rss_bytes\"", "\"gflops\"",
                        "\"threads\": 1"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k << "\n" << r.out;
  const auto bad = cli_run({"bench", "image", "-m", model, "--sizes", "100"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("multiple of 8"), std::string::npos) << bad.err;
}

}  // namespace
