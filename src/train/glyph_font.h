// Binary glyph bitmaps from a TrueType font on the system (Debian's fonts-dejavu-core:
// DejaVu Sans Bold), rasterised with stb_truetype. Used by the shapes data set for its digit and
// letter samples and by its checker's templates.
#pragma once

#include <cstdint>
#include <vector>

namespace aigc::train {

struct GlyphBitmap {
  int w = 0, h = 0;
  std::vector<uint8_t> on;  // [h, w], 1 where coverage >= 50 %
};

// True when the font file was found and parsed (loaded once, on first use; thread-safe).
bool glyph_font_available();
// The glyph of `c` scaled so the font's ascent-to-descent spans `pixel_height` pixels, cropped to
// its ink. Throws aigc::Error when the font is missing (hint: apt-get install fonts-dejavu-core).
GlyphBitmap glyph_render(char c, int pixel_height);

}  // namespace aigc::train
