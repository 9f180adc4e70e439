// Analytic FLOP counts of the SD UNet and VAE decoder (a multiply-add = 2 FLOPs, as GEMM
// benchmarks count 2*M*N*K), for `aigc bench image`'s achieved GFLOP/s. Counted: convolutions,
// linear layers and the two attention matmuls (Q K^T and P V); norms, activations, softmax and
// the time embedding are left out (under 1% of the total at SD sizes).
//   SD 1.5 UNet, one evaluation of batch 1 at 512 x 512 (latent 64 x 64): about 0.8 TFLOP, so a CFG
//   step (batch 2) is about 1.6 TFLOP; the VAE decoder at 512 x 512 about 2.5 TFLOP (the figures).
#pragma once

#include <cstdint>

#include "image/unet.h"
#include "image/vae.h"

namespace aigc::image {

// One UNet evaluation of ONE latent [in_channels, h, w] with a context of `tokens` tokens.
double unet_flops(const UNetConfig& c, int64_t h, int64_t w, int64_t tokens = 77);
// The decoder (post_quant_conv + decoder) for one latent [z, h, w].
double vae_decode_flops(const VaeConfig& c, int64_t h, int64_t w);

}  // namespace aigc::image
