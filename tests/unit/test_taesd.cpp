// Taesd against its PyTorch twin (tests/ref/twin_taesd.py): a tiny random-weight model (always)
// and the real TAEF2 encoder/decoder from ../shared (f16 and f32 files), plus malformed files and
// an encode -> decode round trip of colour bars (PSNR).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "common/compare.h"
#include "common/refdump.h"
#include "common/safetensors_copy.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "image/taesd.h"

using namespace aigc;
using test::RefDump;
namespace fs = std::filesystem;

namespace {

std::string taef2_dir() {
  const std::string s = test::shared_dir();
  if (s.empty()) return {};
  const std::string d = s + "/models/taesd";
  return fs::exists(d + "/taef2_decoder.safetensors") ? d : std::string();
}

std::string tiny(const char* part) { return test::ref_dir() + "/taesd_tiny_" + part + ".safetensors"; }

void expect_load_error(const std::map<std::string, Tensor>& ts, const std::string& fragment) {
  const std::string path = (test::temp_dir_make("aigc_taesd") / "bad.safetensors").string();
  safetensors_write(path, ts);
  try {
    Taesd::load(path);
    ADD_FAILURE() << "loaded a bad file; expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

// Tolerances. A 3x3 conv over 64 channels sums 576 products; oneDNN and torch order the sums
// differently, so each conv adds ~1e-7 relative rounding noise, and the ~45 convs in a row (with the
// residual additions, GroupNorm and tanh) make a few 1e-6 of the output range. Measured max |diff|
// (AVX-512 machine): TAEF2 decoder 1.1e-6 (outputs within [0.1, 0.94]), encoder 4.6e-6 (outputs up
// to 5.7); tiny decoder 7.5e-8 (outputs ~0.25), tiny encoder 0 (outputs ~0.1; torch's conv is
// oneDNN too), tiny pool decoder 2e-7, encoder 7.2e-7 (outputs up to 1.5; GroupNorm statistics in
// double here, float in torch). The bounds leave a margin of about 14x or more for other ISAs and
// thread counts, and are far below what any wrong layer does (> 1e-3).
constexpr float kAtol = 1e-4f, kRtol = 1e-4f;            // TAEF2
constexpr float kTinyAtol = 1e-5f, kTinyRtol = 1e-5f;    // tiny random model

TEST(Taesd, TinyDecoderMatchesTorch) {
  RefDump d = RefDump::load("taesd_tiny");
  Taesd dec = Taesd::load(tiny("decoder"));
  EXPECT_EQ(dec.kind(), TaesdKind::Decoder);
  EXPECT_EQ(dec.latent_channels(), 4);
  EXPECT_FALSE(dec.has_pool_blocks());
  Tensor img = dec.decode(d.get("latent"));  // [2, 4, 5, 7] -> [2, 3, 40, 56]
  ASSERT_EQ(img.shape_vec(), d.get("decoded").shape_vec());
  EXPECT_TENSORS_CLOSE(img, d.get("decoded"), kTinyAtol, kTinyRtol);
  // Buffers reused: a second call (and a strided input) gives the same result.
  Tensor img2 = Tensor::empty(DType::F32, img.shape());
  dec.decode(d.get("latent"), img2);
  EXPECT_TENSORS_CLOSE(img2, img, 0.0f, 0.0f);
  // A smaller input after a larger one: the first batch item alone.
  Tensor one = dec.decode(d.get("latent").slice(0, 0, 1));
  EXPECT_TENSORS_CLOSE(one, d.get("decoded").slice(0, 0, 1), kTinyAtol, kTinyRtol);
}

TEST(Taesd, TinyEncoderMatchesTorch) {
  RefDump d = RefDump::load("taesd_tiny");
  Taesd enc = Taesd::load(tiny("encoder"));
  EXPECT_EQ(enc.kind(), TaesdKind::Encoder);
  EXPECT_EQ(enc.latent_channels(), 4);
  Tensor lat = enc.encode(d.get("image"));  // [2, 3, 37, 45] -> [2, 4, 5, 6] (stride-2 convs round up)
  ASSERT_EQ(lat.shape_vec(), d.get("encoded").shape_vec());
  EXPECT_TENSORS_CLOSE(lat, d.get("encoded"), kTinyAtol, kTinyRtol);
}

TEST(Taesd, TinyPoolBlocksMatchTorch) {  // TAEF2-style mid blocks, 16 latent channels
  RefDump d = RefDump::load("taesd_tinypool");
  Taesd dec = Taesd::load(test::ref_dir() + "/taesd_tinypool_decoder.safetensors");
  Taesd enc = Taesd::load(test::ref_dir() + "/taesd_tinypool_encoder.safetensors");
  EXPECT_EQ(dec.latent_channels(), 16);
  EXPECT_EQ(enc.latent_channels(), 16);
  EXPECT_TRUE(dec.has_pool_blocks());
  EXPECT_TRUE(enc.has_pool_blocks());
  EXPECT_TENSORS_CLOSE(dec.decode(d.get("latent")), d.get("decoded"), kTinyAtol, kTinyRtol);
  EXPECT_TENSORS_CLOSE(enc.encode(d.get("image")), d.get("encoded"), kTinyAtol, kTinyRtol);
}

TEST(Taesd, Taef2MatchesTorch) {
  const std::string dir = taef2_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models/taesd (or $AIGC_SHARED) is absent";
  RefDump d = RefDump::load("taesd_taef2");  // written by the twin whenever shared exists
  for (const char* suffix : {".safetensors", ".f32.safetensors"}) {
    SCOPED_TRACE(suffix);
    Taesd dec = Taesd::load(dir + "/taef2_decoder" + suffix);
    Taesd enc = Taesd::load(dir + "/taef2_encoder" + suffix);
    EXPECT_EQ(dec.kind(), TaesdKind::Decoder);
    EXPECT_EQ(enc.kind(), TaesdKind::Encoder);
    EXPECT_EQ(dec.latent_channels(), 32);
    EXPECT_EQ(enc.latent_channels(), 32);
    EXPECT_TRUE(dec.has_pool_blocks());
    EXPECT_TRUE(enc.has_pool_blocks());
    EXPECT_TENSORS_CLOSE(dec.decode(d.get("latent")), d.get("decoded"), kAtol, kRtol);
    EXPECT_TENSORS_CLOSE(enc.encode(d.get("image")), d.get("encoded"), kAtol, kRtol);
  }
}

TEST(Taesd, WrongUseThrows) {
  Taesd dec = Taesd::load(tiny("decoder"));
  Taesd enc = Taesd::load(tiny("encoder"));
  Tensor lat = test::random_f32({1, 4, 3, 3}, 1), img = test::random_f32({1, 3, 16, 16}, 2, 0.0f, 1.0f);
  EXPECT_THROW(enc.decode(lat), Error);
  EXPECT_THROW(dec.encode(img), Error);
  EXPECT_THROW(dec.decode(test::random_f32({1, 5, 3, 3}, 3)), Error);  // channel count
  EXPECT_THROW(dec.decode(test::random_f32({4, 3, 3}, 3)), Error);     // not 4-d
  EXPECT_THROW(enc.encode(test::random_f32({1, 4, 16, 16}, 3)), Error);
  Tensor wrong = Tensor::empty(DType::F32, {1, 3, 8, 8});  // should be [1, 3, 24, 24]
  EXPECT_THROW(dec.decode(lat, wrong), Error);
  EXPECT_THROW(Taesd::load(test::ref_dir() + "/no_such_file.safetensors"), Error);
}

TEST(Taesd, MalformedFilesThrow) {
  const std::map<std::string, Tensor> good = test::safetensors_tensors_copy(tiny("decoder"));
  {
    auto ts = good;
    ts.erase("3.conv.2.bias");
    expect_load_error(ts, "3.conv.2.bias");
  }
  {
    auto ts = good;
    ts["3.conv.2.weight"] = Tensor::zeros(DType::F32, {8, 8, 3, 1});
    expect_load_error(ts, "3.conv.2.weight");
  }
  {
    auto ts = good;
    ts["3.extra.weight"] = Tensor::zeros(DType::F32, {2});
    expect_load_error(ts, "3.extra.weight");
  }
  {
    auto ts = good;  // the output conv no longer gives RGB
    ts["19.weight"] = Tensor::zeros(DType::F32, {4, 8, 3, 3});
    ts["19.bias"] = Tensor::zeros(DType::F32, {4});
    expect_load_error(ts, "expected 3 (RGB)");
  }
  {
    auto ts = good;  // one upsampling stage fewer: 4x, not 8x
    for (const char* k : {"17.weight", "18.conv.0.weight", "18.conv.0.bias", "18.conv.2.weight", "18.conv.2.bias",
                          "18.conv.4.weight", "18.conv.4.bias", "19.weight", "19.bias"})
      ts.erase(k);
    expect_load_error(ts, "");
  }
  {
    auto ts = test::safetensors_tensors_copy(tiny("encoder"));  // a fourth bias-free (stride-2) conv: 16x
    ts.erase("14.bias");
    expect_load_error(ts, "more than 8x");
  }
  expect_load_error({{"model.embed.weight", Tensor::zeros(DType::F32, {4, 4})}}, "model.embed.weight");
  expect_load_error({{"0.weight", Tensor::zeros(DType::I32, {64, 3, 3, 3})}}, "");
}

// Round trip of colour bars through the real TAEF2 encoder and decoder. TAESD-family round trips are
// lossy (the latent has 32 values per 8x8x3 = 192 pixel values; sharp bar edges blur): measured
// PSNR 26.8 dB (f16 file); the bound 22 dB leaves margin yet fails for a broken layer.
TEST(Taesd, Taef2RoundTripColourBars) {
  const std::string dir = taef2_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models/taesd (or $AIGC_SHARED) is absent";
  constexpr int64_t S = 128;
  const float bars[8][3] = {{1, 1, 1}, {1, 1, 0}, {0, 1, 1}, {0, 1, 0}, {1, 0, 1}, {1, 0, 0}, {0, 0, 1}, {0, 0, 0}};
  Tensor img = Tensor::empty(DType::F32, {1, 3, S, S});  // top: 8 bars; bottom quarter: grey ramp
  for (int64_t y = 0; y < S; ++y)
    for (int64_t x = 0; x < S; ++x)
      for (int c = 0; c < 3; ++c)
        img.at<float>(0, c, y, x) = y < S * 3 / 4 ? 0.1f + 0.8f * bars[x * 8 / S][c] : static_cast<float>(x) / (S - 1);
  Taesd enc = Taesd::load(dir + "/taef2_encoder.safetensors");
  Taesd dec = Taesd::load(dir + "/taef2_decoder.safetensors");
  Tensor lat = enc.encode(img);
  ASSERT_EQ(lat.shape_vec(), (std::vector<int64_t>{1, 32, S / 8, S / 8}));
  Tensor out = dec.decode(lat);
  double se = 0.0;
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x) {
        const double v = std::clamp(out.at<float>(0, c, y, x), 0.0f, 1.0f) - img.at<float>(0, c, y, x);
        se += v * v;
      }
  const double psnr = 10.0 * std::log10(1.0 / (se / (3.0 * S * S)));
  const fs::path png = test::temp_dir_make("aigc_taesd") / "taef2_roundtrip.png";
  Tensor both = Tensor::empty(DType::F32, {1, 3, S, 2 * S});  // input | round trip, side by side
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x) {
        both.at<float>(0, c, y, x) = img.at<float>(0, c, y, x);
        both.at<float>(0, c, y, S + x) = out.at<float>(0, c, y, x);
      }
  image_write_png(png.string(), both, {{"Comment", fmt::format("TAEF2 round trip, PSNR {:.2f} dB", psnr)}});
  std::printf("TAEF2 round trip PSNR %.2f dB (image: %s)\n", psnr, png.c_str());
  EXPECT_GT(psnr, 22.0);
}
