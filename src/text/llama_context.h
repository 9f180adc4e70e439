// LlamaContext: runs a LlamaModel over a sequence of tokens. The prompt goes through in one
// batched pass (linear layers with M = T rows, causal attention), then each generated token in a
// pass of its own (M = 1) that reads earlier keys and values from the KV cache.
//
// Worked example (greedy decoding; tokenizer and sampler live elsewhere):
//
//   #include "text/llama_context.h"
//   aigc::LlamaModel model = aigc::LlamaModel::load("stories260K.gguf");
//   aigc::LlamaContext ctx(model, {.n_ctx = 256, .n_threads = 4});
//   std::vector<int32_t> prompt = {1, 403, 407, 261, 378};       // BOS "Once upon a time"
//   const aigc::Tensor* logits = &ctx.eval(prompt);              // [1, n_vocab]: the last token's
//   for (int i = 0; i < 50; ++i) {
//     const float* l = logits->ptr<float>();
//     int32_t next = std::max_element(l, l + model.hp.n_vocab) - l;
//     logits = &ctx.eval({&next, 1});                            // one decode step
//   }
//
// Memory: the KV cache (f32, [n_layer][n_head_kv][n_ctx][head_dim]) and an Arena for every
// activation are sized when the context is created; eval() allocates nothing.
// Weights are used in place (views of the mapped file), through ops::linear: the GEMV kernels for
// decode, oneDNN for the prompt.
#pragma once

#include <cstdint>
#include <span>

#include "core/arena.h"
#include "text/kv_cache.h"
#include "text/model_llama.h"

namespace aigc {

using LlamaContextParams = TextContextParams;  // (text/text_model.h)

class LlamaContext final : public TextContext {
 public:
  // The model must outlive the context.
  LlamaContext(const LlamaModel& model, LlamaContextParams params = {});
  // Not copyable: a copy would share the cache and activation buffers with the original.
  LlamaContext(const LlamaContext&) = delete;
  LlamaContext& operator=(const LlamaContext&) = delete;
  LlamaContext(LlamaContext&&) = default;

  size_t arena_bytes() const override { return arena_.capacity(); }
  size_t cache_bytes() const override { return cache_.nbytes(); }

 private:
  void forward(std::span<const int32_t> tokens, bool want_logits) override;

  const LlamaModel& model_;
  KvCache cache_;
  Arena arena_;
  // Activation buffers carved from arena_ once, [n_batch, ...]; forward() takes leading-row views.
  Tensor x_, h_, q_, k_, v_, attn_, o_, gate_, up_, logits_;
  int32_t* pos_ = nullptr;  // [n_batch] positions
};

}  // namespace aigc
