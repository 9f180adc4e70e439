// GPT-2 loader: hyper-parameters and tensors as documented in model_gpt2.h.
#include "text/model_gpt2.h"

#include <cmath>
#include <vector>

#include "formats/gguf.h"
#include "text/model_loader.h"

namespace aigc {

uint64_t Gpt2Model::decode_bytes_per_token() const {
  std::vector<const Tensor*> ts = {&output, &output_norm, &output_norm_b};
  for (const Gpt2Layer& l : layers)
    for (const Tensor* t : {&l.attn_norm, &l.attn_norm_b, &l.wqkv, &l.bqkv, &l.wo, &l.bo, &l.ffn_norm, &l.ffn_norm_b,
                            &l.w_up, &l.b_up, &l.w_down, &l.b_down})
      ts.push_back(t);
  // one token embedding row and one position row
  return tensors_nbytes(ts) + tok_embd.nbytes() / static_cast<uint64_t>(hp.n_vocab) +
         pos_embd.nbytes() / static_cast<uint64_t>(hp.n_ctx_train);
}

std::span<const uint8_t> Gpt2Model::decode_weights_span() const {
  std::vector<const Tensor*> ts = {&output};
  for (const Gpt2Layer& l : layers)
    for (const Tensor* t : {&l.wqkv, &l.wo, &l.w_up, &l.w_down}) ts.push_back(t);
  return tensors_extent(ts);
}

Gpt2Model Gpt2Model::load(const std::string& path, FileLoadOptions opt) {
  return from_gguf(std::make_shared<const GgufFile>(GgufFile::open(path, opt)));
}

Gpt2Model Gpt2Model::from_gguf(std::shared_ptr<const GgufFile> file) {
  AIGC_ASSERT(file != nullptr);
  const GgufFile& f = *file;
  Gpt2Model m;
  m.file = file;
  Gpt2Hparams& hp = m.hp;
  const std::string& arch = f.get_string("general.architecture");
  if (arch != "gpt2") error_throw(fmt::format("architecture '{}' is not gpt2", arch), f.path());
  const ModelLoader ld{f, "GPT-2"};
  hp.n_embd = ld.count("gpt2.embedding_length");
  hp.n_layer = ld.count("gpt2.block_count");
  // Each block has 12 tensors: a hostile count must not size the layer table first.
  if (hp.n_layer > static_cast<int64_t>(f.tensor_infos().size()) / 12)
    error_throw(fmt::format("gpt2.block_count {} needs more tensors than the file's {}", hp.n_layer,
                            f.tensor_infos().size()),
                f.path(), "the model file is damaged or truncated");
  hp.n_ff = ld.count("gpt2.feed_forward_length");
  hp.n_head = ld.count("gpt2.attention.head_count");
  hp.n_ctx_train = ld.count("gpt2.context_length");
  hp.norm_eps = ld.positive_or("gpt2.attention.layer_norm_epsilon", 1e-5f);
  if (hp.n_embd % hp.n_head != 0)
    error_throw(fmt::format("embedding_length {} is not a multiple of head_count {}", hp.n_embd, hp.n_head), f.path());
  hp.head_dim = hp.n_embd / hp.n_head;
  hp.n_vocab = ld.vocab_size("gpt2.vocab_size");

  const int64_t C = hp.n_embd, F = hp.n_ff, V = hp.n_vocab;
  m.tok_embd = ld.tensor("token_embd.weight", {V, C}, false);
  m.pos_embd = ld.tensor("position_embd.weight", {hp.n_ctx_train, C}, false);
  m.layers.resize(static_cast<size_t>(hp.n_layer));
  for (int64_t i = 0; i < hp.n_layer; ++i) {
    Gpt2Layer& l = m.layers[static_cast<size_t>(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = ld.vector_f32(p + "attn_norm.weight", C);
    l.attn_norm_b = ld.vector_f32(p + "attn_norm.bias", C);
    l.wqkv = ld.tensor(p + "attn_qkv.weight", {3 * C, C}, true);
    l.bqkv = ld.vector_f32(p + "attn_qkv.bias", 3 * C);
    l.wo = ld.tensor(p + "attn_output.weight", {C, C}, true);
    l.bo = ld.vector_f32(p + "attn_output.bias", C);
    l.ffn_norm = ld.vector_f32(p + "ffn_norm.weight", C);
    l.ffn_norm_b = ld.vector_f32(p + "ffn_norm.bias", C);
    l.w_up = ld.tensor(p + "ffn_up.weight", {F, C}, true);
    l.b_up = ld.vector_f32(p + "ffn_up.bias", F);
    l.w_down = ld.tensor(p + "ffn_down.weight", {C, F}, true);
    l.b_down = ld.vector_f32(p + "ffn_down.bias", C);
  }
  m.output_norm = ld.vector_f32("output_norm.weight", C);
  m.output_norm_b = ld.vector_f32("output_norm.bias", C);
  if (f.tensor_info_find("output.weight")) {
    m.output = ld.tensor("output.weight", {V, C}, true);
  } else {
    if (!linear_type_ok(m.tok_embd.type()))
      error_throw(fmt::format("output.weight is absent and token_embd.weight's type {} cannot serve as the classifier",
                              dtype_name(m.tok_embd.type())),
                  f.path(), linear_types_hint());
    m.output = m.tok_embd;  // tied embeddings (GPT-2's own)
  }
  return m;
}

}  // namespace aigc
