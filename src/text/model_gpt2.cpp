#include "text/model_gpt2.h"

#include <cmath>

#include "core/quant.h"
#include "formats/gguf.h"

namespace aigc {

namespace {

bool linear_type_ok(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0;
}

std::string shape_of(std::span<const int64_t> s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Hyper-parameters and tensors of one file, with messages naming it.
struct Loader {
  const GgufFile& f;

  int64_t get_count(const std::string& key) const {
    const uint64_t v = f.get_uint(key);
    if (v == 0 || v > (uint64_t{1} << 31))
      error_throw(fmt::format("{} = {} is out of range", key, v), f.path(), "the model file is damaged");
    return static_cast<int64_t>(v);
  }

  Tensor tensor(const std::string& name, std::initializer_list<int64_t> shape, bool linear) const {
    const TensorInfo* ti = f.tensor_info_find(name);
    if (!ti) error_throw(fmt::format("tensor '{}' is missing", name), f.path(), "is this a complete GPT-2 GGUF?");
    const std::span<const int64_t> want(shape.begin(), shape.size());
    if (ti->shape.size() != want.size() || !std::equal(want.begin(), want.end(), ti->shape.begin()))
      error_throw(fmt::format("tensor '{}' has shape {}, expected {} from the hyper-parameters", name,
                              shape_of(ti->shape), shape_of(want)),
                  f.path(), "the file's metadata and tensors disagree");
    if (!ti->type || (linear ? !linear_type_ok(*ti->type) : !dtype_can_convert(*ti->type)))
      error_throw(fmt::format("tensor '{}' has type {}, which is not supported here", name, ti->type_name), f.path(),
                  "supported: f32, f16, bf16, q8_0, q4_0");
    return f.tensor(name);
  }

  // Norm weights and biases as owned f32, whatever the file stores.
  Tensor vector_f32(const std::string& name, int64_t n) const {
    Tensor t = tensor(name, {n}, false);
    if (t.type() == DType::F32) return t;
    Tensor out = Tensor::empty(DType::F32, {n});
    row_to_f32(t.type(), t.data(), out.ptr<float>(), n);
    out.name = name;
    return out;
  }
};

}  // namespace

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
  const Loader ld{f};
  hp.n_embd = ld.get_count("gpt2.embedding_length");
  hp.n_layer = ld.get_count("gpt2.block_count");
  // Each block has 12 tensors: a hostile count must not size the layer table first.
  if (hp.n_layer > static_cast<int64_t>(f.tensor_infos().size()) / 12)
    error_throw(fmt::format("gpt2.block_count {} needs more tensors than the file's {}", hp.n_layer,
                            f.tensor_infos().size()),
                f.path(), "the model file is damaged or truncated");
  hp.n_ff = ld.get_count("gpt2.feed_forward_length");
  hp.n_head = ld.get_count("gpt2.attention.head_count");
  hp.n_ctx_train = ld.get_count("gpt2.context_length");
  if (f.find("gpt2.attention.layer_norm_epsilon")) {
    hp.norm_eps = f.get_f32("gpt2.attention.layer_norm_epsilon");
    if (!std::isfinite(hp.norm_eps) || hp.norm_eps <= 0.0f)
      error_throw(fmt::format("gpt2.attention.layer_norm_epsilon = {} must be a positive number", hp.norm_eps),
                  f.path());
  }
  if (hp.n_embd % hp.n_head != 0)
    error_throw(fmt::format("embedding_length {} is not a multiple of head_count {}", hp.n_embd, hp.n_head), f.path());
  hp.head_dim = hp.n_embd / hp.n_head;

  if (f.find("gpt2.vocab_size")) {
    hp.n_vocab = ld.get_count("gpt2.vocab_size");
  } else if (const GgufValue* toks = f.find("tokenizer.ggml.tokens"); toks && toks->is_array()) {
    hp.n_vocab = static_cast<int64_t>(toks->size());
  } else if (const TensorInfo* ti = f.tensor_info_find("token_embd.weight"); ti && ti->shape.size() == 2) {
    hp.n_vocab = ti->shape[0];
  }
  if (hp.n_vocab <= 0) error_throw("the vocabulary size is unknown (no vocab_size, tokens or token_embd)", f.path());

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
                  f.path(), "supported weight types: f32, f16, bf16, q8_0, q4_0");
    m.output = m.tok_embd;  // tied embeddings (GPT-2's own)
  }
  return m;
}

}  // namespace aigc
