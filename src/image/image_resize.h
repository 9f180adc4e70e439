// Resizing for the SD pipeline: init images and masks to the output size, latents for hires fix.
//
//   image_resize_crop   scales the image so that it covers W x H (aspect kept), then crops the
//                       centre (A1111's "Crop and resize"). Resampling is separable with a triangle
//                       (bilinear) kernel whose support widens with the down-scale factor, as PIL's
//                       Image.resize(BILINEAR) does, so a large photo is averaged, not aliased.
//   latent_upscale      integer factor, nearest (each cell repeated) or bilinear (PyTorch
//                       F.interpolate(mode="bilinear", align_corners=False): half-pixel centres,
//                       edges clamped), A1111's "Latent" / "Latent (nearest)" hires upscalers.
//   mask_to_latent      [1, 1, H, W] -> [1, 1, H/8, W/8], the mean of each 8 x 8 cell.
#pragma once

#include "core/tensor.h"

namespace aigc::image {

// img: f32 [1, C, h, w] (any size) -> f32 [1, C, height, width].
Tensor image_resize_crop(const Tensor& img, int width, int height);
// x: f32 [B, C, h, w] -> [B, C, h * scale, w * scale].
Tensor latent_upscale(const Tensor& x, int scale, bool nearest);
// mask: f32 [1, 1, H, W], H and W multiples of 8 -> [1, 1, H / 8, W / 8].
Tensor mask_to_latent(const Tensor& mask);
// RGB [1, 3, H, W] in [0, 1] -> luminance [1, 1, H, W] (ITU-R 601: PIL's convert("L") weights).
Tensor image_to_gray(const Tensor& img);

}  // namespace aigc::image
