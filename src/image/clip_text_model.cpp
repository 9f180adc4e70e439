// ClipTextModel: loading (both key namings, dimensions from the shapes) and the forward pass.
//   x = token_embedding[ids] + position_embedding[0 .. T)              // [B*T, W]
//   per layer (pre-LN):
//     [q | k | v] = layer_norm1(x) Wqkv^T + bqkv                        // [B*T, 3W]
//     x += attention(q, k, v, causal) Wo^T + bo
//     x += act(layer_norm2(x) W1^T + b1) W2^T + b2                      // act: quick_gelu or gelu
//   hidden = final_layer_norm(x after layers - (clip_skip - 1) layers)
// HF names keep q, k and v apart; they are stacked once at load into one [3W, W] weight (what
// OpenCLIP's in_proj_weight already is), so each layer runs one projection GEMM.
#include "image/clip_text_model.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/linear_packed.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::image {

namespace {

constexpr int64_t kHeadDim = 64;  // every CLIP text model SD uses

// Owned contiguous f32 copy (layer norm parameters, biases: the ops take them as f32).
Tensor f32_copy(const Tensor& t) {
  Tensor out = Tensor::empty(DType::F32, t.shape());
  ops::copy(t, out);
  return out;
}

// Several [n_i] or [n_i, K] tensors stacked along dim 0, of the parts' type when
// they share one (so PackedLinear's Auto precision still sees bf16 as bf16), else f32.
Tensor rows_stack(std::initializer_list<const Tensor*> parts) {
  const Tensor& first = **parts.begin();
  DType type = first.type();
  int64_t rows = 0;
  for (const Tensor* p : parts) {
    rows += p->size(0);
    if (p->type() != type) type = DType::F32;
  }
  std::vector<int64_t> shape = first.shape_vec();
  shape[0] = rows;
  Tensor out = Tensor::empty(type, shape);
  int64_t r = 0;
  for (const Tensor* p : parts) {
    Tensor dst = out.slice(0, r, p->size(0));
    ops::copy(*p, dst);
    r += p->size(0);
  }
  return out;
}

// x * sigmoid(1.702 x), in place (OpenAI CLIP's activation).
void quick_gelu_inplace(float* x, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] = x[i] / (1.0f + std::exp(-1.702f * x[i]));
  }, 1 << 12);
}

Tensor view(float* data, std::initializer_list<int64_t> shape) {
  return Tensor::view_of(DType::F32, std::span<const int64_t>(shape.begin(), shape.size()), data);
}

}  // namespace

struct ClipTextModel::Impl {
  struct Layer {
    Tensor ln1_w, ln1_b, ln2_w, ln2_b;  // f32 [W]
    ops::PackedLinear qkv, out, fc1, fc2;
  };

  ClipTextConfig config;
  Tensor token_embedding;  // [V, W] as stored (a view of the file)
  Tensor positions;        // f32 [P, W]
  Tensor final_w, final_b; // f32 [W]
  std::vector<Layer> layers;
  // Activations, grown on demand: x, h, a, o [M, W], qkv [M, 3W], u [M, mlp].
  Tensor x, h, a, o, qkv, u;
  int64_t rows_cap = 0;

  void buffers_reserve(int64_t m) {
    if (m <= rows_cap) return;
    const int64_t w = config.width;
    for (Tensor* t : {&x, &h, &a, &o}) *t = Tensor::empty(DType::F32, {m, w});
    qkv = Tensor::empty(DType::F32, {m, 3 * w});
    u = Tensor::empty(DType::F32, {m, config.mlp});
    rows_cap = m;
  }
};

ClipTextModel::ClipTextModel() : impl_(std::make_unique<Impl>()) {}
ClipTextModel::ClipTextModel(ClipTextModel&&) noexcept = default;
ClipTextModel& ClipTextModel::operator=(ClipTextModel&&) noexcept = default;
ClipTextModel::~ClipTextModel() = default;

const ClipTextConfig& ClipTextModel::config() const { return impl_->config; }

