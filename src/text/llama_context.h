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

  // Appends `tokens` at positions n_past() .. n_past() + T - 1 and returns their logits:
  // [T, n_vocab] with logits_all (then T <= n_batch), else [1, n_vocab] for the last token. The
  // tensor lives in the context's arena and is overwritten by the next eval.
  // Throws aigc::Error for an empty input, a token id outside [0, n_vocab), or a sequence that
  // would pass n_ctx (nothing is evaluated then).
  const Tensor& eval(std::span<const int32_t> tokens) override;

  int64_t n_past() const override { return n_past_; }
  int64_t n_ctx() const override { return n_ctx_; }
  // Forgets the sequence (positions restart at 0); keeps all memory.
  void reset() override { n_past_ = 0; }
  // Drops positions >= n (e.g. to rewind to a shared prompt prefix).
  void truncate(int64_t n) override;

  size_t arena_bytes() const { return arena_.capacity(); }
  size_t cache_bytes() const { return cache_.nbytes(); }

 private:
  void forward(std::span<const int32_t> tokens, bool want_logits);

  const LlamaModel& model_;
  LlamaContextParams params_;
  int64_t n_ctx_ = 0, n_batch_ = 0, n_past_ = 0;
  KvCache cache_;
  Arena arena_;
  // Activation buffers carved from arena_ once, [n_batch, ...]; forward() takes leading-row views.
  Tensor x_, h_, q_, k_, v_, attn_, o_, gate_, up_, logits_, out_;
  int32_t* pos_ = nullptr;  // [n_batch] positions
};

}  // namespace aigc
