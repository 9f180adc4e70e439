#include "text/model_llama.h"

#include <cmath>

#include "backend/cpu/linear_quantized.h"
#include "core/log.h"
#include "core/quant.h"
#include "formats/gguf.h"

namespace aigc {

namespace {

// What ops::linear computes with: the float types and every type with an integer dot kernel (so
// llama.cpp's Q4_0 files load: their output.weight is q6_K).
bool linear_type_ok(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || ops::linear_quantized_supports(t);
}
constexpr const char* kLinearTypes = "supported weight types: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K";

std::string shape_of(std::span<const int64_t> s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Reads hyper-parameters and tensors of one file, with messages naming it.
struct Loader {
  const GgufFile& f;
  std::string arch;

  std::string key(const char* suffix) const { return arch + "." + suffix; }

  int64_t get_count(const char* suffix) const {
    const uint64_t v = f.get_uint(key(suffix));
    if (v == 0 || v > (uint64_t{1} << 31))
      error_throw(fmt::format("{} = {} is out of range", key(suffix), v), f.path(), "the model file is damaged");
    return static_cast<int64_t>(v);
  }
  int64_t get_count_or(const char* suffix, int64_t dflt) const {
    return f.find(key(suffix)) ? get_count(suffix) : dflt;
  }
  float get_float_or(const char* suffix, float dflt) const {
    const GgufValue* v = f.find(key(suffix));
    if (!v) return dflt;
    const float x = f.get_f32(key(suffix));
    if (!std::isfinite(x) || x <= 0.0f)
      error_throw(fmt::format("{} = {} must be a positive number", key(suffix), x), f.path());
    return x;
  }

  // A tensor of exactly `shape`; `linear` restricts the type to what ops::linear computes with.
  Tensor tensor(const std::string& name, std::initializer_list<int64_t> shape, bool linear) const {
    const TensorInfo* ti = f.tensor_info_find(name);
    if (!ti) error_throw(fmt::format("tensor '{}' is missing", name), f.path(), "is this a complete llama-family GGUF?");
    const std::span<const int64_t> want(shape.begin(), shape.size());
    if (ti->shape.size() != want.size() || !std::equal(want.begin(), want.end(), ti->shape.begin()))
      error_throw(fmt::format("tensor '{}' has shape {}, expected {} from the hyper-parameters", name,
                              shape_of(ti->shape), shape_of(want)),
                  f.path(), "the file's metadata and tensors disagree");
    if (!ti->type || (linear ? !linear_type_ok(*ti->type) : !dtype_can_convert(*ti->type)))
      error_throw(fmt::format("tensor '{}' has type {}, which is not supported here", name, ti->type_name), f.path(),
                  linear ? kLinearTypes : "supported: f32, f16, bf16, q8_0, q4_0");
    return f.tensor(name);
  }

  // Small per-channel vectors (norm weights, biases) as owned f32, whatever the file stores.
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
  const Loader ld{f, hp.arch};

  hp.n_embd = ld.get_count("embedding_length");
  hp.n_layer = ld.get_count("block_count");
  // Each block has at least 9 tensors: a hostile count must not size the layer table first.
  if (hp.n_layer > static_cast<int64_t>(f.tensor_infos().size()) / 9)
    error_throw(fmt::format("{}.block_count {} needs more tensors than the file's {}", hp.arch, hp.n_layer,
                            f.tensor_infos().size()),
                f.path(), "the model file is damaged or truncated");
  hp.n_ff = ld.get_count("feed_forward_length");
  hp.n_head = ld.get_count("attention.head_count");
  hp.n_head_kv = ld.get_count_or("attention.head_count_kv", hp.n_head);
  hp.n_ctx_train = ld.get_count("context_length");
  hp.rms_eps = ld.get_float_or("attention.layer_norm_rms_epsilon", 1e-5f);
  if (hp.n_embd % hp.n_head != 0 && !f.find(ld.key("attention.key_length")))
    error_throw(fmt::format("embedding_length {} is not a multiple of head_count {}", hp.n_embd, hp.n_head), f.path());
  hp.head_dim = ld.get_count_or("attention.key_length", hp.n_embd / hp.n_head);
  if (ld.get_count_or("attention.value_length", hp.head_dim) != hp.head_dim)
    error_throw(fmt::format("{}.attention.value_length differs from key_length; not supported", hp.arch), f.path());
  if (hp.n_head % hp.n_head_kv != 0)
    error_throw(fmt::format("head_count {} is not a multiple of head_count_kv {}", hp.n_head, hp.n_head_kv), f.path());
  hp.n_rot = ld.get_count_or("rope.dimension_count", hp.head_dim);
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
    error_throw(fmt::format("rope.dimension_count {} must be even and at most the head dim {}", hp.n_rot, hp.head_dim),
                f.path());
  hp.rope_freq_base = ld.get_float_or("rope.freq_base", 10000.0f);
  float scale_factor = ld.get_float_or("rope.scale_linear", 1.0f);
  if (f.find(ld.key("rope.scaling.type"))) {
    const std::string& type = f.get_string(ld.key("rope.scaling.type"));
    if (type == "linear")
      scale_factor = ld.get_float_or("rope.scaling.factor", 1.0f);
    else if (type != "none")
      error_throw(fmt::format("rope scaling '{}' is not supported", type), f.path(), "supported: none, linear");
  }
  hp.rope_freq_scale = 1.0f / scale_factor;
  // Llama 3.1+ files carry per-frequency rope factors; ops::rope cannot apply them yet.
  if (f.tensor_info_find("rope_freqs.weight"))
    log_warn("{}: rope_freqs.weight (Llama 3.1 rope scaling) is not applied yet; logits will differ from "
             "llama.cpp's", f.path());
  hp.rope_neox = hp.arch == "qwen2";
  hp.qkv_bias = hp.arch == "qwen2";

  // Vocabulary size: explicit key, the tokenizer's list, or the embedding's rows.
  if (f.find(ld.key("vocab_size"))) {
    hp.n_vocab = ld.get_count("vocab_size");
  } else if (const GgufValue* toks = f.find("tokenizer.ggml.tokens"); toks && toks->is_array()) {
    hp.n_vocab = static_cast<int64_t>(toks->size());
  } else if (const TensorInfo* ti = f.tensor_info_find("token_embd.weight"); ti && ti->shape.size() == 2) {
    hp.n_vocab = ti->shape[0];
  }
  if (hp.n_vocab <= 0) error_throw("the vocabulary size is unknown (no vocab_size, tokens or token_embd)", f.path());

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
  if (f.tensor_info_find("output.weight")) {
    m.output = ld.tensor("output.weight", {V, C}, true);
  } else {
    if (!linear_type_ok(m.tok_embd.type()))
      error_throw(fmt::format("output.weight is absent and token_embd.weight's type {} cannot serve as the classifier",
                              dtype_name(m.tok_embd.type())),
                  f.path(), kLinearTypes);
    m.output = m.tok_embd;  // tied embeddings
  }
  return m;
}

}  // namespace aigc
