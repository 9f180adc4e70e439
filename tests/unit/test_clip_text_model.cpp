// ClipTextModel against its PyTorch twin (tests/ref/sd_twin_clip.py, dumps by twin_sd_clip.py): the
// tiny SD 1.5 (Hugging Face CLIPTextModel names, quick_gelu) and SD 2.1 (OpenCLIP names, exact GELU)
// text encoders, in the single-file CompVis layout and the diffusers text_encoder/ layout, at
// clip_skip 1 and 2, in f32 and bf16; and bad checkpoints / inputs (aigc::Error, never a crash).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "common/compare.h"
#include "common/refdump.h"
#include "common/safetensors_copy.h"
#include "formats/safetensors.h"
#include "image/clip_text_model.h"

using namespace aigc;
using namespace aigc::image;
using test::RefDump;
namespace fs = std::filesystem;

namespace {

// Tolerances. f32: the outputs are final-layer-normed (std ~1, max ~4); the twin sums in another
// order (torch's GEMM / softmax vs oneDNN and our streaming attention). Measured worst |diff|
// (AVX-512 machine): 7e-7 (SD 1.5), 1e-6 (SD 2.1). 1e-4 leaves a ~100x margin for other ISAs and
// thread counts and is far below what a wrong layer, activation, mask or clip_skip does (O(0.1..1)).
constexpr float kAtol = 1e-4f, kRtol = 1e-4f;
// bf16: every GEMM operand rounded to 8 significant bits, 2-3 layers, then the final layer norm
// rescales to std 1. Measured worst |diff| 3.5e-3 (SD 1.5), 5.8e-3 (SD 2.1): ~5x margin.
constexpr float kBf16Atol = 3e-2f, kBf16Rtol = 1e-2f;

std::string ref_path(const std::string& name) { return test::ref_dir() + "/" + name + ".safetensors"; }

WeightSource source(const std::string& path, const std::string& prefix) {
  auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open(path));
  return WeightSource(file, prefix, "text encoder");
}

constexpr const char* kSd15Prefix = "cond_stage_model.transformer.";
constexpr const char* kSd21Prefix = "cond_stage_model.model.";

ClipTextModel sd15(ops::Precision p = ops::Precision::F32) {
  return ClipTextModel::load(source(ref_path("sd_clip_tiny_sd15"), kSd15Prefix), ClipKeyNames::HuggingFace, p);
}
ClipTextModel sd21(ops::Precision p = ops::Precision::F32) {
  return ClipTextModel::load(source(ref_path("sd_clip_tiny_sd21"), kSd21Prefix), ClipKeyNames::OpenClip, p);
}

std::vector<int32_t> ids_of(const Tensor& t) {
  return std::vector<int32_t>(t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel());
}