ClipTextModel ClipTextModel::load(const WeightSource& w, ClipKeyNames names, ops::Precision precision,
                                  int64_t heads_override, ClipActivation activation) {
  const bool hf = names == ClipKeyNames::HuggingFace;
  const std::string where = w.file_name();
  const char* hint = "the checkpoint's text encoder does not fit together; it may be damaged or of another model type";

  // Key names of the two layouts. Some old SD 1.x checkpoints (saved with an early transformers)
  // lack the "text_model." level: "cond_stage_model.transformer.embeddings.*" (A1111 renames them).
  const std::string root =
      hf && !w.has("text_model.embeddings.token_embedding.weight") && w.has("embeddings.token_embedding.weight")
          ? ""
          : "text_model.";
  const std::string k_tok = hf ? root + "embeddings.token_embedding.weight" : "token_embedding.weight";
  const std::string k_pos = hf ? root + "embeddings.position_embedding.weight" : "positional_embedding";
  const std::string k_final = hf ? root + "final_layer_norm." : "ln_final.";
  auto layer_prefix = [&](int64_t i) {
    return hf ? fmt::format("{}encoder.layers.{}.", root, i) : fmt::format("transformer.resblocks.{}.", i);
  };
  const std::string k_ln1 = hf ? "layer_norm1." : "ln_1.", k_ln2 = hf ? "layer_norm2." : "ln_2.";
  const std::string k_out = hf ? "self_attn.out_proj." : "attn.out_proj.";
  const std::string k_fc1 = hf ? "mlp.fc1." : "mlp.c_fc.", k_fc2 = hf ? "mlp.fc2." : "mlp.c_proj.";

  ClipTextModel m;
  Impl& im = *m.impl_;
  ClipTextConfig& c = im.config;

  const Tensor& tok = w.get(k_tok);
  if (tok.ndim() != 2 || tok.size(0) < 1 || tok.size(1) < 1)
    error_throw(fmt::format("{}: tensor '{}{}' has shape {}, expected [vocab, width]", w.component(), w.prefix(),
                            k_tok, tok.shape_str()),
                where, hint);
  c.vocab = tok.size(0);
  c.width = tok.size(1);
  const int64_t W = c.width;
  im.token_embedding = w.get(k_tok, {c.vocab, W});  // also checks the type

  const Tensor& pos = w.get(k_pos);
  if (pos.ndim() != 2 || pos.size(0) < 1)
    error_throw(fmt::format("{}: tensor '{}{}' has shape {}, expected [positions, {}]", w.component(), w.prefix(),
                            k_pos, pos.shape_str(), W),
                where, hint);
  c.positions = pos.size(0);
  im.positions = f32_copy(w.get(k_pos, {c.positions, W}));

  c.layers = 0;
  while (w.has(layer_prefix(c.layers) + k_ln1 + "weight")) ++c.layers;
  if (c.layers == 0)
    error_throw(fmt::format("{}: no transformer layers ('{}{}{}weight' is missing)", w.component(), w.prefix(),
                            layer_prefix(0), k_ln1),
                where, hint);
  {
    const std::string k = layer_prefix(0) + k_fc1 + "weight";
    const Tensor& fc1 = w.get(k);
    if (fc1.ndim() != 2 || fc1.size(0) < 1)
      error_throw(fmt::format("{}: tensor '{}{}' has shape {}, expected [mlp, {}]", w.component(), w.prefix(), k,
                              fc1.shape_str(), W),
                  where, hint);
    c.mlp = fc1.size(0);
  }
  c.heads = heads_override > 0 ? heads_override : W / kHeadDim;
  if (c.heads < 1 || W % c.heads != 0 || (heads_override <= 0 && W % kHeadDim != 0))
    error_throw(fmt::format("{}: width {} does not split into {} attention heads", w.component(), W, c.heads), where,
                heads_override > 0 ? "pass a head count that divides the width"
                                   : "CLIP text models have 64-wide heads; pass the head count explicitly");
  switch (activation) {
    case ClipActivation::Auto: c.quick_gelu = hf && W != 1024; break;
    case ClipActivation::QuickGelu: c.quick_gelu = true; break;
    case ClipActivation::Gelu: c.quick_gelu = false; break;
  }

  const int64_t max_m = 4 * c.positions;  // GEMM row chunk: a few prompts' chunks at once
  auto param = [&](const std::string& key, int64_t n) { return f32_copy(w.get(key, {n})); };
  auto linear = [&](const std::string& prefix, int64_t n, int64_t k) {
    const Tensor& weight = w.get(prefix + "weight", {n, k});
    const Tensor bias = param(prefix + "bias", n);
    return ops::PackedLinear(weight, &bias, max_m, precision, /*keep_original=*/false);
  };
  im.layers.reserve(static_cast<size_t>(c.layers));
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = layer_prefix(i);
    Tensor qkv_w, qkv_b;
    if (hf) {
      const std::string a = p + "self_attn.";
      qkv_w = rows_stack({&w.get(a + "q_proj.weight", {W, W}), &w.get(a + "k_proj.weight", {W, W}),
                          &w.get(a + "v_proj.weight", {W, W})});
      const Tensor qb = param(a + "q_proj.bias", W), kb = param(a + "k_proj.bias", W), vb = param(a + "v_proj.bias", W);
      qkv_b = rows_stack({&qb, &kb, &vb});
    } else {
      qkv_w = w.get(p + "attn.in_proj_weight", {3 * W, W});
      qkv_b = param(p + "attn.in_proj_bias", 3 * W);
    }
    im.layers.push_back(Impl::Layer{
        param(p + k_ln1 + "weight", W), param(p + k_ln1 + "bias", W),
        param(p + k_ln2 + "weight", W), param(p + k_ln2 + "bias", W),
        ops::PackedLinear(qkv_w, &qkv_b, max_m, precision, /*keep_original=*/false), linear(p + k_out, W, W),
        linear(p + k_fc1, c.mlp, W), linear(p + k_fc2, W, c.mlp)});
  }
  im.final_w = param(k_final + "weight", W);
  im.final_b = param(k_final + "bias", W);
  const std::string position_ids = root + "embeddings.position_ids";
  if (hf)
    w.unused_check({position_ids});
  else
    w.unused_check({"text_projection", "logit_scale"});
  return m;
}

