// UNet: loading (both key layouts mapped onto one structure, every dimension from the shapes) and
// the forward pass on the CPU ops.
//
// Activation memory: one arena per input size (B, H, W, context length), planned by walking the
// blocks' shapes (plan()) and allocated once, so a sampling loop allocates nothing and the heap
// does not fragment as buffers grow. Roles: the skips (the outputs of the input blocks, kept in
// bf16 when the model computes in bf16: they only feed a GroupNorm and bf16 convolutions), two
// main buffers holding h, two work buffers (GroupNorm outputs, the upsampled h; the output blocks'
// ResBlocks work in the concatenation's memory instead), and one region
// shared by the [h, skip] concatenation and the transformer's token, q/k/v and feed-forward
// buffers (never live at the same time). The upsampler writes h at the start of that region and
// the next block concatenates in place. The GEGLU feed-forward runs in chunks of rows to bound
// its 12x-wide buffers. SD 1.5 at 512x512 (latents 64x64, batch 2): a 134 MiB arena (it was
// 230 MiB of separately grown buffers, plus ~56 MB of heap holes they left).
#include "image/unet.h"

#include <fmt/format.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <array>
#include <cstring>
#include <optional>
#include <set>
#include <string>

#include "backend/cpu/conv2d_packed.h"
#include "backend/cpu/linear_packed.h"
#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::image {

namespace {

constexpr float kResNormEps = 1e-5f;    // ldm GroupNorm32 (normalization()) default
constexpr float kAttnNormEps = 1e-6f;   // SpatialTransformer's GroupNorm
constexpr float kLayerNormEps = 1e-5f;  // nn.LayerNorm default in BasicTransformerBlock
// Rows per feed-forward chunk: [rows, 2 * ff_inner] f32 of at most 512 x 2560 (5 MiB; 512 rows of
// SD's level 0, 128 at its 1280-wide levels), at least 16.
constexpr int64_t kFfChunkFloats = 512 * 2560;
int64_t ff_rows(int64_t ff_inner) { return std::max<int64_t>(16, kFfChunkFloats / (2 * ff_inner)); }
constexpr int64_t kMaxLevels = 8;       // resolutions (SD has 4); bounds the 2^(levels-1) size rule

// ---- parameters ----------------------------------------------------------------------------

Tensor f32_copy(const Tensor& t) {
  Tensor c = Tensor::empty(DType::F32, t.shape());
  ops::copy(t, c);
  return c;
}

struct Norm {
  Tensor gamma, beta;  // f32 [C]
};

struct Linear {
  std::unique_ptr<ops::PackedLinear> fc;
  Tensor bias;  // f32 [N] (the PackedLinear copies it)
  Tensor q8;    // the Q8_0 weight [N, K] the PackedLinear runs on (UNetWeightType::Q8_0), or none
  int64_t in = 0, out = 0;
  void run(const Tensor& x, Tensor& y) const { fc->run(x, y); }
};

struct ResBlock {
  int64_t c_in = 0, c_out = 0;
  Norm norm1, norm2;
  ops::PackedConv2d conv1, conv2, skip;  // skip: 1x1, only when c_in != c_out
  Linear emb_proj;                       // [c_out, emb_dim]
  bool has_skip = false;
};

struct TransformerBlock {
  Norm norm1, norm2, norm3;
  Linear q1, k1, v1, out1;  // self-attention
  Linear q2, k2, v2, out2;  // cross-attention (k2, v2 take the context)
  Linear ff_in, ff_out;     // GEGLU: ff_in [2 * ff_inner, inner], ff_out [inner, ff_inner]
  int64_t ff_inner = 0;
};

struct SpatialTransformer {
  int64_t channels = 0, inner = 0, heads = 0;
  Norm norm;
  bool linear = false;
  ops::PackedConv2d proj_in_conv, proj_out_conv;  // SD 1.x
  Linear proj_in_lin, proj_out_lin;               // SD 2.x
  std::vector<TransformerBlock> blocks;
};

// One ldm TimestepEmbedSequential: a ResBlock with an optional transformer and an optional
// upsampler (output blocks), or a lone conv (conv_in, a downsampler).
struct Block {
  enum class Kind { Conv, Res } kind = Kind::Res;
  ops::PackedConv2d conv;  // Conv: conv_in or the stride-2 downsampler
  ResBlock res;
  std::optional<SpatialTransformer> attn;
  bool has_up = false;
  ops::PackedConv2d up_conv;
};

// dst [B, C, R] = src [B, R, C] transposed per batch (both contiguous f32), in cache-sized tiles:
// the channels-first <-> token layout switch around each transformer, for which ops::copy's
// strided row gather would touch one cache line per element.
void transpose_batched(const float* src, float* dst, int64_t B, int64_t R, int64_t C) {
  constexpr int64_t kTile = 32;
  const int64_t tiles_r = (R + kTile - 1) / kTile;
  parallel_for(
      B * tiles_r,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t b = t / tiles_r, r0 = (t % tiles_r) * kTile, r1 = std::min(R, r0 + kTile);
          const float* s = src + b * R * C;
          float* d = dst + b * R * C;
          for (int64_t c0 = 0; c0 < C; c0 += kTile) {
            const int64_t c1 = std::min(C, c0 + kTile);
            for (int64_t c = c0; c < c1; ++c)
              for (int64_t r = r0; r < r1; ++r) d[c * R + r] = s[r * C + c];
          }
        }
      },
      4);
}

// ---- key names ------------------------------------------------------------------------------

// The names of one checkpoint layout. Module prefixes end without a dot.
struct Names {
  KeyLayout layout;
  int64_t n_res = 2;  // res blocks per level (input side; the output side has one more)
  int64_t levels = 4;

