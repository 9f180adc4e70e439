#include "image/sd_flops.h"

#include <vector>

namespace aigc::image {

namespace {

double conv(int64_t cin, int64_t cout, int64_t k, int64_t hw_out) { return 2.0 * cin * cout * k * k * hw_out; }

double resblock(int64_t cin, int64_t cout, int64_t hw) {
  return conv(cin, cout, 3, hw) + conv(cout, cout, 3, hw) + (cin != cout ? conv(cin, cout, 1, hw) : 0.0);
}

// ldm SpatialTransformer with `depth` BasicTransformerBlocks (self-attn, cross-attn, GEGLU ff).
double transformer(int64_t c, int64_t n, int64_t ctx, int64_t tokens, int64_t depth) {
  const double lin = 2.0 * c * c * n;  // one C x C linear over n tokens
  double f = 2 * lin;                  // proj_in, proj_out (1x1 conv or linear: same count)
  for (int64_t d = 0; d < depth; ++d) {
    f += 4 * lin + 2.0 * 2.0 * n * n * c;                              // attn1: q k v out, QK^T, PV
    f += 2 * lin + 2.0 * 2.0 * ctx * c * tokens + 2.0 * 2.0 * n * tokens * c;  // attn2
    f += 2.0 * n * (c * 8 * c + 4 * c * c);                            // GEGLU: C -> 2x4C, 4C -> C
  }
  return f;
}

}  // namespace

double unet_flops(const UNetConfig& c, int64_t h, int64_t w, int64_t tokens) {
  const int64_t mc = c.model_channels, levels = static_cast<int64_t>(c.channel_mult.size());
  auto attn = [&](size_t l) { return l < c.attention_levels.size() && c.attention_levels[l]; };
  double f = conv(c.in_channels, mc, 3, h * w);
  std::vector<int64_t> skips = {mc};
  int64_t ch = mc, hh = h, ww = w;
  for (int64_t l = 0; l < levels; ++l) {
    const int64_t out = mc * c.channel_mult[static_cast<size_t>(l)];
    for (int64_t r = 0; r < c.num_res_blocks; ++r) {
      f += resblock(ch, out, hh * ww);
      ch = out;
      if (attn(static_cast<size_t>(l))) f += transformer(ch, hh * ww, c.context_dim, tokens, c.transformer_depth);
      skips.push_back(ch);
    }
    if (l + 1 < levels) {
      hh = (hh + 1) / 2, ww = (ww + 1) / 2;
      f += conv(ch, ch, 3, hh * ww);
      skips.push_back(ch);
    }
  }
  f += 2 * resblock(ch, ch, hh * ww) + transformer(ch, hh * ww, c.context_dim, tokens, c.transformer_depth);
  for (int64_t l = levels - 1; l >= 0; --l) {
    const int64_t out = mc * c.channel_mult[static_cast<size_t>(l)];
    for (int64_t r = 0; r <= c.num_res_blocks; ++r) {
      const int64_t skip = skips.back();
      skips.pop_back();
      f += resblock(ch + skip, out, hh * ww);
      ch = out;
      if (attn(static_cast<size_t>(l))) f += transformer(ch, hh * ww, c.context_dim, tokens, c.transformer_depth);
    }
    if (l > 0) {
      hh *= 2, ww *= 2;
      f += conv(ch, ch, 3, hh * ww);
    }
  }
  f += conv(mc, c.out_channels, 3, h * w);
  return f;
}

double vae_decode_flops(const VaeConfig& c, int64_t h, int64_t w) {
  const int64_t levels = static_cast<int64_t>(c.ch_mult.size());
  int64_t ch = c.ch * c.ch_mult.back(), hh = h, ww = w;
  double f = conv(c.z_channels, c.z_channels, 1, h * w) + conv(c.z_channels, ch, 3, h * w);
  const int64_t n = hh * ww;
  f += 2 * resblock(ch, ch, n) + 4 * 2.0 * ch * ch * n + 2 * 2.0 * n * n * ch;  // mid: res, attn, res
  for (int64_t l = levels - 1; l >= 0; --l) {
    const int64_t out = c.ch * c.ch_mult[static_cast<size_t>(l)];
    for (int64_t r = 0; r <= c.num_res_blocks; ++r) {
      f += resblock(ch, out, hh * ww);
      ch = out;
    }
    if (l > 0) {
      hh *= 2, ww *= 2;
      f += conv(ch, ch, 3, hh * ww);
    }
  }
  f += conv(ch, c.image_channels, 3, hh * ww);
  return f;
}

}  // namespace aigc::image
