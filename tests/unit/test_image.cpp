// Image I/O against the twin (tests/ref/twin_image.py: files written and decoded by PIL, a 16-bit
// PNG and the expected text chunks built with zlib/struct), PNG writing round trips, corrupt files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/compare.h"
#include "common/refdump.h"
#include "formats/image.h"

using namespace aigc;
using test::RefDump;
namespace fs = std::filesystem;

namespace {

std::string ref_file(const char* name) { return test::ref_dir() + "/" + name; }

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

struct Chunk {
  std::string type;
  size_t offset;  // of the length field
  size_t size;    // whole chunk, 12 + data
};

// A small independent PNG chunk walker; checks each chunk's CRC with png_crc32.
std::vector<Chunk> png_chunks(const std::vector<uint8_t>& png) {
  std::vector<Chunk> out;
  EXPECT_GE(png.size(), 8u);
  size_t p = 8;
  while (p + 12 <= png.size()) {
    const uint32_t len = be32(&png[p]);
    if (p + 12 + len > png.size()) break;
    Chunk c{std::string(reinterpret_cast<const char*>(&png[p + 4]), 4), p, 12 + size_t{len}};
    EXPECT_EQ(png_crc32({&png[p + 4], 4 + size_t{len}}), be32(&png[p + 8 + len])) << "chunk " << c.type;
    out.push_back(c);
    p += c.size;
  }
  EXPECT_EQ(p, png.size()) << "trailing bytes after the last chunk";
  return out;
}

}  // namespace

TEST(Image, ReadsWhatPilReads) {
  RefDump d = RefDump::load("image_twin");
  struct Case {
    const char* file;
    const char* want;
    float atol;
  };
  // PNG and BMP are lossless: exact. 16-bit: v / 65535 in f32 (one rounding). JPEG: decoded by
  // the library PIL uses (libjpeg-turbo, same IDCT and upsampling): exact too.
  for (const Case& c : {Case{"image_rgb.png", "rgb_png.want", 0.0f}, Case{"image_rgba.png", "rgba_png.want", 0.0f},
                        Case{"image_grey.png", "grey_png.want", 0.0f}, Case{"image_rgb.bmp", "rgb_bmp.want", 0.0f},
                        Case{"image_palette.png", "palette_png.want", 0.0f},
                        Case{"image_palette_trns.png", "palette_trns_png.want", 0.0f},
                        Case{"image_grey_alpha.png", "grey_alpha_png.want", 0.0f},
                        Case{"image_palette.bmp", "palette_bmp.want", 0.0f},
                        Case{"image_1bit.bmp", "1bit_bmp.want", 0.0f},
                        Case{"image_rgb16.png", "rgb16_png.want", 1e-7f},
                        Case{"image_smooth.jpg", "smooth_jpg.want", 0.0f},
                        Case{"image_photo420.jpg", "photo420_jpg.want", 0.0f},
                        Case{"image_progressive.jpg", "progressive_jpg.want", 0.0f},
                        Case{"image_grey.jpg", "grey_jpg.want", 0.0f}}) {
    SCOPED_TRACE(c.file);
    Tensor img = image_read(ref_file(c.file));
    ASSERT_EQ(img.shape_vec(), d.get(c.want).shape_vec());
    EXPECT_TENSORS_CLOSE(img, d.get(c.want), c.atol, 0.0f);
  }
}

TEST(Image, PngRoundTrip) {
  // Values off the 1/255 grid, out of range and NaN: written clamped and rounded to nearest.
  Tensor img = test::random_f32({1, 3, 9, 17}, 11, -0.2f, 1.2f);
  img.at<float>(0, 1, 2, 3) = std::numeric_limits<float>::quiet_NaN();
  std::vector<uint8_t> png = image_encode_png(img);
  Tensor back = image_decode(png, "roundtrip.png");
  Tensor want = Tensor::empty(DType::F32, {1, 3, 9, 17});
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 9; ++y)
      for (int x = 0; x < 17; ++x) {
        const float v = img.at<float>(0, c, y, x);
        const float cl = std::isnan(v) ? 0.0f : std::min(1.0f, std::max(0.0f, v));
        want.at<float>(0, c, y, x) = std::nearbyint(cl * 255.0f) / 255.0f;
      }
  EXPECT_TENSORS_CLOSE(back, want, 0.0f, 0.0f);
  // [3, H, W] is accepted too, and a file write reads back the same.
  const std::string path = (fs::path(::testing::TempDir()) / "aigc_image_rt.png").string();
  image_write_png(path, img.select(0, 0));
  EXPECT_TENSORS_CLOSE(image_read(path), want, 0.0f, 0.0f);
  fs::remove(path);
}

