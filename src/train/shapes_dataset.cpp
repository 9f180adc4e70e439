// Synthetic shapes data set and its checker (see shapes_dataset.h).
#include "train/shapes_dataset.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "train/glyph_font.h"

namespace aigc::train {

namespace {

constexpr std::array<const char*, kShapesColourCount> kColourNames = {"red",    "green", "blue",  "yellow", "purple",
                                                                      "orange", "white", "black", "gray"};
constexpr uint8_t kPalette[kShapesColourCount][3] = {{220, 40, 40},  {40, 170, 60},  {40, 80, 220},
                                                     {235, 215, 40}, {150, 60, 190}, {245, 140, 30},
                                                     {245, 245, 245}, {20, 20, 20},   {128, 128, 128}};
constexpr std::array<const char*, 3> kShapeNames = {"circle", "square", "triangle"};
constexpr std::array<const char*, 3> kCountWords = {"a", "two", "three"};
constexpr std::string_view kGlyphs = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
constexpr int kTemplatePixels = 48;  // height the checker's glyph templates are rendered at

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Templates of every glyph, rendered once.
const std::vector<GlyphBitmap>& glyph_templates() {
  static const std::vector<GlyphBitmap> t = [] {
    std::vector<GlyphBitmap> v;
    for (char c : kGlyphs) v.push_back(glyph_render(c, kTemplatePixels));
    return v;
  }();
  return t;
}

// SplitMix64: a fixed, portable generator (std:: distributions differ between libraries).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
};

bool inside(ShapeKind k, int x0, int y0, int s, int x, int y) {
  const double u = (x + 0.5 - x0) / s, v = (y + 0.5 - y0) / s;  // pixel centre in the unit box
  if (u < 0 || u > 1 || v < 0 || v > 1) return false;
  switch (k) {
    case ShapeKind::Square: return true;
    case ShapeKind::Circle: return (u - 0.5) * (u - 0.5) + (v - 0.5) * (v - 0.5) <= 0.25;
    case ShapeKind::Triangle: return 2.0 * std::abs(u - 0.5) <= v;  // apex up, base at the bottom
  }
  return false;
}

int nearest_colour(const uint8_t* p) {
  int best = 0;
  int64_t best_d = INT64_MAX;
  for (int c = 0; c < kShapesColourCount; ++c) {
    int64_t d = 0;
    for (int i = 0; i < 3; ++i) d += int64_t{p[i] - kPalette[c][i]} * (p[i] - kPalette[c][i]);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

}  // namespace

const char* shapes_colour_name(int colour) {
  AIGC_CHECK(colour >= 0 && colour < kShapesColourCount, "shapes: colour index {} out of range", colour);
  return kColourNames[static_cast<size_t>(colour)];
}

void shapes_colour_rgb(int colour, uint8_t rgb[3]) {
  AIGC_CHECK(colour >= 0 && colour < kShapesColourCount, "shapes: colour index {} out of range", colour);
  for (int i = 0; i < 3; ++i) rgb[i] = kPalette[colour][i];
}

const char* shapes_glyph_set() { return kGlyphs.data(); }

const std::vector<std::string>& shapes_vocab() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> w{"<pad>", "<empty>"};
    for (const char* c : kCountWords) w.emplace_back(c);
    for (const char* c : kColourNames) w.emplace_back(c);
    for (const char* c : kShapeNames) w.emplace_back(c), w.emplace_back(std::string(c) + "s");
    w.emplace_back("digit");
    w.emplace_back("letter");
    for (char c : kGlyphs) w.emplace_back(1, c);
    w.emplace_back("on");
    w.emplace_back("background");
    return w;
  }();
  return v;
}

int shapes_vocab_size() { return static_cast<int>(shapes_vocab().size()); }

