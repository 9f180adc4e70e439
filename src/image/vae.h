// Vae: Stable Diffusion's KL autoencoder (ldm AutoencoderKL / diffusers AutoencoderKL), encoder and
// decoder, 8x spatial scale, 4 latent channels.
//
// CompVis names (prefix "first_stage_model."): encoder.{conv_in, down.L.block.M, down.L.downsample,
// mid.block_1, mid.attn_1 (q/k/v/proj_out as 1x1 convs), mid.block_2, norm_out, conv_out},
// quant_conv, post_quant_conv, decoder.{conv_in, mid.*, up.L.block.M, up.L.upsample, norm_out,
// conv_out}. Note CompVis numbers decoder levels bottom-up (up.3 runs first). Diffusers names:
// encoder.down_blocks.L.resnets.M / downsamplers.0.conv, mid_block.attentions.0 (to_q/to_k/to_v/
// to_out.0 Linear, or the older query/key/value/proj_attn), decoder.up_blocks.L (top-down),
// conv_norm_out, quant_conv, post_quant_conv.
//
// Values: images in [-1, 1]; latents UNscaled (the pipeline multiplies by the scaling factor,
// 0.18215 for SD 1.x/2.x, after encoding and divides before decoding).
//
//   auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open("v1-5.safetensors"));
//   Vae vae = Vae::load(WeightSource(file, "first_stage_model.", "VAE"), KeyLayout::CompVis,
//                       ops::Precision::F32, /*with_encoder*/ false);
//   Tensor img = Tensor::empty(DType::F32, {1, 3, 512, 512});
//   vae.decode(latent, img);                  // latent [1, 4, 64, 64], already divided by 0.18215
//   vae.decode_tiled(big_latent, big_img);    // bounded memory for large images (seams blended)
//
// Layers (ldm model.py): ResnetBlock x + conv2(silu(norm2(conv1(silu(norm1(x)))))) (1x1 nin_shortcut
// when the channels change), GroupNorm 32 groups eps 1e-6; mid attention: one head over the H*W
// positions; Downsample pads right and bottom by one, then conv 3x3 stride 2; Upsample nearest x2
// then conv 3x3. Every dimension comes from the tensor shapes (level count and widths, blocks per
// level, latent channels); the attention weights may be [C, C] (Linear) or [C, C, 1, 1] (conv).
//
// Memory: a batch is run one image at a time, so memory does not grow with the batch. Activations
// live in three reused buffers; the decoder's x2 upsample + conv runs in bands of rows, so the
// upsampled tensor never exists whole. Peak activation memory to decode an H x W image (f32):
// (c1 + 2 c0) * H * W * 4 bytes, c0 / c1 the channels of the first two levels (128 / 256 for SD:
// 512 MiB at 512 x 512, 2 GiB at 1024 x 1024), plus two bands of at most 16 MiB each and four attention
// buffers of c_mid * (H/8) * (W/8) floats (32 MiB at 512 x 512). Encoding: about 3 c0 * H * W * 4
// bytes (384 MiB at 512 x 512). decode_tiled bounds this to that of one tile (512 MiB for the
// default 64-latent tiles) whatever the image size. Not counted: what a convolution itself holds
// while it runs (layout reorders of its input and output, if the kernel makes them). Buffers grow
// to the largest size seen and are reused; a Vae is not for concurrent use from several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cpu/precision.h"
#include "core/tensor.h"
#include "image/sd_key_layout.h"
#include "image/weight_source.h"

namespace aigc::image {

struct VaeConfig {
  int64_t ch = 128;                             // channels of level 0 (ch * ch_mult[0]; ch_mult[0] = 1)
  std::vector<int64_t> ch_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 4;                       // latent channels (ldm embed_dim)
  int64_t image_channels = 3;
  int64_t norm_groups = 32;
};

class Vae {
 public:
  // Dimensions from the tensor shapes. with_encoder false: the encoder's tensors are skipped (txt2img
  // needs only the decoder; saves memory) and encode() throws.
  static Vae load(const WeightSource& w, KeyLayout layout, ops::Precision precision, bool with_encoder = true);
  Vae(Vae&&) noexcept;
  Vae& operator=(Vae&&) noexcept;
  ~Vae();

  const VaeConfig& config() const;
  bool has_encoder() const;
  // latent [B, z, h, w] -> image [B, 3, 8h, 8w] (post_quant_conv, decoder), about [-1, 1], unclamped.
  void decode(const Tensor& latent, Tensor& image);
  // The same, decoding overlapping tiles of tile_latent x tile_latent latents (fewer along an axis
  // shorter than that) placed every tile_latent - overlap, the last one flush with the far edge,
  // and blending their overlaps with linear ramps (weights (p + 0.5) / L across an overlap of L
  // pixels, normalised by the sum of the weights). The decoder's GroupNorm statistics and attention
  // see one tile, so the result differs slightly from decode(); a tile covering the whole latent
  // gives exactly decode(). 0 <= overlap < tile_latent.
  void decode_tiled(const Tensor& latent, Tensor& image, int64_t tile_latent = 64, int64_t overlap = 8);
  // image [B, 3, H, W] in [-1, 1], H and W multiples of 8 -> the posterior's mean and log-variance
  // [B, z, H/8, W/8] (encoder, quant_conv, split; logvar clamped to [-30, 20] as ldm does).
  void encode(const Tensor& image, Tensor& mean, Tensor& logvar);
  size_t weight_bytes() const;
  // Bytes the reused activation buffers hold now (they grow to the largest input seen).
  size_t buffer_bytes() const;
  // Spatial factor between image and latent: 2^(levels - 1), 8 for SD.
  int64_t scale() const;
  // Rows per band of the decoder's upsample + conv (0: automatic, bands of at most 16 MiB and an
  // eighth of the image, at least 8 rows). Tests use small values to exercise the band seams.
  void upsample_band_rows_set(int64_t rows);

 private:
  Vae();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aigc::image
