// GptTrainer: the Llama graph, initialisation, and GGUF in and out (see gpt.h).
#include "train/gpt.h"

#include <cmath>
#include <cstring>
#include <random>

namespace aigc::train {

GptTrainer::GptTrainer(const GptConfig& c, int64_t B, int64_t T) : cfg_(c), B_(B), T_(T) {
  if (cfg_.n_head_kv == 0) cfg_.n_head_kv = cfg_.n_head;
  const int64_t C = cfg_.n_embd, H = cfg_.n_head, G = cfg_.n_head_kv, V = cfg_.n_vocab, F = cfg_.n_ff;
  AIGC_CHECK(C > 0 && H > 0 && C % H == 0 && (C / H) % 2 == 0 && G > 0 && H % G == 0,
             "gpt: n_embd {} must split into n_head {} heads of even size, and n_head into n_head_kv {}", C, H, G);
  AIGC_CHECK(V > 0 && F > 0 && cfg_.n_layer > 0 && B > 0 && T > 0 && T <= cfg_.n_ctx,
             "gpt: bad sizes (vocab {}, ff {}, layers {}, batch {}, T {} <= n_ctx {})", V, F, cfg_.n_layer, B, T,
             cfg_.n_ctx);
  const int64_t D = C / H, N = B * T;
  Var emb = g_.param("token_embd.weight", {V, C});
  in_ = g_.ids(N);
  tgt_ = g_.ids(N);
  ops::RopeParams rp;
  rp.freq_base = cfg_.rope_base;
  grad::AttentionShape as{B, T, H, G, D, 0.0f};
  Var x = g_.embedding(emb, in_);  // [N, C]
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Var attn_norm = g_.param(p + "attn_norm.weight", {C});
    Var wq = g_.param(p + "attn_q.weight", {H * D, C});
    Var wk = g_.param(p + "attn_k.weight", {G * D, C});
    Var wv = g_.param(p + "attn_v.weight", {G * D, C});
    Var wo = g_.param(p + "attn_output.weight", {C, H * D});
    Var ffn_norm = g_.param(p + "ffn_norm.weight", {C});
    Var wg = g_.param(p + "ffn_gate.weight", {F, C});
    Var wu = g_.param(p + "ffn_up.weight", {F, C});
    Var wd = g_.param(p + "ffn_down.weight", {C, F});
    Var h = g_.rms_norm(x, attn_norm, cfg_.rms_eps);
    Var q = g_.rope(g_.linear(h, wq), B, T, H, rp);   // [N, H*D]
    Var k = g_.rope(g_.linear(h, wk), B, T, G, rp);   // [N, G*D]
    Var v = g_.linear(h, wv);                         // [N, G*D]
    x = g_.add(x, g_.linear(g_.attention(q, k, v, as), wo));
    h = g_.rms_norm(x, ffn_norm, cfg_.rms_eps);
    x = g_.add(x, g_.linear(g_.mul(g_.silu(g_.linear(h, wg)), g_.linear(h, wu)), wd));
  }
  Var out_norm = g_.param("output_norm.weight", {C});
  Var out = g_.param("output.weight", {V, C});
  loss_ = g_.cross_entropy(g_.linear(g_.rms_norm(x, out_norm, cfg_.rms_eps), out), tgt_);  // logits [N, V]
  g_.allocate();
}

void GptTrainer::init_random(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float resid = 0.02f / std::sqrt(2.0f * static_cast<float>(cfg_.n_layer));
  for (const Graph::ParamInfo& p : g_.params()) {
    float* v = g_.value(p.var).ptr<float>();
    const bool gain = g_.value(p.var).ndim() == 1;
    const bool proj = p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
    const float std = proj ? resid : 0.02f;
    for (int64_t i = 0; i < p.numel; ++i) v[i] = gain ? 1.0f : std * normal(rng);
  }
}

void GptTrainer::load(const GgufFile& f) {
  for (const Graph::ParamInfo& p : g_.params()) {
    const TensorInfo* ti = f.tensor_info_find(p.name);
    if (!ti) error_throw(fmt::format("tensor {} is missing", p.name), f.path(), "is this a checkpoint of this model?");
    Tensor t = f.tensor(p.name);
    Tensor& dst = g_.value(p.var);
    AIGC_CHECK(t.type() == DType::F32 && t.same_shape(dst), "{}: {} in the file, {} expected (f32)", p.name,
               t.shape_str(), dst.shape_str());
    std::memcpy(dst.data(), t.data(), static_cast<size_t>(p.numel) * 4);
  }
}

void GptTrainer::save(const std::string& path, std::span<const GgufKV> extra_kvs, const std::string& name) const {
  Graph& g = const_cast<Graph&>(g_);
  GgufWriter w;
  const std::string a = "llama.";
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("general.name", name);
  w.metadata_add(a + "context_length", static_cast<uint32_t>(cfg_.n_ctx));
  w.metadata_add(a + "embedding_length", static_cast<uint32_t>(cfg_.n_embd));
  w.metadata_add(a + "block_count", static_cast<uint32_t>(cfg_.n_layer));
  w.metadata_add(a + "feed_forward_length", static_cast<uint32_t>(cfg_.n_ff));
  w.metadata_add(a + "attention.head_count", static_cast<uint32_t>(cfg_.n_head));
  w.metadata_add(a + "attention.head_count_kv", static_cast<uint32_t>(cfg_.n_head_kv));
  w.metadata_add(a + "attention.layer_norm_rms_epsilon", cfg_.rms_eps);
  w.metadata_add(a + "rope.freq_base", cfg_.rope_base);
  w.metadata_add(a + "rope.dimension_count", static_cast<uint32_t>(cfg_.n_embd / cfg_.n_head));
  w.metadata_add(a + "vocab_size", static_cast<uint32_t>(cfg_.n_vocab));
  w.metadata_add("general.file_type", uint32_t{0});  // all f32
  for (const GgufKV& kv : extra_kvs) w.metadata_add(kv.key, kv.value);
  for (const Graph::ParamInfo& p : g.params()) w.tensor_add(p.name, g.value(p.var));
  w.write(path);
}

void GptTrainer::batch_set(std::span<const int32_t> tokens) {
  AIGC_CHECK(static_cast<int64_t>(tokens.size()) == B_ * (T_ + 1), "gpt: batch of {} tokens, {} x {} expected",
             tokens.size(), B_, T_ + 1);
  std::span<int32_t> in = g_.ids_data(in_), tgt = g_.ids_data(tgt_);
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t t = 0; t < T_; ++t) {
      const int32_t x = tokens[b * (T_ + 1) + t], y = tokens[b * (T_ + 1) + t + 1];
      AIGC_CHECK(x >= 0 && x < cfg_.n_vocab && y >= 0 && y < cfg_.n_vocab, "gpt: token {} or {} outside [0, {})", x,
                 y, cfg_.n_vocab);
      in[b * T_ + t] = x;
      tgt[b * T_ + t] = y;
    }
}

float GptTrainer::forward() { return g_.forward(loss_); }

float GptTrainer::forward_backward() {
  const float loss = g_.forward(loss_);
  g_.backward(loss_);
  return loss;
}

std::vector<uint8_t> GptTrainer::decay_mask() const {
  Graph& g = const_cast<Graph&>(g_);
  std::vector<uint8_t> mask(g.params_flat().size(), 0);
  for (const Graph::ParamInfo& p : g.params())
    if (g.value(p.var).ndim() == 2)
      std::fill(mask.begin() + p.offset, mask.begin() + p.offset + p.numel, uint8_t{1});
  return mask;
}

}  // namespace aigc::train
