// SD conditioning (A1111 weighting, chunk concatenation, CFG pair padding) against the twin
// (tests/ref/twin_sd_clip.py: sd_twin_clip.conditioning on ids from twin_clip_tokenizer.py's own
// tokenizer) with the tiny text encoders and the real CLIP vocabulary from ../shared.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/compare.h"
#include "common/refdump.h"
#include "formats/safetensors.h"
#include "image/sd_conditioning.h"

using namespace aigc;
using namespace aigc::image;
using test::RefDump;
namespace fs = std::filesystem;

namespace {

// Same reasoning as test_clip_text_model.cpp (measured |diff| ~1e-6 on final-layer-normed
// outputs); the weighting multiplies by at most 1.3 and the rescale by ~1.
constexpr float kAtol = 1e-4f, kRtol = 1e-4f;

constexpr const char* kPrompt = "(red:1.3) cat, [blue] dog";

ClipTextModel model_load(const std::string& name, const std::string& prefix, ClipKeyNames names) {
  auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open(test::ref_dir() + "/" + name + ".safetensors"));
  return ClipTextModel::load(WeightSource(file, prefix, "text encoder"), names, ops::Precision::F32);
}
ClipTextModel sd15() { return model_load("sd_clip_tiny_sd15", "cond_stage_model.transformer.", ClipKeyNames::HuggingFace); }
ClipTextModel sd21() { return model_load("sd_clip_tiny_sd21", "cond_stage_model.model.", ClipKeyNames::OpenClip); }

std::string vocab_path() {
  const std::string s = test::shared_dir();
  const std::string p = s + "/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz";
  return !s.empty() && fs::exists(p) ? p : std::string();
}

bool cond_dump_exists() { return fs::exists(test::ref_dir() + "/sd_clip_cond.bin"); }

#define SKIP_WITHOUT_VOCAB()                                                                              \
  if (vocab_path().empty()) GTEST_SKIP() << "../shared/tokenizers/clip (or $AIGC_SHARED) is absent";     \
  if (!cond_dump_exists()) GTEST_SKIP() << "sd_clip_cond.bin absent (twin_sd_clip.py needs python3-regex)"

std::vector<int32_t> i32s(const Tensor& t) { return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()}; }

double mean(const Tensor& t) {
  double s = 0.0;
  for (int64_t i = 0; i < t.numel(); ++i) s += t.ptr<float>()[i];
  return s / static_cast<double>(t.numel());
}

}  // namespace

TEST(SdConditioning, UnweightedChunksAreTheEncoderOutput) {  // no vocabulary needed
  RefDump d = RefDump::load("sd_clip");
  ClipTextModel m = sd15();
  const std::vector<int32_t> ids = i32s(d.get("ids"));
  std::vector<ClipChunk> chunks(2);
  for (int c = 0; c < 2; ++c) {
    chunks[c].ids.assign(ids.begin() + 77 * c, ids.begin() + 77 * (c + 1));
    chunks[c].weights.assign(77, 1.0f);
  }
  Tensor z = sd_conditioning_from_chunks(m, chunks, 2);  // [1, 154, 64]: the two rows concatenated
  ASSERT_EQ(z.shape_vec(), (std::vector<int64_t>{1, 154, 64}));
  EXPECT_TENSORS_CLOSE(z, d.get("sd15_skip2").reshape({1, 154, 64}), kAtol, kRtol);

  // Weights: the chunk's mean is kept, the weighted token changes relative to the others.
  chunks[0].weights[5] = 1.5f;
  chunks[0].weights[6] = 0.5f;
  Tensor w = sd_conditioning_from_chunks(m, chunks, 2);
  const Tensor z0 = test::to_f32(z.slice(1, 0, 77)), w0 = test::to_f32(w.slice(1, 0, 77));
  EXPECT_NEAR(mean(w0), mean(z0), 1e-6);
  const double ratio = mean(z0) / [&] {  // the rescale factor A1111 applies
    double s = 0.0;
    for (int64_t t = 0; t < 77; ++t)
      for (int64_t i = 0; i < 64; ++i) s += z0.at<float>(0, t, i) * chunks[0].weights[t];
    return s / (77 * 64);
  }();
  for (int64_t t : {0, 5, 6, 40})
    for (int64_t i : {0, 31, 63})
      EXPECT_NEAR(w0.at<float>(0, t, i), z0.at<float>(0, t, i) * chunks[0].weights[t] * ratio, 1e-5);
  // The second chunk is untouched by the first one's weights.
  EXPECT_TENSORS_CLOSE(w.slice(1, 77, 77), z.slice(1, 77, 77), 0.0f, 0.0f);

  // Bad chunks.
  EXPECT_THROW(sd_conditioning_from_chunks(m, {}, 1), Error);
  std::vector<ClipChunk> bad = chunks;
  bad[1].ids.pop_back();
  EXPECT_THROW(sd_conditioning_from_chunks(m, bad, 1), Error);
  bad = chunks;
  bad[0].weights[3] = std::nanf("");
  EXPECT_THROW(sd_conditioning_from_chunks(m, bad, 1), Error);
  bad = chunks;
  bad[0].ids[3] = 49408;
  EXPECT_THROW(sd_conditioning_from_chunks(m, bad, 1), Error);
}

