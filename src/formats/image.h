// Image files: read PNG / JPEG / BMP into a float tensor, write PNG (with text chunks).
//
// Reading: JPEG with libjpeg-turbo (image_jpeg.h: PIL's decoder, so the same pixels), PNG and BMP
// with stb_image (Debian libstb-dev's header, compiled into image.cpp with only those decoders;
// a truncated BMP is refused, where stb would read zeros). The result is f32 [1, 3, H, W], RGB in [0, 1] (8-bit: v / 255; 16-bit
// PNG: v / 65535). Grey images are replicated to RGB. Alpha is DROPPED (not composited), as
// PIL's Image.convert("RGB") does, which is what taesd.py and the diffusers pipelines use.
// Images over kImagePixelsMax pixels are refused before decoding (memory bound for hostile files).
//
// Writing: 8-bit RGB PNG from f32 [1, 3, H, W] (or [3, H, W]) in [0, 1]: clamped, then rounded
// to nearest (v * 255 + 0.5). Text chunks (key -> text) go right after IHDR: tEXt when the text
// is ASCII, else iTXt (uncompressed UTF-8), e.g. {"parameters", "..."} as A1111 writes them.
//
//   Tensor img = image_read("in.jpg");                         // [1, 3, H, W]
//   image_write_png("out.png", img, {{"parameters", "a cat, Steps: 20"}});
//
// Any unreadable, corrupt or unsupported file is one aigc::Error naming the file and the decoder's
// reason.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace aigc {

constexpr int64_t kImagePixelsMax = int64_t{1} << 26;  // 64 Mpixel (8192 x 8192)

using ImageText = std::vector<std::pair<std::string, std::string>>;  // PNG text chunks, in order

Tensor image_decode(std::span<const uint8_t> bytes, const std::string& name = "<memory>");
Tensor image_read(const std::string& path);

std::vector<uint8_t> image_encode_png(const Tensor& image, const ImageText& text = {});
// Writes PATH.tmp, then renames it to PATH.
void image_write_png(const std::string& path, const Tensor& image, const ImageText& text = {});

// The PNG chunk CRC (ISO 3309 / ITU-T V.42 CRC-32 over the chunk type and data).
uint32_t png_crc32(std::span<const uint8_t> bytes, uint32_t crc = 0);

}  // namespace aigc
