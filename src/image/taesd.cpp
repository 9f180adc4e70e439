// Taesd: loading (layer sequence derived from the keys, checked) and the forward pass on the CPU ops.
#include "image/taesd.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "backend/cpu/ops.h"
#include "core/thread_pool.h"
#include "formats/safetensors.h"

namespace aigc {

namespace {

constexpr int kPoolGroups = 4;       // nn.GroupNorm(4, 4n) in taesd.py
constexpr float kPoolEps = 1e-5f;    // nn.GroupNorm's default eps
constexpr int kSpatialScale = 8;

// Reads the module-indexed keys of one file ("3.conv.0.weight" -> index 3, rest "conv.0.weight").
class KeyReader {
 public:
  KeyReader(const SafetensorsFile& f, const std::string& name) : f_(f), name_(name) {
    for (const TensorInfo& ti : f.tensor_infos()) {
      const size_t dot = ti.name.find('.');
      const std::string head = ti.name.substr(0, dot);
      const bool digits = !head.empty() && head.size() <= 4 &&
                          std::all_of(head.begin(), head.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (dot == std::string::npos || !digits)
        error_throw(fmt::format("tensor '{}' is not an nn.Sequential key (\"<index>.<name>\")", ti.name), name,
                    "expected a TAESD-family encoder or decoder (keys such as \"1.weight\", \"3.conv.0.weight\")");
      const int idx = std::stoi(head);
      by_index_[idx].insert(ti.name.substr(dot + 1));
      max_index_ = std::max(max_index_, idx);
    }
    if (by_index_.empty())
      error_throw("file has no tensors", name, "expected a TAESD-family encoder or decoder");
  }

  int max_index() const { return max_index_; }
  bool has(int i, const std::string& rest) const {
    auto it = by_index_.find(i);
    return it != by_index_.end() && it->second.count(rest) != 0;
  }
  bool has_any(int i) const { return by_index_.count(i) != 0; }

  // The tensor "i.rest" as an owned f32 copy, with exactly `shape`.
  Tensor take(int i, const std::string& rest, std::vector<int64_t> shape) {
    const std::string key = fmt::format("{}.{}", i, rest);
    if (!has(i, rest)) error_throw(fmt::format("missing tensor '{}'", key), name_, hint());
    const TensorInfo* ti = f_.find(key);
    if (ti->shape != shape)
      error_throw(fmt::format("tensor '{}' has shape [{}], expected [{}]", key, fmt::join(ti->shape, ", "),
                              fmt::join(shape, ", ")),
                  name_, hint());
    if (!ti->type || (*ti->type != DType::F32 && *ti->type != DType::F16 && *ti->type != DType::BF16))
      error_throw(fmt::format("tensor '{}' has type {}, expected F32, F16 or BF16", key, ti->type_name), name_);
    Tensor src = f_.tensor(key);
    Tensor dst = Tensor::empty(DType::F32, src.shape());
    ops::copy(src, dst);
    used_.insert(key);
    return dst;
  }
  // Shape of "i.rest" (which must exist).
  const std::vector<int64_t>& shape(int i, const std::string& rest) const {
    const TensorInfo* ti = f_.find(fmt::format("{}.{}", i, rest));
    AIGC_ASSERT(ti != nullptr);
    return ti->shape;
  }

  void check_all_used() const {
    for (const TensorInfo& ti : f_.tensor_infos())
      if (!used_.count(ti.name))
        error_throw(fmt::format("unexpected tensor '{}' (shape [{}])", ti.name, fmt::join(ti.shape, ", ")), name_,
                    hint());
  }
  std::string hint() const { return "expected a TAESD-family encoder or decoder (madebyollin/taesd layout)"; }
  const std::string& name() const { return name_; }

 private:
  const SafetensorsFile& f_;
  std::string name_;
  std::map<int, std::set<std::string>> by_index_;
  std::set<std::string> used_;
  int max_index_ = -1;
};

Taesd::Conv conv_take(KeyReader& r, int i, const std::string& prefix, int64_t c_in, bool bias_required) {
  const std::string wkey = prefix + "weight";
  if (!r.has(i, wkey)) error_throw(fmt::format("missing tensor '{}.{}'", i, wkey), r.name(), r.hint());
  const std::vector<int64_t>& s = r.shape(i, wkey);
  if (s.size() != 4 || s[1] != c_in || s[2] != s[3] || (s[2] != 3 && s[2] != 1) || s[0] < 1)
    error_throw(fmt::format("tensor '{}.{}' has shape [{}], expected [out, {}, 3, 3] or [out, {}, 1, 1]", i, wkey,
                            fmt::join(s, ", "), c_in, c_in),
                r.name(), r.hint());
  Taesd::Conv c;
  c.w = r.take(i, wkey, s);
  if (bias_required || r.has(i, prefix + "bias")) c.b = r.take(i, prefix + "bias", {s[0]});
  return c;
}

Taesd::Layer block_take(KeyReader& r, int i, int64_t c_in) {
  Taesd::Layer l;
  l.kind = Taesd::LayerKind::Block;
  l.c_in = c_in;
  if (r.has(i, "pool.0.weight")) {
    const int64_t n_gn = 4 * c_in;
    l.has_pool = true;
    l.pool0.w = r.take(i, "pool.0.weight", {n_gn, c_in, 1, 1});
    l.gn_gamma = r.take(i, "pool.1.weight", {n_gn});
    l.gn_beta = r.take(i, "pool.1.bias", {n_gn});
    l.pool3.w = r.take(i, "pool.3.weight", {c_in, n_gn, 1, 1});
  }
  l.c0 = conv_take(r, i, "conv.0.", c_in, true);
  const int64_t n = l.c0.w.size(0);
  l.c2 = conv_take(r, i, "conv.2.", n, true);
  l.c4 = conv_take(r, i, "conv.4.", n, true);
  for (const Taesd::Conv* c : {&l.c0, &l.c2, &l.c4})
    if (c->w.size(0) != n || c->w.size(2) != 3)
      error_throw(fmt::format("block {}: its convs must all be [{}, ., 3, 3]", i, n), r.name(), r.hint());
  if (n != c_in) {
    l.has_skip = true;
    l.skip.w = r.take(i, "skip.weight", {n, c_in, 1, 1});
  }
  l.c_out = n;
  return l;
}

// y = relu(y + s) on contiguous floats (distinct buffers).
void add_relu_inplace(float* y, const float* s, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float v = y[i] + s[i];
      y[i] = v > 0.0f ? v : 0.0f;
    }
  }, 1 << 14);
}

