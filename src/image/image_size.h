// Image size checks and the latent shape of SD's VAE (8x downsampling, 4 channels).
//
//   image_size_check(512, 768);                       // ok; 500 would throw aigc::Error with a hint
//   auto shape = latent_shape(2, 512, 768);           // {2, 4, 96, 64}: [B, C, H/8, W/8]
#pragma once

#include <array>
#include <cstdint>

namespace aigc::image {

constexpr int kLatentChannels = 4;
constexpr int kLatentFactor = 8;      // pixels per latent cell, each way
constexpr int kImageSizeMax = 8192;   // pixels, each way: beyond this an SD UNet is out of its depth

// width and height must be > 0, <= kImageSizeMax and multiples of 8; else aigc::Error.
void image_size_check(int width, int height);
// [batch, 4, height / 8, width / 8]; checks the size (and batch >= 1) first.
std::array<int64_t, 4> latent_shape(int batch, int width, int height);

}  // namespace aigc::image