ClipKeyNames clip_key_names_detect(const WeightSource& w) {
  if (w.has("text_model.embeddings.token_embedding.weight") || w.has("embeddings.token_embedding.weight"))
    return ClipKeyNames::HuggingFace;
  if (w.has("token_embedding.weight")) return ClipKeyNames::OpenClip;
  error_throw(fmt::format("{}: no token embedding under '{}' (neither CLIPTextModel nor OpenCLIP names)", w.component(),
                          w.prefix()),
              w.file_name(), "the checkpoint has no CLIP text encoder there");
}

Tensor ClipTextModel::encode(std::span<const int32_t> ids, int64_t batch, int clip_skip) {
  Tensor hidden;
  encode(ids, batch, clip_skip, hidden);
  return hidden;
}

void ClipTextModel::encode(std::span<const int32_t> ids, int64_t batch, int clip_skip, Tensor& hidden) {
  Impl& im = *impl_;
  const ClipTextConfig& c = im.config;
  const char* where = "ClipTextModel::encode";
  if (batch < 1 || ids.empty() || ids.size() % static_cast<size_t>(batch) != 0)
    error_throw(fmt::format("{} token ids do not split into {} rows", ids.size(), batch), where);
  const int64_t T = static_cast<int64_t>(ids.size()) / batch;
  if (T > c.positions)
    error_throw(fmt::format("{} tokens per row, the text encoder has {} positions", T, c.positions), where,
                "split the prompt into chunks of 77 tokens (ClipTokenizer::tokenize_for_sd)");
  if (clip_skip < 1 || clip_skip > c.layers)
    error_throw(fmt::format("clip_skip {} is out of range 1..{}", clip_skip, c.layers), where,
                "1 uses the last layer, 2 the one before it, ...");
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= c.vocab)
      error_throw(fmt::format("token id {} at position {} is outside the vocabulary of {} tokens", ids[i], i, c.vocab),
                  where, "the tokenizer does not belong to this text encoder");
  const int64_t W = c.width, H = c.heads, D = W / H, M = batch * T;
  if (!hidden.defined() || hidden.ndim() == 0) hidden = Tensor::empty(DType::F32, {batch, T, W});
  if (hidden.type() != DType::F32 || hidden.ndim() != 3 || hidden.size(0) != batch || hidden.size(1) != T ||
      hidden.size(2) != W || !hidden.is_contiguous())
    error_throw(fmt::format("hidden is {}, expected contiguous [{}, {}, {}] f32", hidden.shape_str(), batch, T, W),
                where);
  im.buffers_reserve(M);

  Tensor x = view(im.x.ptr<float>(), {M, W});  // residual stream [B*T, W]
  Tensor h = view(im.h.ptr<float>(), {M, W});
  Tensor a = view(im.a.ptr<float>(), {M, W});
  Tensor o = view(im.o.ptr<float>(), {M, W});
  Tensor qkv = view(im.qkv.ptr<float>(), {M, 3 * W});
  Tensor u = view(im.u.ptr<float>(), {M, c.mlp});
  // [B*T, 3W] seen as [B, T, 3H, D]: q, k, v are head ranges of dim 2, permuted to [B, H, T, D].
  const Tensor qkv4 = view(im.qkv.ptr<float>(), {batch, T, 3 * H, D});
  const Tensor q = qkv4.slice(2, 0, H).permute({0, 2, 1, 3});
  const Tensor k = qkv4.slice(2, H, H).permute({0, 2, 1, 3});
  const Tensor v = qkv4.slice(2, 2 * H, H).permute({0, 2, 1, 3});
  Tensor a4 = view(im.a.ptr<float>(), {batch, T, H, D}).permute({0, 2, 1, 3});
  ops::AttentionParams ap;
  ap.causal = true;

  ops::embedding(im.token_embedding, ids, x);
  {
    float* xp = x.ptr<float>();
    const float* pp = im.positions.ptr<float>();
    parallel_for(M, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* p = pp + (r % T) * W;
        float* xr = xp + r * W;
        for (int64_t i = 0; i < W; ++i) xr[i] += p[i];
      }
    }, 16);
  }
  const int64_t n_run = c.layers - (clip_skip - 1);
  for (int64_t il = 0; il < n_run; ++il) {
    const Impl::Layer& L = im.layers[static_cast<size_t>(il)];
    ops::layer_norm(x, &L.ln1_w, &L.ln1_b, c.eps, h);
    L.qkv.run(h, qkv);
    ops::attention(q, k, v, a4, ap);
    L.out.run(a, o);
    ops::add(x, o, x);
    ops::layer_norm(x, &L.ln2_w, &L.ln2_b, c.eps, h);
    L.fc1.run(h, u);
    if (c.quick_gelu)
      quick_gelu_inplace(u.ptr<float>(), u.numel());
    else
      ops::gelu(u, u);
    L.fc2.run(u, o);
    ops::add(x, o, x);
  }
  Tensor out = hidden.reshape({M, W});
  ops::layer_norm(x, &im.final_w, &im.final_b, c.eps, out);
}

}  // namespace aigc::image
