// Vae: loading (both key layouts, dimensions from the shapes) and the encoder / decoder passes on
// the CPU ops, with three reused activation buffers (see the memory notes in vae.h).
#include "image/vae.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

#include "backend/cpu/conv2d_packed.h"
#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace aigc::image {

namespace {

constexpr int kGroups = 32;          // ldm Normalize: GroupNorm(32, C)
constexpr float kEps = 1e-6f;
constexpr float kLogvarMin = -30.0f, kLogvarMax = 20.0f;  // ldm DiagonalGaussianDistribution
constexpr int64_t kBandBytes = 16 << 20;                  // automatic upsample band size

struct Norm {
  Tensor gamma, beta;  // f32 [C]
};

struct ResBlock {
  int64_t cin = 0, cout = 0;
  Norm norm1, norm2;
  ops::PackedConv2d conv1, conv2, nin;  // nin: 1x1, only when cin != cout
};

struct AttnBlock {
  int64_t c = 0;
  Norm norm;
  ops::PackedConv2d q, k, v, proj;  // 1x1
};

struct Mid {
  ResBlock block_1, block_2;
  AttnBlock attn;
};

struct Encoder {
  ops::PackedConv2d conv_in;
  std::vector<std::vector<ResBlock>> levels;  // [level][block]
  std::vector<ops::PackedConv2d> down;        // per level but the last: conv 3x3 stride 2 pad 0
  Mid mid;
  Norm norm_out;
  ops::PackedConv2d conv_out;                 // -> 2 z
};

struct Decoder {
  ops::PackedConv2d conv_in;
  Mid mid;
  std::vector<std::vector<ResBlock>> levels;  // [level][block], level 0 = full resolution (runs last)
  std::vector<ops::PackedConv2d> up;          // [level], level 0's unused: conv 3x3 after nearest x2 (pad 0:
                                              // up() builds the padded bands itself)
  Norm norm_out;
  ops::PackedConv2d conv_out;                 // -> 3
};

// Key names of one layout. Levels are always given in CompVis numbering (decoder level 0 = the
// full-resolution one); diffusers numbers decoder levels in run order.
struct Keys {
  KeyLayout layout;
  int64_t dec_levels = 0;

  bool cv() const { return layout == KeyLayout::CompVis; }
  std::string enc_block(int64_t l, int64_t m) const {
    return cv() ? fmt::format("encoder.down.{}.block.{}.", l, m) : fmt::format("encoder.down_blocks.{}.resnets.{}.", l, m);
  }
  std::string enc_down(int64_t l) const {
    return cv() ? fmt::format("encoder.down.{}.downsample.conv.", l)
                : fmt::format("encoder.down_blocks.{}.downsamplers.0.conv.", l);
  }
  std::string dec_block(int64_t l, int64_t m) const {
    return cv() ? fmt::format("decoder.up.{}.block.{}.", l, m)
                : fmt::format("decoder.up_blocks.{}.resnets.{}.", dec_levels - 1 - l, m);
  }
  std::string dec_up(int64_t l) const {
    return cv() ? fmt::format("decoder.up.{}.upsample.conv.", l)
                : fmt::format("decoder.up_blocks.{}.upsamplers.0.conv.", dec_levels - 1 - l);
  }
  std::string mid_block(const std::string& part, int i) const {
    return cv() ? fmt::format("{}.mid.block_{}.", part, i + 1) : fmt::format("{}.mid_block.resnets.{}.", part, i);
  }
  std::string mid_attn(const std::string& part) const {
    return cv() ? part + ".mid.attn_1." : part + ".mid_block.attentions.0.";
  }
  std::string norm_out(const std::string& part) const { return part + (cv() ? ".norm_out." : ".conv_norm_out."); }
  const char* shortcut() const { return cv() ? "nin_shortcut." : "conv_shortcut."; }
};

class Loader {
 public:
  Loader(const WeightSource& w, ops::Precision p) : w_(w), p_(p) {}

