// The A1111 'parameters' text: format, parse back, and the PNG tEXt chunk round trip (the chunk is
// read back here by an independent minimal PNG chunk walker, with CRC checks).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "core/tensor.h"
#include "formats/image.h"
#include "image/sd_parameters.h"

namespace {

using namespace aigc;
using namespace aigc::image;

uint32_t be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

// key -> text of every tEXt chunk of a PNG file; fails the test on a bad signature or CRC.
std::vector<std::pair<std::string, std::string>> png_text_chunks(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  std::vector<std::pair<std::string, std::string>> out;
  const uint8_t* b = reinterpret_cast<const uint8_t*>(s.data());
  EXPECT_GE(s.size(), 8u);
  EXPECT_EQ(std::memcmp(b, "\x89PNG\r\n\x1a\n", 8), 0);
  size_t i = 8;
  while (i + 12 <= s.size()) {
    const uint32_t len = be32(b + i);
    if (i + 12 + len > s.size()) {
      ADD_FAILURE() << "truncated chunk";
      break;
    }
    const std::string type(s.data() + i + 4, 4);
    const uint32_t crc = be32(b + i + 8 + len);
    EXPECT_EQ(crc, png_crc32({b + i + 4, len + 4})) << type;
    if (type == "tEXt") {
      const std::string data(s.data() + i + 8, len);
      const size_t z = data.find('\0');
      out.emplace_back(data.substr(0, z), data.substr(z + 1));
    }
    i += 12 + len;
    if (type == "IEND") break;
  }
  return out;
}

SdParameters sample_params() {
  SdParameters p;
  p.prompt = "a (red:1.2) cat, sitting on a mat";
  p.negative_prompt = "ugly, blurry";
  p.fields = {{"Steps", "20"},   {"Sampler", "Euler a"}, {"CFG scale", "7"},     {"Seed", "42"},
              {"Size", "512x512"}, {"Model", "v1-5"},     {"Hires upscaler", "Latent"}};
  return p;
}

TEST(SdParameters, FormatIsA1111) {
  EXPECT_EQ(sd_parameters_format(sample_params()),
            "a (red:1.2) cat, sitting on a mat\nNegative prompt: ugly, blurry\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: v1-5, Hires upscaler: Latent");
  SdParameters no_neg = sample_params();
  no_neg.negative_prompt.clear();
  EXPECT_EQ(sd_parameters_format(no_neg).find("Negative prompt"), std::string::npos);
}

TEST(SdParameters, ParseRoundTripWithQuotingAndMultilinePrompt) {
  SdParameters p = sample_params();
  p.prompt = "line one\nline two: with colon";
  p.negative_prompt = "bad\nworse";
  p.fields.emplace_back("Model", "name, with \"comma\": and colon");
  const std::string text = sd_parameters_format(p);
  EXPECT_NE(text.find("Model: \"name, with \\\"comma\\\": and colon\""), std::string::npos) << text;
  const SdParameters q = sd_parameters_parse(text);
  EXPECT_EQ(q.prompt, p.prompt);
  EXPECT_EQ(q.negative_prompt, p.negative_prompt);
  EXPECT_EQ(q.fields, p.fields);
  ASSERT_NE(q.field("Seed"), nullptr);
  EXPECT_EQ(*q.field("Seed"), "42");
  EXPECT_EQ(q.field("Nope"), nullptr);
}

TEST(SdParameters, ParsesWebuiText) {
  // As stable-diffusion-webui writes it (its own example format), no negative prompt.
  const SdParameters q = sd_parameters_parse(
      "masterpiece, 1girl\nSteps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 512x768, "
      "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0");
  EXPECT_EQ(q.prompt, "masterpiece, 1girl");
  EXPECT_EQ(q.negative_prompt, "");
  ASSERT_EQ(q.fields.size(), 8u);
  EXPECT_EQ(*q.field("Sampler"), "DPM++ 2M Karras");
  EXPECT_EQ(*q.field("Size"), "512x768");
  // No parameter line: everything is prompt.
  const SdParameters r = sd_parameters_parse("just a prompt: nothing else");
  EXPECT_EQ(r.prompt, "just a prompt: nothing else");
  EXPECT_TRUE(r.fields.empty());
}

TEST(SdParameters, PngTextChunkRoundTrip) {
  Tensor img = Tensor::zeros(DType::F32, {1, 3, 8, 8});
  const std::string text = sd_parameters_format(sample_params());
  const std::string path = ::testing::TempDir() + "/sd_params_roundtrip.png";
  image_write_png(path, img, {{"parameters", text}});
  const auto chunks = png_text_chunks(path);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].first, "parameters");
  EXPECT_EQ(chunks[0].second, text);
  const SdParameters q = sd_parameters_parse(chunks[0].second);
  EXPECT_EQ(q.fields, sample_params().fields);
  EXPECT_EQ(q.prompt, sample_params().prompt);
}

TEST(SdParameters, SamplerNames) {
  EXPECT_EQ(sd_sampler_a1111_name(SamplerKind::EulerAncestral), "Euler a");
  EXPECT_EQ(sd_sampler_a1111_name(SamplerKind::Dpmpp2mKarras), "DPM++ 2M Karras");
  EXPECT_EQ(sd_sampler_a1111_name(SamplerKind::Ddim), "DDIM");
}

}  // namespace
