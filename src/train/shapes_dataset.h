// A synthetic captioned image data set for training the built-in image model, and a deterministic
// checker that decides whether an image matches its caption.
//
// Each sample is a small RGB image (default 32x32) of one to three identical shapes (circle, square,
// triangle) of one colour on a plain background, captioned in a tiny grammar:
//   "a red circle", "two green squares on a white background", "three blue triangles"
// Samples are a pure function of (seed, index): no state, any index in any order, on any thread.
//
// The checker reads pixels only (no knowledge of how the image was made), so it can score images a
// model generates: every pixel snaps to the nearest palette colour; the most frequent colour is the
// background; the shapes are the 4-connected components of the most frequent other colour (specks
// below a few pixels are noise); each component's shape comes from its fill ratio (area over
// bounding box: square ~1, circle ~pi/4, triangle ~1/2). A glyph caption is checked by template
// matching: the shape-coloured pixels' bounding box against every glyph of the font stretched to
// it (best overlap, with a penalty for a different aspect ratio) must pick the caption's glyph.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aigc::train {

enum class ShapeKind : uint8_t { Circle, Square, Triangle };

constexpr int kShapesColourCount = 9;        // palette: red green blue yellow purple orange white black gray
constexpr int kShapesForegroundColours = 6;  // the first six are shape colours; any colour may be background

struct ShapesCaption {
  int count = 1;             // 1..3
  int colour = 0;            // palette index < kShapesForegroundColours
  ShapeKind shape = ShapeKind::Circle;
  int background = -1;       // palette index, or -1 when the caption does not name one
  char glyph = 0;            // a digit/letter sample ("a red digit 7", "a blue letter K"): one of
                             // shapes_glyph_set(); count is 1 and shape unused. 0: a shapes sample.
};

// Digits and capital letters that glyph samples use ('I' and 'O' left out: at 32 px they are a bar
// and a ring, indistinguishable from '1' and '0' without the font's fine detail).
const char* shapes_glyph_set();

struct ShapesSample {
  int size = 32;
  std::vector<uint8_t> rgb;  // [size, size, 3], row-major
  ShapesCaption spec;
  int background = 0;        // the background actually drawn (named in the caption or not)
  std::string caption;
};

const char* shapes_colour_name(int colour);
void shapes_colour_rgb(int colour, uint8_t rgb[3]);

// glyphs: a quarter of the samples are a digit or letter rendered from the system's DejaVu font
// (glyph_font.h; throws when it is missing). Without, the stream is shapes only (and does not
// depend on the font).
ShapesSample shapes_sample(uint64_t seed, int64_t index, int size = 32, bool glyphs = false);

std::string shapes_caption_text(const ShapesCaption& c);
// Parses the grammar above (case-sensitive, single spaces); nullopt for anything else.
std::optional<ShapesCaption> shapes_caption_parse(std::string_view text);

// Word-level tokens of the caption grammar, for the image model's text encoder: id 0 pads, id 1 is
// the empty caption (classifier-free guidance's unconditional input), then every word the grammar
// uses (count words, colours, shape words and plurals, "digit", "letter", the glyphs, "on",
// "background"). kShapesCaptionTokens covers the longest caption (8 words).
constexpr int kShapesCaptionTokens = 8;
int shapes_vocab_size();
// The words by token id ("<pad>", "<empty>", then the grammar's words): what shapes_caption_tokenize
// maps each word to, and what a checkpoint stores as its caption vocabulary.
const std::vector<std::string>& shapes_vocab();
// Writes kShapesCaptionTokens ids (padded with 0); "" gives {1, 0, ...}. Throws on an unknown word
// or a caption longer than kShapesCaptionTokens words.
void shapes_caption_tokenize(std::string_view caption, std::span<int32_t> ids);

struct ShapesCheck {
  bool colour = false, shape = false, count = false, background = false;  // background: true if unnamed
  int found_colour = -1, found_background = -1, found_count = 0;
  bool match() const { return colour && shape && count && background; }
};

// rgb [size, size, 3]; throws aigc::Error when rgb.size() != size * size * 3.
ShapesCheck shapes_check(std::span<const uint8_t> rgb, int size, const ShapesCaption& want);

}  // namespace aigc::train