  // A conv [O, C, k, k] with bias [O]; O or C = -1 takes it from the weight.
  ops::PackedConv2d conv(const std::string& pre, int64_t o, int64_t c, int64_t k, int stride, int pad) {
    if (o < 0) o = conv_dim(pre + "weight", 0);
    if (c < 0) c = conv_dim(pre + "weight", 1);
    if (o < 1 || c < 1) fail(fmt::format("'{}{}weight' has no channels", w_.prefix(), pre));
    const Tensor& wt = w_.get(pre + "weight", {o, c, k, k});
    const Tensor& b = w_.get(pre + "bias", {o});
    return ops::PackedConv2d(wt, &b, stride, pad, p_);
  }
  // A 1x1 attention projection stored as a conv [C, C, 1, 1] or a Linear [C, C].
  ops::PackedConv2d proj(const std::string& pre, int64_t c) {
    const Tensor* t = w_.find(pre + "weight");
    const Tensor& wt = t && t->ndim() == 2 ? w_.get(pre + "weight", {c, c}) : w_.get(pre + "weight", {c, c, 1, 1});
    const Tensor& b = w_.get(pre + "bias", {c});
    const int64_t shape[] = {c, c, 1, 1};
    // A view with the conv shape; the layer copies it (contiguous, as every safetensors tensor is).
    Tensor w4 = Tensor::view_of(wt.type(), shape, const_cast<void*>(wt.data()), wt.owner());
    return ops::PackedConv2d(w4, &b, 1, 0, p_);
  }
  Norm norm(const std::string& pre, int64_t c) {
    if (c < 1 || c % kGroups != 0)
      error_throw(fmt::format("{}: '{}{}' normalises {} channels, not a multiple of the {} groups", w_.component(),
                              w_.prefix(), pre, c, kGroups),
                  w_.file_name(), "not a Stable Diffusion KL autoencoder");
    Norm n;
    n.gamma = Tensor::empty(DType::F32, {c});
    n.beta = Tensor::empty(DType::F32, {c});
    ops::copy(w_.get(pre + "weight", {c}), n.gamma);
    ops::copy(w_.get(pre + "bias", {c}), n.beta);
    return n;
  }
  ResBlock res(const std::string& pre, int64_t cin, const char* shortcut) {
    ResBlock r;
    r.cin = cin;
    r.norm1 = norm(pre + "norm1.", cin);
    r.conv1 = conv(pre + "conv1.", -1, cin, 3, 1, 1);
    r.cout = r.conv1.out_channels();
    r.norm2 = norm(pre + "norm2.", r.cout);
    r.conv2 = conv(pre + "conv2.", r.cout, r.cout, 3, 1, 1);
    if (cin != r.cout) r.nin = conv(pre + shortcut, r.cout, cin, 1, 1, 0);
    return r;
  }
  AttnBlock attn(const std::string& pre, int64_t c, KeyLayout layout) {
    AttnBlock a;
    a.c = c;
    if (layout == KeyLayout::CompVis) {
      a.norm = norm(pre + "norm.", c);
      a.q = proj(pre + "q.", c);
      a.k = proj(pre + "k.", c);
      a.v = proj(pre + "v.", c);
      a.proj = proj(pre + "proj_out.", c);
    } else {
      a.norm = norm(pre + "group_norm.", c);
      const bool old = !w_.has(pre + "to_q.weight") && w_.has(pre + "query.weight");  // diffusers < 0.15
      a.q = proj(pre + (old ? "query." : "to_q."), c);
      a.k = proj(pre + (old ? "key." : "to_k."), c);
      a.v = proj(pre + (old ? "value." : "to_v."), c);
      a.proj = proj(pre + (old ? "proj_attn." : "to_out.0."), c);
    }
    return a;
  }
  Mid mid(const Keys& keys, const std::string& part, int64_t c) {
    Mid m;
    m.block_1 = res(keys.mid_block(part, 0), c, keys.shortcut());
    m.attn = attn(keys.mid_attn(part), m.block_1.cout, keys.layout);
    m.block_2 = res(keys.mid_block(part, 1), m.block_1.cout, keys.shortcut());
    return m;
  }

  int64_t conv_dim(const std::string& key, int d) {
    const Tensor& t = w_.get(key);
    if (t.ndim() != 4)
      error_throw(fmt::format("{}: tensor '{}{}' has shape {}, expected a conv weight [O, C, k, k]", w_.component(),
                              w_.prefix(), key, t.shape_str()),
                  w_.file_name(), "not a Stable Diffusion KL autoencoder");
    return t.size(d);
  }
  // How many of key(0), key(1), ... exist (probing does not mark keys as used).
  int64_t count(const std::function<std::string(int64_t)>& key) const {
    int64_t n = 0;
    while (w_.has(key(n))) ++n;
    return n;
  }
  [[noreturn]] void fail(const std::string& what) const {
    error_throw(fmt::format("{}: {}", w_.component(), what), w_.file_name(), "not a Stable Diffusion KL autoencoder");
  }