void add_inplace(float* y, const float* s, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] += s[i];
  }, 1 << 14);
}

// Clamp of taesd.py: tanh(x / 3) * 3 (soft limit of the latent to (-3, 3)).
void soft_clamp_inplace(float* x, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] = std::tanh(x[i] / 3.0f) * 3.0f;
  }, 1 << 12);
}

// Output shape of a conv with kernel k (pad k/2) and stride s.
int64_t conv_out(int64_t h, int64_t k, int stride) { return (h + 2 * (k / 2) - k) / stride + 1; }

}  // namespace

Taesd Taesd::load(const std::string& path) { return from_safetensors(SafetensorsFile::open(path), path); }

Taesd Taesd::from_safetensors(const SafetensorsFile& file, const std::string& name) {
  KeyReader r(file, name);
  Taesd t;
  t.name_ = name;
  // A decoder starts with the parameter-free Clamp (index 0 absent); an encoder with conv(3, .).
  if (r.has(0, "weight")) {
    t.kind_ = TaesdKind::Encoder;
  } else if (!r.has_any(0) && r.has(1, "weight")) {
    t.kind_ = TaesdKind::Decoder;
  } else {
    error_throw("neither an encoder (\"0.weight\") nor a decoder (\"1.weight\" after a parameter-free Clamp)", name,
                r.hint());
  }
  const bool enc = t.kind_ == TaesdKind::Encoder;
  int64_t ch = -1;   // channels flowing into the next layer (-1: not known yet, the decoder's latent)
  int scale = 1;     // spatial down (encoder) or up (decoder) factor so far
  for (int i = 0; i <= r.max_index(); ++i) {
    const LayerKind prev = t.layers_.empty() ? LayerKind::Clamp : t.layers_.back().kind;
    Layer l;
    if (r.has(i, "weight")) {
      const std::vector<int64_t>& s = r.shape(i, "weight");
      if (ch < 0) {  // the first conv: its input is the image (encoder) or the latent (decoder)
        if (s.size() != 4) error_throw(fmt::format("tensor '{}.weight' is not a conv weight", i), name, r.hint());
        ch = s[1];
        if (enc && ch != 3)
          error_throw(fmt::format("encoder input conv '0.weight' takes {} channels, expected 3 (RGB)", ch), name,
                      r.hint());
        if (!enc) {
          t.latent_channels_ = ch;
          t.layers_.front().c_in = t.layers_.front().c_out = ch;  // the Clamp
        }
      }
      l.kind = LayerKind::Conv;
      l.c_in = ch;
      l.conv = conv_take(r, i, "", ch, false);
      l.c_out = l.conv.w.size(0);
      if (l.conv.w.size(2) != 3)
        error_throw(fmt::format("tensor '{}.weight': the main-path convs of TAESD are 3x3", i), name, r.hint());
      // Encoder: the bias-free convs are the stride-2 downsamplers; all others keep the size.
      if (enc && !l.conv.has_bias()) {
        l.conv.stride = 2;
        scale *= 2;
      }
    } else if (r.has(i, "conv.0.weight")) {
      if (ch < 0) error_throw(fmt::format("block {} before any conv", i), name, r.hint());
      l = block_take(r, i, ch);
    } else if (r.has_any(i)) {
      error_throw(fmt::format("module {} is neither a conv (\"{}.weight\") nor a block (\"{}.conv.0.weight\")", i, i,
                              i),
                  name, r.hint());
    } else if (!enc && i == 0) {
      l.kind = LayerKind::Clamp;
    } else if (!enc && prev == LayerKind::Conv) {
      l.kind = LayerKind::Relu;
    } else if (!enc && prev == LayerKind::Block) {
      l.kind = LayerKind::Upsample;
      scale *= 2;
    } else {
      error_throw(fmt::format("unsupported parameter-free module at index {} (a TAESD variant with other than "
                              "8x scale, e.g. TAESANA's 32x, is not supported)",
                              i),
                  name, r.hint());
    }
    if (l.kind == LayerKind::Conv || l.kind == LayerKind::Block) {
      ch = l.c_out;
    } else {
      l.c_in = l.c_out = ch;
    }
    if (scale > kSpatialScale)
      error_throw(fmt::format("module {} makes the {} scale by more than {}x (a TAESANA-style 32x variant?)", i,
                              enc ? "encoder" : "decoder", kSpatialScale),
                  name, r.hint());
    t.layers_.push_back(std::move(l));
  }
  r.check_all_used();
  if (t.layers_.back().kind != LayerKind::Conv)
    error_throw("the last module is not a conv", name, r.hint());
  if (enc) {
    t.latent_channels_ = ch;
  } else if (ch != 3) {
    error_throw(fmt::format("decoder output conv gives {} channels, expected 3 (RGB)", ch), name, r.hint());
  }
  if (scale != kSpatialScale)
    error_throw(fmt::format("the {} scales by {}x, expected {}x", enc ? "encoder" : "decoder", scale, kSpatialScale),
                name, r.hint());
  return t;
}

