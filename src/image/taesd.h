// Taesd: the TAESD family of tiny autoencoders (madebyollin/taesd: TAESD for SD1/SD2, TAESDXL,
// TAESD3 and TAEF1 with 16 latent channels, TAEF2 with 32), one encoder or one decoder per file.
//
// Architecture (taesd.py; each file is one nn.Sequential, its keys the module indices):
//   conv(a, b)  3x3, padding 1 (stride 2 where it downsamples)      keys "i.weight" [, "i.bias"]
//   Block(n)    relu(conv(relu(conv(relu(conv(x))))) + x)           keys "i.conv.{0,2,4}.{weight,bias}"
//               (+ a 1x1 "i.skip.weight" when the channel count changes)
//               TAEF2 mid blocks first add a "pool" branch, x = x + pool(x), pool =
//               conv1x1(n -> 4n) -> GroupNorm(4 groups, eps 1e-5) -> relu -> conv1x1(4n -> n), no biases
//               (keys "i.pool.0.weight", "i.pool.1.{weight,bias}", "i.pool.3.weight").
//   Encoder     conv(3, 64), Block, 3 x [conv stride 2 (no bias), Block x3], conv(64, latent)
//   Decoder     Clamp (tanh(x / 3) * 3), conv(latent, 64), ReLU, 3 x [Block x3, Upsample x2 (nearest),
//               conv (no bias)], Block, conv(64, 3)
// Parameter-free layers have no keys; load() derives the layer sequence from the keys and shapes
// (a missing index is the Clamp at 0 of a decoder, a ReLU after a conv, an Upsample after a
// block; an encoder conv without bias has stride 2) and checks it: 3-channel image side, a
// consistent channel chain, exactly 8x spatial scale, every key used.
//
// Value ranges (as in taesd.py): the encoder takes RGB images in [0, 1] (not [-1, 1]); the decoder
// returns RGB in about [0, 1], NOT clamped (clamp when converting to pixels; image_write_png does).
// Latents are the diffusion model's own latents, unscaled (diffusers AutoencoderTiny has
// scaling_factor 1.0); TAEF2 works on the FLUX.2 VAE's 32-channel latents at 1/8 resolution, not on
// the 2x2-patchified 128-channel sequence the FLUX.2 transformer sees (packing is the caller's).
//
//   Taesd dec = Taesd::load("taef2_decoder.safetensors");   // f16 or f32 weights, widened once
//   Tensor img = dec.decode(latent);                          // [N, 32, h, w] -> [N, 3, 8h, 8w]
//
// decode()/encode() reuse buffers sized on first use (grown for a larger input), so a Taesd is not
// for concurrent use from several threads. Memory: three activation buffers of 64 x (largest H x W)
// floats each, e.g. 3 x 256 MiB to decode a 1024 x 1024 image.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace aigc {

class SafetensorsFile;

enum class TaesdKind { Encoder, Decoder };

class Taesd {
 public:
  // Throws aigc::Error (naming the file and the key) for a file that is not a TAESD-family
  // encoder or decoder.
  static Taesd load(const std::string& path);
  static Taesd from_safetensors(const SafetensorsFile& file, const std::string& name);
  // Move-only: a copy would share the activation buffers.
  Taesd(Taesd&&) = default;
  Taesd& operator=(Taesd&&) = default;
  Taesd(const Taesd&) = delete;
  Taesd& operator=(const Taesd&) = delete;

  TaesdKind kind() const { return kind_; }
  int64_t latent_channels() const { return latent_channels_; }
  bool has_pool_blocks() const;  // TAEF2-style mid blocks

  // Decoder only. latent [N, C, h, w] (any convertible type and strides) -> image [N, 3, 8h, 8w].
  void decode(const Tensor& latent, Tensor& image);
  Tensor decode(const Tensor& latent);
  // Encoder only. image [N, 3, H, W] in [0, 1] -> latent [N, C, ceil(H/8), ceil(W/8)] (each
  // stride-2 conv rounds up: (H + 1) / 2).
  void encode(const Tensor& image, Tensor& latent);
  Tensor encode(const Tensor& image);

  // The output shape for an input shape (checked as decode/encode check it).
  std::vector<int64_t> output_shape(std::span<const int64_t> input_shape) const;

  enum class LayerKind { Conv, Relu, Clamp, Upsample, Block };
  struct Conv {
    Tensor w;     // f32 [O, C, k, k]
    Tensor b;     // f32 [O], or undefined
    int stride = 1;
    bool has_bias() const { return b.ndim() == 1; }
  };
  struct Layer {
    LayerKind kind = LayerKind::Relu;
    Conv conv;                     // Conv
    Conv c0, c2, c4, skip;         // Block: skip.w undefined when the channel count is kept
    bool has_skip = false;
    bool has_pool = false;
    Conv pool0, pool3;             // Block with pool: 1x1, no bias
    Tensor gn_gamma, gn_beta;      // [4n]
    int64_t c_in = 0, c_out = 0;
  };
  const std::vector<Layer>& layers() const { return layers_; }

 private:
  Taesd() = default;
  void run(const Tensor& input, Tensor& output);
  void buffers_reserve(std::span<const int64_t> input_shape);

  TaesdKind kind_ = TaesdKind::Decoder;
  int64_t latent_channels_ = 0;
  std::string name_;
  std::vector<Layer> layers_;
  // Reused activation storage: three ping-pong buffers and two for the pool branch.
  Tensor buf_[3], pool_buf_[2];
  int64_t buf_elems_ = 0, pool_elems_ = 0;
};

}  // namespace aigc