 private:
  const WeightSource& w_;
  ops::Precision p_;
};

// y += s elementwise (contiguous, same size).
void add_inplace(Tensor& y, const Tensor& s) {
  AIGC_ASSERT(y.numel() == s.numel());
  float* py = y.ptr<float>();
  const float* ps = s.ptr<float>();
  parallel_for(y.numel(), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] += ps[i];
  }, 1 << 14);
}

// dst[c, r] = src[r, c]: src [rows, cols] -> dst [cols, rows], contiguous, in tiles of 32 x 32.
void transpose_2d(const float* src, float* dst, int64_t rows, int64_t cols) {
  constexpr int64_t kT = 32;
  const int64_t tiles_r = (rows + kT - 1) / kT, tiles_c = (cols + kT - 1) / kT;
  parallel_for(tiles_r * tiles_c, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = (t / tiles_c) * kT, c0 = (t % tiles_c) * kT;
      const int64_t r1 = std::min(rows, r0 + kT), c1 = std::min(cols, c0 + kT);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
    }
  }, 4);
}

// Tile starts along one latent axis of n: every tile - overlap from 0, the last flush with the end.
std::vector<int64_t> tile_starts(int64_t n, int64_t tile, int64_t overlap) {
  if (n <= tile) return {0};
  std::vector<int64_t> s;
  for (int64_t p = 0; p + tile < n; p += tile - overlap) s.push_back(p);
  s.push_back(n - tile);
  return s;
}

// Blending weights along one axis, per tile (in pixels): 1 inside, linear ramps over the overlaps.
std::vector<std::vector<float>> tile_ramps(const std::vector<int64_t>& starts, int64_t tile, int64_t scale) {
  std::vector<std::vector<float>> ws;
  const int64_t len = tile * scale;
  for (size_t i = 0; i < starts.size(); ++i) {
    const int64_t a = starts[i] * scale, b = a + len;
    const int64_t left = i > 0 ? starts[i - 1] * scale + len - a : 0;
    const int64_t right = i + 1 < starts.size() ? b - starts[i + 1] * scale : 0;
    std::vector<float> w(static_cast<size_t>(len));
    for (int64_t p = 0; p < len; ++p) {
      double v = 1.0;
      if (left > 0 && p < left) v = std::min(v, (p + 0.5) / static_cast<double>(left));
      if (right > 0 && p >= len - right) v = std::min(v, (len - p - 0.5) / static_cast<double>(right));
      w[static_cast<size_t>(p)] = static_cast<float>(v);
    }
    ws.push_back(std::move(w));
  }
  return ws;
}

}  // namespace

struct Vae::Impl {
  VaeConfig cfg;
  bool has_encoder = false;
  int64_t latent_c = 0, scale = 1;
  std::vector<int64_t> level_c;  // channels per level
  Encoder enc;
  Decoder dec;
  ops::PackedConv2d quant_conv, post_quant_conv;
  int64_t band_rows = 0;
  ops::AttentionParams attn_params;  // bf16 matmuls when the model runs in bf16

  // An activation: a [1, c, h, w] view of slot `slot`.
  struct Act {
    int slot = 0;
    Tensor t;
    int64_t c() const { return t.size(1); }
    int64_t h() const { return t.size(2); }
    int64_t w() const { return t.size(3); }
  };
  Tensor slots[3];                            // activation buffers, grown to the largest use
  Tensor band_in, band_out, attn_buf[4], in_buf, tile_lat, tile_img;

  // A [1, c, h, w] view of buffer `buf`, grown (old contents dropped) when too small.
  static Tensor view(Tensor& buf, int64_t c, int64_t h, int64_t w) {
    const int64_t need = c * h * w;
    if (!buf.data() || buf.numel() < need) {
      buf = Tensor();  // free first: the peak is the new size, not old + new
      buf = Tensor::empty(DType::F32, {need});
    }
    const int64_t shape[] = {1, c, h, w};
    return Tensor::view_of(DType::F32, shape, buf.data());
  }
  Act slot_view(int s, int64_t c, int64_t h, int64_t w) { return {s, view(slots[s], c, h, w)}; }

  static void norm_silu(const Norm& n, const Tensor& x, Tensor& y) {
    ops::group_norm(x, n.gamma, n.beta, kGroups, kEps, y);
    ops::silu(y, y);
  }