bool Taesd::has_pool_blocks() const {
  return std::any_of(layers_.begin(), layers_.end(), [](const Layer& l) { return l.has_pool; });
}

std::vector<int64_t> Taesd::output_shape(std::span<const int64_t> in) const {
  const bool enc = kind_ == TaesdKind::Encoder;
  const int64_t want_c = enc ? 3 : latent_channels_;
  if (in.size() != 4 || in[0] < 1 || in[1] != want_c || in[2] < 1 || in[3] < 1)
    error_throw(fmt::format("Taesd {}: input has shape [{}], expected [N, {}, H, W]", enc ? "encode" : "decode",
                            fmt::join(in, ", "), want_c),
                name_);
  int64_t h = in[2], w = in[3];
  for (const Layer& l : layers_) {
    if (l.kind == LayerKind::Conv) {
      h = conv_out(h, l.conv.w.size(2), l.conv.stride);
      w = conv_out(w, l.conv.w.size(3), l.conv.stride);
    } else if (l.kind == LayerKind::Upsample) {
      h *= 2;
      w *= 2;
    }
  }
  return {in[0], layers_.back().c_out, h, w};
}

void Taesd::buffers_reserve(std::span<const int64_t> in) {
  // Largest activation (channels x spatial) over the whole pass, and of the pool branch.
  int64_t h = in[2], w = in[3], need = in[1] * h * w, pool_need = 0;
  for (const Layer& l : layers_) {
    if (l.kind == LayerKind::Conv) {
      h = conv_out(h, l.conv.w.size(2), l.conv.stride);
      w = conv_out(w, l.conv.w.size(3), l.conv.stride);
    } else if (l.kind == LayerKind::Upsample) {
      h *= 2;
      w *= 2;
    }
    need = std::max(need, std::max(l.c_in, l.c_out) * h * w);
    if (l.has_pool) pool_need = std::max(pool_need, l.gn_gamma.size(0) * h * w);
  }
  need *= in[0];
  pool_need *= in[0];
  if (need > buf_elems_) {
    for (Tensor& b : buf_) b = Tensor::empty(DType::F32, {need});
    buf_elems_ = need;
  }
  if (pool_need > pool_elems_) {
    for (Tensor& b : pool_buf_) b = Tensor::empty(DType::F32, {pool_need});
    pool_elems_ = pool_need;
  }
}

