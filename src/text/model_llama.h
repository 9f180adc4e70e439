// The Llama family of decoder-only transformers as llama.cpp writes them into GGUF: Llama 1/2/3,
// Mistral (written as "llama"), TinyLlama, llama2.c checkpoints (via `aigc convert`), and Qwen2
// (its own architecture name: q/k/v biases and NeoX rope).
//
//   LlamaModel model = LlamaModel::load("model.gguf");   // weights stay in the mapped file
//   // model.hp.n_layer, model.layers[0].wq ([n_head * head_dim, n_embd]) ...
//   // run it with LlamaContext (text/llama_context.h)
//
// Hyper-parameters (GGUF keys, `{arch}` = general.architecture):
//   {arch}.embedding_length, .block_count, .feed_forward_length, .attention.head_count,
//   .attention.head_count_kv (default head_count), .attention.layer_norm_rms_epsilon,
//   .context_length, .rope.freq_base (default 10000), .rope.dimension_count (default head_dim),
//   .rope.scaling.type "linear" + .rope.scaling.factor (or the older .rope.scale_linear),
//   .attention.key_length / .value_length (default n_embd / n_head), .vocab_size (default: the
//   length of tokenizer.ggml.tokens, else token_embd's rows).
// Tensors (PyTorch-order shapes, D = head_dim):
//   token_embd.weight [n_vocab, n_embd]
//   blk.{i}.attn_norm.weight [n_embd]
//   blk.{i}.attn_q.weight [n_head*D, n_embd]   (.bias [n_head*D] for qwen2)
//   blk.{i}.attn_k.weight [n_head_kv*D, n_embd] (.bias for qwen2)
//   blk.{i}.attn_v.weight [n_head_kv*D, n_embd] (.bias for qwen2)
//   blk.{i}.attn_output.weight [n_embd, n_head*D]
//   blk.{i}.ffn_norm.weight [n_embd]
//   blk.{i}.ffn_gate.weight [n_ff, n_embd], ffn_up [n_ff, n_embd], ffn_down [n_embd, n_ff]
//   output_norm.weight [n_embd], output.weight [n_vocab, n_embd] (absent: tied to token_embd)
//   rope_freqs.weight [n_rot / 2] (optional; Llama 3.1+: RoPE frequency i is divided by element i)
// RoPE: "llama" files use the interleaved-pair ("normal") rotation: llama.cpp's HF converter
// permutes the rows of Q and K so that the pairs of HF's rotate_half become adjacent. "qwen2" keeps
// HF's layout and uses NeoX rotation.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "text/text_model.h"

namespace aigc {

class GgufFile;

struct LlamaHparams {
  std::string arch;         // "llama", "mistral" or "qwen2"
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;  // context length the model was trained with
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_rot = 0;        // rotated leading dims of each head
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  bool rope_neox = false;
  bool qkv_bias = false;
};

struct LlamaLayer {
  Tensor attn_norm;         // [n_embd] f32
  Tensor wq, wk, wv, wo;    // linear weights (f32/f16/bf16/q8_0/q4_0)
  Tensor bq, bk, bv;        // f32 biases (qwen2) or undefined
  Tensor ffn_norm;          // [n_embd] f32
  Tensor w_gate, w_up, w_down;
};

class LlamaModel : public TextModel {
 public:
  // Opens a GGUF file and checks every hyper-parameter and tensor; throws aigc::Error naming the
  // file, key or tensor (expected vs found shape) on anything missing, inconsistent or unsupported.
  static LlamaModel load(const std::string& path, FileLoadOptions opt = {});
  static LlamaModel from_gguf(std::shared_ptr<const GgufFile> file);

  LlamaHparams hp;
  Tensor tok_embd;     // [n_vocab, n_embd]
  std::vector<LlamaLayer> layers;
  Tensor output_norm;  // [n_embd] f32
  Tensor output;       // [n_vocab, n_embd]; tok_embd itself when tied
  Tensor rope_freqs;   // [n_rot / 2] f32 frequency divisors (Llama 3.1 rope scaling) or undefined
  std::shared_ptr<const GgufFile> file;  // metadata (tokenizer) and the mapped weights

  // TextModel
  const std::string& arch() const override { return hp.arch; }
  int64_t n_vocab() const override { return hp.n_vocab; }
  int64_t n_ctx_train() const override { return hp.n_ctx_train; }
  static constexpr int64_t kMaxContext = int64_t{1} << 24;  // positions a LlamaContext can hold
  int64_t n_ctx_max() const override { return kMaxContext; }
  int64_t n_layer() const override { return hp.n_layer; }
  int64_t n_embd() const override { return hp.n_embd; }
  const GgufFile& gguf() const override { return *file; }
  uint64_t decode_bytes_per_token() const override;
  std::span<const uint8_t> decode_weights_span() const override;
  std::unique_ptr<TextContext> context_create(TextContextParams params) const override;  // a LlamaContext
};

// Architecture names this loader accepts.
bool llama_arch_supported(const std::string& arch);

}  // namespace aigc