  // Output in the input's slot; the two other slots are scratch.
  Act res(const ResBlock& r, Act x) {
    const int p = (x.slot + 1) % 3, q = (x.slot + 2) % 3;
    const int64_t h = x.h(), w = x.w();
    if (r.cin != r.cout) {  // skip = nin(x) first, so that norm1 may overwrite x
      Act s = slot_view(p, r.cout, h, w);
      r.nin.run(x.t, s.t);
      norm_silu(r.norm1, x.t, x.t);
      Act u = slot_view(q, r.cout, h, w);
      r.conv1.run(x.t, u.t);
      norm_silu(r.norm2, u.t, u.t);
      Act o = slot_view(x.slot, r.cout, h, w);  // x is dead now
      r.conv2.run(u.t, o.t);
      add_inplace(o.t, s.t);
      return o;
    }
    Act t = slot_view(p, r.cin, h, w);
    norm_silu(r.norm1, x.t, t.t);
    Act u = slot_view(q, r.cout, h, w);
    r.conv1.run(t.t, u.t);
    norm_silu(r.norm2, u.t, u.t);
    r.conv2.run(u.t, t.t);
    add_inplace(x.t, t.t);
    return x;
  }

  // Single-head self-attention over the h*w positions, residual; output in the input's slot.
  Act attn(const AttnBlock& a, Act x) {
    const int p = (x.slot + 1) % 3, q = (x.slot + 2) % 3;
    const int64_t c = x.c(), h = x.h(), w = x.w(), T = h * w;
    Act n = slot_view(p, c, h, w);
    ops::group_norm(x.t, a.norm.gamma, a.norm.beta, kGroups, kEps, n.t);
    Tensor tok[4];  // q, k, v, out as [1, 1, T, c] (token-major, what ops::attention reads densely)
    const int64_t tshape[] = {1, 1, T, c};
    for (int i = 0; i < 4; ++i) {
      view(attn_buf[i], 1, T, c);
      tok[i] = Tensor::view_of(DType::F32, tshape, attn_buf[i].data());
    }
    const ops::PackedConv2d* convs[3] = {&a.q, &a.k, &a.v};
    Act u = slot_view(q, c, h, w);
    for (int i = 0; i < 3; ++i) {
      convs[i]->run(n.t, u.t);                                           // [c, T]
      transpose_2d(u.t.ptr<float>(), tok[i].ptr<float>(), c, T);         // -> [T, c]
    }
    ops::attention(tok[0], tok[1], tok[2], tok[3], attn_params);                // scale 1/sqrt(c)
    transpose_2d(tok[3].ptr<float>(), n.t.ptr<float>(), T, c);           // -> [c, T]
    a.proj.run(n.t, u.t);
    add_inplace(x.t, u.t);
    return x;
  }

  Act mid(const Mid& m, Act x) { return res(m.block_2, attn(m.attn, res(m.block_1, x))); }