TEST(Image, PngTextChunks) {
  // Must match twin_image.py's `texts`.
  const ImageText texts = {{"parameters", "a cat, Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42"},
                           {"Comment", ""},
                           {"prompt", "caf\u00e9 \u2615"}};
  RefDump d = RefDump::load("image_twin");
  std::vector<uint8_t> png = image_encode_png(test::random_f32({1, 3, 5, 6}, 3, 0.0f, 1.0f), texts);
  std::vector<Chunk> chunks = png_chunks(png);
  ASSERT_GE(chunks.size(), 6u);
  EXPECT_EQ(chunks[0].type, "IHDR");
  EXPECT_EQ(chunks.back().type, "IEND");
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i].first);
    const Tensor& want = d.get(fmt::format("text.{}.chunk", i));  // bytes with zlib's CRC
    const Chunk& c = chunks[1 + i];
    ASSERT_EQ(c.size, static_cast<size_t>(want.numel()));
    EXPECT_EQ(std::memcmp(&png[c.offset], want.data(), c.size), 0);
  }
  // The text does not disturb the pixels.
  EXPECT_EQ(image_decode(png).size(3), 6);
  EXPECT_THROW(image_encode_png(test::random_f32({1, 3, 2, 2}, 1), {{"", "x"}}), Error);
  EXPECT_THROW(image_encode_png(test::random_f32({1, 3, 2, 2}, 1), {{" lead", "x"}}), Error);
  EXPECT_THROW(image_encode_png(test::random_f32({1, 3, 2, 2}, 1), {{std::string(80, 'k'), "x"}}), Error);
}

TEST(Image, Crc32KnownValue) {
  // The CRC-32 check value of "123456789" (ITU-T V.42 / zlib): 0xCBF43926.
  const char* s = "123456789";
  EXPECT_EQ(png_crc32({reinterpret_cast<const uint8_t*>(s), 9}), 0xCBF43926u);
}

// An 8x8 grey baseline JPEG whose DC Huffman table has 256 symbols (254 codes of 8 bits, two of 9)
// and whose scan is SCAN (one DC code, then the AC end-of-block code "0"); all values 0, so
// libjpeg (and PIL) decode it to grey 128 whichever code the scan uses.
std::vector<uint8_t> jpeg_with_256_dc_codes(std::initializer_list<uint8_t> scan) {
  std::vector<uint8_t> b = {0xff, 0xd8};
  auto segment = [&](uint8_t marker, std::vector<uint8_t> payload) {
    const size_t n = payload.size() + 2;
    b.insert(b.end(), {0xff, marker, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n & 0xff)});
    b.insert(b.end(), payload.begin(), payload.end());
  };
  std::vector<uint8_t> dqt(65, 1);
  dqt[0] = 0;
  segment(0xdb, dqt);
  segment(0xc0, {8, 0, 8, 0, 8, 1, 1, 0x11, 0});
  std::vector<uint8_t> dc(17 + 256, 0);  // class 0 id 0; counts: [7] = 254, [8] = 2; values 0
  dc[1 + 7] = 254;
  dc[1 + 8] = 2;
  segment(0xc4, dc);
  std::vector<uint8_t> ac(18, 0);  // class 1 id 0: one 1-bit code, value 0 (end of block)
  ac[0] = 0x10;
  ac[1] = 1;
  segment(0xc4, ac);
  segment(0xda, {1, 1, 0x00, 0, 63, 0});
  b.insert(b.end(), scan);
  b.insert(b.end(), {0xff, 0xd9});
  return b;
}

TEST(Image, JpegThatStbCouldNotDecode) {
  // Symbol 255's code 111111101 made stb_image 2.27 (the former JPEG decoder) fail its Huffman
  // assertion and abort (CVE-2022-29977: index 255 doubles as its "not in the fast table" flag;
  // found by fuzz_image in CI). libjpeg decodes the file as PIL does: grey 128.
  for (uint8_t second : {0x00, 0x80}) {
    Tensor img = image_decode(jpeg_with_256_dc_codes({0xfe, second}), "codes.jpg");
    ASSERT_EQ(img.numel(), 3 * 8 * 8);
    for (int64_t i = 0; i < img.numel(); ++i) ASSERT_EQ(img.ptr<float>()[i], 128.0f / 255) << i;
  }
}