  bool compvis() const { return layout == KeyLayout::CompVis; }
  std::string time_embed(int i) const {
    return compvis() ? fmt::format("time_embed.{}", i == 0 ? 0 : 2) : fmt::format("time_embedding.linear_{}", i + 1);
  }
  std::string conv_in() const { return compvis() ? "input_blocks.0.0" : "conv_in"; }
  std::string out_norm() const { return compvis() ? "out.0" : "conv_norm_out"; }
  std::string out_conv() const { return compvis() ? "out.2" : "conv_out"; }
  int64_t in_index(int64_t level, int64_t slot) const { return 1 + level * (n_res + 1) + slot; }
  std::string down_res(int64_t l, int64_t s) const {
    return compvis() ? fmt::format("input_blocks.{}.0", in_index(l, s))
                     : fmt::format("down_blocks.{}.resnets.{}", l, s);
  }
  std::string down_attn(int64_t l, int64_t s) const {
    return compvis() ? fmt::format("input_blocks.{}.1", in_index(l, s))
                     : fmt::format("down_blocks.{}.attentions.{}", l, s);
  }
  std::string down_sample(int64_t l) const {
    return compvis() ? fmt::format("input_blocks.{}.0.op", in_index(l, n_res))
                     : fmt::format("down_blocks.{}.downsamplers.0.conv", l);
  }
  std::string mid_res(int i) const {
    return compvis() ? fmt::format("middle_block.{}", i == 0 ? 0 : 2) : fmt::format("mid_block.resnets.{}", i);
  }
  std::string mid_attn() const { return compvis() ? "middle_block.1" : "mid_block.attentions.0"; }
  // Output side: u counts levels from the bottom (u = levels - 1 - level), as both layouts do.
  std::string up_res(int64_t u, int64_t s) const {
    return compvis() ? fmt::format("output_blocks.{}.0", u * (n_res + 1) + s)
                     : fmt::format("up_blocks.{}.resnets.{}", u, s);
  }
  std::string up_attn(int64_t u, int64_t s) const {
    return compvis() ? fmt::format("output_blocks.{}.1", u * (n_res + 1) + s)
                     : fmt::format("up_blocks.{}.attentions.{}", u, s);
  }
  std::string up_sample(int64_t u, bool after_attn) const {
    return compvis() ? fmt::format("output_blocks.{}.{}.conv", u * (n_res + 1) + n_res, after_attn ? 2 : 1)
                     : fmt::format("up_blocks.{}.upsamplers.0.conv", u);
  }
  // ResBlock parts: 0 norm1, 1 conv1, 2 emb projection, 3 norm2, 4 conv2, 5 skip.
  std::string res_part(const std::string& prefix, int part) const {
    static const char* const kCompVis[] = {"in_layers.0",  "in_layers.2",  "emb_layers.1",
                                           "out_layers.0", "out_layers.3", "skip_connection"};
    static const char* const kDiffusers[] = {"norm1", "conv1", "time_emb_proj", "norm2", "conv2", "conv_shortcut"};
    return prefix + "." + (compvis() ? kCompVis : kDiffusers)[part];
  }
};

struct Loader {
  const WeightSource& w;
  Names names;
  ops::Precision precision;
  const UNetConfig& cfg;
  bool q8 = false;  // UNetWeightType::Q8_0
  int64_t emb_dim = 0, context_dim = 0, depth = 0;
  bool linear_proj = false;

  [[noreturn]] void fail(const std::string& what) const {
    error_throw(fmt::format("{}: {}", w.component(), what), w.file_name(),
                "expected a Stable Diffusion 1.x/2.x UNet (ldm UNetModel or diffusers UNet2DConditionModel)");
  }

  std::vector<int64_t> shape_of(const std::string& key) const { return w.get(key).shape_vec(); }

  Norm norm(const std::string& p, int64_t c) const {
    return {f32_copy(w.get(p + ".weight", {c})), f32_copy(w.get(p + ".bias", {c}))};
  }
  ops::PackedConv2d conv(const std::string& p, int64_t c_out, int64_t c_in, int64_t k, int stride) const {
    const Tensor& wt = w.get(p + ".weight", {c_out, c_in, k, k});
    const Tensor& b = w.get(p + ".bias", {c_out});
    return ops::PackedConv2d(wt, &b, stride, static_cast<int>(k / 2), precision, q8);
  }
  Linear linear(const std::string& p, int64_t n_out, int64_t n_in, bool bias) const {
    Linear l;
    l.in = n_in;
    l.out = n_out;
    const Tensor& wt = w.get(p + ".weight", {n_out, n_in});
    if (bias) l.bias = f32_copy(w.get(p + ".bias", {n_out}));
    if (q8 && n_in % kQK8_0 == 0) {  // rows quantised by the reference quantiser (as GGML and the twin)
      const Tensor wf = f32_copy(wt);
      l.q8 = Tensor::empty(DType::Q8_0, {n_out, n_in});
      const int64_t nb = n_in / kQK8_0;
      parallel_for(n_out, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          quantize_row_q8_0_ref(wf.ptr<float>() + r * n_in, static_cast<BlockQ8_0*>(l.q8.data()) + r * nb, n_in);
      });
      l.fc = std::make_unique<ops::PackedLinear>(l.q8, bias ? &l.bias : nullptr, 512, precision);
      return l;
    }
    l.fc = std::make_unique<ops::PackedLinear>(wt, bias ? &l.bias : nullptr, 512, precision, /*keep_original=*/false);
    return l;
  }

  ResBlock res(const std::string& p, int64_t c_in, int64_t c_out) const {
    ResBlock r;
    r.c_in = c_in;
    r.c_out = c_out;
    r.norm1 = norm(names.res_part(p, 0), c_in);
    r.conv1 = conv(names.res_part(p, 1), c_out, c_in, 3, 1);
    r.emb_proj = linear(names.res_part(p, 2), c_out, emb_dim, true);
    r.norm2 = norm(names.res_part(p, 3), c_out);
    r.conv2 = conv(names.res_part(p, 4), c_out, c_out, 3, 1);
    r.has_skip = c_in != c_out;
    if (r.has_skip) r.skip = conv(names.res_part(p, 5), c_out, c_in, 1, 1);
    if (c_in % cfg.norm_groups != 0 || c_out % cfg.norm_groups != 0)
      fail(fmt::format("'{}' has {} -> {} channels, not multiples of the {} GroupNorm groups", p, c_in, c_out,
                       cfg.norm_groups));
    return r;
  }

  SpatialTransformer attn(const std::string& p, int64_t c) const {
    SpatialTransformer s;
    s.channels = c;
    s.linear = linear_proj;
    s.norm = norm(p + ".norm", c);
    const std::vector<int64_t> pin = shape_of(p + ".proj_in.weight");
    if (pin.empty()) fail(fmt::format("'{}.proj_in.weight' has no dims", p));
    s.inner = pin[0];
    if (s.linear) {
      s.proj_in_lin = linear(p + ".proj_in", s.inner, c, true);
      s.proj_out_lin = linear(p + ".proj_out", c, s.inner, true);
    } else {
      s.proj_in_conv = conv(p + ".proj_in", s.inner, c, 1, 1);
      s.proj_out_conv = conv(p + ".proj_out", c, s.inner, 1, 1);
    }
    // Heads are not in the weights: ldm's num_head_channels (SD 2.x) or num_heads (SD 1.x).
    if (cfg.num_head_channels > 0) {
      if (s.inner % cfg.num_head_channels != 0)
        fail(fmt::format("'{}' has {} channels, not a multiple of num_head_channels {}", p, s.inner,
                         cfg.num_head_channels));
      s.heads = s.inner / cfg.num_head_channels;
    } else {
      if (cfg.num_heads < 1 || s.inner % cfg.num_heads != 0)
        fail(fmt::format("'{}' has {} channels, not divisible into {} heads", p, s.inner, cfg.num_heads));
      s.heads = cfg.num_heads;
    }
    if (c % cfg.norm_groups != 0)
      fail(fmt::format("'{}' has {} channels, not a multiple of {} groups", p, c, cfg.norm_groups));
    const int64_t d = s.inner;
    for (int64_t k = 0; k < depth; ++k) {
      const std::string b = fmt::format("{}.transformer_blocks.{}", p, k);
      TransformerBlock t;
      t.norm1 = norm(b + ".norm1", d);
      t.norm2 = norm(b + ".norm2", d);
      t.norm3 = norm(b + ".norm3", d);
      t.q1 = linear(b + ".attn1.to_q", d, d, false);
      t.k1 = linear(b + ".attn1.to_k", d, d, false);
      t.v1 = linear(b + ".attn1.to_v", d, d, false);
      t.out1 = linear(b + ".attn1.to_out.0", d, d, true);
      t.q2 = linear(b + ".attn2.to_q", d, d, false);
      t.k2 = linear(b + ".attn2.to_k", d, context_dim, false);
      t.v2 = linear(b + ".attn2.to_v", d, context_dim, false);
      t.out2 = linear(b + ".attn2.to_out.0", d, d, true);
      const std::vector<int64_t> ff = shape_of(b + ".ff.net.0.proj.weight");
      if (ff.size() != 2 || ff[0] % 2 != 0 || ff[0] == 0)
        fail(fmt::format("'{}.ff.net.0.proj.weight' has shape [{}], expected [2 * inner, {}] (GEGLU)", b,
                         fmt::join(ff, ", "), d));
      t.ff_inner = ff[0] / 2;
      t.ff_in = linear(b + ".ff.net.0.proj", 2 * t.ff_inner, d, true);
      t.ff_out = linear(b + ".ff.net.2", d, t.ff_inner, true);
      s.blocks.push_back(std::move(t));
    }
    return s;
  }
};