  // Encoder downsample: zero-pad right and bottom by one, conv 3x3 stride 2 without padding.
  Act down(const ops::PackedConv2d& conv, Act x) {
    const int p = (x.slot + 1) % 3, q = (x.slot + 2) % 3;
    const int64_t c = x.c(), h = x.h(), w = x.w();
    Act padded = slot_view(p, c, h + 1, w + 1);
    const float* src = x.t.ptr<float>();
    float* dst = padded.t.ptr<float>();
    parallel_for(c * (h + 1), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t ch = r / (h + 1), y = r % (h + 1);
        float* d = dst + r * (w + 1);
        if (y == h) {
          std::fill(d, d + w + 1, 0.0f);
        } else {
          std::memcpy(d, src + (ch * h + y) * w, sizeof(float) * w);
          d[w] = 0.0f;
        }
      }
    }, 8);
    int64_t ho = 0, wo = 0;
    conv.output_size(h + 1, w + 1, ho, wo);
    Act y = slot_view(q, conv.out_channels(), ho, wo);
    conv.run(padded.t, y.t);
    return y;
  }

  // Decoder upsample: nearest x2 then conv 3x3 pad 1, in bands of output rows. Each band's input is
  // the upsampled rows with a one-pixel border (the neighbouring rows, zeros at the image edges),
  // convolved without padding, so bands join exactly.
  Act up(const ops::PackedConv2d& conv, Act x) {
    const int p = (x.slot + 1) % 3;
    const int64_t c = x.c(), h = x.h(), w = x.w(), H = 2 * h, W = 2 * w, o = conv.out_channels();
    Act y = slot_view(p, o, H, W);
    int64_t rows = band_rows;
    if (rows <= 0) {  // at most 16 MiB and an eighth of the image per band, at least 8 rows
      const int64_t fit = kBandBytes / static_cast<int64_t>(sizeof(float) * std::max(c, o) * (W + 2)) - 2;
      rows = std::max<int64_t>(8, std::min(fit, H / 8));
    }
    rows = std::min(rows, H);
    const float* src = x.t.ptr<float>();
    for (int64_t r0 = 0; r0 < H; r0 += rows) {
      const int64_t n = std::min(rows, H - r0);
      Tensor in = view(band_in, c, n + 2, W + 2);
      float* bi = in.ptr<float>();
      parallel_for(c * (n + 2), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t ch = i / (n + 2), Y = r0 - 1 + i % (n + 2);  // upsampled row
          float* d = bi + i * (W + 2);
          d[0] = d[W + 1] = 0.0f;
          if (Y < 0 || Y >= H) {
            std::fill(d + 1, d + W + 1, 0.0f);
            continue;
          }
          const float* s = src + (ch * h + Y / 2) * w;
          for (int64_t X = 0; X < W; ++X) d[1 + X] = s[X / 2];
        }
      }, 8);
      Tensor out = view(band_out, o, n, W);
      conv.run(in, out);
      float* dy = y.t.ptr<float>();
      const float* bo = out.ptr<float>();
      parallel_for(o, [&](int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ++ch)
          std::memcpy(dy + (ch * H + r0) * W, bo + ch * n * W, sizeof(float) * n * W);
      }, 8);
    }
    return y;
  }

  // One latent [1, latent_c, h, w] (f32 contiguous) -> image [1, 3, 8h, 8w] (f32 contiguous).
  void decode_one(const Tensor& z, Tensor& image) {
    const int64_t h = z.size(2), w = z.size(3);
    Act a = slot_view(0, post_quant_conv.out_channels(), h, w);
    post_quant_conv.run(z, a.t);
    Act x = slot_view(1, dec.conv_in.out_channels(), h, w);
    dec.conv_in.run(a.t, x.t);
    x = mid(dec.mid, x);
    for (int64_t l = static_cast<int64_t>(dec.levels.size()) - 1; l >= 0; --l) {
      for (const ResBlock& r : dec.levels[l]) x = res(r, x);
      if (l != 0) x = up(dec.up[l], x);
    }
    norm_silu(dec.norm_out, x.t, x.t);
    dec.conv_out.run(x.t, image);
  }

  // One image [1, 3, H, W] (f32 contiguous) -> moments [1, 2 latent_c, H/8, W/8] in a slot.
  Act encode_one(const Tensor& img) {
    const int64_t H = img.size(2), W = img.size(3);
    Act x = slot_view(0, enc.conv_in.out_channels(), H, W);
    enc.conv_in.run(img, x.t);
    for (size_t l = 0; l < enc.levels.size(); ++l) {
      for (const ResBlock& r : enc.levels[l]) x = res(r, x);
      if (l + 1 < enc.levels.size()) x = down(enc.down[l], x);
    }
    x = mid(enc.mid, x);
    norm_silu(enc.norm_out, x.t, x.t);
    Act h = slot_view((x.slot + 1) % 3, enc.conv_out.out_channels(), x.h(), x.w());
    enc.conv_out.run(x.t, h.t);
    Act m = slot_view((x.slot + 2) % 3, quant_conv.out_channels(), x.h(), x.w());
    quant_conv.run(h.t, m.t);
    return m;
  }
};

Vae::Vae() : impl_(std::make_unique<Impl>()) {}
Vae::Vae(Vae&&) noexcept = default;
Vae& Vae::operator=(Vae&&) noexcept = default;
Vae::~Vae() = default;

