// SdImageBackend: the server's image routes on a real (tiny, random-weight) SD 1.5 checkpoint
// written by the pipeline twin: PNGs with the parameters chunk, identical to `sd_generate`'s
// image for the same seed, progress per step with previews, cancellation, and request checks.
#include <gtest/gtest.h>

#include <atomic>

#include "common/refdump.h"
#include "core/error.h"
#include "formats/image.h"
#include "image/sd_parameters.h"
#include "image/sd_pipeline.h"
#include "server/sd_image_backend.h"

namespace aigc {
namespace {

std::string vocab_path() {
  const std::string s = test::shared_dir();
  return s.empty() ? std::string() : s + "/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz";
}

class SdBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    if (vocab_path().empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED): CLIP's vocabulary is needed";
    opt_.precision = ops::Precision::F32;
    opt_.clip_vocab = vocab_path();
    path_ = test::ref_dir() + "/sd_pipe_sd15.safetensors";
  }
  image::SdModelOptions opt_;
  std::string path_;
};

server::ImageRequest request() {
  server::ImageRequest r;
  r.prompt = "a red circle";
  r.negative_prompt = "blurry";
  r.width = r.height = 64;
  r.steps = 3;
  r.sampler = "euler";
  r.seed = 11;
  r.n = 2;
  return r;
}

TEST_F(SdBackend, GeneratesThePipelinesImagesWithParametersAndProgress) {
  server::SdImageBackend b(path_, opt_);
  std::atomic<bool> cancel{false};
  int steps_seen = 0, previews = 0;
  const std::vector<std::string> pngs = b.generate(request(), [&](const server::ImageProgress& p) {
    EXPECT_EQ(p.total, 3);
    if (p.preview_png.empty()) ++steps_seen; else ++previews;
  }, cancel);
  ASSERT_EQ(pngs.size(), 2u);
  EXPECT_EQ(steps_seen, 6);  // 3 steps x 2 images
  EXPECT_GT(previews, 0);
  // The same image as the pipeline itself gives for seed 11 (8-bit PNG rounding apart).
  image::SdModel m = image::SdModel::open(path_, opt_);
  image::SdGenerateParams p;
  p.prompt = "a red circle";
  p.negative_prompt = "blurry";
  p.width = p.height = 64;
  p.sample.sampler = image::SamplerKind::Euler;
  p.sample.steps = 3;
  p.seed = 11;
  const Tensor want = image::sd_generate(m, p).at(0);
  const Tensor got = image_decode({reinterpret_cast<const uint8_t*>(pngs[0].data()), pngs[0].size()});
  ASSERT_TRUE(got.same_shape(want));
  for (int64_t i = 0; i < want.numel(); ++i)
    ASSERT_NEAR(got.ptr<float>()[i], want.ptr<float>()[i], 0.5 / 255 + 1e-4) << i;
  // The parameters chunk: A1111's format, seed + i for image i.
  const std::string& png = pngs[1];
  const size_t at = png.find("parameters");
  ASSERT_NE(at, std::string::npos);
  const size_t len = (static_cast<uint8_t>(png[at - 6]) << 8) | static_cast<uint8_t>(png[at - 5]);
  const image::SdParameters params =
      image::sd_parameters_parse(std::string_view(png).substr(at + 11, len - 11));
  EXPECT_EQ(params.prompt, "a red circle");
  EXPECT_EQ(params.negative_prompt, "blurry");
  ASSERT_NE(params.field("Seed"), nullptr);
  EXPECT_EQ(*params.field("Seed"), "12");
  EXPECT_EQ(*params.field("Sampler"), "Euler");
}

TEST_F(SdBackend, CancelStopsTheGeneration) {
  server::SdImageBackend b(path_, opt_);
  std::atomic<bool> cancel{false};
  int calls = 0;
  EXPECT_THROW(b.generate(request(), [&](const server::ImageProgress&) { if (++calls == 1) cancel = true; }, cancel),
               server::ImageCancelled);
  EXPECT_LE(calls, 2);
}

TEST_F(SdBackend, BadRequestsAreNamed) {
  server::SdImageBackend b(path_, opt_);
  server::ImageRequest r = request();
  r.width = 60;
  EXPECT_THROW(b.validate(r), Error);
  r = request();
  r.sampler = "nope";
  EXPECT_THROW(b.validate(r), Error);
  r = request();
  r.steps = 0;
  EXPECT_THROW(b.validate(r), Error);
  r = request();
  r.mode = server::ImageMode::Img2Img;
  std::atomic<bool> cancel{false};
  EXPECT_THROW(b.generate(r, {}, cancel), Error);  // no init image
  r.init_image = "not an image";
  EXPECT_THROW(b.generate(r, [](const server::ImageProgress&) {}, cancel), Error);
  EXPECT_THROW(server::SdImageBackend("/nonexistent.safetensors", opt_), Error);
}

}  // namespace
}  // namespace aigc
