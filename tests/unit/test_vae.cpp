// Vae (SD's KL autoencoder) against its PyTorch twin (tests/ref/twin_sd_vae.py, ldm AutoencoderKL in
// plain torch): the tiny random-weight VAE (ch 32, ch_mult [1, 2, 4, 4], 2 res blocks, z 4) in the
// CompVis single-file layout and in the diffusers layout with new and old attention names, f32 and
// bf16 precision, tiled decoding, buffer reuse and memory, and malformed checkpoints / wrong use.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/compare.h"
#include "backend/cpu/ops.h"
#include "common/refdump.h"
#include "common/safetensors_copy.h"
#include "formats/safetensors.h"
#include "image/vae.h"

using namespace aigc;
using namespace aigc::image;
using test::RefDump;
namespace fs = std::filesystem;

namespace {

std::string tiny(const char* name) { return test::ref_dir() + "/" + name + ".safetensors"; }

WeightSource source(const std::string& path, const std::string& prefix) {
  return WeightSource(std::make_shared<SafetensorsFile>(SafetensorsFile::open(path)), prefix, "VAE");
}

Vae load(const char* name, KeyLayout layout, ops::Precision p = ops::Precision::F32, bool with_encoder = true) {
  const bool cv = layout == KeyLayout::CompVis;
  return Vae::load(source(tiny(name), cv ? "first_stage_model." : ""), layout, p, with_encoder);
}

Tensor decode(Vae& vae, const Tensor& latent) {
  const int64_t s = vae.scale();
  Tensor img = Tensor::empty(DType::F32, {latent.size(0), 3, latent.size(2) * s, latent.size(3) * s});
  vae.decode(latent, img);
  return img;
}

Tensor decode_tiled(Vae& vae, const Tensor& latent, int64_t tile, int64_t overlap) {
  const int64_t s = vae.scale();
  Tensor img = Tensor::empty(DType::F32, {latent.size(0), 3, latent.size(2) * s, latent.size(3) * s});
  vae.decode_tiled(latent, img, tile, overlap);
  return img;
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
  Tensor fa = test::to_f32(a), fb = test::to_f32(b);
  double s = 0.0;
  for (int64_t i = 0; i < fa.numel(); ++i) s += std::fabs(fa.ptr<float>()[i] - fb.ptr<float>()[i]);
  return s / static_cast<double>(fa.numel());
}

// Tolerances (f32). The decoder runs ~35 convolutions (up to 1152 products per output at 3x3 x 128
// channels), 30 GroupNorms (the tiny model's first level has one channel per group, so statistics
// of few values), attention over 64-128 positions and residual sums; oneDNN and torch sum in
// different orders, ~1e-7 relative per layer, amplified by the random GroupNorm gains. Measured max
// |diff| (AVX-512 build machine): decode 1.6e-5 at outputs up to |2.4| (6e-6 of the range), tiled
// decode 1.9e-5, mean 2.3e-6, logvar 1.9e-6. 1e-4 absolute plus 1e-4 relative leaves a margin of 5x
// or more for other ISAs and thread counts, and is far below what a wrong layer does (> 1e-2).
constexpr float kAtol = 1e-4f, kRtol = 1e-4f;

// bf16: every conv rounds weights and inputs to bf16 (relative error 2^-9 each) and accumulates in
// f32. The twin runs the same rounding (decoded_a_bf16emu): max |diff| to f32 0.068, mean 0.0047 at
// output std 0.33. Bounds: every element within 0.2 + 5% (3x the emulated worst case) and the mean
// |diff| under 3x the emulated one; a wrong layer moves the mean by > 0.1.
constexpr float kBf16Atol = 0.2f, kBf16Rtol = 0.05f;

void expect_matches_twin(Vae& vae, const RefDump& d) {
  EXPECT_TENSORS_CLOSE(decode(vae, d.get("latent_a")), d.get("decoded_a"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(decode(vae, d.get("latent_b")), d.get("decoded_b"), kAtol, kRtol);
  Tensor mean = Tensor::empty(DType::F32, {1, 4, 8, 8}), logvar = Tensor::empty(DType::F32, {1, 4, 8, 8});
  vae.encode(d.get("image"), mean, logvar);
  EXPECT_TENSORS_CLOSE(mean, d.get("mean"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(logvar, d.get("logvar"), kAtol, kRtol);
}

std::string write_temp(const std::map<std::string, Tensor>& ts, const char* name = "vae.safetensors") {
  const std::string path = (test::temp_dir_make("aigc_vae") / name).string();
  safetensors_write(path, ts);
  return path;
}

// Loading `ts` (CompVis keys) must fail with a message containing every fragment.
void expect_load_error(const std::map<std::string, Tensor>& ts, std::initializer_list<const char*> fragments,
                       bool with_encoder = true) {
  const std::string path = write_temp(ts, "bad.safetensors");
  try {
    Vae::load(source(path, "first_stage_model."), KeyLayout::CompVis, ops::Precision::F32, with_encoder);
    ADD_FAILURE() << "loaded a bad checkpoint";
  } catch (const Error& e) {
    for (const char* f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Vae, CompVisMatchesTorch) {
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny", KeyLayout::CompVis);
  const VaeConfig& c = vae.config();
  EXPECT_EQ(c.ch, 32);
  EXPECT_EQ(c.ch_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(c.num_res_blocks, 2);
  EXPECT_EQ(c.z_channels, 4);
  EXPECT_EQ(c.image_channels, 3);
  EXPECT_EQ(vae.scale(), 8);
  EXPECT_TRUE(vae.has_encoder());
  expect_matches_twin(vae, d);
  // Bands of 3 rows (not dividing 16, 32 or 64): the band seams of the upsample convs are exact.
  vae.upsample_band_rows_set(3);
  expect_matches_twin(vae, d);
}

TEST(Vae, DiffusersNewNamesMatchTorch) {  // to_q/to_k/to_v/to_out.0 as Linear [C, C]
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny_diffusers", KeyLayout::Diffusers);
  EXPECT_EQ(vae.config().ch_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  expect_matches_twin(vae, d);
}

TEST(Vae, DiffusersOldNamesF16MatchTorch) {  // query/key/value/proj_attn as [C, C, 1, 1], f16 file
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny_diffusers_old", KeyLayout::Diffusers);  // same values as the f32 files
  expect_matches_twin(vae, d);
}

TEST(Vae, CompVisLinearShapedAttention) {  // a CompVis file whose attention weights are [C, C]
  RefDump d = RefDump::load("sd_vae_tiny");
  auto ts = test::safetensors_tensors_copy(tiny("sd_vae_tiny"));
  for (auto& [k, t] : ts)
    if (k.find(".attn_1.") != std::string::npos && t.ndim() == 4) t = t.reshape({t.size(0), t.size(1)});
  Vae vae = Vae::load(source(write_temp(ts), "first_stage_model."), KeyLayout::CompVis, ops::Precision::F32);
  expect_matches_twin(vae, d);
}

TEST(Vae, Bf16Close) {
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny", KeyLayout::CompVis, ops::Precision::BF16);
  Tensor img = decode(vae, d.get("latent_a"));
  EXPECT_TENSORS_CLOSE(img, d.get("decoded_a"), kBf16Atol, kBf16Rtol);
  const double emulated = mean_abs_diff(d.get("decoded_a_bf16emu"), d.get("decoded_a"));
  EXPECT_LT(mean_abs_diff(img, d.get("decoded_a")), 3.0 * emulated + 1e-4);
  Tensor mean = Tensor::empty(DType::F32, {1, 4, 8, 8}), logvar = Tensor::empty(DType::F32, {1, 4, 8, 8});
  vae.encode(d.get("image"), mean, logvar);
  EXPECT_TENSORS_CLOSE(mean, d.get("mean"), kBf16Atol, kBf16Rtol);
  EXPECT_TENSORS_CLOSE(logvar, d.get("logvar"), kBf16Atol, kBf16Rtol);
}

// bf16-stored weights (norms included), Precision::Auto: measured mean |diff| 0.0047, as emulated.
TEST(Vae, Bf16CheckpointClose) {
  RefDump d = RefDump::load("sd_vae_tiny");
  auto ts = test::safetensors_tensors_copy(tiny("sd_vae_tiny"));
  for (auto& [k, t] : ts) {
    Tensor b = Tensor::empty(DType::BF16, t.shape());
    ops::copy(t, b);
    t = b;
  }
  Vae vae = Vae::load(source(write_temp(ts), "first_stage_model."), KeyLayout::CompVis, ops::Precision::Auto);
  Tensor img = decode(vae, d.get("latent_a"));
  EXPECT_TENSORS_CLOSE(img, d.get("decoded_a"), kBf16Atol, kBf16Rtol);
  const double emulated = mean_abs_diff(d.get("decoded_a_bf16emu"), d.get("decoded_a"));
  EXPECT_LT(mean_abs_diff(img, d.get("decoded_a")), 3.0 * emulated);
  EXPECT_GT(mean_abs_diff(img, d.get("decoded_a")), 1e-4);  // the weights did change
}

TEST(Vae, DecoderOnly) {
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae full = load("sd_vae_tiny", KeyLayout::CompVis);
  Vae dec = load("sd_vae_tiny", KeyLayout::CompVis, ops::Precision::F32, false);  // encoder keys skipped, not unknown
  EXPECT_FALSE(dec.has_encoder());
  EXPECT_LT(dec.weight_bytes(), full.weight_bytes());
  EXPECT_GT(dec.weight_bytes(), full.weight_bytes() / 3);
  EXPECT_TENSORS_CLOSE(decode(dec, d.get("latent_b")), d.get("decoded_b"), kAtol, kRtol);
  Tensor mean = Tensor::empty(DType::F32, {1, 4, 8, 8}), logvar = Tensor::empty(DType::F32, {1, 4, 8, 8});
  EXPECT_THROW(dec.encode(d.get("image"), mean, logvar), Error);
  // A decoder-only diffusers file (what a txt2img-only export may contain) loads too.
  auto ts = test::safetensors_tensors_copy(tiny("sd_vae_tiny_diffusers"));
  for (auto it = ts.begin(); it != ts.end();)
    it = it->first.rfind("encoder.", 0) == 0 || it->first.rfind("quant_conv.", 0) == 0 ? ts.erase(it) : std::next(it);
  Vae dd = Vae::load(source(write_temp(ts), ""), KeyLayout::Diffusers, ops::Precision::F32, false);
  EXPECT_TENSORS_CLOSE(decode(dd, d.get("latent_a")), d.get("decoded_a"), kAtol, kRtol);
  EXPECT_THROW(Vae::load(source(write_temp(ts), ""), KeyLayout::Diffusers, ops::Precision::F32, true), Error);
}

TEST(Vae, BuffersReusedAndBounded) {
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny", KeyLayout::CompVis);
  const Tensor& lb = d.get("latent_b");  // [1, 4, 8, 16] -> [1, 3, 64, 128]
  Tensor first = decode(vae, lb);
  const size_t bytes = vae.buffer_bytes();
  Tensor again = decode(vae, lb);
  EXPECT_TENSORS_CLOSE(again, first, 0.0f, 0.0f);
  EXPECT_EQ(vae.buffer_bytes(), bytes);  // same size: nothing grows
  // A smaller input after a larger one, and a batch of 2 (run one image at a time): no growth.
  EXPECT_TENSORS_CLOSE(decode(vae, d.get("latent_a")), d.get("decoded_a"), kAtol, kRtol);
  EXPECT_EQ(vae.buffer_bytes(), bytes);
  // The bound stated in vae.h: (c1 + 2 c0) H W floats for the three activation buffers, plus two
  // bands (here of 8 rows, the widest input band at a coarser level), four attention buffers of
  // c_mid h w, the latent.
  const size_t H = 64, W = 128, c0 = 32, c1 = 64, c_mid = 128, band = 2 * c1 * (8 + 2) * (W + 2);
  const size_t bound = 4 * ((c1 + 2 * c0) * H * W + band + 4 * c_mid * (H / 8) * (W / 8) + 4 * (H / 8) * (W / 8));
  EXPECT_LE(bytes, bound);
  EXPECT_GT(bytes, bound * 9 / 10);
  // Strided (non-contiguous) output and latent.
  Tensor wide = Tensor::empty(DType::F32, {1, 3, 64, 256});
  Tensor out = wide.slice(3, 0, 128);
  Tensor lat2 = Tensor::empty(DType::F32, {1, 4, 16, 8});
  Tensor lat_t = lat2.transpose(2, 3);  // [1, 4, 8, 16] view
  ops::copy(lb, lat_t);
  vae.decode(lat_t, out);
  EXPECT_TENSORS_CLOSE(out, first, 0.0f, 0.0f);
}

TEST(Vae, SmallestSizesMatchTorch) {  // a 1 x 3 latent (attention over 3 positions), an 8 x 8 image
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny", KeyLayout::CompVis);
  EXPECT_TENSORS_CLOSE(decode(vae, d.get("latent_s")), d.get("decoded_s"), kAtol, kRtol);
  Tensor mean = Tensor::empty(DType::F32, {1, 4, 1, 1}), logvar = Tensor::empty(DType::F32, {1, 4, 1, 1});
  vae.encode(d.get("image_s"), mean, logvar);
  EXPECT_TENSORS_CLOSE(mean, d.get("mean_s"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(logvar, d.get("logvar_s"), kAtol, kRtol);
}

TEST(Vae, TiledDecode) {
  RefDump d = RefDump::load("sd_vae_tiny");
  Vae vae = load("sd_vae_tiny", KeyLayout::CompVis);
  // Tiles covering the whole latent: exactly decode().
  const Tensor& lb = d.get("latent_b");
  Tensor whole = decode(vae, lb);
  EXPECT_TENSORS_CLOSE(decode_tiled(vae, lb, 64, 8), whole, 0.0f, 0.0f);
  EXPECT_TENSORS_CLOSE(decode_tiled(vae, lb, 16, 15), whole, 0.0f, 0.0f);
  // 8x8 tiles overlapping by 4 on a [1, 4, 12, 20] latent (2 x 4 tiles, the last ones flush with the
  // edge, so some overlaps are wider): the twin's tiled decode, same f32 tolerance as decode.
  const Tensor& lt = d.get("latent_t");
  EXPECT_TENSORS_CLOSE(decode_tiled(vae, lt, 8, 4), d.get("tiled_t"), kAtol, kRtol);
  // Overlap 6 (3 x 7 tiles, up to four over a pixel along an axis): the weights no longer sum to 1.
  EXPECT_TENSORS_CLOSE(decode_tiled(vae, lt, 8, 6), d.get("tiled_t_dense"), kAtol, kRtol);
  // Small tiles approximate the whole decode only loosely with random weights: each tile has its own
  // GroupNorm statistics and attends only within itself. 12-latent tiles overlapping by 4 (two tiles
  // side by side): measured mean |diff| to decode() 0.087 at output std 0.33 (the twin agrees); the
  // second tile misplaced by one latent gives 0.23. Bound 0.12.
  EXPECT_LT(mean_abs_diff(decode_tiled(vae, lt, 12, 4), d.get("decoded_t")), 0.12);
  Tensor img = Tensor::empty(DType::F32, {1, 3, 96, 160});
  EXPECT_THROW(vae.decode_tiled(lt, img, 8, 8), Error);   // overlap must be < tile
  EXPECT_THROW(vae.decode_tiled(lt, img, 0, 0), Error);
  EXPECT_THROW(vae.decode_tiled(lt, img, 8, -1), Error);
}

TEST(Vae, WrongUseThrows) {
  Vae vae = load("sd_vae_tiny", KeyLayout::CompVis);
  Tensor mean = Tensor::empty(DType::F32, {1, 4, 8, 8}), logvar = Tensor::empty(DType::F32, {1, 4, 8, 8});
  EXPECT_THROW(vae.encode(test::random_f32({1, 3, 60, 64}, 1), mean, logvar), Error);  // not a multiple of 8
  EXPECT_THROW(vae.encode(test::random_f32({1, 3, 64, 68}, 1), mean, logvar), Error);
  EXPECT_THROW(vae.encode(test::random_f32({1, 4, 64, 64}, 1), mean, logvar), Error);  // channels
  Tensor small = mean.slice(2, 0, 4);
  EXPECT_THROW(vae.encode(test::random_f32({1, 3, 64, 64}, 1), mean, small), Error);
  Tensor img = Tensor::empty(DType::F32, {1, 3, 64, 64});
  EXPECT_THROW(vae.decode(test::random_f32({1, 3, 8, 8}, 2), img), Error);  // latent channels
  EXPECT_THROW(vae.decode(test::random_f32({4, 8, 8}, 2), img), Error);     // not 4-d
  EXPECT_THROW(vae.decode(test::random_f32({1, 4, 8, 9}, 2), img), Error);  // image shape
  Tensor img_f16 = Tensor::empty(DType::F16, {1, 3, 64, 64});
  EXPECT_THROW(vae.decode(test::random_f32({1, 4, 8, 8}, 2), img_f16), Error);
}

TEST(Vae, MalformedCheckpointsThrow) {
  const auto good = test::safetensors_tensors_copy(tiny("sd_vae_tiny"));
  const std::string p = "first_stage_model.";
  {
    auto ts = good;  // missing
    ts.erase(p + "decoder.up.1.block.2.conv2.bias");
    expect_load_error(ts, {"decoder.up.1.block.2.conv2.bias", "missing"});
  }
  {
    auto ts = good;
    ts.erase(p + "encoder.mid.attn_1.k.weight");
    expect_load_error(ts, {"encoder.mid.attn_1.k.weight"});
  }
  {
    auto ts = good;  // wrong shape
    ts[p + "decoder.up.2.block.0.conv2.weight"] = Tensor::zeros(DType::F32, {128, 128, 3, 1});
    expect_load_error(ts, {"decoder.up.2.block.0.conv2.weight", "shape"});
  }
  {
    auto ts = good;
    ts[p + "decoder.mid.attn_1.proj_out.weight"] = Tensor::zeros(DType::F32, {128, 64, 1, 1});
    expect_load_error(ts, {"decoder.mid.attn_1.proj_out.weight"});
  }
  {
    auto ts = good;  // extra key: unknown, in both modes
    ts[p + "decoder.up.0.extra.weight"] = Tensor::zeros(DType::F32, {2});
    expect_load_error(ts, {"decoder.up.0.extra.weight", "unknown"});
    expect_load_error(ts, {"decoder.up.0.extra.weight", "unknown"}, false);
  }
  {
    auto ts = good;  // an extra encoder key is unknown when the encoder is loaded, skipped when not
    ts[p + "encoder.down.0.extra"] = Tensor::zeros(DType::F32, {2});
    expect_load_error(ts, {"encoder.down.0.extra", "unknown"});
    EXPECT_NO_THROW(Vae::load(source(write_temp(ts), p), KeyLayout::CompVis, ops::Precision::F32, false));
  }
  {
    auto ts = good;  // conv_out reading another channel count than the last level gives
    ts[p + "decoder.conv_out.weight"] = Tensor::zeros(DType::F32, {3, 48, 3, 3});
    expect_load_error(ts, {"decoder.conv_out.weight", "[3, 32, 3, 3]"});
  }
  {
    auto ts = good;  // encoder with one block fewer per level than the decoder expects
    for (int l = 0; l < 4; ++l)
      for (const char* k : {"norm1.weight", "norm1.bias", "conv1.weight", "conv1.bias", "norm2.weight", "norm2.bias",
                            "conv2.weight", "conv2.bias"})
        ts.erase(fmt::format("{}encoder.down.{}.block.1.{}", p, l, k));
    expect_load_error(ts, {"does not match"});
  }
  {
    auto ts = good;  // zero channels
    ts[p + "post_quant_conv.weight"] = Tensor::zeros(DType::F32, {0, 4, 1, 1});
    ts[p + "post_quant_conv.bias"] = Tensor::zeros(DType::F32, {0});
    expect_load_error(ts, {"post_quant_conv.weight", "no channels"});
  }
  // The wrong layout, or the wrong prefix: nothing found.
  EXPECT_THROW(load("sd_vae_tiny", KeyLayout::Diffusers), Error);
  EXPECT_THROW(Vae::load(source(tiny("sd_vae_tiny_diffusers"), ""), KeyLayout::CompVis, ops::Precision::F32), Error);
  EXPECT_THROW(Vae::load(source(tiny("sd_vae_tiny"), "model.diffusion_model."), KeyLayout::CompVis,
                         ops::Precision::F32),
               Error);
}
