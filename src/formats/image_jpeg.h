// JPEG decoding (to interleaved RGB8) with libjpeg-turbo (Debian's libjpeg62-turbo), the library
// PIL decodes with: the same IDCT and chroma upsampling, so the pixels are PIL's exactly. (stb_image
// 2.27, used before, differed by a few levels and has assertion failures and undefined shifts that
// corrupt files reach: fuzz_image found two.) Used by image_decode (image.h) for files starting
// with the JPEG SOI marker.
//
// Baseline and progressive, grey and YCbCr (RGB out; grey replicated). Refused with an Error naming
// the file: CMYK / YCCK files, images over max_pixels, more than kJpegScansMax scans (a hostile
// progressive file could otherwise spend minutes), and data ending before the image does (PIL's
// "image file is truncated"). Other corrupt-data warnings are tolerated, as PIL tolerates them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace aigc {

constexpr int kJpegScansMax = 1000;

struct JpegImage {
  std::vector<uint8_t> rgb;  // H * W * 3, interleaved
  int w = 0, h = 0;
};

JpegImage jpeg_decode(std::span<const uint8_t> bytes, const std::string& name, int64_t max_pixels);

// Whether the bytes start as a JPEG file does (SOI marker, then a marker).
bool jpeg_signature(std::span<const uint8_t> bytes);

}  // namespace aigc
