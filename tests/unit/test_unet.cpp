// UNet against its PyTorch twin (tests/ref/sd_twin_unet.py, dumps by twin_sd_unet.py): tiny
// random-weight SD 1.5, SD 2.1 (f16 file, linear projections, head width 8) and 9-channel
// inpainting UNets with every key of the real models, loaded from CompVis single-file names and
// from diffusers names; batch 2 at 8x8 and batch 1 at 8x16; f32 and bf16 arithmetic; the load and
// input errors; buffer reuse across calls.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "backend/cpu/ops.h"
#include "common/alloc_counter.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "common/safetensors_copy.h"
#include "formats/safetensors.h"
#include "image/unet.h"

using namespace aigc;
using namespace aigc::image;
using test::RefDump;
namespace fs = std::filesystem;

namespace {

std::string tiny_path(const std::string& name, KeyLayout layout) {
  return test::ref_dir() + "/sd_unet_" + name + (layout == KeyLayout::CompVis ? "_compvis" : "_diffusers") +
         ".safetensors";
}

const char* prefix_of(KeyLayout layout) { return layout == KeyLayout::CompVis ? "model.diffusion_model." : ""; }

UNetConfig heads_sd1() {
  UNetConfig c;
  c.num_heads = 8;
  c.num_head_channels = -1;
  return c;
}

UNetConfig heads_sd2() {
  UNetConfig c;
  c.num_head_channels = 8;  // the tiny SD 2.1's head width (64 in the real model)
  return c;
}

UNet unet_open(const std::string& path, KeyLayout layout, const UNetConfig& heads,
               ops::Precision p = ops::Precision::F32) {
  auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open(path));
  WeightSource w(file, prefix_of(layout), "UNet");
  return UNet::load(w, layout, heads, p);
}

std::vector<float> floats_of(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data(), v.size() * sizeof(float));
  return v;
}

Tensor unet_run(UNet& u, const RefDump& d, const std::string& suffix = "") {
  const Tensor& x = d.get("x" + suffix);
  Tensor out = Tensor::empty(DType::F32, {x.size(0), u.config().out_channels, x.size(2), x.size(3)});
  u.forward(x, floats_of(d.get("timesteps" + suffix)), d.get("context" + suffix), out);
  return out;
}

float max_abs(const Tensor& t) {
  float m = 0.0f;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(t.ptr<float>()[i]));
  return m;
}