void shapes_caption_tokenize(std::string_view caption, std::span<int32_t> ids) {
  AIGC_CHECK(ids.size() == static_cast<size_t>(kShapesCaptionTokens), "shapes_caption_tokenize: {} ids, want {}",
             ids.size(), kShapesCaptionTokens);
  std::fill(ids.begin(), ids.end(), 0);
  if (caption.empty()) {
    ids[0] = 1;
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i <= caption.size();) {
    const size_t j = std::min(caption.find(' ', i), caption.size());
    const std::string_view word = caption.substr(i, j - i);
    const auto& v = shapes_vocab();
    const auto it = std::find(v.begin() + 2, v.end(), word);
    AIGC_CHECK(it != v.end(), "shapes_caption_tokenize: unknown word '{}' in '{}'", word, caption);
    AIGC_CHECK(n < ids.size(), "shapes_caption_tokenize: '{}' has more than {} words", caption, kShapesCaptionTokens);
    ids[n++] = static_cast<int32_t>(it - v.begin());
    i = j + 1;
  }
}

std::string shapes_caption_text(const ShapesCaption& c) {
  if (c.glyph) {
    AIGC_CHECK(kGlyphs.find(c.glyph) != std::string_view::npos && c.colour >= 0 && c.colour < kShapesForegroundColours &&
                   c.background >= -1 && c.background < kShapesColourCount,
               "shapes: glyph caption spec out of range");
    std::string t = std::string("a ") + kColourNames[static_cast<size_t>(c.colour)] + (is_digit(c.glyph) ? " digit " : " letter ") + c.glyph;
    if (c.background >= 0) t += std::string(" on a ") + kColourNames[static_cast<size_t>(c.background)] + " background";
    return t;
  }
  AIGC_CHECK(c.count >= 1 && c.count <= 3 && c.colour >= 0 && c.colour < kShapesForegroundColours &&
                 c.background >= -1 && c.background < kShapesColourCount,
             "shapes: caption spec out of range");
  std::string t = std::string(kCountWords[static_cast<size_t>(c.count - 1)]) + " " + kColourNames[static_cast<size_t>(c.colour)] +
                  " " + kShapeNames[static_cast<size_t>(c.shape)] + (c.count > 1 ? "s" : "");
  if (c.background >= 0) t += std::string(" on a ") + kColourNames[static_cast<size_t>(c.background)] + " background";
  return t;
}

std::optional<ShapesCaption> shapes_caption_parse(std::string_view text) {
  std::vector<std::string_view> w;
  for (size_t i = 0; i <= text.size();) {
    const size_t j = std::min(text.find(' ', i), text.size());
    w.push_back(text.substr(i, j - i));
    i = j + 1;
  }
  ShapesCaption c;
  if ((w.size() == 4 || w.size() == 8) && (w[2] == "digit" || w[2] == "letter")) {  // "a red digit 7"
    if (w[0] != "a" || w[3].size() != 1 || kGlyphs.find(w[3][0]) == std::string_view::npos ||
        is_digit(w[3][0]) != (w[2] == "digit"))
      return std::nullopt;
    c.glyph = w[3][0];
    w.erase(w.begin() + 2, w.begin() + 4);
    w.insert(w.begin() + 2, "circle");  // parsed below as a shape word; the shape is unused
  }
  if (w.size() != 3 && w.size() != 7) return std::nullopt;
  auto find = [](const auto& table, std::string_view s) {
    for (size_t i = 0; i < table.size(); ++i)
      if (s == table[i]) return static_cast<int>(i);
    return -1;
  };
  const int count = find(kCountWords, w[0]);
  if (count < 0) return std::nullopt;
  c.count = count + 1;
  c.colour = find(kColourNames, w[1]);
  if (c.colour < 0 || c.colour >= kShapesForegroundColours) return std::nullopt;
  std::string_view sh = w[2];
  if (c.count > 1) {
    if (sh.empty() || sh.back() != 's') return std::nullopt;
    sh.remove_suffix(1);
  }
  const int shape = find(kShapeNames, sh);
  if (shape < 0) return std::nullopt;
  if (!c.glyph) c.shape = static_cast<ShapeKind>(shape);
  if (w.size() == 7) {
    if (w[3] != "on" || w[4] != "a" || w[6] != "background") return std::nullopt;
    c.background = find(kColourNames, w[5]);
    if (c.background < 0 || c.background == c.colour) return std::nullopt;
  }
  return c;
}

