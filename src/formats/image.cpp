// Image files: stb_image for decoding PNG and BMP (JPEG: image_jpeg.cpp), stb_image_write for the
// PNG pixels, our own text chunks.
#include "formats/image.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/mapped_file.h"
#include "formats/image_jpeg.h"

namespace aigc {
namespace {

// The allocations stb_image holds during one decode on this thread (a handful), so that a failed
// check can throw without leaking them; outside a StbScope stb's allocations are not tracked.
struct StbLive {
  std::vector<void*> ptrs;
};
thread_local StbLive* t_stb_live = nullptr;

void stb_track(void* p) {
  if (!p || !t_stb_live) return;
  try {
    t_stb_live->ptrs.push_back(p);
  } catch (...) {
    std::free(p);
    throw;
  }
}

void* stb_malloc(size_t n) {
  void* p = std::malloc(n);
  stb_track(p);
  return p;
}

void stb_untrack(void* p) {
  if (!t_stb_live || !p) return;
  auto& v = t_stb_live->ptrs;
  for (size_t i = v.size(); i-- > 0;)
    if (v[i] == p) {
      v[i] = v.back();
      v.pop_back();
      return;
    }
}

void* stb_realloc(void* p, size_t n) {
  void* q = std::realloc(p, n);
  if (q) {  // on failure p stays allocated (and tracked)
    stb_untrack(p);
    stb_track(q);
  }
  return q;
}

void stb_free(void* p) {
  stb_untrack(p);
  std::free(p);
}

// Thrown out of stb by a failed check; image_decode turns it into an Error naming the file.
struct StbCheckFailed {
  const char* cond;
};

[[noreturn]] void stb_check_failed(const char* cond) { throw StbCheckFailed{cond}; }

// One decode: stb's allocations are tracked; whatever is still held when the scope ends (a throw
// out of stb) is freed. keep() takes the decoded pixels out of the scope's hands.
class StbScope {
 public:
  StbScope() : prev_(t_stb_live) {
    live_.ptrs.reserve(16);
    t_stb_live = &live_;
  }
  ~StbScope() {
    t_stb_live = prev_;
    for (void* p : live_.ptrs) std::free(p);
  }
  StbScope(const StbScope&) = delete;
  StbScope& operator=(const StbScope&) = delete;
  void keep(void* p) { stb_untrack(p); }

 private:
  StbLive live_;
  StbLive* prev_;
};

}  // namespace
}  // namespace aigc