Vae Vae::load(const WeightSource& w, KeyLayout layout, ops::Precision precision, bool with_encoder) {
  Vae vae;
  Impl& m = *vae.impl_;
  Loader ld(w, precision);
  Keys keys{layout, 0};
  if (precision == ops::Precision::BF16) m.attn_params.precision = ops::Precision::BF16;
  // ---- decoder (always) -------------------------------------------------------------------------
  const int64_t n_levels = ld.count([&](int64_t l) {
    return layout == KeyLayout::CompVis ? fmt::format("decoder.up.{}.block.0.conv1.weight", l)
                                        : fmt::format("decoder.up_blocks.{}.resnets.0.conv1.weight", l);
  });
  if (n_levels == 0) ld.fail(fmt::format("no decoder levels ('{}{}conv1.weight' is missing)", w.prefix(), Keys{layout, 1}.dec_block(0, 0)));
  keys.dec_levels = n_levels;
  const int64_t dec_blocks = ld.count([&](int64_t b) { return keys.dec_block(0, b) + "conv1.weight"; });
  if (dec_blocks < 1) ld.fail("the decoder's full-resolution level has no blocks");
  m.post_quant_conv = ld.conv("post_quant_conv.", -1, -1, 1, 1, 0);
  m.latent_c = m.post_quant_conv.in_channels();
  const int64_t z = m.post_quant_conv.out_channels();
  m.dec.conv_in = ld.conv("decoder.conv_in.", -1, z, 3, 1, 1);
  int64_t c = m.dec.conv_in.out_channels();
  m.dec.mid = ld.mid(keys, "decoder", c);
  m.dec.levels.resize(n_levels);
  m.dec.up.resize(n_levels);
  m.level_c.assign(n_levels, 0);
  for (int64_t l = n_levels - 1; l >= 0; --l) {
    for (int64_t b = 0; b < dec_blocks; ++b) {
      m.dec.levels[l].push_back(ld.res(keys.dec_block(l, b), c, keys.shortcut()));
      c = m.dec.levels[l].back().cout;
    }
    m.level_c[l] = c;
    if (l != 0) m.dec.up[l] = ld.conv(keys.dec_up(l), c, c, 3, 1, 0);  // pad 0: up() pads each band
  }
  m.dec.norm_out = ld.norm(keys.norm_out("decoder"), c);
  m.dec.conv_out = ld.conv("decoder.conv_out.", -1, c, 3, 1, 1);
  const int64_t img_c = m.dec.conv_out.out_channels();
  // ---- encoder ---------------------------------------------------------------------------------
  if (with_encoder) {
    const int64_t enc_levels = ld.count([&](int64_t l) { return keys.enc_block(l, 0) + "conv1.weight"; });
    const int64_t enc_blocks = ld.count([&](int64_t b) { return keys.enc_block(0, b) + "conv1.weight"; });
    if (enc_levels != n_levels || enc_blocks + 1 != dec_blocks)
      ld.fail(fmt::format("the encoder ({} levels of {} blocks) does not match the decoder ({} levels of {} blocks)",
                          enc_levels, enc_blocks, n_levels, dec_blocks));
    m.enc.conv_in = ld.conv("encoder.conv_in.", -1, img_c, 3, 1, 1);
    c = m.enc.conv_in.out_channels();
    m.enc.levels.resize(n_levels);
    for (int64_t l = 0; l < n_levels; ++l) {
      for (int64_t b = 0; b < enc_blocks; ++b) {
        m.enc.levels[l].push_back(ld.res(keys.enc_block(l, b), c, keys.shortcut()));
        c = m.enc.levels[l].back().cout;
      }
      if (c != m.level_c[l])
        ld.fail(fmt::format("encoder level {} has {} channels, the decoder's {}", l, c, m.level_c[l]));
      if (l + 1 < n_levels) m.enc.down.push_back(ld.conv(keys.enc_down(l), c, c, 3, 2, 0));
    }
    m.enc.mid = ld.mid(keys, "encoder", c);
    m.enc.norm_out = ld.norm(keys.norm_out("encoder"), c);
    m.enc.conv_out = ld.conv("encoder.conv_out.", 2 * z, c, 3, 1, 1);
    m.quant_conv = ld.conv("quant_conv.", 2 * m.latent_c, 2 * z, 1, 1, 0);
    m.has_encoder = true;
    w.unused_check();
  } else {
    w.unused_check({"encoder.*", "quant_conv.*"});  // skipped on purpose
  }
  m.scale = int64_t{1} << (n_levels - 1);
  m.cfg.ch = m.level_c[0];
  m.cfg.ch_mult.clear();
  for (int64_t lc : m.level_c) m.cfg.ch_mult.push_back(lc / m.level_c[0]);
  m.cfg.num_res_blocks = dec_blocks - 1;
  m.cfg.z_channels = m.latent_c;
  m.cfg.image_channels = img_c;
  m.cfg.norm_groups = kGroups;
  return vae;
}

const VaeConfig& Vae::config() const { return impl_->cfg; }
bool Vae::has_encoder() const { return impl_->has_encoder; }
int64_t Vae::scale() const { return impl_->scale; }
void Vae::upsample_band_rows_set(int64_t rows) { impl_->band_rows = std::max<int64_t>(0, rows); }

size_t Vae::buffer_bytes() const {
  const Impl& m = *impl_;
  size_t n = 0;
  auto add = [&](const Tensor& t) { n += t.data() ? t.nbytes() : 0; };
  for (const Tensor* t : {&m.band_in, &m.band_out, &m.in_buf, &m.tile_lat, &m.tile_img}) add(*t);
  for (const Tensor& t : m.slots) add(t);
  for (const Tensor& t : m.attn_buf) add(t);
  return n;
}