// The number of consecutive indices i = 0, 1, ... for which `key_of(i)` exists.
template <typename F>
int64_t count_while(const WeightSource& w, F key_of) {
  int64_t n = 0;
  while (n < 1000 && w.has(key_of(n))) ++n;
  return n;
}

}  // namespace

// ---- the model ------------------------------------------------------------------------------

struct UNet::Impl {
  UNetConfig cfg;
  ops::AttentionParams attn;  // bf16 matmuls when the model runs in bf16
  int64_t emb_dim = 0;
  Linear time1, time2;
  std::vector<Block> input_blocks;  // [0] = conv_in
  Block mid_res0, mid_res1;
  SpatialTransformer mid_attn;
  std::vector<Block> output_blocks;
  Norm out_norm;
  ops::PackedConv2d out_conv;
  std::vector<int64_t> input_block_channels;  // output channels of each input block (the skips)
  std::vector<int> input_block_level;         // level (resolution index) each input block writes at

  // Role buffers (see the file comment); skips are roles kSkip0 + i.
  enum Role {
    kMain0,
    kMain1,
    kWork0,
    kWork1,
    kTok0,
    kTok1,
    kQ,
    kK,
    kV,
    kFf,
    kFfGate,
    kTemb,
    kEmb,
    kEmbAct,
    kEmbOut,
    kX,
    kCtx,
    kCat,
    kSkip0
  };
  // The activation arena (see the file comment).
  std::shared_ptr<void> arena;
  size_t arena_bytes = 0;
  std::array<int64_t, 4> arena_key{};  // B, H, W, context length it was planned for
  std::vector<int64_t> need;           // elements per role
  std::vector<size_t> offset;          // bytes into the arena
  bool skips_bf16 = false;
  std::vector<Tensor> skips;           // views of the skip roles during forward()

  void plan(int64_t B, int64_t H, int64_t W, int64_t T);
  Tensor buf(int role, std::initializer_list<int64_t> shape, DType type = DType::F32) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    AIGC_ASSERT(static_cast<size_t>(role) < need.size() && n <= need[static_cast<size_t>(role)],
                "UNet activation plan too small for a buffer");
    return Tensor::view_of(type, std::span<const int64_t>(shape.begin(), shape.size()),
                           static_cast<uint8_t*>(arena.get()) + offset[static_cast<size_t>(role)], arena);
  }
  DType skip_type() const { return skips_bf16 ? DType::BF16 : DType::F32; }

  void res_run(const ResBlock& r, const Tensor& x, const Tensor& emb_act, Tensor& y, bool consume_x = false);
  void attn_run(const SpatialTransformer& s, const Tensor& x, const Tensor& ctx, Tensor& y);
  void block_run(const TransformerBlock& t, int64_t heads, Tensor& tok, const Tensor& ctx);
  void attention_run(const Linear& q, const Linear& k, const Linear& v, const Linear& o, int64_t heads,
                     const Tensor& xq, const Tensor& xkv, Tensor& out);
};

UNet::UNet() : impl_(std::make_unique<Impl>()) {}
UNet::UNet(UNet&&) noexcept = default;
UNet& UNet::operator=(UNet&&) noexcept = default;
UNet::~UNet() = default;

const UNetConfig& UNet::config() const { return impl_->cfg; }

UNetWeightType unet_weight_type_parse(std::string_view name, const char* what) {
  if (name == "default") return UNetWeightType::Default;
  if (name == "q8_0") return UNetWeightType::Q8_0;
  error_throw(fmt::format("unknown UNet weight type '{}'", name), what,
              "default (the checkpoint's f16/bf16/f32 weights packed in the compute precision) or q8_0 (about half "
              "the memory)");
}

std::string_view unet_weight_type_name(UNetWeightType t) { return t == UNetWeightType::Q8_0 ? "q8_0" : "default"; }

