// TextGenerator: a model, its tokenizer and a context, generating text token by token.
// It keeps the tokens already in the KV cache, so a new request that starts with the same tokens
// (the next turn of a chat, a retried prompt) only evaluates what is new.
//
//   std::unique_ptr<TextModel> model = text_model_load("model.gguf");   // any architecture
//   TextGenerator gen(*model, {.n_ctx = 2048});
//   GenerateParams p;
//   p.sampling.temp = 0.7f;
//   p.n_predict = 128;
//   GenerateResult r = gen.generate(gen.vocab().encode("Once upon a time", {.add_special = true}), p,
//                                   [](std::string_view text) { fwrite(text.data(), 1, text.size(), stdout); return true; });
//
// Generation ends at an end-of-generation token (EOS, <|eot_id|>, <|im_end|>, ...), a stop string,
// n_predict tokens, a full context, or when the callback returns false (cancelled).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/sampling.h"
#include "text/text_model.h"
#include "text/text_stream.h"
#include "text/vocab.h"

namespace aigc {

struct GenerateParams {
  SamplingParams sampling;
  int64_t n_predict = 128;         // < 0: until an end token or a full context
  std::vector<std::string> stop;   // stop strings (not included in the output)
  bool ignore_eos = false;         // keep going past end-of-generation tokens
};

enum class GenerateEnd { EndToken, StopString, MaxTokens, ContextFull, Cancelled };
std::string_view generate_end_name(GenerateEnd e);  // "stop", "length", ... (OpenAI's finish_reason)

struct GenerateResult {
  std::string text;          // everything emitted
  int64_t n_prompt = 0;      // prompt tokens
  int64_t n_prompt_eval = 0; // of which evaluated now (the rest reused from the cache)
  int64_t n_generated = 0;
  GenerateEnd end = GenerateEnd::EndToken;
  double prompt_seconds = 0, generate_seconds = 0;
};

class TextGenerator {
 public:
  // The model must outlive the generator. Reads the tokenizer from the model's GGUF metadata.
  TextGenerator(const TextModel& model, TextContextParams ctx_params);

  // Evaluates `prompt` (reusing the cached common prefix) and samples up to n_predict tokens,
  // passing each piece of safe-to-show text to `on_text` (return false to stop). Throws
  // aigc::Error when the prompt does not fit the context (with the sizes and a hint).
  GenerateResult generate(std::span<const text::TokenId> prompt, const GenerateParams& params,
                          const std::function<bool(std::string_view)>& on_text);

  const text::Vocab& vocab() const { return vocab_; }
  const TextModel& model() const { return model_; }
  int64_t n_ctx() const { return ctx_->n_ctx(); }
  bool is_end_token(text::TokenId id) const;

 private:
  const TextModel& model_;
  text::Vocab vocab_;
  std::unique_ptr<TextContext> ctx_;
  std::vector<text::TokenId> cached_;  // tokens whose keys/values are in the cache, in order
  std::vector<text::TokenId> end_tokens_;
};

}  // namespace aigc