ShapesSample shapes_sample(uint64_t seed, int64_t index, int size, bool glyphs) {
  AIGC_CHECK(size >= 16 && size <= 1024, "shapes_sample: size {} must be in [16, 1024]", size);
  Rng rng{seed * 0x2545F4914F6CDD1Dull ^ static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull};
  rng.next();
  ShapesSample s;
  s.size = size;
  s.spec.count = 1 + rng.below(3);
  s.spec.colour = rng.below(kShapesForegroundColours);
  s.spec.shape = static_cast<ShapeKind>(rng.below(3));
  s.background = rng.below(kShapesColourCount - 1);
  if (s.background >= s.spec.colour) ++s.background;  // any colour but the shapes'
  s.spec.background = rng.below(2) ? s.background : -1;
  if (glyphs && rng.below(4) == 0) {
    s.spec.count = 1;
    s.spec.shape = ShapeKind::Circle;
    s.spec.glyph = kGlyphs[static_cast<size_t>(rng.below(static_cast<int>(kGlyphs.size())))];
    s.caption = shapes_caption_text(s.spec);
    const GlyphBitmap gb = glyph_render(s.spec.glyph, size * (70 + rng.below(21)) / 100);  // 70-90 % of the side
    AIGC_ASSERT(gb.w > 0 && gb.w <= size - 2 && gb.h <= size - 2, "glyph {} does not fit", s.spec.glyph);
    const int x0 = 1 + rng.below(size - gb.w - 1), y0 = 1 + rng.below(size - gb.h - 1);
    s.rgb.resize(static_cast<size_t>(size) * size * 3);
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const bool on = x >= x0 && x < x0 + gb.w && y >= y0 && y < y0 + gb.h &&
                        gb.on[static_cast<size_t>((y - y0) * gb.w + (x - x0))];
        const int c = on ? s.spec.colour : s.background;
        for (int i = 0; i < 3; ++i) s.rgb[(static_cast<size_t>(y) * size + x) * 3 + i] = kPalette[c][i];
      }
    return s;
  }
  s.caption = shapes_caption_text(s.spec);

  // Sizes: one shape 35-55 % of the side, several 22-33 %; boxes kept >= 2 px apart so the
  // checker's connected components stay separate.
  const int n = s.spec.count;
  const int lo = n == 1 ? size * 35 / 100 : size * 22 / 100, hi = n == 1 ? size * 55 / 100 : size * 33 / 100;
  int side = lo + rng.below(hi - lo + 1);
  std::array<std::array<int, 2>, 3> pos{};
  for (int placed = 0; placed < n;) {
    bool ok = false;
    for (int tries = 0; tries < 200 && !ok; ++tries) {
      const int x = 1 + rng.below(size - side - 1), y = 1 + rng.below(size - side - 1);
      ok = true;
      for (int j = 0; j < placed; ++j)
        if (x < pos[j][0] + side + 2 && pos[j][0] < x + side + 2 && y < pos[j][1] + side + 2 && pos[j][1] < y + side + 2)
          ok = false;
      if (ok) pos[static_cast<size_t>(placed)] = {x, y};
    }
    if (ok) {
      ++placed;
    } else {  // crowded: smaller shapes, start over
      side = std::max(5, side - 1);
      placed = 0;
    }
  }
  s.rgb.resize(static_cast<size_t>(size) * size * 3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      int c = s.background;
      for (int j = 0; j < n; ++j)
        if (inside(s.spec.shape, pos[j][0], pos[j][1], side, x, y)) c = s.spec.colour;
      for (int i = 0; i < 3; ++i) s.rgb[(static_cast<size_t>(y) * size + x) * 3 + i] = kPalette[c][i];
    }
  return s;
}

