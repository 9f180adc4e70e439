// GPT-2 as llama.cpp's converter writes it into GGUF (general.architecture "gpt2"): pre-LN blocks
// with LayerNorm (weight and bias), a fused Q,K,V projection, GELU (tanh approximation) MLP,
// learned absolute position embeddings, biases on every linear layer but the classifier.
//
//   Gpt2Model model = Gpt2Model::load("gpt2.gguf");   // weights stay in the mapped file
//   // run it with Gpt2Context (text/gpt2_context.h), or through TextModel::context_create
//
// Hyper-parameters (GGUF keys): gpt2.context_length, .embedding_length, .block_count,
// .feed_forward_length, .attention.head_count, .attention.layer_norm_epsilon (default 1e-5);
// n_vocab: gpt2.vocab_size, else the length of tokenizer.ggml.tokens, else token_embd's rows.
// Tensors (PyTorch-order shapes; HF's Conv1D weights are [in, out], the converter stores them
// transposed as [out, in] linear weights):
//   token_embd.weight [n_vocab, n_embd], position_embd.weight [context_length, n_embd]
//   blk.{i}.attn_norm.{weight,bias} [n_embd]
//   blk.{i}.attn_qkv.weight [3 n_embd, n_embd], .bias [3 n_embd]   (rows: Q, then K, then V)
//   blk.{i}.attn_output.weight [n_embd, n_embd], .bias [n_embd]
//   blk.{i}.ffn_norm.{weight,bias} [n_embd]
//   blk.{i}.ffn_up.weight [n_ff, n_embd], .bias [n_ff]
//   blk.{i}.ffn_down.weight [n_embd, n_ff], .bias [n_embd]
//   output_norm.{weight,bias} [n_embd], output.weight [n_vocab, n_embd] (absent: tied to token_embd)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "text/text_model.h"

namespace aigc {

struct Gpt2Hparams {
  std::string arch = "gpt2";
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;  // context_length: also the rows of position_embd, the longest sequence
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t head_dim = 0;
  float norm_eps = 1e-5f;
};

struct Gpt2Layer {
  Tensor attn_norm, attn_norm_b;  // [n_embd] f32
  Tensor wqkv, bqkv;              // [3 n_embd, n_embd] (f32/f16/bf16/q8_0/q4_0), [3 n_embd] f32
  Tensor wo, bo;
  Tensor ffn_norm, ffn_norm_b;
  Tensor w_up, b_up, w_down, b_down;
};

class Gpt2Model : public TextModel {
 public:
  // Opens a GGUF file and checks every hyper-parameter and tensor; throws aigc::Error naming the
  // file, key or tensor (expected vs found shape) on anything missing, inconsistent or unsupported.
  static Gpt2Model load(const std::string& path, FileLoadOptions opt = {});
  static Gpt2Model from_gguf(std::shared_ptr<const GgufFile> file);

  Gpt2Hparams hp;
  Tensor tok_embd;   // [n_vocab, n_embd]
  Tensor pos_embd;   // [n_ctx_train, n_embd]
  std::vector<Gpt2Layer> layers;
  Tensor output_norm, output_norm_b;  // [n_embd] f32
  Tensor output;     // [n_vocab, n_embd]; tok_embd itself when tied
  std::shared_ptr<const GgufFile> file;

  // TextModel
  const std::string& arch() const override { return hp.arch; }
  int64_t n_vocab() const override { return hp.n_vocab; }
  int64_t n_ctx_train() const override { return hp.n_ctx_train; }
  int64_t n_ctx_max() const override { return hp.n_ctx_train; }
  int64_t n_layer() const override { return hp.n_layer; }
  int64_t n_embd() const override { return hp.n_embd; }
  const GgufFile& gguf() const override { return *file; }
  uint64_t decode_bytes_per_token() const override;
  std::span<const uint8_t> decode_weights_span() const override;
  std::unique_ptr<TextContext> context_create(TextContextParams params) const override;  // a Gpt2Context
};

}  // namespace aigc