void Taesd::run(const Tensor& input, Tensor& output) {
  const std::vector<int64_t> out_shape = output_shape(input.shape());
  AIGC_CHECK(output.type() == DType::F32 && output.shape_vec() == out_shape,
             "Taesd: output must be f32 [{}], got {}", fmt::join(out_shape, ", "), output.shape_str());
  buffers_reserve(input.shape());
  const int64_t n = input.size(0);
  auto view = [&](Tensor& buf, int64_t c, int64_t h, int64_t w) {
    const int64_t shape[] = {n, c, h, w};
    return Tensor::view_of(DType::F32, shape, buf.data());
  };
  int cur = 0;  // index of the buffer holding the current activation
  int64_t c = input.size(1), h = input.size(2), w = input.size(3);
  Tensor x = view(buf_[0], c, h, w);
  ops::copy(input, x);  // any type / strides in; f32 contiguous from here on
  for (const Layer& l : layers_) {
    const int a = (cur + 1) % 3, b = (cur + 2) % 3;  // the two free buffers
    switch (l.kind) {
      case LayerKind::Conv: {
        const int k = static_cast<int>(l.conv.w.size(2));
        h = conv_out(h, k, l.conv.stride);
        w = conv_out(w, k, l.conv.stride);
        Tensor y = view(buf_[a], l.c_out, h, w);
        ops::conv2d(x, l.conv.w, l.conv.has_bias() ? &l.conv.b : nullptr, y, l.conv.stride, k / 2);
        x = y;
        cur = a;
        break;
      }
      case LayerKind::Relu:
        ops::relu(x, x);
        break;
      case LayerKind::Clamp:
        soft_clamp_inplace(x.ptr<float>(), x.numel());
        break;
      case LayerKind::Upsample: {
        h *= 2;
        w *= 2;
        Tensor y = view(buf_[a], c, h, w);
        ops::upsample_nearest(x, 2, y);
        x = y;
        cur = a;
        break;
      }
      case LayerKind::Block: {
        Tensor t1 = view(buf_[a], l.c_out, h, w), t2 = view(buf_[b], l.c_out, h, w);
        if (l.has_pool) {  // x = x + conv1x1(relu(group_norm(conv1x1(x))))
          const int64_t g = l.gn_gamma.size(0);
          Tensor p1 = view(pool_buf_[0], g, h, w), p2 = view(pool_buf_[1], g, h, w);
          Tensor tp = view(buf_[a], c, h, w);
          ops::conv2d(x, l.pool0.w, nullptr, p1, 1, 0);
          ops::group_norm(p1, l.gn_gamma, l.gn_beta, kPoolGroups, kPoolEps, p2);
          ops::relu(p2, p2);
          ops::conv2d(p2, l.pool3.w, nullptr, tp, 1, 0);
          add_inplace(x.ptr<float>(), tp.ptr<float>(), x.numel());
        }
        ops::conv2d(x, l.c0.w, &l.c0.b, t1, 1, 1);
        ops::relu(t1, t1);
        ops::conv2d(t1, l.c2.w, &l.c2.b, t2, 1, 1);
        ops::relu(t2, t2);
        ops::conv2d(t2, l.c4.w, &l.c4.b, t1, 1, 1);
        if (l.has_skip) {  // relu(conv(x) + skip(x)), the result in t1
          ops::conv2d(x, l.skip.w, nullptr, t2, 1, 0);
          add_relu_inplace(t1.ptr<float>(), t2.ptr<float>(), t1.numel());
          x = t1;
          cur = a;
        } else {  // same channels: relu(conv(x) + x), in place in x
          add_relu_inplace(x.ptr<float>(), t1.ptr<float>(), x.numel());
        }
        break;
      }
    }
    c = l.c_out;
  }
  AIGC_ASSERT(x.shape_vec() == out_shape, "Taesd: planned {} got {}", fmt::join(out_shape, ", "), x.shape_str());
  ops::copy(x, output);
}

void Taesd::decode(const Tensor& latent, Tensor& image) {
  if (kind_ != TaesdKind::Decoder)
    error_throw("decode() called on a TAESD encoder", name_, "load the *_decoder file to decode");
  run(latent, image);
}

Tensor Taesd::decode(const Tensor& latent) {
  Tensor out = Tensor::empty(DType::F32, output_shape(latent.shape()));
  decode(latent, out);
  return out;
}

void Taesd::encode(const Tensor& image, Tensor& latent) {
  if (kind_ != TaesdKind::Encoder)
    error_throw("encode() called on a TAESD decoder", name_, "load the *_encoder file to encode");
  run(image, latent);
}

Tensor Taesd::encode(const Tensor& image) {
  Tensor out = Tensor::empty(DType::F32, output_shape(image.shape()));
  encode(image, out);
  return out;
}

}  // namespace aigc
