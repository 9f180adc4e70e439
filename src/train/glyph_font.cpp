// TrueType glyphs through stb_truetype (see glyph_font.h).
#include "train/glyph_font.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "core/error.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#endif
#define STBTT_STATIC
#define STB_TRUETYPE_IMPLEMENTATION
#include <stb/stb_truetype.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace aigc::train {

namespace {

struct Font {
  std::vector<unsigned char> data;
  stbtt_fontinfo info{};
  bool ok = false;
};

const Font& font() {
  static const std::unique_ptr<Font> f = [] {
    auto r = std::make_unique<Font>();
    for (const char* path : {"/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                             "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"}) {
      FILE* fp = std::fopen(path, "rb");
      if (!fp) continue;
      std::vector<unsigned char> buf;
      unsigned char chunk[65536];
      size_t n;
      while ((n = std::fread(chunk, 1, sizeof chunk, fp)) > 0) buf.insert(buf.end(), chunk, chunk + n);
      std::fclose(fp);
      if (buf.size() < 12) continue;
      r->data = std::move(buf);
      const int off = stbtt_GetFontOffsetForIndex(r->data.data(), 0);
      if (off >= 0 && stbtt_InitFont(&r->info, r->data.data(), off)) {
        r->ok = true;
        break;
      }
    }
    return r;
  }();
  return *f;
}

}  // namespace

bool glyph_font_available() { return font().ok; }

GlyphBitmap glyph_render(char c, int pixel_height) {
  const Font& f = font();
  AIGC_CHECK(f.ok, "glyph_render: no DejaVu font in /usr/share/fonts/truetype/dejavu; hint: apt-get install fonts-dejavu-core");
  AIGC_CHECK(pixel_height >= 4 && pixel_height <= 512, "glyph_render: pixel height {} out of [4, 512]", pixel_height);
  const float scale = stbtt_ScaleForPixelHeight(&f.info, static_cast<float>(pixel_height));
  int w = 0, h = 0, xo = 0, yo = 0;
  unsigned char* bm = stbtt_GetCodepointBitmap(&f.info, scale, scale, static_cast<unsigned char>(c), &w, &h, &xo, &yo);
  GlyphBitmap g;
  if (!bm) return g;
  // crop to the pixels that are on
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (bm[y * w + x] >= 128) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (x1 >= 0) {
    g.w = x1 - x0 + 1;
    g.h = y1 - y0 + 1;
    g.on.resize(static_cast<size_t>(g.w) * static_cast<size_t>(g.h));
    for (int y = 0; y < g.h; ++y)
      for (int x = 0; x < g.w; ++x) g.on[static_cast<size_t>(y * g.w + x)] = bm[(y0 + y) * w + x0 + x] >= 128;
  }
  stbtt_FreeBitmap(bm, nullptr);
  return g;
}

}  // namespace aigc::train
