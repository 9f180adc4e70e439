// The SD pipeline's own parts: resizing against PIL and PyTorch (tests/ref/twin_sd_pipeline.py),
// the analytic FLOP counts against the issue's figures, and parameter checks.
#include <gtest/gtest.h>

#include "common/compare.h"
#include "common/refdump.h"
#include "core/error.h"
#include "image/image_resize.h"
#include "image/sd_flops.h"
#include "image/sd_pipeline.h"

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