UNet UNet::load(const WeightSource& w, KeyLayout layout, const UNetConfig& heads, ops::Precision precision,
                UNetWeightType weights) {
  UNet u;
  Impl& m = *u.impl_;
  Loader L{w, Names{layout}, precision, heads, weights == UNetWeightType::Q8_0};
  if (precision == ops::Precision::BF16) m.attn.precision = ops::Precision::BF16;
  m.skips_bf16 = precision == ops::Precision::BF16;
  Names& nm = L.names;
  if (heads.norm_groups < 1) L.fail(fmt::format("norm_groups {} must be positive", heads.norm_groups));

  // Levels and res blocks per level, from which keys exist.
  if (nm.compvis()) {
    std::set<int64_t> downs, res;
    for (const std::string& k : w.keys()) {
      int64_t i = -1;
      char rest[64] = {0};
      if (std::sscanf(k.c_str(), "input_blocks.%" SCNd64 ".%63s", &i, rest) != 2 || i < 1) continue;
      const std::string r(rest);
      if (r == "0.op.weight") downs.insert(i);
      if (r == "0.in_layers.0.weight") res.insert(i);
    }
    if (res.empty()) L.fail("no res blocks found (no 'input_blocks.1.0.in_layers.0.weight')");
    nm.n_res = downs.empty() ? static_cast<int64_t>(res.size()) : *downs.begin() - 1;
    nm.levels = static_cast<int64_t>(downs.size()) + 1;
  } else {
    nm.levels = count_while(w, [](int64_t l) { return fmt::format("down_blocks.{}.resnets.0.conv1.weight", l); });
    nm.n_res = count_while(w, [](int64_t s) { return fmt::format("down_blocks.0.resnets.{}.conv1.weight", s); });
    if (nm.levels == 0) L.fail("no res blocks found (no 'down_blocks.0.resnets.0.conv1.weight')");
  }
  if (nm.n_res < 1) L.fail(fmt::format("{} res blocks per level", nm.n_res));

  // Widths from the shapes.
  UNetConfig& c = m.cfg;
  c = heads;
  const std::vector<int64_t> cin = L.shape_of(nm.conv_in() + ".weight");
  if (cin.size() != 4 || cin[2] != 3 || cin[3] != 3)
    L.fail(fmt::format("'{}.weight' has shape [{}], expected [model_channels, in_channels, 3, 3]", nm.conv_in(),
                       fmt::join(cin, ", ")));
  c.model_channels = cin[0];
  c.in_channels = cin[1];
  if (c.model_channels < 1 || c.in_channels < 1)
    L.fail(fmt::format("'{}.weight' has shape [{}]: no channels", nm.conv_in(), fmt::join(cin, ", ")));
  if (nm.levels > kMaxLevels) L.fail(fmt::format("{} levels (at most {} supported)", nm.levels, kMaxLevels));
  const std::vector<int64_t> te = L.shape_of(nm.time_embed(0) + ".weight");
  if (te.size() != 2) L.fail(fmt::format("'{}.weight' is not a linear weight", nm.time_embed(0)));
  m.emb_dim = L.emb_dim = te[0];
  const std::vector<int64_t> oc = L.shape_of(nm.out_conv() + ".weight");
  if (oc.size() != 4) L.fail(fmt::format("'{}.weight' is not a conv weight", nm.out_conv()));
  c.out_channels = oc[0];
  if (m.emb_dim < 1 || c.out_channels < 1) L.fail("time embedding or output conv without channels");
  c.num_res_blocks = nm.n_res;
  c.channel_mult.clear();
  c.attention_levels.clear();
  for (int64_t l = 0; l < nm.levels; ++l) {
    const std::vector<int64_t> s = L.shape_of(nm.res_part(nm.down_res(l, 0), 1) + ".weight");
    if (s.size() != 4 || s[0] < c.model_channels || s[0] % c.model_channels != 0)
      L.fail(fmt::format("'{}.weight' has shape [{}], expected [mult * {}, ...]", nm.res_part(nm.down_res(l, 0), 1),
                         fmt::join(s, ", "), c.model_channels));
    c.channel_mult.push_back(s[0] / c.model_channels);
    c.attention_levels.push_back(w.has(nm.down_attn(l, 0) + ".norm.weight"));
  }
  // Transformer depth, context width and projection kind from the middle block's transformer.
  const std::string mid = nm.mid_attn();
  L.depth = count_while(w, [&](int64_t k) { return fmt::format("{}.transformer_blocks.{}.norm1.weight", mid, k); });
  if (L.depth == 0) L.fail(fmt::format("no '{}.transformer_blocks.0' (a UNet without a middle transformer)", mid));
  const std::vector<int64_t> ck = L.shape_of(mid + ".transformer_blocks.0.attn2.to_k.weight");
  if (ck.size() != 2) L.fail(fmt::format("'{}.transformer_blocks.0.attn2.to_k.weight' is not a linear weight", mid));
  L.context_dim = ck[1];
  if (L.context_dim < 1) L.fail("cross-attention with a 0-wide context");
  L.linear_proj = L.shape_of(mid + ".proj_in.weight").size() == 2;
  c.transformer_depth = L.depth;
  c.context_dim = L.context_dim;
  c.linear_proj = L.linear_proj;

  // Build, reading (and shape-checking) every tensor.
  m.time1 = L.linear(nm.time_embed(0), m.emb_dim, c.model_channels, true);
  m.time2 = L.linear(nm.time_embed(1), m.emb_dim, m.emb_dim, true);
  {
    Block b;
    b.kind = Block::Kind::Conv;
    b.conv = L.conv(nm.conv_in(), c.model_channels, c.in_channels, 3, 1);
    m.input_blocks.push_back(std::move(b));
    m.input_block_channels.push_back(c.model_channels);
    m.input_block_level.push_back(0);
  }
  int64_t ch = c.model_channels;
  for (int64_t l = 0; l < nm.levels; ++l) {
    const int64_t width = c.channel_mult[l] * c.model_channels;
    for (int64_t s = 0; s < nm.n_res; ++s) {
      Block b;
      b.res = L.res(nm.down_res(l, s), ch, width);
      ch = width;
      if (c.attention_levels[l]) b.attn = L.attn(nm.down_attn(l, s), ch);
      m.input_blocks.push_back(std::move(b));
      m.input_block_channels.push_back(ch);
      m.input_block_level.push_back(static_cast<int>(l));
    }
    if (l + 1 < nm.levels) {
      Block b;
      b.kind = Block::Kind::Conv;
      b.conv = L.conv(nm.down_sample(l), ch, ch, 3, 2);
      m.input_blocks.push_back(std::move(b));
      m.input_block_channels.push_back(ch);
      m.input_block_level.push_back(static_cast<int>(l + 1));
    }
  }
  m.mid_res0.res = L.res(nm.mid_res(0), ch, ch);
  m.mid_attn = L.attn(mid, ch);
  m.mid_res1.res = L.res(nm.mid_res(1), ch, ch);
  std::vector<int64_t> skips = m.input_block_channels;
  for (int64_t l = nm.levels - 1; l >= 0; --l) {
    const int64_t u = nm.levels - 1 - l;
    const int64_t width = c.channel_mult[l] * c.model_channels;
    for (int64_t s = 0; s <= nm.n_res; ++s) {
      Block b;
      b.res = L.res(nm.up_res(u, s), ch + skips.back(), width);
      skips.pop_back();
      ch = width;
      if (c.attention_levels[l]) b.attn = L.attn(nm.up_attn(u, s), ch);
      if (l > 0 && s == nm.n_res) {
        b.has_up = true;
        b.up_conv = L.conv(nm.up_sample(u, c.attention_levels[l]), ch, ch, 3, 1);
      }
      m.output_blocks.push_back(std::move(b));
    }
  }
  m.out_norm = L.norm(nm.out_norm(), ch);
  m.out_conv = L.conv(nm.out_conv(), c.out_channels, ch, 3, 1);
  if (ch % c.norm_groups != 0)
    L.fail(fmt::format("{} output channels are not a multiple of {} groups", ch, c.norm_groups));
  w.unused_check();
  return u;
}