TEST(Image, JpegRefusals) {
  auto where_and_what = [](const std::vector<uint8_t>& b, const std::string& name) {
    try {
      image_decode(b, name);
    } catch (const Error& e) {
      EXPECT_EQ(e.where(), name);
      return std::string(e.what());
    }
    ADD_FAILURE() << name << " decoded";
    return std::string();
  };
  EXPECT_NE(where_and_what(file_bytes(ref_file("image_cmyk.jpg")), "cmyk.jpg").find("CMYK"), std::string::npos);
  // Cut in the middle of the scan: libjpeg would fill grey, PIL says "image file is truncated".
  const std::vector<uint8_t> photo = file_bytes(ref_file("image_photo420.jpg"));
  const std::vector<uint8_t> cut(photo.begin(), photo.begin() + static_cast<std::ptrdiff_t>(photo.size() * 3 / 4));
  EXPECT_NE(where_and_what(cut, "cut.jpg").find("truncated"), std::string::npos);
  // Without its end marker (every pixel there): refused too, as PIL refuses it.
  std::vector<uint8_t> no_eoi = jpeg_with_256_dc_codes({0xfe, 0x00});
  no_eoi.resize(no_eoi.size() - 2);
  EXPECT_NE(where_and_what(no_eoi, "no_eoi.jpg").find("truncated"), std::string::npos);
  // A 65536 x 65536 header: refused before any pixel is decoded.
  std::vector<uint8_t> huge = jpeg_with_256_dc_codes({0xfe, 0x00});
  const size_t sof = 2 + (4 + 65) + 5;  // SOI, DQT segment, then SOF's marker, length, precision
  ASSERT_EQ(huge[sof - 5], 0xff);
  ASSERT_EQ(huge[sof - 4], 0xc0);
  huge[sof] = huge[sof + 1] = huge[sof + 2] = huge[sof + 3] = 0xff;
  EXPECT_NE(where_and_what(huge, "huge.jpg").find("pixels"), std::string::npos);
}

TEST(Image, CorruptFilesThrow) {
  const std::vector<uint8_t> good = file_bytes(ref_file("image_rgb.png"));
  ASSERT_GT(good.size(), 60u);
  EXPECT_THROW(image_decode({}, "empty"), Error);
  EXPECT_THROW(image_decode(std::vector<uint8_t>(good.begin(), good.begin() + 40), "truncated.png"), Error);
  std::vector<uint8_t> bad = good;
  for (size_t i = 41; i < bad.size() - 12; ++i) bad[i] ^= 0x5a;  // IDAT data scrambled
  EXPECT_THROW(image_decode(bad, "scrambled.png"), Error);
  const std::string text = "not an image at all";
  EXPECT_THROW(image_decode({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "text.txt"), Error);
  std::vector<uint8_t> jpg = file_bytes(ref_file("image_smooth.jpg"));
  EXPECT_THROW(image_decode(std::vector<uint8_t>(jpg.begin(), jpg.begin() + 30), "truncated.jpg"), Error);
  EXPECT_THROW(image_read(ref_file("no_such_image.png")), Error);
  // stb reads zeros past a BMP's end: a truncated one must not decode to a partly black image.
  const std::vector<uint8_t> bmp = file_bytes(ref_file("image_rgb.bmp"));
  EXPECT_NO_THROW(image_decode(bmp, "whole.bmp"));
  EXPECT_THROW(image_decode(std::vector<uint8_t>(bmp.begin(), bmp.end() - 1), "short.bmp"), Error);
  EXPECT_THROW(image_decode(std::vector<uint8_t>(bmp.begin(), bmp.begin() + 60), "header_only.bmp"), Error);
  // 25 bytes, an OS/2 header (12 bytes) cut inside its bit count: stb reads on in zeros and would
  // decode 30983 x 1792 black pixels (found by fuzz_image).
  const std::vector<uint8_t> os2 = {0x42, 0x4d, 0xac, 0xfe, 0xff, 0xff, 0xff, 0xc9, 0xff, 0xff, 0x03, 0x01, 0x00,
                                    0x00, 0x0c, 0x00, 0x00, 0x00, 0x07, 0x79, 0x00, 0x07, 0x01, 0x00, 0x04};
  EXPECT_THROW(image_decode(os2, "os2.bmp"), Error);
  // A DHT table declaring 300 codes (16 lengths x ~19): stb_image 2.27 wrote past its table on it.
  std::vector<uint8_t> dht = {0xff, 0xd8, 0xff, 0xc4, 0x01, 0x42, 0x00};
  for (int k = 0; k < 16; ++k) dht.push_back(k < 15 ? 19 : 15);
  dht.resize(dht.size() + 300, 0x01);
  EXPECT_THROW(image_decode(dht, "dht.jpg"), Error);
  jpg.insert(jpg.begin(), 0xff);  // a byte before SOI: not a JPEG (nor to PIL)
  EXPECT_THROW(image_decode(jpg, "fill.jpg"), Error);
  try {
    image_decode({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "text.txt");
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "text.txt");
  }
  // Wrong tensors for writing.
  EXPECT_THROW(image_encode_png(Tensor::empty(DType::F32, {1, 4, 2, 2})), Error);
  EXPECT_THROW(image_encode_png(Tensor::empty(DType::F16, {1, 3, 2, 2})), Error);
  EXPECT_THROW(image_encode_png(Tensor::empty(DType::F32, {2, 3, 2, 2})), Error);
}
