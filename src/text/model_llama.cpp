#include "text/model_llama.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "formats/gguf.h"
#include "text/model_loader.h"

namespace aigc {

uint64_t LlamaModel::decode_bytes_per_token() const {
  std::vector<const Tensor*> ts = {&output, &output_norm};
  for (const LlamaLayer& l : layers)
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.attn_norm, &l.ffn_norm,
                            &l.bq, &l.bk, &l.bv})
      ts.push_back(t);
  return tensors_nbytes(ts) + tok_embd.nbytes() / static_cast<uint64_t>(hp.n_vocab);
}

std::span<const uint8_t> LlamaModel::decode_weights_span() const {
  std::vector<const Tensor*> ts = {&output};
  for (const LlamaLayer& l : layers)
    for (const Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) ts.push_back(t);
  return tensors_extent(ts);
}

bool llama_arch_supported(const std::string& arch) {
  return arch == "llama" || arch == "mistral" || arch == "qwen2";
}

LlamaModel LlamaModel::load(const std::string& path, FileLoadOptions opt) {
  return from_gguf(std::make_shared<const GgufFile>(GgufFile::open(path, opt)));
}

LlamaModel LlamaModel::from_gguf(std::shared_ptr<const GgufFile> file) {
  AIGC_ASSERT(file != nullptr);
  const GgufFile& f = *file;
  LlamaModel m;
  m.file = file;
  LlamaHparams& hp = m.hp;
  hp.arch = f.get_string("general.architecture");
  if (!llama_arch_supported(hp.arch))
    error_throw(fmt::format("architecture '{}' is not a llama-family model", hp.arch), f.path(),
                "supported: llama, mistral, qwen2");
  const ModelLoader ld{f, "llama-family"};
  const std::string a = hp.arch + ".";

  hp.n_embd = ld.count(a + "embedding_length");
  hp.n_layer = ld.count(a + "block_count");
  // Each block has at least 9 tensors: a hostile count must not size the layer table first.
  if (hp.n_layer > static_cast<int64_t>(f.tensor_infos().size()) / 9)
    error_throw(fmt::format("{}.block_count {} needs more tensors than the file's {}", hp.arch, hp.n_layer,
                            f.tensor_infos().size()),
                f.path(), "the model file is damaged or truncated");
  hp.n_ff = ld.count(a + "feed_forward_length");
  hp.n_head = ld.count(a + "attention.head_count");
  hp.n_head_kv = ld.count_or(a + "attention.head_count_kv", hp.n_head);
  hp.n_ctx_train = ld.count(a + "context_length");
  hp.rms_eps = ld.positive_or(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  if (hp.n_embd % hp.n_head != 0 && !f.find(a + "attention.key_length"))
    error_throw(fmt::format("embedding_length {} is not a multiple of head_count {}", hp.n_embd, hp.n_head), f.path());
  hp.head_dim = ld.count_or(a + "attention.key_length", hp.n_embd / hp.n_head);
  if (ld.count_or(a + "attention.value_length", hp.head_dim) != hp.head_dim)
    error_throw(fmt::format("{}.attention.value_length differs from key_length; not supported", hp.arch), f.path());
  if (hp.n_head % hp.n_head_kv != 0)
    error_throw(fmt::format("head_count {} is not a multiple of head_count_kv {}", hp.n_head, hp.n_head_kv), f.path());
  hp.n_rot = ld.count_or(a + "rope.dimension_count", hp.head_dim);
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
    error_throw(fmt::format("rope.dimension_count {} must be even and at most the head dim {}", hp.n_rot, hp.head_dim),
                f.path());
  hp.rope_freq_base = ld.positive_or(a + "rope.freq_base", 10000.0f);
  float scale_factor = ld.positive_or(a + "rope.scale_linear", 1.0f);
  if (f.find(a + "rope.scaling.type")) {
    const std::string& type = f.get_string(a + "rope.scaling.type");
    if (type == "linear")
      scale_factor = ld.positive_or(a + "rope.scaling.factor", 1.0f);
    else if (type != "none")
      error_throw(fmt::format("rope scaling '{}' is not supported", type), f.path(), "supported: none, linear");
  }
  hp.rope_freq_scale = 1.0f / scale_factor;
  hp.rope_neox = hp.arch == "qwen2";
  hp.qkv_bias = hp.arch == "qwen2";

  hp.n_vocab = ld.vocab_size(a + "vocab_size");

  const int64_t C = hp.n_embd, D = hp.head_dim, F = hp.n_ff, V = hp.n_vocab;
  const int64_t Q = hp.n_head * D, KV = hp.n_head_kv * D;
  m.tok_embd = ld.tensor("token_embd.weight", {V, C}, false);
  m.layers.resize(static_cast<size_t>(hp.n_layer));
  for (int64_t i = 0; i < hp.n_layer; ++i) {
    LlamaLayer& l = m.layers[static_cast<size_t>(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = ld.vector_f32(p + "attn_norm.weight", C);
    l.wq = ld.tensor(p + "attn_q.weight", {Q, C}, true);
    l.wk = ld.tensor(p + "attn_k.weight", {KV, C}, true);
    l.wv = ld.tensor(p + "attn_v.weight", {KV, C}, true);
    l.wo = ld.tensor(p + "attn_output.weight", {C, Q}, true);
    if (hp.qkv_bias) {
      l.bq = ld.vector_f32(p + "attn_q.bias", Q);
      l.bk = ld.vector_f32(p + "attn_k.bias", KV);
      l.bv = ld.vector_f32(p + "attn_v.bias", KV);
    }
    l.ffn_norm = ld.vector_f32(p + "ffn_norm.weight", C);
    l.w_gate = ld.tensor(p + "ffn_gate.weight", {F, C}, true);
    l.w_up = ld.tensor(p + "ffn_up.weight", {F, C}, true);
    l.w_down = ld.tensor(p + "ffn_down.weight", {C, F}, true);
  }
  m.output_norm = ld.vector_f32("output_norm.weight", C);
  // Llama 3.1+ files carry per-frequency rope factors (llama.cpp divides frequency i by element i).
  if (f.tensor_info_find("rope_freqs.weight")) {
    m.rope_freqs = ld.vector_f32("rope_freqs.weight", hp.n_rot / 2);
    for (int64_t i = 0; i < hp.n_rot / 2; ++i) {
      const float v = m.rope_freqs.ptr<float>()[i];
      if (!(v > 0.0f) || std::isinf(v))
        error_throw(fmt::format("rope_freqs.weight[{}] = {} must be positive and finite", i, v), f.path(),
                    "the model file is damaged");
    }
  }
  if (f.tensor_info_find("output.weight")) {
    m.output = ld.tensor("output.weight", {V, C}, true);
  } else {
    if (!linear_type_ok(m.tok_embd.type()))
      error_throw(fmt::format("output.weight is absent and token_embd.weight's type {} cannot serve as the classifier",
                              dtype_name(m.tok_embd.type())),
                  f.path(), linear_types_hint());
    m.output = m.tok_embd;  // tied embeddings
  }
  return m;
}

}  // namespace aigc