// ---- forward --------------------------------------------------------------------------------

// consume_x: x (the concatenation, wider than y) is dead after this block, so its memory takes the
// GroupNorm outputs and the second convolution's (same arithmetic: skip(x) + conv2 == conv2 + skip(x)).
void UNet::Impl::res_run(const ResBlock& r, const Tensor& x, const Tensor& emb_act, Tensor& y, bool consume_x) {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  const int groups = static_cast<int>(cfg.norm_groups);
  const bool in_x = consume_x && r.has_skip;
  if (in_x) {
    AIGC_ASSERT(x.is_contiguous() && r.c_in >= r.c_out);
    r.skip.run(x, y);
  }
  Tensor a = in_x ? x : buf(kWork0, {B, r.c_in, H, W});
  ops::group_norm(x, r.norm1.gamma, r.norm1.beta, groups, kResNormEps, a);
  ops::silu(a, a);
  Tensor h = buf(kWork1, {B, r.c_out, H, W});
  r.conv1.run(a, h);
  Tensor e = buf(kEmbOut, {B, r.c_out});
  r.emb_proj.run(emb_act, e);
  ops::add(h, e.reshape({B, r.c_out, 1, 1}), h);  // per-channel time conditioning
  Tensor a2 = in_x ? h : buf(kWork0, {B, r.c_out, H, W});
  ops::group_norm(h, r.norm2.gamma, r.norm2.beta, groups, kResNormEps, a2);
  ops::silu(a2, a2);
  const std::array<int64_t, 4> shape{B, r.c_out, H, W};
  Tensor t = in_x ? Tensor::view_of(DType::F32, shape, const_cast<void*>(x.data()), x.owner()) : y;
  r.conv2.run(a2, t);
  if (in_x) {
    ops::add(y, t, y);
  } else if (r.has_skip) {
    Tensor s = buf(kWork1, {B, r.c_out, H, W});
    r.skip.run(x, s);
    ops::add(y, s, y);
  } else {
    ops::add(y, x, y);
  }
}

// out [B, Tq, inner] = to_out(attention(to_q(xq), to_k(xkv), to_v(xkv))).
void UNet::Impl::attention_run(const Linear& q, const Linear& k, const Linear& v, const Linear& o, int64_t heads,
                               const Tensor& xq, const Tensor& xkv, Tensor& out) {
  const int64_t B = xq.size(0), Tq = xq.size(1), Tk = xkv.size(1), inner = q.out, D = inner / heads;
  Tensor qb = buf(kQ, {B, Tq, inner});
  Tensor kb = buf(kK, {B, Tk, inner});
  Tensor vb = buf(kV, {B, Tk, inner});
  q.run(xq, qb);
  k.run(xkv, kb);
  v.run(xkv, vb);
  Tensor ab = buf(kTok1, {B, Tq, inner});  // xq (block_run's LayerNorm output, kTok1) is dead now
  Tensor ab4 = ab.reshape({B, Tq, heads, D}).permute({0, 2, 1, 3});  // [B, H, Tq, D] view
  ops::attention(qb.reshape({B, Tq, heads, D}).permute({0, 2, 1, 3}),
                 kb.reshape({B, Tk, heads, D}).permute({0, 2, 1, 3}),
                 vb.reshape({B, Tk, heads, D}).permute({0, 2, 1, 3}), ab4, attn);
  o.run(ab, out);
}

void UNet::Impl::block_run(const TransformerBlock& t, int64_t heads, Tensor& tok, const Tensor& ctx) {
  const int64_t B = tok.size(0), T = tok.size(1), C = tok.size(2);
  Tensor n = buf(kTok1, {B, T, C});
  // Self-attention.
  ops::layer_norm(tok, &t.norm1.gamma, &t.norm1.beta, kLayerNormEps, n);
  Tensor r = buf(kWork1, {B, T, C});
  attention_run(t.q1, t.k1, t.v1, t.out1, heads, n, n, r);
  ops::add(tok, r, tok);
  // Cross-attention on the context.
  ops::layer_norm(tok, &t.norm2.gamma, &t.norm2.beta, kLayerNormEps, n);
  attention_run(t.q2, t.k2, t.v2, t.out2, heads, n, ctx, r);
  ops::add(tok, r, tok);
  // GEGLU feed-forward: [x, gate] = proj(n); ff_out(x * gelu(gate)), in chunks of rows.
  ops::layer_norm(tok, &t.norm3.gamma, &t.norm3.beta, kLayerNormEps, n);
  const int64_t rows = B * T, F = t.ff_inner;
  Tensor n2 = n.reshape({rows, C}), tok2 = tok.reshape({rows, C}), r2 = r.reshape({rows, C});
  const int64_t chunk = ff_rows(F);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    Tensor f = buf(kFf, {m, 2 * F});
    Tensor g = buf(kFfGate, {m, F});
    t.ff_in.run(n2.slice(0, r0, m), f);
    ops::gelu(f.slice(1, F, F), g);
    ops::mul(f.slice(1, 0, F), g, g);
    Tensor rr = r2.slice(0, r0, m);
    t.ff_out.run(g, rr);
  }
  ops::add(tok2, r2, tok2);
}