void expect_load_error(const std::map<std::string, Tensor>& ts, const std::vector<std::string>& fragments) {
  const std::string path = (test::temp_dir_make("aigc_unet") / "bad_unet.safetensors").string();
  safetensors_write(path, ts);
  try {
    unet_open(path, KeyLayout::CompVis, heads_sd1());
    ADD_FAILURE() << "loaded a bad UNet";
  } catch (const Error& e) {
    for (const std::string& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

// Tolerances (f32). The tiny UNet is ~60 layers deep (25 convs of up to 1152 products, 16
// attention blocks, 22 GroupNorms); oneDNN (here) and PyTorch sum in different orders, and the
// GELU/SiLU/exp kernels differ by an ulp or two, so each layer adds a few 1e-7 of relative
// rounding noise that GroupNorm/LayerNorm renormalise rather than damp. Measured max |diff| is
// printed by each test (2.2e-6 at most, outputs up to 1.5); 1e-4 absolute + 1e-4 relative leaves a
// wide margin for other ISAs, thread counts and faster conv kernels, while a wrong layer (a swapped
// key, wrong heads, a missing residual, the GEGLU halves swapped) is off by 1e-3 or more. (Too
// coarse for an eps: the transformer GroupNorm's 1e-6 set to 1e-5 moves the output by 4e-5.)
constexpr float kAtol = 1e-4f, kRtol = 1e-4f;

void expect_matches(const std::string& name, KeyLayout layout, const UNetConfig& heads) {
  SCOPED_TRACE(name + (layout == KeyLayout::CompVis ? " compvis" : " diffusers"));
  RefDump d = RefDump::load("sd_unet_" + name);
  UNet u = unet_open(tiny_path(name, layout), layout, heads);
  for (const std::string suffix : {"", "_wide"}) {
    Tensor out = unet_run(u, d, suffix);
    const Tensor& want = d.get("out" + suffix);
    EXPECT_TENSORS_CLOSE(out, want, kAtol, kRtol);
    float diff = 0.0f;
    for (int64_t i = 0; i < out.numel(); ++i)
      diff = std::max(diff, std::fabs(out.ptr<float>()[i] - want.ptr<float>()[i]));
    std::printf("  %s%s %s: max |diff| %.3g (max |out| %.3g)\n", name.c_str(), suffix.c_str(),
                layout == KeyLayout::CompVis ? "compvis" : "diffusers", diff, max_abs(want));
  }
}

}  // namespace

TEST(UNet, TimestepEmbeddingMatchesTorch) {
  RefDump d = RefDump::load("sd_unet_temb");
  const std::vector<float> ts = floats_of(d.get("timesteps"));
  for (int64_t dim : {320, 32}) {
    Tensor e = Tensor::empty(DType::F32, {static_cast<int64_t>(ts.size()), dim});
    timestep_embedding(ts, dim, e);
    // Arguments t * f reach 999; torch's and libm's expf may differ by an ulp in f, which moves an
    // argument near 999 by an ulp (6e-5) and its cos/sin by as much. 2e-4 covers two such ulps.
    EXPECT_TENSORS_CLOSE(e, d.get(fmt::format("emb_{}", dim)), 2e-4f, 0.0f);
  }
  // cos first: t = 0 gives [1, ..., 1, 0, ..., 0].
  Tensor e = Tensor::empty(DType::F32, {1, 4});
  const float zero = 0.0f;
  timestep_embedding(std::span<const float>(&zero, 1), 4, e);
  EXPECT_EQ(e.at<float>(0, 0), 1.0f);
  EXPECT_EQ(e.at<float>(0, 2), 0.0f);
}

TEST(UNet, Sd15ConfigFromShapes) {
  UNet u = unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  const UNetConfig& c = u.config();
  EXPECT_EQ(c.in_channels, 4);
  EXPECT_EQ(c.out_channels, 4);
  EXPECT_EQ(c.model_channels, 32);
  EXPECT_EQ(c.channel_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  EXPECT_EQ(c.num_res_blocks, 2);
  EXPECT_EQ(c.attention_levels, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(c.transformer_depth, 1);
  EXPECT_EQ(c.context_dim, 64);
  EXPECT_FALSE(c.linear_proj);
  EXPECT_GT(u.weight_bytes(), size_t{30} << 20);  // ~8.6 M f32 parameters
  UNet v = unet_open(tiny_path("sd21", KeyLayout::Diffusers), KeyLayout::Diffusers, heads_sd2());
  EXPECT_TRUE(v.config().linear_proj);
  EXPECT_EQ(v.config().channel_mult, (std::vector<int64_t>{1, 2, 4, 4}));
  UNet w = unet_open(tiny_path("sd15_inpaint", KeyLayout::Diffusers), KeyLayout::Diffusers, heads_sd1());
  EXPECT_EQ(w.config().in_channels, 9);
}

TEST(UNet, Sd15CompVisMatchesTorch) { expect_matches("sd15", KeyLayout::CompVis, heads_sd1()); }
TEST(UNet, Sd15DiffusersMatchesTorch) { expect_matches("sd15", KeyLayout::Diffusers, heads_sd1()); }
TEST(UNet, Sd21CompVisMatchesTorch) { expect_matches("sd21", KeyLayout::CompVis, heads_sd2()); }
TEST(UNet, Sd21DiffusersMatchesTorch) { expect_matches("sd21", KeyLayout::Diffusers, heads_sd2()); }
TEST(UNet, InpaintCompVisMatchesTorch) { expect_matches("sd15_inpaint", KeyLayout::CompVis, heads_sd1()); }
TEST(UNet, InpaintDiffusersMatchesTorch) { expect_matches("sd15_inpaint", KeyLayout::Diffusers, heads_sd1()); }

// 32x32 latents: 1024 tokens at level 0, so the attention streams over many key blocks.
TEST(UNet, Sd15LargerLatentMatchesTorch) {
  RefDump d = RefDump::load("sd_unet_sd15");
  UNet u = unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  Tensor out = unet_run(u, d, "_big");
  EXPECT_TENSORS_CLOSE(out, d.get("out_big"), kAtol, kRtol);
  std::printf("  32x32 batch 2: activation buffers %.1f MB (model_channels 32)\n", u.activation_bytes() / 1e6);
}

// A long prompt: the context is two 77-token chunks.
// A latent that is not a multiple of 8 (a 72x80 image): odd sizes halve rounding up on the way
// down and the upsamplers go to the skip's size (nearest), as ComfyUI's and diffusers' UNets do.
TEST(UNet, Sd15OddLatentSizeMatchesTorch) {
  RefDump d = RefDump::load("sd_unet_sd15");
  UNet u = unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  Tensor out = unet_run(u, d, "_odd");
  EXPECT_TENSORS_CLOSE(out, d.get("out_odd"), kAtol, kRtol);
}

TEST(UNet, Sd15LongContextMatchesTorch) {
  RefDump d = RefDump::load("sd_unet_sd15");
  UNet u = unet_open(tiny_path("sd15", KeyLayout::Diffusers), KeyLayout::Diffusers, heads_sd1());
  EXPECT_TENSORS_CLOSE(unet_run(u, d, "_long"), d.get("out_long"), kAtol, kRtol);
}

// Strided inputs (a channels-last latent, a transposed context) give the same bits as contiguous ones.
TEST(UNet, StridedInputsMatchContiguous) {
  RefDump d = RefDump::load("sd_unet_sd15");
  UNet u = unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  const Tensor& x = d.get("x");          // [2, 4, 8, 8]
  const Tensor& ctx = d.get("context");  // [2, 77, 64]
  Tensor x_nhwc = Tensor::empty(DType::F32, {2, 8, 8, 4});
  Tensor x_view = x_nhwc.permute({0, 3, 1, 2});
  ops::copy(x, x_view);
  Tensor ctx_t = Tensor::empty(DType::F32, {2, 64, 77});
  Tensor ctx_view = ctx_t.transpose(1, 2);
  ops::copy(ctx, ctx_view);
  const std::vector<float> ts = floats_of(d.get("timesteps"));
  Tensor a = Tensor::empty(DType::F32, {2, 4, 8, 8}), b = Tensor::empty(DType::F32, {2, 4, 8, 8});
  u.forward(x, ts, ctx, a);
  u.forward(x_view, ts, ctx_view, b);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
  EXPECT_TENSORS_CLOSE(b, d.get("out"), kAtol, kRtol);
}

// The heads matter: SD 2.x's head width read as SD 1.x's 8 heads gives another output.
TEST(UNet, WrongHeadsDiffer) {
  RefDump d = RefDump::load("sd_unet_sd21");
  UNet u = unet_open(tiny_path("sd21", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  EXPECT_FALSE(test::tensors_close(unet_run(u, d), d.get("out"), 1e-3f, 1e-3f));
}

// Buffers are sized on the first call and reused: the same call again gives the same bits and
// keeps the same buffers; a smaller call in between does not disturb a later larger one.
TEST(UNet, RepeatedCallsReuseBuffers) {
  RefDump d = RefDump::load("sd_unet_sd15");
  UNet u = unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  Tensor a = unet_run(u, d);
  const size_t bytes = u.activation_bytes();
  EXPECT_GT(bytes, size_t{0});
  Tensor wide = unet_run(u, d, "_wide");  // batch 1, 8x16: the same number of pixels
  Tensor b = unet_run(u, d);
  EXPECT_EQ(u.activation_bytes(), bytes);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
  EXPECT_TENSORS_CLOSE(wide, d.get("out_wide"), kAtol, kRtol);
  {
    test::AllocCounter allocs;
    Tensor c = Tensor::empty(DType::F32, {2, 4, 8, 8});
    u.forward(d.get("x"), floats_of(d.get("timesteps")), d.get("context"), c);
    // Not asserted: the oneDNN glue under PackedConv2d / PackedLinear allocates small objects per
    // call (about 50 and 17 operator-new calls); the UNet itself allocates nothing here.
    std::printf("  operator-new calls in a repeated forward: %ld\n", allocs.count());
  }
}

// bf16 arithmetic (weights and activations rounded to bf16 in the linear layers, f32 sums): each
// rounding is 2^-9 relative, ~60 layers in a row with renormalising norms; measured max |diff|
// is printed (a few 1e-3 against outputs up to ~2). 3e-2 absolute + 3e-2 relative bounds it with
// margin and still catches any wrong layer (> 1e-1).
TEST(UNet, Bf16CloseToTorch) {
  for (const char* name : {"sd15", "sd21"}) {
    SCOPED_TRACE(name);
    RefDump d = RefDump::load(std::string("sd_unet_") + name);
    const bool sd2 = std::string(name) == "sd21";
    UNet u = unet_open(tiny_path(name, KeyLayout::Diffusers), KeyLayout::Diffusers, sd2 ? heads_sd2() : heads_sd1(),
                       ops::Precision::BF16);
    Tensor out = unet_run(u, d);
    EXPECT_TENSORS_CLOSE(out, d.get("out"), 3e-2f, 3e-2f);
    float diff = 0.0f;
    for (int64_t i = 0; i < out.numel(); ++i)
      diff = std::max(diff, std::fabs(out.ptr<float>()[i] - d.get("out").ptr<float>()[i]));
    std::printf("  %s bf16: max |diff| %.3g (max |out| %.3g)\n", name, diff, max_abs(d.get("out")));
  }
}

TEST(UNet, MissingKeyIsNamed) {
  auto ts = test::safetensors_tensors_copy(tiny_path("sd15", KeyLayout::CompVis));
  ts.erase("model.diffusion_model.output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight");
  expect_load_error(ts, {"UNet", "output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight", "missing"});
}

TEST(UNet, WrongShapeIsNamed) {
  auto ts = test::safetensors_tensors_copy(tiny_path("sd15", KeyLayout::CompVis));
  ts["model.diffusion_model.input_blocks.4.0.emb_layers.1.weight"] = Tensor::zeros(DType::F32, {64, 100});
  expect_load_error(ts, {"input_blocks.4.0.emb_layers.1.weight", "[64, 100]", "expected [64, 128]"});
}

TEST(UNet, ExtraKeyIsNamed) {
  auto ts = test::safetensors_tensors_copy(tiny_path("sd15", KeyLayout::CompVis));
  ts["model.diffusion_model.label_emb.0.0.weight"] =
      Tensor::zeros(DType::F32, {128, 32});  // SDXL-style class embedding
  expect_load_error(ts, {"unknown", "model.diffusion_model.label_emb.0.0.weight"});
}

TEST(UNet, WrongLayoutIsAnError) {
  EXPECT_THROW(unet_open(tiny_path("sd15", KeyLayout::Diffusers), KeyLayout::CompVis, heads_sd1()), Error);
  EXPECT_THROW(unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::Diffusers, heads_sd1()), Error);
}

TEST(UNet, WrongInputShapesAreNamed) {
  RefDump d = RefDump::load("sd_unet_sd15");
  UNet u = unet_open(tiny_path("sd15", KeyLayout::CompVis), KeyLayout::CompVis, heads_sd1());
  const std::vector<float> ts = floats_of(d.get("timesteps"));
  const Tensor& ctx = d.get("context");
  Tensor out = Tensor::empty(DType::F32, {2, 4, 8, 8});
  auto expect_error = [&](const Tensor& x, std::span<const float> t, const Tensor& c, Tensor& o, const char* what) {
    try {
      u.forward(x, t, c, o);
      ADD_FAILURE() << "no error; expected one about " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  Tensor x9 = Tensor::zeros(DType::F32, {2, 9, 8, 8});  // inpainting input for a 4-channel model
  expect_error(x9, ts, ctx, out, "x is [2, 9, 8, 8]");
  Tensor x_empty = Tensor::zeros(DType::F32, {2, 4, 0, 8});
  expect_error(x_empty, ts, ctx, out, "x is [2, 4, 0, 8]");
  expect_error(d.get("x"), std::span<const float>(ts.data(), 1), ctx, out, "1 timesteps");
  Tensor ctx_wrong = Tensor::zeros(DType::F32, {2, 77, 768});  // SD 1.x's real width on the tiny model
  expect_error(d.get("x"), ts, ctx_wrong, out, "context is [2, 77, 768]");
  Tensor out_wrong = Tensor::empty(DType::F32, {2, 4, 4, 4});
  expect_error(d.get("x"), ts, ctx, out_wrong, "out is [2, 4, 4, 4]");
}
