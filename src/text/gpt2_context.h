// Gpt2Context: runs a Gpt2Model over a sequence of tokens, as LlamaContext does for the Llama
// family: the prompt in one batched pass (M = T rows), then each generated token in a pass of its
// own (M = 1) reading earlier keys and values from the KV cache.
//
//   aigc::Gpt2Model model = aigc::Gpt2Model::load("gpt2.gguf");
//   aigc::Gpt2Context ctx(model, {.n_ctx = 256});
//   const aigc::Tensor& logits = ctx.eval(prompt);   // [1, n_vocab]
//
// Positions are learned (position_embd has context_length rows), so n_ctx cannot exceed
// context_length: the constructor throws aigc::Error saying so.
// Memory: the KV cache and an Arena for every activation are sized on creation; eval() allocates
// nothing.
#pragma once

#include <cstdint>
#include <span>

#include "core/arena.h"
#include "text/kv_cache.h"
#include "text/model_gpt2.h"

namespace aigc {

class Gpt2Context final : public TextContext {
 public:
  // The model must outlive the context.
  Gpt2Context(const Gpt2Model& model, TextContextParams params = {});
  Gpt2Context(const Gpt2Context&) = delete;
  Gpt2Context& operator=(const Gpt2Context&) = delete;

  size_t arena_bytes() const override { return arena_.capacity(); }
  size_t cache_bytes() const override { return cache_.nbytes(); }

 private:
  void forward(std::span<const int32_t> tokens, bool want_logits) override;

  const Gpt2Model& model_;
  KvCache cache_;
  Arena arena_;
  // Activation buffers carved from arena_ once, [n_batch, ...]; forward() takes leading-row views.
  Tensor x_, h_, qkv_, q_, attn_, o_, up_, logits_;
  int32_t* pos_ = nullptr;  // [n_batch] positions
};

}  // namespace aigc