void UNet::Impl::attn_run(const SpatialTransformer& s, const Tensor& x, const Tensor& ctx, Tensor& y) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), T = H * W, I = s.inner;
  Tensor a = buf(kWork0, {B, C, H, W});
  ops::group_norm(x, s.norm.gamma, s.norm.beta, static_cast<int>(cfg.norm_groups), kAttnNormEps, a);
  Tensor tok = buf(kTok0, {B, T, I});
  if (s.linear) {
    Tensor t1 = buf(kTok1, {B, T, C});
    transpose_batched(a.ptr<float>(), t1.ptr<float>(), B, C, T);
    s.proj_in_lin.run(t1, tok);
  } else {
    Tensor p = buf(kWork1, {B, I, H, W});
    s.proj_in_conv.run(a, p);
    transpose_batched(p.ptr<float>(), tok.ptr<float>(), B, I, T);
  }
  for (const TransformerBlock& t : s.blocks) block_run(t, s.heads, tok, ctx);
  if (s.linear) {
    Tensor t1 = buf(kTok1, {B, T, C});
    s.proj_out_lin.run(tok, t1);
    transpose_batched(t1.ptr<float>(), y.ptr<float>(), B, T, C);
  } else {
    Tensor p = buf(kWork1, {B, I, H, W});
    transpose_batched(tok.ptr<float>(), p.ptr<float>(), B, T, I);
    s.proj_out_conv.run(p, y);
  }
  ops::add(y, x, y);
}

// Spatial size at a level: each stride-2 conv (kernel 3, padding 1) halves rounding up.
static int64_t level_size(int64_t size, int64_t level) {
  for (int64_t l = 0; l < level; ++l) size = (size + 1) / 2;
  return size;
}

// PyTorch's F.interpolate(mode="nearest") to y's size: source index floor(dst * in / out).
static void nearest_resize(const Tensor& x, Tensor& y) {
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), oh = y.size(2), ow = y.size(3);
  const float* src = x.ptr<float>();
  float* dst = y.ptr<float>();
  std::vector<int64_t> sx(static_cast<size_t>(ow));
  for (int64_t j = 0; j < ow; ++j) sx[static_cast<size_t>(j)] = std::min(w - 1, j * w / ow);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < oh; ++i) {
      const float* row = src + (p * h + std::min(h - 1, i * h / oh)) * w;
      float* out = dst + (p * oh + i) * ow;
      for (int64_t j = 0; j < ow; ++j) out[j] = row[sx[static_cast<size_t>(j)]];
    }
}

// cat [B, Ch + Cs, h, w] = [x, skip] along the channels (skip f32 or bf16). x may lie at the start of
// cat's own memory (the upsampler writes there): batches are moved last to first with memmove, so
// no batch is overwritten before it has moved.
static void concat_skip(const Tensor& x, const Tensor& skip, Tensor& cat) {
  const int64_t B = x.size(0), ch = x.size(1), cs = skip.size(1), hw = x.size(2) * x.size(3);
  AIGC_ASSERT(x.is_contiguous() && skip.is_contiguous() && cat.is_contiguous() && cat.size(1) == ch + cs);
  for (int64_t b = B - 1; b >= 0; --b) {
    float* dst = cat.ptr<float>() + b * (ch + cs) * hw;
    std::memmove(dst, x.ptr<float>() + b * ch * hw, static_cast<size_t>(ch * hw) * sizeof(float));
    float* ds = dst + ch * hw;
    if (skip.type() == DType::BF16) {
      const uint16_t* src = static_cast<const uint16_t*>(skip.data()) + b * cs * hw;
      parallel_for(cs * hw, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) ds[i] = bf16_to_f32(src[i]);
      }, 4096);
    } else {
      std::memcpy(ds, skip.ptr<float>() + b * cs * hw, static_cast<size_t>(cs * hw) * sizeof(float));
    }
  }
}

