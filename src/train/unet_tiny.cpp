// The tiny UNet's graph (see unet_tiny.h).
#include "train/unet_tiny.h"

#include <cmath>
#include <random>
#include <string>

namespace aigc::train {

Var UnetTrainer::res_block(Var x, Var e, int index, int64_t cin, int64_t c) {
  const std::string n = "res" + std::to_string(index) + ".";
  const int64_t ce = cfg_.ch;  // the time embedding's width
  const int gr = static_cast<int>(cfg_.groups);
  Var g1 = g_.param(n + "gn1.g", {cin}), b1 = g_.param(n + "gn1.b", {cin});
  Var w1 = g_.param(n + "conv1.w", {c, cin, 3, 3}), cb1 = g_.param(n + "conv1.b", {c});
  Var ew = g_.param(n + "emb.w", {c, ce}), eb = g_.param(n + "emb.b", {c});
  Var g2 = g_.param(n + "gn2.g", {c}), b2 = g_.param(n + "gn2.b", {c});
  Var w2 = g_.param(n + "conv2.w", {c, c, 3, 3}), cb2 = g_.param(n + "conv2.b", {c});
  Var r = g_.conv2d(g_.silu(g_.group_norm(x, g1, b1, gr, cfg_.eps)), w1, cb1, 1, 1);
  r = g_.add_channel(r, g_.linear(g_.silu(e), ew, eb));
  r = g_.conv2d(g_.silu(g_.group_norm(r, g2, b2, gr, cfg_.eps)), w2, cb2, 1, 1);
  Var skip = x;
  if (cin != c) skip = g_.conv2d(x, g_.param(n + "skip.w", {c, cin, 1, 1}), g_.param(n + "skip.b", {c}), 1, 0);
  return g_.add(r, skip);
}

Var UnetTrainer::attn_block(Var m, Var ctx, const std::string& n, int64_t c, int64_t side) {
  const int64_t B = B_, Tc = cfg_.text_len, Cc = cfg_.text_dim, H = cfg_.heads, s2 = side * side;
  const int gr = static_cast<int>(cfg_.groups);
  Var ag = g_.param(n + "gn.g", {c}), ab = g_.param(n + "gn.b", {c});
  Var l1g = g_.param(n + "ln1.g", {c}), l1b = g_.param(n + "ln1.b", {c});
  Var wq = g_.param(n + "q", {c, c}), wk = g_.param(n + "k", {c, c}), wv = g_.param(n + "v", {c, c});
  Var wo = g_.param(n + "o.w", {c, c}), bo = g_.param(n + "o.b", {c});
  Var l2g = g_.param(n + "ln2.g", {c}), l2b = g_.param(n + "ln2.b", {c});
  Var wcq = g_.param(n + "cq", {c, c}), wck = g_.param(n + "ck", {c, Cc}), wcv = g_.param(n + "cv", {c, Cc});
  Var wco = g_.param(n + "co.w", {c, c}), bco = g_.param(n + "co.b", {c});
  Var t = g_.view(g_.transpose12(g_.view(g_.group_norm(m, ag, ab, gr, cfg_.eps), {B, c, s2})), {B * s2, c});
  Var l1 = g_.layer_norm(t, l1g, l1b, cfg_.eps);
  const grad::MhaShape self{B, s2, s2, H, c / H, 0.0f}, cross{B, s2, Tc, H, c / H, 0.0f};
  Var a = g_.mha(g_.view(g_.linear(l1, wq), {B, s2, c}), g_.view(g_.linear(l1, wk), {B, s2, c}),
                 g_.view(g_.linear(l1, wv), {B, s2, c}), self);
  t = g_.add(t, g_.linear(g_.view(a, {B * s2, c}), wo, bo));
  Var l2 = g_.layer_norm(t, l2g, l2b, cfg_.eps);
  Var a2 = g_.mha(g_.view(g_.linear(l2, wcq), {B, s2, c}), g_.view(g_.linear(ctx, wck), {B, Tc, c}),
                  g_.view(g_.linear(ctx, wcv), {B, Tc, c}), cross);
  t = g_.add(t, g_.linear(g_.view(a2, {B * s2, c}), wco, bco));
  return g_.add(m, g_.view(g_.transpose12(g_.view(t, {B, s2, c})), {B, c, side, side}));
}

void unet_config_check(const UnetConfig& cfg) {
  const int64_t S = cfg.image, c = cfg.ch, c1 = unet_ch1(cfg), c2 = unet_ch2(cfg), G = cfg.groups, H = cfg.heads;
  const int64_t mult = unet_size_multiple(cfg);
  std::string why;  // the first rule broken
  if (cfg.levels != 1 && cfg.levels != 2)
    why = fmt::format("levels {} must be 1 or 2", cfg.levels);
  else if (S < mult || S % mult != 0)
    why = fmt::format("image {} must be a multiple of {} with levels {}", S, mult, cfg.levels);
  else if (c <= 0 || cfg.ch1 < 0 || cfg.ch2 < 0)
    why = fmt::format("ch {} must be positive, ch1 {} and ch2 {} positive or 0 (0: the level above's)", c, cfg.ch1,
                      cfg.ch2);
  else if (cfg.levels == 1 && cfg.ch2 != 0)
    why = fmt::format("ch2 {} needs levels 2", cfg.ch2);
  else if (G <= 0 || c % G != 0 || c1 % G != 0 || c2 % G != 0)
    why = fmt::format("groups {} must divide ch {}, ch1 {} and ch2 {}", G, c, c1, c2);
  else if (H <= 0 || c1 % H != 0 || c2 % H != 0)
    why = fmt::format("heads {} must divide ch1 {} and ch2 {}", H, c1, c2);
  else if (cfg.text_len <= 0 || cfg.text_dim <= 0 || cfg.t_dim <= 0 || cfg.text_vocab <= 0)
    why = fmt::format("text_len {}, text_dim {}, t_dim {} and text_vocab {} must be positive", cfg.text_len,
                      cfg.text_dim, cfg.t_dim, cfg.text_vocab);
  AIGC_CHECK(why.empty(), "UnetTrainer: bad configuration: {}", why);
}

UnetTrainer::UnetTrainer(const UnetConfig& cfg, int64_t batch) : cfg_(cfg), B_(batch) {
  const int64_t B = batch, S = cfg.image, c = cfg.ch, Tc = cfg.text_len, Cc = cfg.text_dim;
  AIGC_CHECK(B > 0, "UnetTrainer: batch {} must be positive", B);
  unet_config_check(cfg);
  const int64_t c1 = unet_ch1(cfg), c2 = unet_ch2(cfg);
  const int gr = static_cast<int>(cfg.groups);
  x_ = g_.input({B, 3, S, S});
  temb_ = g_.input({B, cfg.t_dim});
  noise_ = g_.input({B, 3, S, S});
  ids_ = g_.ids(B * Tc);
  pos_ = g_.ids(B * Tc);

  // text encoder
  Var tok = g_.param("text.tok", {cfg.text_vocab, Cc}), pos = g_.param("text.pos", {Tc, Cc});
  Var tg = g_.param("text.ln.g", {Cc}), tb = g_.param("text.ln.b", {Cc});
  Var ctx = g_.layer_norm(g_.add(g_.embedding(tok, ids_), g_.embedding(pos, pos_)), tg, tb, cfg.eps);  // [B*Tc, Cc]
  // time embedding
  Var tw1 = g_.param("time.w1", {c, cfg.t_dim}), tb1 = g_.param("time.b1", {c});
  Var tw2 = g_.param("time.w2", {c, c}), tb2 = g_.param("time.b2", {c});
  Var e = g_.linear(g_.silu(g_.linear(temb_, tw1, tb1)), tw2, tb2);  // [B, c]

  // Parameters are declared in graph order: with levels 1 the order (and so params_init's draws and
  // the flat layout of optimiser states) is that of the first version.
  Var h0 = g_.conv2d(x_, g_.param("in.w", {c, 3, 3, 3}), g_.param("in.b", {c}), 1, 1);
  Var h1 = res_block(h0, e, 0, c, c);                                                       // [B, c, S, S]
  Var d = g_.conv2d(h1, g_.param("down.w", {c, c, 3, 3}), g_.param("down.b", {c}), 2, 1);
  Var m = res_block(d, e, 1, c, c1);                                                        // [B, c1, S/2, S/2]
  const int64_t S2 = S / 2;
  Var h = attn_block(m, ctx, "attn.", c1, S2);
  if (cfg.levels == 2) {
    Var d2 = g_.conv2d(h, g_.param("down2.w", {c1, c1, 3, 3}), g_.param("down2.b", {c1}), 2, 1);
    Var m3 = res_block(d2, e, 3, c1, c2);                                                   // [B, c2, S/4, S/4]
    Var m5 = res_block(attn_block(m3, ctx, "attn2.", c2, S2 / 2), e, 4, c2, c2);
    Var u2 = g_.conv2d(g_.upsample2(m5), g_.param("up2.w", {c1, c2, 3, 3}), g_.param("up2.b", {c1}), 1, 1);
    h = res_block(g_.concat_channels(u2, h), e, 5, 2 * c1, c1);                             // [B, c1, S/2, S/2]
  }

  Var u = g_.conv2d(g_.upsample2(h), g_.param("up.w", {c, c1, 3, 3}), g_.param("up.b", {c}), 1, 1);
  Var h2 = res_block(g_.concat_channels(u, h1), e, 2, 2 * c, c);
  Var og = g_.param("out.gn.g", {c}), ob = g_.param("out.gn.b", {c});
  out_ = g_.conv2d(g_.silu(g_.group_norm(h2, og, ob, gr, cfg.eps)), g_.param("out.w", {3, c, 3, 3}),
                   g_.param("out.b", {3}), 1, 1);
  loss_ = g_.mse(out_, noise_);
  g_.allocate();
  std::span<int32_t> p = g_.ids_data(pos_);
  for (int64_t i = 0; i < B * Tc; ++i) p[static_cast<size_t>(i)] = static_cast<int32_t>(i % Tc);
}

void UnetTrainer::params_init(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (const Graph::ParamInfo& p : g_.params()) {
    Tensor& v = g_.value(p.var);
    float* d = v.ptr<float>();
    if (v.ndim() == 1) {
      const bool gain = p.name.size() >= 2 && p.name.compare(p.name.size() - 2, 2, ".g") == 0;
      std::fill(d, d + p.numel, gain ? 1.0f : 0.0f);
      continue;
    }
    const float std = p.name.rfind("text.", 0) == 0 ? 1.0f : 1.0f / std::sqrt(static_cast<float>(p.numel / v.size(0)));
    std::normal_distribution<float> n(0.0f, std);
    for (int64_t i = 0; i < p.numel; ++i) d[i] = n(rng);
  }
}

float UnetTrainer::forward_backward() {
  const float l = g_.forward(loss_);
  g_.backward(loss_);
  return l;
}

std::vector<uint8_t> UnetTrainer::decay_mask() {
  std::vector<uint8_t> mask;
  for (const Graph::ParamInfo& p : g_.params()) {
    const bool matrix = g_.value(p.var).ndim() >= 2;
    mask.insert(mask.end(), static_cast<size_t>(p.numel), matrix ? 1 : 0);
  }
  return mask;
}

}  // namespace aigc::train