size_t Vae::weight_bytes() const {
  const Impl& m = *impl_;
  size_t n = 0;
  auto norm = [&](const Norm& x) { n += x.gamma.nbytes() + x.beta.nbytes(); };
  auto res = [&](const ResBlock& r) {
    norm(r.norm1);
    norm(r.norm2);
    n += r.conv1.weight_bytes() + r.conv2.weight_bytes() + r.nin.weight_bytes();
  };
  auto mid = [&](const Mid& x) {
    res(x.block_1);
    res(x.block_2);
    norm(x.attn.norm);
    n += x.attn.q.weight_bytes() + x.attn.k.weight_bytes() + x.attn.v.weight_bytes() + x.attn.proj.weight_bytes();
  };
  n += m.post_quant_conv.weight_bytes() + m.dec.conv_in.weight_bytes() + m.dec.conv_out.weight_bytes();
  mid(m.dec.mid);
  norm(m.dec.norm_out);
  for (const auto& l : m.dec.levels)
    for (const ResBlock& r : l) res(r);
  for (const auto& u : m.dec.up) n += u.weight_bytes();
  if (m.has_encoder) {
    n += m.quant_conv.weight_bytes() + m.enc.conv_in.weight_bytes() + m.enc.conv_out.weight_bytes();
    mid(m.enc.mid);
    norm(m.enc.norm_out);
    for (const auto& l : m.enc.levels)
      for (const ResBlock& r : l) res(r);
    for (const auto& d : m.enc.down) n += d.weight_bytes();
  }
  return n;
}

void Vae::decode(const Tensor& latent, Tensor& image) {
  Impl& m = *impl_;
  AIGC_CHECK(latent.ndim() == 4 && latent.size(0) >= 1 && latent.size(1) == m.latent_c && latent.size(2) >= 1 &&
                 latent.size(3) >= 1,
             "Vae decode: latent {} should be [B, {}, h, w]", latent.shape_str(), m.latent_c);
  const int64_t B = latent.size(0), h = latent.size(2), w = latent.size(3);
  const int64_t H = h * m.scale, W = w * m.scale, C = m.cfg.image_channels;
  AIGC_CHECK(image.type() == DType::F32 && image.ndim() == 4 && image.size(0) == B && image.size(1) == C &&
                 image.size(2) == H && image.size(3) == W,
             "Vae decode: image {} should be f32 [{}, {}, {}, {}]", image.shape_str(), B, C, H, W);
  for (int64_t b = 0; b < B; ++b) {
    Tensor z = Impl::view(m.in_buf, m.latent_c, h, w);
    ops::copy(latent.slice(0, b, 1), z);  // any type and strides in
    Tensor out = image.slice(0, b, 1);
    if (out.is_contiguous()) {
      m.decode_one(z, out);
    } else {
      Tensor tmp = Impl::view(m.tile_img, C, H, W);
      m.decode_one(z, tmp);
      ops::copy(tmp, out);
    }
  }
}

void Vae::encode(const Tensor& image, Tensor& mean, Tensor& logvar) {
  Impl& m = *impl_;
  if (!m.has_encoder)
    error_throw("Vae encode: this VAE was loaded without its encoder", "Vae::encode",
                "load it with with_encoder = true (img2img and inpainting need the encoder)");
  const int64_t C = m.cfg.image_channels;
  AIGC_CHECK(image.ndim() == 4 && image.size(0) >= 1 && image.size(1) == C,
             "Vae encode: image {} should be [B, {}, H, W]", image.shape_str(), C);
  const int64_t B = image.size(0), H = image.size(2), W = image.size(3);
  if (H < m.scale || W < m.scale || H % m.scale != 0 || W % m.scale != 0)
    error_throw(fmt::format("Vae encode: image size {}x{} (WxH) is not a positive multiple of {}", W, H, m.scale),
                "Vae::encode", fmt::format("resize or crop the image to multiples of {}", m.scale));
  const int64_t h = H / m.scale, w = W / m.scale, e = m.latent_c;
  for (Tensor* t : {&mean, &logvar})
    AIGC_CHECK(t->type() == DType::F32 && t->ndim() == 4 && t->size(0) == B && t->size(1) == e && t->size(2) == h &&
                   t->size(3) == w,
               "Vae encode: mean / logvar {} should be f32 [{}, {}, {}, {}]", t->shape_str(), B, e, h, w);
  for (int64_t b = 0; b < B; ++b) {
    Tensor x = Impl::view(m.in_buf, C, H, W);
    ops::copy(image.slice(0, b, 1), x);
    Impl::Act mom = m.encode_one(x);  // [1, 2e, h, w]: mean then logvar
    Tensor mb = mean.slice(0, b, 1), lb = logvar.slice(0, b, 1);
    ops::copy(mom.t.slice(1, 0, e), mb);
    Tensor lv = mom.t.slice(1, e, e);
    float* p = lv.ptr<float>();  // the logvar half is contiguous: clamp it in place
    for (int64_t i = 0; i < lv.numel(); ++i) p[i] = std::clamp(p[i], kLogvarMin, kLogvarMax);
    ops::copy(lv, lb);
  }
}