TEST(SdConditioning, RepeatBlocksRows) {
  Tensor c = test::random_f32({2, 3, 4}, 9);
  Tensor r = sd_conditioning_repeat(c, 3);
  ASSERT_EQ(r.shape_vec(), (std::vector<int64_t>{6, 3, 4}));
  for (int64_t i = 0; i < 6; ++i) EXPECT_TENSORS_CLOSE(r.slice(0, i, 1), c.slice(0, i / 3, 1), 0.0f, 0.0f);
  EXPECT_THROW(sd_conditioning_repeat(c, 0), Error);
  EXPECT_THROW(sd_conditioning_repeat(test::random_f32({3, 4}, 1), 2), Error);
}

TEST(SdConditioning, WeightedPromptMatchesTorch) {
  SKIP_WITHOUT_VOCAB();
  RefDump d = RefDump::load("sd_clip_cond");
  const ClipTokenizer tok = ClipTokenizer::load(vocab_path());
  // Our tokenizer gives the twin's ids and weights (else a model mismatch below would be ambiguous).
  SdTokenizeOptions t15;
  const std::vector<ClipChunk> c15 = tok.tokenize_for_sd(kPrompt, t15);
  ASSERT_EQ(c15.size(), 1u);
  EXPECT_EQ(c15[0].ids, i32s(d.get("w_ids")));
  const Tensor weights = Tensor::view_of(DType::F32, std::vector<int64_t>{77}, const_cast<float*>(c15[0].weights.data()));
  EXPECT_TENSORS_CLOSE(weights, d.get("w_weights"), 0.0f, 1e-6f);

  ClipTextModel m15 = sd15(), m21 = sd21();
  EXPECT_TENSORS_CLOSE(sd_conditioning_encode(m15, tok, kPrompt), d.get("w_sd15"), kAtol, kRtol);
  SdConditioningOptions o21;
  o21.tokenize.pad_id = 0;
  o21.clip_skip = 2;
  EXPECT_EQ(tok.tokenize_for_sd(kPrompt, o21.tokenize)[0].ids, i32s(d.get("w_ids_pad0")));
  EXPECT_TENSORS_CLOSE(sd_conditioning_encode(m21, tok, kPrompt, o21), d.get("w_sd21"), kAtol, kRtol);

  // The twin's chunk (its own tokenizer) through from_chunks: the same.
  ClipChunk twin;
  twin.ids = i32s(d.get("w_ids"));
  twin.weights.assign(d.get("w_weights").ptr<float>(), d.get("w_weights").ptr<float>() + 77);
  EXPECT_TENSORS_CLOSE(sd_conditioning_from_chunks(m15, std::vector<ClipChunk>{twin}, 1), d.get("w_sd15"), kAtol, kRtol);
}

TEST(SdConditioning, CfgPairPadsWithEmptyPrompt) {
  SKIP_WITHOUT_VOCAB();
  RefDump d = RefDump::load("sd_clip_cond");
  std::ifstream f(test::ref_dir() + "/sd_clip_cond_prompts.txt");
  std::string prompt, negative;
  ASSERT_TRUE(std::getline(f, prompt) && std::getline(f, negative));
  const ClipTokenizer tok = ClipTokenizer::load(vocab_path());
  ClipTextModel m = sd15();
  const Tensor& expected = d.get("cfg_sd15");  // [2, 231, 64]: 3 chunks; the negative padded
  Tensor pair = sd_conditioning_cfg(m, tok, prompt, negative);
  ASSERT_EQ(pair.shape_vec(), expected.shape_vec());
  EXPECT_TENSORS_CLOSE(pair, expected, kAtol, kRtol);

  // Batch 2: [cond, cond, uncond, uncond].
  Tensor b2 = sd_conditioning_cfg(m, tok, prompt, negative, {}, 2);
  ASSERT_EQ(b2.shape_vec(), (std::vector<int64_t>{4, 231, 64}));
  for (int64_t i = 0; i < 4; ++i) EXPECT_TENSORS_CLOSE(b2.slice(0, i, 1), expected.slice(0, i / 2, 1), kAtol, kRtol);
  // The shorter side may be either: swapped prompts give the swapped rows.
  Tensor swapped = sd_conditioning_cfg(m, tok, negative, prompt);
  EXPECT_TENSORS_CLOSE(swapped.slice(0, 0, 1), expected.slice(0, 1, 1), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(swapped.slice(0, 1, 1), expected.slice(0, 0, 1), kAtol, kRtol);
  // Same length: no padding; the prompt's rows equal its own conditioning.
  Tensor same = sd_conditioning_cfg(m, tok, "a cat", "");
  ASSERT_EQ(same.shape_vec(), (std::vector<int64_t>{2, 77, 64}));
  EXPECT_TENSORS_CLOSE(same.slice(0, 0, 1), sd_conditioning_encode(m, tok, "a cat"), kAtol, kRtol);
  EXPECT_TENSORS_CLOSE(same.slice(0, 1, 1), expected.slice(0, 1, 1).slice(1, 77, 77), kAtol, kRtol);  // the empty chunk
  EXPECT_THROW(sd_conditioning_cfg(m, tok, "a", "b", {}, 0), Error);
}
