// UNet: Stable Diffusion 1.x / 2.x's denoising UNet (ldm's openaimodel.UNetModel), eps or v
// prediction alike (the prediction type is the sampler's business).
//
// CompVis names (prefix "model.diffusion_model."): time_embed.{0,2}, input_blocks.N.M (ResBlock
// "in_layers/emb_layers/out_layers/skip_connection", SpatialTransformer "norm/proj_in/
// transformer_blocks.K.{attn1,attn2,ff,norm1..3}/proj_out", Downsample "op"), middle_block.{0,1,2},
// output_blocks.N.M (Upsample "conv"), out.{0,2}. Diffusers names: conv_in, time_embedding.linear_{1,2},
// down_blocks.L.{resnets,attentions,downsamplers}, mid_block, up_blocks.L.{resnets,attentions,
// upsamplers}, conv_norm_out, conv_out.
// SD 1.x: proj_in/proj_out are 1x1 convolutions, 8 heads everywhere, context 768.
// SD 2.x: proj_in/proj_out are Linear, heads of 64 channels, context 1024.
// Inpainting checkpoints take 9 input channels (latent, mask, masked-image latent).
//
//   WeightSource w(file, "model.diffusion_model.", "UNet");        // or (unet_file, "", "UNet")
//   UNetConfig heads;  heads.num_head_channels = 64;                 // SD 2.x; SD 1.x: num_heads = 8
//   UNet unet = UNet::load(w, KeyLayout::CompVis, heads, ops::Precision::BF16);
//   unet.forward(latent, timesteps, context, eps);                    // [B, 4, h, w] -> [B, 4, h, w]
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "backend/cpu/precision.h"
#include "core/tensor.h"
#include "image/sd_key_layout.h"
#include "image/weight_source.h"

namespace aigc::image {

struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  int64_t model_channels = 320;
  std::vector<int64_t> channel_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<bool> attention_levels = {true, true, true, false};  // per level of channel_mult
  int64_t transformer_depth = 1;
  int64_t context_dim = 768;
  bool linear_proj = false;        // SD 2.x
  // Heads are not in the weights: num_head_channels > 0 gives heads = channels / num_head_channels
  // (SD 2.x: 64); else num_heads heads everywhere (SD 1.x: 8).
  int64_t num_heads = 8;
  int64_t num_head_channels = -1;
  int64_t norm_groups = 32;
};

// How the UNet keeps its large weights (convolution kernels and linear weights).
//   Default  packed once in the compute precision (bf16: 2 bytes per weight; SD 1.5: 1.6 GiB).
//   Q8_0     GGML's Q8_0 (32 int8 + one f16 scale: 1.06 bytes per weight; SD 1.5: 0.87 GiB);
//            linear layers run on it directly (ops::linear's quantised paths), convolutions
//            dequantise their kernel into one reused buffer right before running. Weights whose
//            rows (C*k*k, or K) are no multiple of 32 stay as in Default.
enum class UNetWeightType { Default, Q8_0 };
// "default" or "q8_0" (aigc::Error naming the flag `what` otherwise).
UNetWeightType unet_weight_type_parse(std::string_view name, const char* what = "--unet-type");
std::string_view unet_weight_type_name(UNetWeightType t);

class UNet {
 public:
  // Reads every dimension from the tensor shapes except the heads, taken from `heads`
  // (num_heads / num_head_channels). Checks every tensor it uses and that none is left over.
  static UNet load(const WeightSource& w, KeyLayout layout, const UNetConfig& heads, ops::Precision precision,
                   UNetWeightType weights = UNetWeightType::Default);
  UNet(UNet&&) noexcept;
  UNet& operator=(UNet&&) noexcept;
  ~UNet();

  const UNetConfig& config() const;
  // x [B, in_channels, H, W] (H and W multiples of 2^(levels-1), i.e. 8 for SD), timesteps [B],
  // context [B, T, context_dim] (T any multiple of 77 chunks) -> out [B, out_channels, H, W].
  // Reuses internal buffers across calls of the same size (not for concurrent use).
  void forward(const Tensor& x, std::span<const float> timesteps, const Tensor& context, Tensor& out);
  size_t weight_bytes() const;
  // Bytes of the activation buffers forward() keeps for reuse (sized by the largest call so far).
  size_t activation_bytes() const;

 private:
  UNet();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The sinusoidal timestep embedding SD uses (ldm timestep_embedding, flip_sin_to_cos: cos first):
// emb[i] = cos(t * f_i) for i < dim/2, sin(t * f_{i - dim/2}) after, f_i = 10000^(-i / (dim/2)).
void timestep_embedding(std::span<const float> timesteps, int64_t dim, Tensor& out);  // out [B, dim]

}  // namespace aigc::image