// stb compiled here, static (no symbols exported, no clash with another copy), decoders limited to
// the formats we accept; its own asserts become our invariant checks.
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"
#pragma clang diagnostic ignored "-Wmissing-field-initializers"
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wimplicit-fallthrough"
// stb 2.27 calls memcpy(NULL, src, 0) for an empty PNG IDAT (harmless, but UBSan's nonnull check
// stops the fuzzer there); only that check is off in stb's functions, bounds checks stay on.
#pragma clang attribute push(__attribute__((no_sanitize("nonnull-attribute"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 16)
// stb 2.27 has asserts that hostile files reached (its JPEG decoder's Huffman check, CVE-2022-29977,
// found by fuzz_image; JPEG is now libjpeg's, image_jpeg.h). Should a PNG or BMP reach one, the
// failed check throws: the file is refused like any corrupt one, and the allocations stb made so
// far are freed (StbScope), instead of the process aborting.
#define STBI_ASSERT(x) \
  do {                 \
    if (!(x)) ::aigc::stb_check_failed(#x); \
  } while (0)
#define STBI_MALLOC(n) ::aigc::stb_malloc(n)
#define STBI_REALLOC(p, n) ::aigc::stb_realloc(p, n)
#define STBI_FREE(p) ::aigc::stb_free(p)
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#define STBIW_ASSERT(x) AIGC_ASSERT(x)
#include <stb/stb_image_write.h>
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace aigc {

namespace {

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

void put_u32_be(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

// One PNG chunk: length, type, data, CRC over type + data.
void chunk_append(std::vector<uint8_t>& out, const char type[4], std::span<const uint8_t> data) {
  AIGC_ASSERT(data.size() <= 0x7fffffffu);
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32_be(out, png_crc32({out.data() + start, out.size() - start}));
}

std::vector<uint8_t> text_chunk_data(const std::string& key, const std::string& text, bool& international) {
  // PNG keywords: 1-79 Latin-1 printable characters, no leading/trailing/double spaces.
  if (key.empty() || key.size() > 79)
    error_throw(fmt::format("PNG text key '{}' must have 1 to 79 characters", key), "image_encode_png");
  for (size_t i = 0; i < key.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(key[i]);
    const bool ok = (c >= 32 && c <= 126) && !(c == ' ' && (i == 0 || i + 1 == key.size() || key[i - 1] == ' '));
    if (!ok)
      error_throw(fmt::format("PNG text key '{}' has a character PNG keywords forbid", key), "image_encode_png",
                  "use printable ASCII without leading, trailing or double spaces");
  }
  international = false;
  for (unsigned char c : text)
    if (c >= 0x80 || c == 0) international = true;
  if (international && text.find('\0') != std::string::npos)
    error_throw(fmt::format("PNG text for key '{}' contains a NUL byte", key), "image_encode_png");
  std::vector<uint8_t> d(key.begin(), key.end());
  d.push_back(0);
  if (international) {  // iTXt: compression flag 0, method 0, empty language tag, empty translated key
    d.insert(d.end(), {0, 0, 0, 0});
  }
  d.insert(d.end(), text.begin(), text.end());
  return d;
}

// stb_image reads zeros past the end of a BMP's pixel data, so a truncated file (or a 60-byte one
// declaring 12000 x 3000 pixels) would decode to a partly or wholly black image: refused here.
// Uncompressed rows are padded to 4 bytes; stb accepts no RLE, so every BMP it reads is that.
void bmp_size_check(std::span<const uint8_t> b, int64_t w, int64_t h, const std::string& name) {
  if (b.size() < 2 || b[0] != 'B' || b[1] != 'M') return;
  // the header's fields as stb reads them: zeros past the end (a 25-byte file can declare 30983 x 1792)
  auto u8 = [&](size_t o) { return o < b.size() ? int64_t{b[o]} : int64_t{0}; };
  auto u16 = [&](size_t o) { return u8(o) | u8(o + 1) << 8; };
  auto u32 = [&](size_t o) { return u16(o) | u16(o + 2) << 16; };
  const int64_t offset = u32(10), header = u32(14), bpp = u16(header == 12 ? 24 : 28);
  // (pixels start at the offset, or after the header if the offset points into it)
  const int64_t need = std::max(offset, 14 + header) + (bpp * w + 31) / 32 * 4 * h;
  if (static_cast<int64_t>(b.size()) < need)
    error_throw(fmt::format("truncated BMP: {} x {} pixels at {} bits need {} bytes, the file has {}", w, h, bpp,
                            need, b.size()),
                name, "the file is incomplete or damaged");
}

}  // namespace

uint32_t png_crc32(std::span<const uint8_t> bytes, uint32_t crc) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (uint8_t b : bytes) crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

namespace {

// Interleaved RGB (8 or 16 bits) -> f32 [1, 3, H, W] in [0, 1].
template <typename T>
Tensor planar_from_rgb(const T* p, int w, int h) {
  constexpr float kMax = sizeof(T) == 1 ? 255.0f : 65535.0f;
  Tensor out = Tensor::empty(DType::F32, {1, 3, h, w});
  float* o = out.ptr<float>();
  const int64_t plane = int64_t{w} * h;
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) o[c * plane + i] = p[i * 3 + c] / kMax;
  return out;
}

Tensor image_decode_stb(std::span<const uint8_t> bytes, const std::string& name) {
  const char* hint = "expected a PNG, JPEG or BMP image";
  if (bytes.size() > static_cast<size_t>(INT_MAX)) error_throw("image file larger than 2 GiB", name);
  const int len = static_cast<int>(bytes.size());
  StbScope stb;  // every stb call below may throw on a failed check
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &comp))
    error_throw(fmt::format("cannot read image: {}", stbi_failure_reason()), name, hint);
  if (w <= 0 || h <= 0 || int64_t{w} * h > kImagePixelsMax)
    error_throw(fmt::format("image is {} x {} pixels; at most {} pixels are accepted", w, h, kImagePixelsMax), name);
  bmp_size_check(bytes, w, h, name);
  const bool wide = stbi_is_16_bit_from_memory(bytes.data(), len) != 0;
  int w2 = 0, h2 = 0;
  std::unique_ptr<void, StbFree> pixels(
      wide ? static_cast<void*>(stbi_load_16_from_memory(bytes.data(), len, &w2, &h2, &comp, 3))
           : static_cast<void*>(stbi_load_from_memory(bytes.data(), len, &w2, &h2, &comp, 3)));
  if (!pixels) error_throw(fmt::format("cannot decode image: {}", stbi_failure_reason()), name, hint);
  stb.keep(pixels.get());
  if (w2 != w || h2 != h)  // header read twice: a file whose two readings disagree is corrupt
    error_throw(fmt::format("image header says {} x {}, decoder gave {} x {}", w, h, w2, h2), name, hint);
  return wide ? planar_from_rgb(static_cast<const uint16_t*>(pixels.get()), w, h)
              : planar_from_rgb(static_cast<const uint8_t*>(pixels.get()), w, h);
}

}  // namespace