void Vae::decode_tiled(const Tensor& latent, Tensor& image, int64_t tile_latent, int64_t overlap) {
  Impl& m = *impl_;
  AIGC_CHECK(tile_latent >= 1 && overlap >= 0 && overlap < tile_latent,
             "Vae decode_tiled: tile {} and overlap {} need 0 <= overlap < tile", tile_latent, overlap);
  AIGC_CHECK(latent.ndim() == 4 && latent.size(0) >= 1 && latent.size(1) == m.latent_c && latent.size(2) >= 1 &&
                 latent.size(3) >= 1,
             "Vae decode_tiled: latent {} should be [B, {}, h, w]", latent.shape_str(), m.latent_c);
  const int64_t B = latent.size(0), h = latent.size(2), w = latent.size(3), s = m.scale;
  const int64_t H = h * s, W = w * s, C = m.cfg.image_channels;
  AIGC_CHECK(image.type() == DType::F32 && image.ndim() == 4 && image.size(0) == B && image.size(1) == C &&
                 image.size(2) == H && image.size(3) == W,
             "Vae decode_tiled: image {} should be f32 [{}, {}, {}, {}]", image.shape_str(), B, C, H, W);
  const int64_t th = std::min(tile_latent, h), tw = std::min(tile_latent, w);
  const std::vector<int64_t> sy = tile_starts(h, th, overlap), sx = tile_starts(w, tw, overlap);
  const auto wy = tile_ramps(sy, th, s), wx = tile_ramps(sx, tw, s);
  // The weights are products wy * wx over a grid of tiles, so their sum is (sum wy) * (sum wx).
  std::vector<double> sum_y(H, 0.0), sum_x(W, 0.0);
  for (size_t i = 0; i < sy.size(); ++i)
    for (int64_t p = 0; p < th * s; ++p) sum_y[sy[i] * s + p] += wy[i][p];
  for (size_t j = 0; j < sx.size(); ++j)
    for (int64_t p = 0; p < tw * s; ++p) sum_x[sx[j] * s + p] += wx[j][p];
  // Accumulate in the image itself (f32: the few overlapping terms lose nothing that matters).
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) image.at<float>(b, c, y, x) = 0.0f;
  const int64_t lat_shape[] = {B, m.latent_c, th, tw}, img_shape[] = {B, C, th * s, tw * s};
  for (size_t i = 0; i < sy.size(); ++i)
    for (size_t j = 0; j < sx.size(); ++j) {
      Impl::view(m.tile_lat, B * m.latent_c, th, tw);
      Tensor zt = Tensor::view_of(DType::F32, lat_shape, m.tile_lat.data());
      ops::copy(latent.slice(2, sy[i], th).slice(3, sx[j], tw), zt);
      Impl::view(m.tile_img, B * C, th * s, tw * s);
      Tensor it = Tensor::view_of(DType::F32, img_shape, m.tile_img.data());  // contiguous: decode writes it directly
      decode(zt, it);
      const int64_t y0 = sy[i] * s, x0 = sx[j] * s;
      parallel_for(B * C * th * s, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t y = r % (th * s), bc = r / (th * s), b = bc / C, c = bc % C;
          const float* src = &it.at<float>(b, c, y, 0);
          for (int64_t x = 0; x < tw * s; ++x)
            image.at<float>(b, c, y0 + y, x0 + x) += src[x] * (wy[i][y] * wx[j][x]);
        }
      }, 16);
    }
  parallel_for(B * C * H, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t y = r % H, bc = r / H, b = bc / C, c = bc % C;
      for (int64_t x = 0; x < W; ++x)
        image.at<float>(b, c, y, x) = static_cast<float>(image.at<float>(b, c, y, x) / (sum_y[y] * sum_x[x]));
    }
  }, 16);
}

}  // namespace aigc::image