void UNet::forward(const Tensor& x_in, std::span<const float> timesteps, const Tensor& context, Tensor& out) {
  Impl& m = *impl_;
  const UNetConfig& c = m.cfg;
  if (x_in.ndim() != 4 || x_in.type() != DType::F32 || x_in.size(0) < 1 || x_in.size(1) != c.in_channels ||
      x_in.size(2) < 1 || x_in.size(3) < 1)
    error_throw(fmt::format("UNet: x is {}, expected f32 [B, {}, H, W]", x_in.shape_str(), c.in_channels),
                "UNet::forward", "pass the latent (and, for inpainting models, mask and masked-image latent)");
  const int64_t B = x_in.size(0), H = x_in.size(2), W = x_in.size(3);
  if (static_cast<int64_t>(timesteps.size()) != B)
    error_throw(fmt::format("UNet: {} timesteps for a batch of {}", timesteps.size(), B), "UNet::forward");
  if (context.ndim() != 3 || context.type() != DType::F32 || context.size(0) != B || context.size(1) < 1 ||
      context.size(2) != c.context_dim)
    error_throw(fmt::format("UNet: context is {}, expected f32 [{}, T, {}]", context.shape_str(), B, c.context_dim),
                "UNet::forward", "the text encoder's hidden states, one row of the batch per latent");
  if (out.ndim() != 4 || out.type() != DType::F32 || out.size(0) != B || out.size(1) != c.out_channels ||
      out.size(2) != H || out.size(3) != W)
    error_throw(fmt::format("UNet: out is {}, expected f32 [{}, {}, {}, {}]", out.shape_str(), B, c.out_channels, H, W),
                "UNet::forward");
  const std::array<int64_t, 4> key{B, H, W, context.size(1)};
  if (!m.arena || key != m.arena_key) {
    m.skips.clear();
    m.arena.reset();  // before the new one: the peak is one arena
    m.plan(B, H, W, context.size(1));
    m.arena = buffer_alloc(m.arena_bytes);
    m.arena_key = key;
  }
  Tensor x = x_in;
  if (!x.is_contiguous()) {
    x = m.buf(Impl::kX, {B, c.in_channels, H, W});
    ops::copy(x_in, x);
  }
  Tensor ctx = context;
  if (!ctx.is_contiguous()) {
    ctx = m.buf(Impl::kCtx, {B, context.size(1), c.context_dim});
    ops::copy(context, ctx);
  }

  // Time embedding; every ResBlock's emb_layers start with SiLU, so apply it once here.
  Tensor temb = m.buf(Impl::kTemb, {B, c.model_channels});
  timestep_embedding(timesteps, c.model_channels, temb);
  Tensor e1 = m.buf(Impl::kEmb, {B, m.emb_dim});
  m.time1.run(temb, e1);
  ops::silu(e1, e1);
  Tensor emb_act = m.buf(Impl::kEmbAct, {B, m.emb_dim});
  m.time2.run(e1, emb_act);
  ops::silu(emb_act, emb_act);

  // Input blocks: h alternates between the main buffers; each output is also kept as a skip.
  auto other = [](int role) { return role == Impl::kMain0 ? Impl::kMain1 : Impl::kMain0; };
  std::vector<Tensor>& skips = m.skips;  // a member, so that its storage is reused
  skips.clear();
  Tensor h = x;
  int cur = Impl::kMain1;  // the main buffer holding h (x at first: neither)
  for (size_t i = 0; i < m.input_blocks.size(); ++i) {
    const Block& b = m.input_blocks[i];
    const int64_t hs = level_size(H, m.input_block_level[i]), ws = level_size(W, m.input_block_level[i]);
    const int64_t ch = m.input_block_channels[i];
    const int role = other(cur);
    Tensor y = m.buf(role, {B, ch, hs, ws});
    if (b.kind == Block::Kind::Conv) {
      b.conv.run(h, y);
      cur = role;
    } else if (b.attn) {
      m.res_run(b.res, h, emb_act, y);
      Tensor t = m.buf(cur, {B, ch, hs, ws});  // h is dead (kept as its skip)
      m.attn_run(*b.attn, y, ctx, t);
      y = t;
    } else {
      m.res_run(b.res, h, emb_act, y);
      cur = role;
    }
    Tensor skip = m.buf(Impl::kSkip0 + static_cast<int>(i), {B, ch, hs, ws}, m.skip_type());
    ops::copy(y, skip);  // bf16: rounded to nearest even
    skips.push_back(skip);
    h = y;
  }

  // Middle block.
  {
    const int64_t ch = h.size(1), hs = h.size(2), ws = h.size(3);
    Tensor a = m.buf(other(cur), {B, ch, hs, ws});
    Tensor b = m.buf(cur, {B, ch, hs, ws});
    m.res_run(m.mid_res0.res, h, emb_act, a);
    m.attn_run(m.mid_attn, a, ctx, b);
    m.res_run(m.mid_res1.res, b, emb_act, a);
    h = a;
    cur = other(cur);
  }

  // Output blocks: concat [h, skip], ResBlock, optional transformer and upsampler (which writes h
  // where the next concatenation goes).
  for (const Block& b : m.output_blocks) {
    const Tensor skip = skips.back();
    skips.pop_back();
    const int64_t hs = h.size(2), ws = h.size(3), cat_c = h.size(1) + skip.size(1);
    Tensor cat = m.buf(Impl::kCat, {B, cat_c, hs, ws});
    concat_skip(h, skip, cat);
    int role = other(cur);
    Tensor r = m.buf(role, {B, b.res.c_out, hs, ws});
    m.res_run(b.res, cat, emb_act, r, /*consume_x=*/true);
    cur = role;
    h = r;
    if (b.attn) {
      role = other(cur);
      Tensor t = m.buf(role, {B, b.res.c_out, hs, ws});
      m.attn_run(*b.attn, h, ctx, t);
      cur = role;
      h = t;
    }
    if (b.has_up) {
      // Up to the next skip's size: 2x, or one less where the way down rounded an odd size up.
      const int64_t th = skips.empty() ? 2 * hs : skips.back().size(2), tw = skips.empty() ? 2 * ws : skips.back().size(3);
      Tensor u = m.buf(Impl::kWork0, {B, b.res.c_out, th, tw});
      if (th == 2 * hs && tw == 2 * ws)
        ops::upsample_nearest(h, 2, u);
      else
        nearest_resize(h, u);
      Tensor t = m.buf(Impl::kCat, {B, b.res.c_out, th, tw});
      b.up_conv.run(u, t);
      h = t;
    }
  }

  Tensor a = m.buf(Impl::kWork0, {B, h.size(1), H, W});
  ops::group_norm(h, m.out_norm.gamma, m.out_norm.beta, static_cast<int>(c.norm_groups), kResNormEps, a);
  ops::silu(a, a);
  m.out_conv.run(a, out);
}

