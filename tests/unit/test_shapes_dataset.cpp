// The synthetic shapes data set and its caption checker (src/train/shapes_dataset.h):
//  - samples are deterministic in (seed, index) and vary with both; captions round-trip the parser;
//  - the checker accepts clean samples (~100 %), and rejects the same images under a caption with
//    the colour, the shape, the count or the background changed (~0 %);
//  - it survives moderate pixel noise; bad captions and sizes are rejected.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "train/glyph_font.h"
#include "train/shapes_dataset.h"

namespace aigc::train {
namespace {

TEST(ShapesDataset, DeterministicAndVaried) {
  const ShapesSample a = shapes_sample(7, 123), b = shapes_sample(7, 123), c = shapes_sample(7, 124),
                     d = shapes_sample(8, 123);
  EXPECT_EQ(a.rgb, b.rgb);
  EXPECT_EQ(a.caption, b.caption);
  EXPECT_NE(a.rgb, c.rgb);
  EXPECT_NE(a.rgb, d.rgb);
  ASSERT_EQ(a.rgb.size(), 32u * 32u * 3u);
  // Every count, colour and shape occurs in 300 samples; half the captions name the background.
  int counts[4] = {}, colours[kShapesForegroundColours] = {}, shapes[3] = {}, named = 0;
  for (int64_t i = 0; i < 300; ++i) {
    const ShapesSample s = shapes_sample(1, i);
    ++counts[s.spec.count];
    ++colours[s.spec.colour];
    ++shapes[static_cast<int>(s.spec.shape)];
    named += s.spec.background >= 0;
    EXPECT_NE(s.background, s.spec.colour);
  }
  for (int k = 1; k <= 3; ++k) EXPECT_GT(counts[k], 60);
  for (int k : colours) EXPECT_GT(k, 25);
  for (int k : shapes) EXPECT_GT(k, 60);
  EXPECT_GT(named, 100);
  EXPECT_LT(named, 200);
}

TEST(ShapesDataset, CaptionsParse) {
  EXPECT_EQ(shapes_caption_text({1, 0, ShapeKind::Circle, 2}), "a red circle on a blue background");
  EXPECT_EQ(shapes_caption_text({2, 1, ShapeKind::Square, -1}), "two green squares");
  for (int64_t i = 0; i < 100; ++i) {
    const ShapesSample s = shapes_sample(3, i);
    const auto p = shapes_caption_parse(s.caption);
    ASSERT_TRUE(p.has_value()) << s.caption;
    EXPECT_EQ(shapes_caption_text(*p), s.caption);
  }
  for (const char* bad : {"", "a red", "two red circle", "a red circles", "four red circles", "a pink circle",
                          "a white circle", "a red circle on a red background", "a red circle on a blue", "a  red circle"})
    EXPECT_FALSE(shapes_caption_parse(bad).has_value()) << bad;
}

TEST(ShapesDataset, CheckerAcceptsCleanSamples) {
  for (int size : {32, 64}) {
    int ok = 0;
    const int n = 500;
    std::string first_miss;
    for (int64_t i = 0; i < n; ++i) {
      const ShapesSample s = shapes_sample(42, i, size);
      const ShapesCheck c = shapes_check(s.rgb, size, s.spec);
      ok += c.match();
      if (!c.match() && first_miss.empty())
        first_miss = s.caption + ": found colour " + std::to_string(c.found_colour) + ", count " +
                     std::to_string(c.found_count) + ", shape ok " + std::to_string(c.shape);
    }
    EXPECT_GE(ok, n * 99 / 100) << "size " << size << "; first miss: " << first_miss;
  }
}

TEST(ShapesDataset, CheckerRejectsMismatches) {
  int accepted = 0, total = 0;
  for (int64_t i = 0; i < 300; ++i) {
    const ShapesSample s = shapes_sample(9, i);
    ShapesCaption w = s.spec;
    w.colour = (w.colour + 1 + static_cast<int>(i % 5)) % kShapesForegroundColours;
    accepted += shapes_check(s.rgb, 32, w).match(), ++total;
    w = s.spec;
    w.shape = static_cast<ShapeKind>((static_cast<int>(w.shape) + 1 + static_cast<int>(i % 2)) % 3);
    accepted += shapes_check(s.rgb, 32, w).match(), ++total;
    w = s.spec;
    w.count = (w.count + static_cast<int>(i % 2)) % 3 + 1;  // a different count in 1..3
    accepted += shapes_check(s.rgb, 32, w).match(), ++total;
    w = s.spec;
    w.background = s.background == 6 ? 7 : 6;  // white, or black when it was white
    if (w.background == w.colour) w.background = 8;
    accepted += shapes_check(s.rgb, 32, w).match(), ++total;
  }
  EXPECT_EQ(accepted, 0) << "of " << total;
}

TEST(ShapesDataset, CheckerToleratesNoise) {
  // A generated image is never clean: add +-30 per channel of deterministic noise.
  int ok = 0;
  uint32_t h = 12345;
  for (int64_t i = 0; i < 200; ++i) {
    ShapesSample s = shapes_sample(5, i);
    for (uint8_t& v : s.rgb) {
      h = h * 1664525u + 1013904223u;
      const int d = static_cast<int>(h >> 24) % 61 - 30;
      v = static_cast<uint8_t>(std::clamp(v + d, 0, 255));
    }
    ok += shapes_check(s.rgb, 32, s.spec).match();
  }
  EXPECT_GE(ok, 190);
}

// ---- digits and letters (DejaVu Sans Bold through stb_truetype) ----------------------------------

TEST(ShapesDatasetGlyphs, CaptionsParse) {
  EXPECT_EQ(shapes_caption_text({1, 0, ShapeKind::Circle, 6, '7'}), "a red digit 7 on a white background");
  EXPECT_EQ(shapes_caption_text({1, 2, ShapeKind::Circle, -1, 'K'}), "a blue letter K");
  for (const char* good : {"a red digit 7 on a white background", "a blue letter K", "a green digit 0"}) {
    const auto p = shapes_caption_parse(good);
    ASSERT_TRUE(p.has_value()) << good;
    EXPECT_EQ(shapes_caption_text(*p), good);
  }
  for (const char* bad : {"a red digit K", "a red letter 7", "two red digits 7", "a red letter O", "a red digit 77",
                          "a red letter k"})
    EXPECT_FALSE(shapes_caption_parse(bad).has_value()) << bad;
}

TEST(ShapesDatasetGlyphs, CheckerAcceptsCleanAndRejectsOtherGlyphs) {
  if (!glyph_font_available()) GTEST_SKIP() << "no DejaVu font in /usr/share/fonts/truetype/dejavu (fonts-dejavu-core)";
  int n_glyph = 0, ok = 0, wrong_ok = 0, recolour_ok = 0;
  std::string first_miss;
  const std::string set = shapes_glyph_set();
  for (int64_t i = 0; i < 800; ++i) {
    const ShapesSample s = shapes_sample(21, i, 32, true);
    EXPECT_TRUE(shapes_caption_parse(s.caption).has_value()) << s.caption;
    if (!s.spec.glyph) {
      EXPECT_TRUE(shapes_check(s.rgb, 32, s.spec).match()) << s.caption;
      continue;
    }
    ++n_glyph;
    const bool m = shapes_check(s.rgb, 32, s.spec).match();
    ok += m;
    if (!m && first_miss.empty()) first_miss = s.caption;
    ShapesCaption w = s.spec;
    w.glyph = set[(set.find(s.spec.glyph) + 1 + static_cast<size_t>(i) % (set.size() - 1)) % set.size()];
    wrong_ok += shapes_check(s.rgb, 32, w).match();
    w = s.spec;
    w.colour = (w.colour + 1) % kShapesForegroundColours;
    recolour_ok += shapes_check(s.rgb, 32, w).match();
  }
  EXPECT_GT(n_glyph, 150);
  EXPECT_LT(n_glyph, 250);
  EXPECT_GE(ok, n_glyph * 95 / 100) << "of " << n_glyph << "; first miss: " << first_miss;
  EXPECT_LE(wrong_ok, n_glyph / 50) << "of " << n_glyph;
  EXPECT_EQ(recolour_ok, 0);
}

TEST(ShapesDataset, CaptionTokens) {
  std::array<int32_t, kShapesCaptionTokens> a{}, b{};
  shapes_caption_tokenize("", a);
  EXPECT_EQ(a[0], 1);
  EXPECT_EQ(a[1], 0);
  shapes_caption_tokenize("a red digit 7 on a white background", a);  // the longest form: 8 words
  for (int32_t id : a) EXPECT_GE(id, 2);
  EXPECT_EQ(a[0], a[5]);  // "a" twice
  shapes_caption_tokenize("two red circles", b);
  EXPECT_NE(a[0], b[0]);
  EXPECT_EQ(a[1], b[1]);  // "red"
  EXPECT_EQ(b[3], 0);
  // Every caption of the data set tokenizes within the vocabulary, and different captions differ.
  for (int64_t i = 0; i < 200; ++i) {
    const ShapesSample s = shapes_sample(4, i);
    shapes_caption_tokenize(s.caption, a);
    for (int32_t id : a) EXPECT_LT(id, shapes_vocab_size());
  }
  EXPECT_THROW(shapes_caption_tokenize("a pink circle", a), Error);
  EXPECT_THROW(shapes_caption_tokenize("a red circle on a blue background a red", a), Error);
  std::array<int32_t, 3> small{};
  EXPECT_THROW(shapes_caption_tokenize("a red circle", small), Error);
}

TEST(ShapesDataset, BadInput) {
  const ShapesSample s = shapes_sample(1, 1);
  EXPECT_THROW(shapes_check(std::span<const uint8_t>(s.rgb.data(), s.rgb.size() - 1), 32, s.spec), Error);
  EXPECT_THROW(shapes_sample(1, 1, 8), Error);
  EXPECT_THROW(shapes_caption_text({4, 0, ShapeKind::Circle, -1}), Error);
}

}  // namespace
}  // namespace aigc::train
