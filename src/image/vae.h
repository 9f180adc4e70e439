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
  int64_t ch = 128;
  std::vector<int64_t> ch_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  int64_t z_channels = 4;
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
  // image [B, 3, H, W] in [-1, 1], H and W multiples of 8 -> the posterior's mean and log-variance
  // [B, z, H/8, W/8] (encoder, quant_conv, split; logvar clamped to [-30, 20] as ldm does).
  void encode(const Tensor& image, Tensor& mean, Tensor& logvar);
  size_t weight_bytes() const;

 private:
  Vae();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aigc::image