Tensor image_decode(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.empty()) error_throw("empty image file", name, "expected a PNG, JPEG or BMP image");
  if (jpeg_signature(bytes)) {
    const JpegImage j = jpeg_decode(bytes, name, kImagePixelsMax);
    return planar_from_rgb(j.rgb.data(), j.w, j.h);
  }
  try {
    return image_decode_stb(bytes, name);
  } catch (const StbCheckFailed& e) {
    error_throw(fmt::format("cannot decode image: stb_image's check '{}' failed", e.cond), name,
                "the file is damaged, or uses something this decoder cannot read (re-save it as PNG)");
  }
}

Tensor image_read(const std::string& path) {
  std::shared_ptr<MappedFile> f = MappedFile::open(path);
  return image_decode({f->data(), f->size()}, path);
}

std::vector<uint8_t> image_encode_png(const Tensor& image, const ImageText& text) {
  const bool batched = image.ndim() == 4;
  if (!((batched && image.size(0) == 1 && image.size(1) == 3) || (image.ndim() == 3 && image.size(0) == 3)))
    error_throw(fmt::format("image must be [1, 3, H, W] or [3, H, W], got {}", image.shape_str()), "image_encode_png");
  if (image.type() != DType::F32) error_throw(fmt::format("image must be f32, got {}", image.shape_str()), "image_encode_png");
  const int64_t h = image.size(-2), w = image.size(-1);
  if (h < 1 || w < 1 || h * w > kImagePixelsMax)
    error_throw(fmt::format("image {} is empty or over {} pixels", image.shape_str(), kImagePixelsMax),
                "image_encode_png");
  // Interleave to RGB8: clamp to [0, 1] (NaN -> 0), round to nearest.
  std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
  const Tensor img = batched ? image.select(0, 0) : image;
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        float v = img.at<float>(c, y, x);
        v = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
        rgb[static_cast<size_t>((y * w + x) * 3 + c)] = static_cast<uint8_t>(v * 255.0f + 0.5f);
      }
  int len = 0;
  std::unique_ptr<unsigned char, decltype(&std::free)> png(
      stbi_write_png_to_mem(rgb.data(), static_cast<int>(w * 3), static_cast<int>(w), static_cast<int>(h), 3, &len),
      &std::free);
  if (!png || len < 33) error_throw("PNG encoding failed (out of memory?)", "image_encode_png");
  // stb writes signature, IHDR (8 + 25 bytes), IDAT..., IEND: text chunks go after IHDR.
  AIGC_ASSERT(std::memcmp(png.get(), kPngSignature, 8) == 0 && std::memcmp(png.get() + 12, "IHDR", 4) == 0);
  constexpr size_t kAfterIhdr = 8 + 4 + 4 + 13 + 4;
  std::vector<uint8_t> out(png.get(), png.get() + kAfterIhdr);
  for (const auto& [key, value] : text) {
    bool international = false;
    const std::vector<uint8_t> d = text_chunk_data(key, value, international);
    chunk_append(out, international ? "iTXt" : "tEXt", d);
  }
  out.insert(out.end(), png.get() + kAfterIhdr, png.get() + len);
  return out;
}

void image_write_png(const std::string& path, const Tensor& image, const ImageText& text) {
  const std::vector<uint8_t> bytes = image_encode_png(image, text);
  const std::string tmp = path + ".tmp";
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) error_throw(fmt::format("cannot create file: {}", std::strerror(errno)), tmp,
                       "check the folder exists and is writable");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), fp) == bytes.size();
  const int err = errno;
  if (std::fclose(fp) != 0 || !ok) {
    std::remove(tmp.c_str());
    error_throw(fmt::format("write failed: {}", std::strerror(err)), tmp, "check free disk space");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    error_throw(fmt::format("cannot rename {} to the final name: {}", tmp, std::strerror(e)), path);
  }
}

}  // namespace aigc
