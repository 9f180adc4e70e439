// ModelLoader: reads a text model's hyper-parameters and weights from an open GGUF file, with
// one-line errors naming the file, the key or tensor, and what was expected (shared by every
// architecture's loader: model_llama.cpp, model_gpt2.cpp).
//
//   const ModelLoader ld{f, "llama-family"};
//   int64_t n_embd = ld.count("llama.embedding_length");           // > 0, < 2^31
//   Tensor wq = ld.tensor("blk.0.attn_q.weight", {C, C}, true);     // a type ops::linear takes
//   Tensor g = ld.vector_f32("blk.0.attn_norm.weight", C);          // owned f32 if stored otherwise
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/tensor.h"

namespace aigc {

class GgufFile;

// Weight types ops::linear computes with.
bool linear_type_ok(DType t);
inline const char* linear_types_hint() { return "supported weight types: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K"; }

struct ModelLoader {
  const GgufFile& f;
  const char* family;  // for "is this a complete <family> GGUF?"

  int64_t count(const std::string& key) const;                 // required; 1 .. 2^31
  int64_t count_or(const std::string& key, int64_t dflt) const;
  float positive_or(const std::string& key, float dflt) const;  // finite, > 0
  // A tensor of exactly `shape`; `linear` restricts the type to linear_type_ok.
  Tensor tensor(const std::string& name, std::initializer_list<int64_t> shape, bool linear) const;
  // Small per-channel vectors (norm weights, biases) as f32, converted if the file stores another type.
  Tensor vector_f32(const std::string& name, int64_t n) const;
  // gguf `vocab_key` if present, else the length of tokenizer.ggml.tokens, else token_embd's rows.
  int64_t vocab_size(const std::string& vocab_key) const;
};

}  // namespace aigc
