// aigc image as a user runs it: argument and input errors (one line, exit 1, before any model
// loading where possible), --help, and unsupported checkpoints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/run_cli.h"
#include "formats/safetensors.h"

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
  const auto r = cli_run({"image", "-p", "a cat"});
  EXPECT_EQ(r.exit_code, 2);  // usage error: -m is required
  EXPECT_NE(r.err.find("--model"), std::string::npos) << r.err;
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

}  // namespace
