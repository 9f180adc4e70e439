// A Llama-architecture GPT for training: the same tensors, names and hyper-parameters that
// llama.cpp's converter writes (text/model_llama.h), so a saved checkpoint runs unchanged in
// `aigc text` / `aigc chat`. Forward and backward run on the autograd Graph (train/autograd.h),
// planned once for a batch of B sequences of T tokens.
//
//   GptConfig cfg{.n_vocab = 512, .n_ctx = 128, .n_embd = 128, .n_layer = 4, .n_head = 4, .n_ff = 352};
//   GptTrainer gpt(cfg, /*B=*/8, /*T=*/128);
//   gpt.init_random(42);
//   std::copy(tokens, tokens + B * (T + 1), ...);       // gpt.batch_set(tokens): inputs and targets
//   float loss = gpt.forward_backward();                  // gradients in gpt.graph().grads_flat()
//
// Per layer (x [B*T, C], D = C / n_head):
//   h = rms_norm(x) * attn_norm; q = rope(h Wq^T), k = rope(h Wk^T), v = h Wv^T   (interleaved-pair
//   "normal" rope, as "llama" GGUF files use); x += causal_attention(q, k, v) Wo^T;
//   h = rms_norm(x) * ffn_norm; x += (silu(h Wg^T) * h Wu^T) Wd^T.
// logits = (rms_norm(x) * output_norm) Wout^T; loss = mean cross-entropy against the next token.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "train/autograd.h"

namespace aigc::train {

struct GptConfig {
  int64_t n_vocab = 256;
  int64_t n_ctx = 128;     // context length written to the file (>= the training T)
  int64_t n_embd = 64;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_head_kv = 0;   // 0: n_head
  int64_t n_ff = 128;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
};

class GptTrainer {
 public:
  GptTrainer(const GptConfig& cfg, int64_t B, int64_t T);

  // GPT-2 style: N(0, 0.02) matrices, residual projections (attn_output, ffn_down) scaled by
  // 1/sqrt(2 n_layer), norm gains 1. Deterministic for a seed.
  void init_random(uint64_t seed);
  // Copies parameters from a GGUF file written by save() (or any f32 llama file of this config).
  void load(const GgufFile& f);
  // Writes a GGUF for `aigc text`: general.* and llama.* hyper-parameters, then `extra_kvs`
  // (the tokenizer.ggml.* metadata), then the tensors (f32).
  void save(const std::string& path, std::span<const GgufKV> extra_kvs, const std::string& name = "aigc gpt") const;

  // tokens: B rows of T+1 ids (row-major); inputs are [:, :T], targets [:, 1:].
  void batch_set(std::span<const int32_t> tokens);
  float forward();           // loss only
  float forward_backward();  // loss, and gradients of every parameter

  Graph& graph() { return g_; }
  const GptConfig& config() const { return cfg_; }
  int64_t batch() const { return B_; }
  int64_t seq_len() const { return T_; }
  // 1 for matrices (weight decay applies), 0 for norm gains; one entry per flat parameter.
  std::vector<uint8_t> decay_mask() const;
  int64_t param_count() const { return static_cast<int64_t>(const_cast<Graph&>(g_).params_flat().size()); }

 private:
  GptConfig cfg_;
  int64_t B_, T_;
  Graph g_;
  Ids in_, tgt_;
  Var loss_;
};

}  // namespace aigc::train
