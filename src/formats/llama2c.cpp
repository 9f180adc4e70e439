#include "formats/llama2c.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/mapped_file.h"

namespace aigc {

namespace {

constexpr int64_t kHeaderBytes = 7 * 4;
constexpr int64_t kDimMax = int64_t{1} << 20;  // any real model is far below; keeps products in int64

int32_t read_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

bool is_byte_piece(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

std::string spaces_escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ')
      out += "\xe2\x96\x81";  // U+2581, SentencePiece's word-boundary marker
    else
      out += c;
  }
  return out;
}

}  // namespace

Llama2cConfig llama2c_config_parse(std::span<const uint8_t> bytes, const std::string& name) {
  if (static_cast<int64_t>(bytes.size()) < kHeaderBytes)
    error_throw(fmt::format("file of {} bytes is too short for the 28-byte llama2.c header", bytes.size()), name,
                "is this a llama2.c checkpoint (.bin)?");
  const char* fields[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  int64_t v[7];
  for (int i = 0; i < 7; ++i) {
    v[i] = read_i32(bytes.data() + 4 * i);
    const int64_t mag = i == 5 ? (v[i] < 0 ? -v[i] : v[i]) : v[i];
    if (mag <= 0 || mag > kDimMax)
      error_throw(fmt::format("header field {} = {} is out of range", fields[i], v[i]), name,
                  "is this a llama2.c checkpoint in the legacy (version 0) format?");
  }
  Llama2cConfig c;
  c.dim = v[0];
  c.hidden_dim = v[1];
  c.n_layers = v[2];
  c.n_heads = v[3];
  c.n_kv_heads = v[4];
  c.shared_classifier = v[5] > 0;
  c.vocab_size = v[5] > 0 ? v[5] : -v[5];
  c.seq_len = v[6];
  if (c.dim % c.n_heads != 0 || (c.dim / c.n_heads) % 2 != 0)
    error_throw(fmt::format("dim {} must be a multiple of n_heads {} with an even head size", c.dim, c.n_heads), name);
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    error_throw(fmt::format("n_heads {} is not a multiple of n_kv_heads {}", c.n_heads, c.n_kv_heads), name);
  if (c.n_layers > 4096) error_throw(fmt::format("n_layers {} is out of range", c.n_layers), name);
  return c;
}

Llama2cVocab llama2c_vocab_read(const std::string& path, int64_t vocab_size) {
  const auto file = MappedFile::open(path);
  return llama2c_vocab_parse({file->data(), file->size()}, vocab_size, path);
}

Llama2cVocab llama2c_vocab_parse(std::span<const uint8_t> bytes, int64_t vocab_size, const std::string& path) {
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  size_t off = 0;
  auto need = [&](size_t bytes, const std::string& what) {
    if (bytes > n - off)
      error_throw(fmt::format("file ends at byte {} inside {} (needs {} more bytes)", n, what, bytes - (n - off)), path,
                  "the tokenizer file is truncated, or belongs to a model with a different vocab_size");
  };
  Llama2cVocab v;
  need(4, "the max_token_length header");
  v.max_token_length = read_i32(p);
  off = 4;
  if (v.max_token_length <= 0 || v.max_token_length > 1 << 16)
    error_throw(fmt::format("max_token_length {} is out of range", v.max_token_length), path,
                "is this a llama2.c tokenizer (.bin)?");
  const size_t entries_max = std::min<size_t>(static_cast<size_t>(vocab_size), n / 8);  // 8 bytes per entry at least
  v.pieces.reserve(entries_max);
  v.scores.reserve(entries_max);
  for (int64_t id = 0; id < vocab_size; ++id) {
    need(8, fmt::format("the score and length of token {}", id));
    float score;
    std::memcpy(&score, p + off, 4);
    const int32_t len = read_i32(p + off + 4);
    off += 8;
    if (len < 0 || len > v.max_token_length)
      error_throw(fmt::format("token {} has length {} (max_token_length {})", id, len, v.max_token_length), path);
    need(static_cast<size_t>(len), fmt::format("the bytes of token {}", id));
    v.pieces.emplace_back(reinterpret_cast<const char*>(p + off), static_cast<size_t>(len));
    v.scores.push_back(score);
    off += static_cast<size_t>(len);
  }
  if (off != n)
    error_throw(fmt::format("{} bytes remain after the {} tokens", n - off, vocab_size), path,
                "the tokenizer belongs to a model with a larger vocabulary");
  return v;
}

GgufWriter llama2c_to_gguf(const std::string& model_path, const std::string& tokenizer_path) {
  const auto file = MappedFile::open(model_path);
  const std::span<const uint8_t> bytes(file->data(), file->size());
  const Llama2cConfig c = llama2c_config_parse(bytes, model_path);
  const int64_t C = c.dim, F = c.hidden_dim, L = c.n_layers, V = c.vocab_size;
  const int64_t head = C / c.n_heads, KV = C * c.n_kv_heads / c.n_heads;

  // Every array in file order, with its size in floats (all < 2^20 x 2^20 x 4096: no overflow).
  const int64_t sizes[] = {V * C,     L * C, L * C * C, L * KV * C, L * KV * C, L * C * C, L * C,
                           L * F * C, L * C * F, L * F * C, C,     c.seq_len * head,     // rope cos+sin
                           c.shared_classifier ? 0 : V * C};
  int64_t floats = 0;
  for (int64_t s : sizes) floats += s;
  const int64_t expected = kHeaderBytes + floats * 4;
  if (static_cast<int64_t>(bytes.size()) != expected)
    error_throw(fmt::format("file has {} bytes; the header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, "
                            "vocab_size {}{}, seq_len {}) implies {}",
                            bytes.size(), C, F, L, c.n_heads, c.n_kv_heads, V, c.shared_classifier ? "" : " unshared",
                            c.seq_len, expected),
                model_path, bytes.size() < expected ? "the checkpoint is truncated" : "is this a legacy llama2.c checkpoint?");

  const Llama2cVocab vocab = llama2c_vocab_read(tokenizer_path, V);

  // Views of the mapped checkpoint; the writer keeps the mapping alive through their owner.
  auto* base = const_cast<uint8_t*>(file->data()) + kHeaderBytes;
  int64_t at = 0;  // floats consumed
  auto next = [&](std::initializer_list<int64_t> shape, int64_t count) {
    Tensor t = Tensor::view_of(DType::F32, std::span<const int64_t>(shape.begin(), shape.size()), base + at * 4, file);
    at += count;
    return t;
  };
  const Tensor emb = next({V, C}, sizes[0]);
  const Tensor rms_att = next({L, C}, sizes[1]);
  const Tensor wq = next({L, C, C}, sizes[2]);
  const Tensor wk = next({L, KV, C}, sizes[3]);
  const Tensor wv = next({L, KV, C}, sizes[4]);
  const Tensor wo = next({L, C, C}, sizes[5]);
  const Tensor rms_ffn = next({L, C}, sizes[6]);
  const Tensor w1 = next({L, F, C}, sizes[7]);
  const Tensor w2 = next({L, C, F}, sizes[8]);
  const Tensor w3 = next({L, F, C}, sizes[9]);
  const Tensor rms_final = next({C}, sizes[10]);
  at += sizes[11];  // legacy rope tables
  Tensor wcls;
  if (!c.shared_classifier) wcls = next({V, C}, sizes[12]);

  GgufWriter w;
  std::string stem = model_path.substr(model_path.find_last_of('/') + 1);
  if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ".bin") == 0) stem.resize(stem.size() - 4);
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("general.name", stem);
  w.metadata_add("llama.context_length", static_cast<uint32_t>(c.seq_len));
  w.metadata_add("llama.embedding_length", static_cast<uint32_t>(C));
  w.metadata_add("llama.feed_forward_length", static_cast<uint32_t>(F));
  w.metadata_add("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.metadata_add("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.metadata_add("llama.block_count", static_cast<uint32_t>(L));
  w.metadata_add("llama.rope.dimension_count", static_cast<uint32_t>(head));
  w.metadata_add("llama.attention.layer_norm_rms_epsilon", 1e-5f);  // run.c's rmsnorm

  std::vector<std::string> tokens(static_cast<size_t>(V));
  std::vector<int32_t> types(static_cast<size_t>(V));
  for (int64_t id = 0; id < V; ++id) {
    std::string text = vocab.pieces[static_cast<size_t>(id)];
    int32_t type = 1;  // normal
    if (id == 0) {
      text = "<unk>", type = 2;  // unknown
    } else if (id == 1) {
      text = "<s>", type = 3;  // control
    } else if (id == 2) {
      text = "</s>", type = 3;
    } else if (text.empty()) {
      type = 3;
    } else if (is_byte_piece(text)) {
      type = 6;  // byte
    }
    tokens[static_cast<size_t>(id)] = spaces_escaped(text);
    types[static_cast<size_t>(id)] = type;
  }
  w.metadata_add("tokenizer.ggml.model", "llama");
  w.metadata_add("tokenizer.ggml.tokens", GgufValue::array(tokens));
  w.metadata_add("tokenizer.ggml.scores", GgufValue::array(vocab.scores));
  w.metadata_add("tokenizer.ggml.token_type", GgufValue::array(types));
  w.metadata_add("tokenizer.ggml.unknown_token_id", uint32_t{0});
  w.metadata_add("tokenizer.ggml.bos_token_id", uint32_t{1});
  w.metadata_add("tokenizer.ggml.eos_token_id", uint32_t{2});

  w.tensor_add("token_embd.weight", emb);
  w.tensor_add("output_norm.weight", rms_final);
  if (!c.shared_classifier) w.tensor_add("output.weight", wcls);  // absent: tied to token_embd
  for (int64_t i = 0; i < L; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    w.tensor_add(p + "attn_norm.weight", rms_att.select(0, i));
    w.tensor_add(p + "attn_q.weight", wq.select(0, i));
    w.tensor_add(p + "attn_k.weight", wk.select(0, i));
    w.tensor_add(p + "attn_v.weight", wv.select(0, i));
    w.tensor_add(p + "attn_output.weight", wo.select(0, i));
    w.tensor_add(p + "ffn_norm.weight", rms_ffn.select(0, i));
    w.tensor_add(p + "ffn_gate.weight", w1.select(0, i));
    w.tensor_add(p + "ffn_down.weight", w2.select(0, i));
    w.tensor_add(p + "ffn_up.weight", w3.select(0, i));
  }
  return w;
}

}  // namespace aigc