ShapesCheck shapes_check(std::span<const uint8_t> rgb, int size, const ShapesCaption& want) {
  AIGC_CHECK(size > 0 && rgb.size() == static_cast<size_t>(size) * size * 3,
             "shapes_check: {} bytes is not a {}x{} RGB image", rgb.size(), size, size);
  const int np = size * size;
  std::vector<int> label(static_cast<size_t>(np));
  std::array<int, kShapesColourCount> hist{};
  for (int i = 0; i < np; ++i) ++hist[static_cast<size_t>(label[static_cast<size_t>(i)] = nearest_colour(&rgb[static_cast<size_t>(i) * 3]))];
  ShapesCheck r;
  r.found_background = static_cast<int>(std::max_element(hist.begin(), hist.end()) - hist.begin());
  hist[static_cast<size_t>(r.found_background)] = 0;
  r.found_colour = static_cast<int>(std::max_element(hist.begin(), hist.end()) - hist.begin());
  if (hist[static_cast<size_t>(r.found_colour)] == 0) r.found_colour = -1;

  // Components of the shape colour (4-connected), flood fill with an explicit stack.
  const int min_area = std::max(4, np / 200);  // specks of noise are not shapes
  std::vector<int> comp(static_cast<size_t>(np), -1), stack;
  int n_shape[3] = {0, 0, 0};
  int bx0 = size, by0 = size, bx1 = -1, by1 = -1;  // union of the kept components' boxes
  for (int start = 0; start < np && r.found_colour >= 0; ++start) {
    if (label[static_cast<size_t>(start)] != r.found_colour || comp[static_cast<size_t>(start)] >= 0) continue;
    int area = 0, x0 = size, y0 = size, x1 = -1, y1 = -1;
    stack.assign(1, start);
    comp[static_cast<size_t>(start)] = start;
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      const int x = p % size, y = p / size;
      ++area;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      const int nb[4][2] = {{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}};
      for (const auto& q : nb) {
        if (q[0] < 0 || q[0] >= size || q[1] < 0 || q[1] >= size) continue;
        const int qi = q[1] * size + q[0];
        if (label[static_cast<size_t>(qi)] == r.found_colour && comp[static_cast<size_t>(qi)] < 0) {
          comp[static_cast<size_t>(qi)] = start;
          stack.push_back(qi);
        }
      }
    }
    if (area < min_area) continue;
    ++r.found_count;
    bx0 = std::min(bx0, x0), by0 = std::min(by0, y0), bx1 = std::max(bx1, x1), by1 = std::max(by1, y1);
    const double fill = static_cast<double>(area) / ((x1 - x0 + 1) * (y1 - y0 + 1));
    // square ~1, circle ~0.785 (pi/4), triangle ~0.5 (+ edge pixels at small sizes)
    ++n_shape[fill >= 0.9 ? 1 : fill >= 0.68 ? 0 : 2];
  }
  r.colour = r.found_colour == want.colour;
  r.background = want.background < 0 || want.background == r.found_background;
  if (want.glyph) {
    // Template matching in the union box: overlap (IoU) of the pixels with each glyph stretched
    // to the box, minus a penalty for the glyph's own aspect ratio differing from the box's.
    r.count = r.found_count >= 1;
    r.shape = false;
    if (r.found_count == 0) return r;
    const int bw = bx1 - bx0 + 1, bh = by1 - by0 + 1;
    const auto& tpl = glyph_templates();
    double best = -1e9;
    char best_c = 0;
    for (size_t k = 0; k < tpl.size(); ++k) {
      const GlyphBitmap& t = tpl[k];
      if (t.w == 0) continue;
      int inter = 0, uni = 0;
      for (int y = 0; y < bh; ++y)
        for (int x = 0; x < bw; ++x) {
          const bool a = label[static_cast<size_t>((by0 + y) * size + bx0 + x)] == r.found_colour;
          const bool b = t.on[static_cast<size_t>((y * t.h / bh) * t.w + x * t.w / bw)] != 0;
          inter += a && b;
          uni += a || b;
        }
      const double aspect = std::log((static_cast<double>(bw) / bh) / (static_cast<double>(t.w) / t.h));
      const double score = static_cast<double>(inter) / std::max(uni, 1) - 0.5 * std::abs(aspect);
      if (score > best) best = score, best_c = kGlyphs[k];
    }
    r.shape = best_c == want.glyph;
    return r;
  }
  r.count = r.found_count == want.count;
  r.shape = r.found_count > 0 && n_shape[static_cast<int>(want.shape)] == r.found_count;
  return r;
}

}  // namespace aigc::train
