// A small text-conditioned UNet for pixel-space diffusion training, built on the autograd Graph
// (train/autograd.h). One resolution step down and up:
//   text:  ctx = layer_norm(tok[ids] + pos)                       [B*Tc, Cc]
//   time:  e = w2 silu(w1 temb + b1) + b2                          [B, c]   (temb: sinusoidal, given)
//   h0 = conv_in(x); h1 = res0(h0); m = res1(conv_down(h1)) (stride 2)
//   m2 = m + tokens(gn(m)) + self-attention + cross-attention on ctx (pre-layer-norm residuals)
//   h2 = res2(cat[conv_up(nearest_x2(m2)), h1]); out = conv_out(silu(gn(h2)));  loss = mse(out, noise)
//   res(x): r = conv1(silu(gn1 x)) + emb(silu e) per channel; r = conv2(silu(gn2 r)); r + skip(x)
// The exact formulas (and parameter names) are those of tests/ref/twin_train_image_unet.py.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "train/autograd.h"

namespace aigc::train {

struct UnetConfig {
  int64_t image = 8;       // S: square image side (even)
  int64_t ch = 8;          // c: channels at both resolutions
  int64_t groups = 2;      // group_norm groups (divides c)
  int64_t t_dim = 8;       // sinusoidal time embedding width (given as input)
  int64_t text_vocab = 12;
  int64_t text_len = 5;    // Tc: caption tokens per sample
  int64_t text_dim = 6;    // Cc
  int64_t heads = 2;       // divides c
  float eps = 1e-5f;
};

class UnetTrainer {
 public:
  UnetTrainer(const UnetConfig& cfg, int64_t batch);

  Graph& graph() { return g_; }
  const UnetConfig& config() const { return cfg_; }
  Tensor& x() { return g_.value(x_); }            // [B, 3, S, S] noisy images
  Tensor& temb() { return g_.value(temb_); }      // [B, t_dim]
  Tensor& noise() { return g_.value(noise_); }    // [B, 3, S, S] the target
  std::span<int32_t> text_ids() { return g_.ids_data(ids_); }  // [B * Tc]
  Tensor& prediction() { return g_.value(out_); }  // [B, 3, S, S] after forward()

  // Fresh parameters: weights normal with std 1/sqrt(fan_in) (text embeddings std 1), norm gains
  // (names ending ".g") 1, biases 0. Deterministic in seed.
  void params_init(uint64_t seed);

  float forward() { return g_.forward(loss_); }
  float forward_backward();
  // 1 for weight matrices and convolution kernels (decayed), 0 for biases and norm gains.
  std::vector<uint8_t> decay_mask();

 private:
  Var res_block(Var x, Var e, int index, int64_t cin);

  UnetConfig cfg_;
  int64_t B_;
  Graph g_;
  Var x_, temb_, noise_, out_, loss_;
  Ids ids_, pos_;
};

}  // namespace aigc::train