void expect_load_error(const std::map<std::string, Tensor>& ts, const std::string& prefix, ClipKeyNames names,
                       const std::string& fragment) {
  const std::string path = (test::temp_dir_make("aigc_clip_text") / "bad.safetensors").string();
  safetensors_write(path, ts);
  try {
    ClipTextModel::load(source(path, prefix), names, ops::Precision::F32);
    ADD_FAILURE() << "loaded a bad checkpoint; expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ClipTextModel, Sd15CompVisMatchesTorch) {
  RefDump d = RefDump::load("sd_clip");
  ClipTextModel m = sd15();
  const ClipTextConfig& c = m.config();
  EXPECT_EQ(c.vocab, 49408);
  EXPECT_EQ(c.positions, 77);
  EXPECT_EQ(c.width, 64);
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.heads, 1);
  EXPECT_EQ(c.mlp, 256);
  EXPECT_TRUE(c.quick_gelu);
  const std::vector<int32_t> ids = ids_of(d.get("ids"));
  EXPECT_TENSORS_CLOSE(m.encode(ids, 2, 1), d.get("sd15_skip1"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(m.encode(ids, 2, 2), d.get("sd15_skip2"), kAtol, kRtol);
  // Into a caller's tensor, buffers reused; one row at a time gives the same rows.
  Tensor h = Tensor::empty(DType::F32, {1, 77, 64});
  m.encode(std::span(ids).subspan(77, 77), 1, 1, h);
  EXPECT_TENSORS_CLOSE(h, d.get("sd15_skip1").slice(0, 1, 1), kAtol, kRtol);
  // Fewer positions: causal, so the first 13 outputs are those of the full row.
  Tensor shorter = m.encode(std::span(ids).subspan(0, 13), 1, 1);
  EXPECT_TENSORS_CLOSE(shorter, d.get("sd15_skip1").slice(0, 0, 1).slice(1, 0, 13), kAtol, kRtol);
}

TEST(ClipTextModel, Sd15DiffusersMatchesTorch) {
  RefDump d = RefDump::load("sd_clip");
  ClipTextModel m = ClipTextModel::load(source(ref_path("sd_clip_tiny_sd15_diffusers"), ""),
                                        ClipKeyNames::HuggingFace, ops::Precision::Auto);  // f32 file
  const std::vector<int32_t> ids = ids_of(d.get("ids"));
  EXPECT_TENSORS_CLOSE(m.encode(ids, 2, 1), d.get("sd15_skip1"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(m.encode(ids, 2, 2), d.get("sd15_skip2"), kAtol, kRtol);
}

TEST(ClipTextModel, OldKeysWithoutTextModelLevel) {
  // Early SD 1.x checkpoints: "cond_stage_model.transformer.embeddings.*" (no "text_model.").
  RefDump d = RefDump::load("sd_clip");
  std::map<std::string, Tensor> ts;
  for (auto& [k, t] : test::safetensors_tensors_copy(ref_path("sd_clip_tiny_sd15"))) {
    std::string k2 = k;
    const size_t at = k2.find("text_model.");
    ASSERT_NE(at, std::string::npos) << k;
    ts[k2.erase(at, 11)] = t;
  }
  const std::string path = (test::temp_dir_make("aigc_clip_text") / "old_keys.safetensors").string();
  safetensors_write(path, ts);
  ClipTextModel m = ClipTextModel::load(source(path, kSd15Prefix), ClipKeyNames::HuggingFace, ops::Precision::F32);
  EXPECT_TENSORS_CLOSE(m.encode(ids_of(d.get("ids")), 2, 1), d.get("sd15_skip1"), kAtol, kRtol);
}

TEST(ClipTextModel, WrongActivationIsDetected) {  // the comparison is sensitive to quick_gelu vs gelu
  RefDump d = RefDump::load("sd_clip");
  ClipTextModel m = ClipTextModel::load(source(ref_path("sd_clip_tiny_sd15"), kSd15Prefix), ClipKeyNames::HuggingFace,
                                        ops::Precision::F32, 0, ClipActivation::Gelu);
  EXPECT_FALSE(test::tensors_close(m.encode(ids_of(d.get("ids")), 2, 1), d.get("sd15_skip1"), kAtol, kRtol));
}

TEST(ClipTextModel, Sd21CompVisMatchesTorch) {
  RefDump d = RefDump::load("sd_clip");
  ClipTextModel m = sd21(ops::Precision::Auto);  // f16 file: computes in f32
  const ClipTextConfig& c = m.config();
  EXPECT_EQ(c.layers, 3);
  EXPECT_EQ(c.width, 64);
  EXPECT_EQ(c.mlp, 256);
  EXPECT_FALSE(c.quick_gelu);
  const std::vector<int32_t> ids = ids_of(d.get("ids"));
  EXPECT_TENSORS_CLOSE(m.encode(ids, 2, 1), d.get("sd21_skip1"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(m.encode(ids, 2, 2), d.get("sd21_skip2"), kAtol, kRtol);
}

TEST(ClipTextModel, Sd21DiffusersIsPenultimateLayer) {
  RefDump d = RefDump::load("sd_clip");
  // diffusers' SD 2 text_encoder: HF names, last layer dropped, hidden_act "gelu" (config.json).
  ClipTextModel m = ClipTextModel::load(source(ref_path("sd_clip_tiny_sd21_diffusers"), ""), ClipKeyNames::HuggingFace,
                                        ops::Precision::F32, 0, ClipActivation::Gelu);
  EXPECT_EQ(m.config().layers, 2);
  EXPECT_FALSE(m.config().quick_gelu);
  EXPECT_TENSORS_CLOSE(m.encode(ids_of(d.get("ids")), 2, 1), d.get("sd21_skip2"), kAtol, kRtol);
}

TEST(ClipTextModel, Bf16PrecisionClose) {
  RefDump d = RefDump::load("sd_clip");
  const std::vector<int32_t> ids = ids_of(d.get("ids"));
  ClipTextModel a = sd15(ops::Precision::BF16), b = sd21(ops::Precision::BF16);
  EXPECT_TENSORS_CLOSE(a.encode(ids, 2, 1), d.get("sd15_skip1"), kBf16Atol, kBf16Rtol);
  EXPECT_TENSORS_CLOSE(a.encode(ids, 2, 2), d.get("sd15_skip2"), kBf16Atol, kBf16Rtol);
  EXPECT_TENSORS_CLOSE(b.encode(ids, 2, 2), d.get("sd21_skip2"), kBf16Atol, kBf16Rtol);
}

TEST(ClipTextModel, KeyNamesDetected) {
  EXPECT_EQ(clip_key_names_detect(source(ref_path("sd_clip_tiny_sd15"), kSd15Prefix)), ClipKeyNames::HuggingFace);
  EXPECT_EQ(clip_key_names_detect(source(ref_path("sd_clip_tiny_sd15_diffusers"), "")), ClipKeyNames::HuggingFace);
  EXPECT_EQ(clip_key_names_detect(source(ref_path("sd_clip_tiny_sd21"), kSd21Prefix)), ClipKeyNames::OpenClip);
  EXPECT_EQ(clip_key_names_detect(source(ref_path("sd_clip_tiny_sd21_diffusers"), "")), ClipKeyNames::HuggingFace);
  EXPECT_THROW(clip_key_names_detect(source(ref_path("sd_clip_tiny_sd15"), kSd21Prefix)), Error);
  EXPECT_THROW(clip_key_names_detect(source(ref_path("sd_clip_tiny_sd21"), "")), Error);
}

TEST(ClipTextModel, BadInputsThrow) {
  RefDump d = RefDump::load("sd_clip");
  ClipTextModel m = sd15();
  std::vector<int32_t> ids = ids_of(d.get("ids"));
  EXPECT_THROW(m.encode(ids, 2, 0), Error);   // clip_skip out of range
  EXPECT_THROW(m.encode(ids, 2, 3), Error);   // more than the 2 layers
  EXPECT_THROW(m.encode(ids, 3, 1), Error);   // 154 ids do not split into 3 rows
  EXPECT_THROW(m.encode(ids, 0, 1), Error);
  EXPECT_THROW(m.encode(std::span<const int32_t>(), 1, 1), Error);
  std::vector<int32_t> longer(78, 49407);
  EXPECT_THROW(m.encode(longer, 1, 1), Error);  // 78 > 77 positions
  Tensor wrong = Tensor::empty(DType::F32, {2, 77, 63});
  EXPECT_THROW(m.encode(ids, 2, 1, wrong), Error);
  for (int32_t bad : {-1, 49408, 1 << 30}) {
    ids[100] = bad;
    try {
      m.encode(ids, 2, 1);
      ADD_FAILURE() << "id " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
    }
  }
}

TEST(ClipTextModel, BadCheckpointsThrow) {
  const std::string pre = kSd15Prefix, q = pre + "text_model.encoder.layers.1.self_attn.q_proj.weight";
  const auto good = test::safetensors_tensors_copy(ref_path("sd_clip_tiny_sd15"));
  {
    auto ts = good;
    ts.erase(q);
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "is missing");
  }
  {
    auto ts = good;
    ts[q] = Tensor::zeros(DType::F16, {64, 65});
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "expected [64, 64]");
  }
  {
    auto ts = good;
    ts[pre + "text_model.final_layer_norm.bias"] = Tensor::zeros(DType::F16, {65});
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "expected [64]");
  }
  {
    auto ts = good;
    ts[pre + "text_model.encoder.layers.0.mlp.fc2.weight"] = Tensor::zeros(DType::F16, {64, 255});
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "expected [64, 256]");
  }
  {
    auto ts = good;
    ts[pre + "text_model.encoder.layers.0.self_attn.extra.weight"] = Tensor::zeros(DType::F16, {4});
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "unknown tensor");
  }
  {  // a gap in the layers: layer 2's tensors are left over
    auto ts = good;
    for (const auto& [k, t] : good)
      if (k.find("layers.1.") != std::string::npos) {
        std::string k2 = k;
        k2.replace(k2.find("layers.1."), 9, "layers.2.");
        ts.erase(k);
        ts[k2] = t;
      }
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "unknown tensor");
  }
  {
    auto ts = good;
    ts[pre + "text_model.embeddings.token_embedding.weight"] = Tensor::zeros(DType::F16, {49408});
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "expected [vocab, width]");
  }
  {
    auto ts = good;
    ts[pre + "text_model.embeddings.position_embedding.weight"] = Tensor::zeros(DType::F16, {77, 32});
    expect_load_error(ts, pre, ClipKeyNames::HuggingFace, "expected [77, 64]");
  }
  {  // not a text encoder at all under this prefix
    auto ts = good;
    expect_load_error(ts, "cond_stage_model.model.", ClipKeyNames::OpenClip, "is missing");
  }
  // OpenCLIP: text_projection and logit_scale are ignored, anything else unknown is not.
  const std::string p21 = kSd21Prefix;
  const auto good21 = test::safetensors_tensors_copy(ref_path("sd_clip_tiny_sd21"));
  ASSERT_TRUE(good21.count(p21 + "text_projection"));
  ASSERT_TRUE(good21.count(p21 + "logit_scale"));
  {
    auto ts = good21;
    ts[p21 + "transformer.resblocks.0.attn.in_proj_weight"] = Tensor::zeros(DType::F16, {64, 64});
    expect_load_error(ts, p21, ClipKeyNames::OpenClip, "expected [192, 64]");
  }
  {
    auto ts = good21;
    ts[p21 + "visual.proj"] = Tensor::zeros(DType::F16, {2, 2});
    expect_load_error(ts, p21, ClipKeyNames::OpenClip, "unknown tensor");
  }
  {
    auto ts = good21;
    ts.erase(p21 + "ln_final.weight");
    expect_load_error(ts, p21, ClipKeyNames::OpenClip, "is missing");
  }
  {  // an integer tensor where a weight belongs
    auto ts = good21;
    ts[p21 + "ln_final.weight"] = Tensor::zeros(DType::I32, {64});
    expect_load_error(ts, p21, ClipKeyNames::OpenClip, "expected f32, f16 or bf16");
  }
  // A head count that does not divide the width.
  EXPECT_THROW(ClipTextModel::load(source(ref_path("sd_clip_tiny_sd15"), pre), ClipKeyNames::HuggingFace,
                                   ops::Precision::F32, 3),
               Error);
}
