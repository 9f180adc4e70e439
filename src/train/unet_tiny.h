// A small text-conditioned UNet for pixel-space diffusion training, built on the autograd Graph
// (train/autograd.h). One or two resolution steps down and up (c = ch, c1 = ch1, c2 = ch2):
//   text:  ctx = layer_norm(tok[ids] + pos)                       [B*Tc, Cc]
//   time:  e = w2 silu(w1 temb + b1) + b2                          [B, c]   (temb: sinusoidal, given)
//   h0 = conv_in(x); h1 = res0(h0) (c); m = res1(conv_down(h1)) (stride 2, c -> c1)
//   m2 = attn(m): m + tokens(gn(m)) + self-attention + cross-attention on ctx (pre-layer-norm residuals)
//   levels 1: h = m2
//   levels 2: m3 = res3(down2(m2)) (stride 2, c1 -> c2); m5 = res4(attn2(m3)) (c2);
//             h = res5(cat[up2(nearest_x2(m5)), m2]) (2 c1 -> c1)
//   h2 = res2(cat[conv_up(nearest_x2(h)), h1]) (c1 -> c, then 2c -> c); out = conv_out(silu(gn(h2)))
//   loss = mse(out, noise)
//   res(x): r = conv1(silu(gn1 x)) + emb(silu e) per channel; r = conv2(silu(gn2 r)); r + skip(x)
//           (skip: a 1x1 conv when the channel count changes, else identity)
// With levels 1 and ch1 = ch (the defaults) the graph and its parameter names are those of the first
// version (models/shapes.safetensors). The exact formulas (and parameter names) are those of
// tests/ref/twin_train_image_unet.py.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "train/autograd.h"

namespace aigc::train {

struct UnetConfig {
  int64_t image = 8;       // S: square image side (a multiple of 2^levels)
  int64_t ch = 8;          // c: channels at full resolution (and the time embedding width)
  int64_t groups = 2;      // group_norm groups (divides c, c1, c2)
  int64_t t_dim = 8;       // sinusoidal time embedding width (given as input)
  int64_t text_vocab = 12;
  int64_t text_len = 5;    // Tc: caption tokens per sample
  int64_t text_dim = 6;    // Cc
  int64_t heads = 2;       // divides c1 and c2
  int64_t levels = 1;      // resolution steps: 1 or 2 (the image side divisible by 2^levels)
  int64_t ch1 = 0;         // c1: channels at S/2 (0: ch)
  int64_t ch2 = 0;         // c2: channels at S/4 with levels 2 (0: c1; must be 0 with levels 1)
  float eps = 1e-5f;
};

// The channel counts in effect (0 resolved) and the factor the image side must be a multiple of.
inline int64_t unet_ch1(const UnetConfig& c) { return c.ch1 > 0 ? c.ch1 : c.ch; }
inline int64_t unet_ch2(const UnetConfig& c) { return c.ch2 > 0 ? c.ch2 : unet_ch1(c); }
inline int64_t unet_size_multiple(const UnetConfig& c) { return c.levels == 2 ? 4 : 2; }
// aigc::Error (one message naming every rule) unless cfg describes a graph UnetTrainer can build.
void unet_config_check(const UnetConfig& cfg);

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
  Var res_block(Var x, Var e, int index, int64_t cin, int64_t cout);
  // x + self- and cross-attention on x's tokens ([B, c, side, side]), parameters PREFIX.*
  Var attn_block(Var x, Var ctx, const std::string& prefix, int64_t c, int64_t side);

  UnetConfig cfg_;
  int64_t B_;
  Graph g_;
  Var x_, temb_, noise_, out_, loss_;
  Ids ids_, pos_;
};

}  // namespace aigc::train