// The arena for inputs [B, in, H, W] and a context of T tokens: every role's largest request,
// walking the blocks as forward() does (buf() asserts each request fits).
void UNet::Impl::plan(int64_t B, int64_t H, int64_t W, int64_t T) {
  need.assign(kSkip0 + input_blocks.size(), 0);
  auto at = [&](int role, int64_t n) { need[static_cast<size_t>(role)] = std::max(need[static_cast<size_t>(role)], n); };
  auto mains = [&](int64_t n) { at(kMain0, n), at(kMain1, n); };
  auto res = [&](const ResBlock& r, int64_t hw) {
    at(kWork0, B * std::max(r.c_in, r.c_out) * hw);
    at(kWork1, B * r.c_out * hw);
    at(kEmbOut, B * r.c_out);
  };
  auto attn = [&](const SpatialTransformer& s, int64_t hw) {
    const int64_t C = s.channels, I = s.inner, rows = B * hw;
    at(kWork0, B * C * hw);
    at(kTok0, rows * I);
    at(s.linear ? kTok1 : kWork1, rows * std::max(C, I));
    for (const TransformerBlock& t : s.blocks) {
      at(kTok1, rows * I);
      at(kWork1, rows * I);
      at(kQ, rows * I);
      at(kK, B * std::max(hw, T) * I);
      at(kV, B * std::max(hw, T) * I);
      const int64_t m = std::min(ff_rows(t.ff_inner), rows);
      at(kFf, m * 2 * t.ff_inner);
      at(kFfGate, m * t.ff_inner);
    }
  };
  at(kX, B * cfg.in_channels * H * W);
  at(kCtx, B * T * cfg.context_dim);
  at(kTemb, B * cfg.model_channels);
  at(kEmb, B * emb_dim);
  at(kEmbAct, B * emb_dim);
  std::vector<std::array<int64_t, 3>> skip_dims;  // channels, h, w
  for (size_t i = 0; i < input_blocks.size(); ++i) {
    const Block& b = input_blocks[i];
    const int64_t hs = level_size(H, input_block_level[i]), ws = level_size(W, input_block_level[i]);
    const int64_t ch = input_block_channels[i];
    mains(B * ch * hs * ws);
    at(kSkip0 + static_cast<int>(i), B * ch * hs * ws);
    skip_dims.push_back({ch, hs, ws});
    if (b.kind == Block::Kind::Res) res(b.res, hs * ws);
    if (b.attn) attn(*b.attn, hs * ws);
  }
  {
    const auto [ch, hs, ws] = skip_dims.back();
    mains(B * ch * hs * ws);
    res(mid_res0.res, hs * ws);
    attn(mid_attn, hs * ws);
    res(mid_res1.res, hs * ws);
  }
  int64_t ch = skip_dims.back()[0], hs = skip_dims.back()[1], ws = skip_dims.back()[2];
  for (const Block& b : output_blocks) {
    const int64_t skip_c = skip_dims.back()[0];
    skip_dims.pop_back();
    at(kCat, B * (ch + skip_c) * hs * ws);
    if (b.res.has_skip) {  // res_run consumes the concatenation
      at(kWork1, B * b.res.c_out * hs * ws);
      at(kEmbOut, B * b.res.c_out);
    } else {
      res(b.res, hs * ws);
    }
    ch = b.res.c_out;
    mains(B * ch * hs * ws);
    if (b.attn) attn(*b.attn, hs * ws);
    if (b.has_up) {
      const int64_t th = skip_dims.empty() ? 2 * hs : skip_dims.back()[1];
      const int64_t tw = skip_dims.empty() ? 2 * ws : skip_dims.back()[2];
      at(kWork0, B * ch * th * tw);
      at(kCat, B * ch * th * tw);
      hs = th, ws = tw;
    }
  }
  at(kWork0, B * ch * H * W);

  // Layout: every role its own range, except that the concatenation shares its range with the
  // transformer's buffers (used inside attn_run only, after the concatenation is consumed).
  offset.assign(need.size(), 0);
  size_t top = 0;
  auto place = [&](int role) {
    const size_t es = role >= kSkip0 && skips_bf16 ? 2 : 4;
    offset[static_cast<size_t>(role)] = top;
    top += (static_cast<size_t>(need[static_cast<size_t>(role)]) * es + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  };
  for (int r = 0; r < static_cast<int>(need.size()); ++r)
    if (r != kCat && (r < kTok0 || r > kFfGate)) place(r);
  const size_t shared = top;
  for (int r = kTok0; r <= kFfGate; ++r) place(r);
  const size_t tokens_end = top;
  top = shared;
  place(kCat);
  top = std::max(top, tokens_end);
  arena_bytes = std::max<size_t>(top, kTensorAlign);
}

size_t UNet::weight_bytes() const {
  const Impl& m = *impl_;
  size_t n = 0;
  auto lin = [&](const Linear& l) { n += l.fc->packed_bytes() + l.bias.nbytes() + (l.q8.ndim() ? l.q8.nbytes() : 0); };
  auto norm = [&](const Norm& x) { n += x.gamma.nbytes() + x.beta.nbytes(); };
  auto res = [&](const ResBlock& r) {
    norm(r.norm1);
    norm(r.norm2);
    n += r.conv1.weight_bytes() + r.conv2.weight_bytes() + (r.has_skip ? r.skip.weight_bytes() : 0);
    lin(r.emb_proj);
  };
  auto attn = [&](const SpatialTransformer& s) {
    norm(s.norm);
    if (s.linear) {
      lin(s.proj_in_lin);
      lin(s.proj_out_lin);
    } else {
      n += s.proj_in_conv.weight_bytes() + s.proj_out_conv.weight_bytes();
    }
    for (const TransformerBlock& t : s.blocks) {
      norm(t.norm1);
      norm(t.norm2);
      norm(t.norm3);
      for (const Linear* l : {&t.q1, &t.k1, &t.v1, &t.out1, &t.q2, &t.k2, &t.v2, &t.out2, &t.ff_in, &t.ff_out}) lin(*l);
    }
  };
  auto block = [&](const Block& b) {
    if (b.kind == Block::Kind::Conv) {
      n += b.conv.weight_bytes();
      return;
    }
    res(b.res);
    if (b.attn) attn(*b.attn);
    if (b.has_up) n += b.up_conv.weight_bytes();
  };
  lin(m.time1);
  lin(m.time2);
  for (const Block& b : m.input_blocks) block(b);
  block(m.mid_res0);
  attn(m.mid_attn);
  block(m.mid_res1);
  for (const Block& b : m.output_blocks) block(b);
  norm(m.out_norm);
  n += m.out_conv.weight_bytes();
  return n;
}

size_t UNet::activation_bytes() const { return impl_->arena ? impl_->arena_bytes : 0; }

void timestep_embedding(std::span<const float> timesteps, int64_t dim, Tensor& out) {
  const int64_t B = static_cast<int64_t>(timesteps.size());
  AIGC_CHECK(dim >= 2, "timestep_embedding: dim {} must be at least 2", dim);
  AIGC_CHECK(out.type() == DType::F32 && out.ndim() == 2 && out.size(0) == B && out.size(1) == dim,
             "timestep_embedding: out is {}, expected f32 [{}, {}]", out.shape_str(), B, dim);
  const int64_t half = dim / 2;
  // In float32 step by step as ldm computes it (exp(-ln(10000) * i / half), t * f), so the
  // arguments round as PyTorch's do; the cos/sin themselves in double, rounded once.
  const float neg_log = static_cast<float>(-std::log(10000.0));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < half; ++i) {
      const float f = std::exp(neg_log * static_cast<float>(i) / static_cast<float>(half));
      const float arg = timesteps[static_cast<size_t>(b)] * f;
      out.at<float>(b, i) = static_cast<float>(std::cos(static_cast<double>(arg)));
      out.at<float>(b, half + i) = static_cast<float>(std::sin(static_cast<double>(arg)));
    }
    if (dim % 2) out.at<float>(b, dim - 1) = 0.0f;
  }
}

}  // namespace aigc::image
