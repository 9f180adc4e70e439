#include "text/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "formats/gguf.h"

namespace aigc {

std::string_view generate_end_name(GenerateEnd e) {
  switch (e) {
    case GenerateEnd::EndToken: return "stop";
    case GenerateEnd::StopString: return "stop";
    case GenerateEnd::MaxTokens: return "length";
    case GenerateEnd::ContextFull: return "length";
    case GenerateEnd::Cancelled: return "cancelled";
  }
  return "stop";
}

TextGenerator::TextGenerator(const TextModel& model, TextContextParams ctx_params)
    : model_(model), vocab_(text::vocab_load_gguf(model.gguf())), ctx_(model.context_create(ctx_params)) {
  AIGC_CHECK(static_cast<int64_t>(vocab_.size()) <= model.n_vocab(),
             "tokenizer has {} tokens but the model's output has {}", vocab_.size(), model.n_vocab());
  // End of generation: EOS, the file's EOT token, and the end-of-turn control tokens of the
  // common chat formats (a chat model ends its answer with these rather than EOS).
  const auto& d = vocab_.data();
  if (d.eos != text::token_null) end_tokens_.push_back(d.eos);
  if (const GgufValue* v = model.gguf().find("tokenizer.ggml.eot_token_id"))
    if (auto id = v->to_uint(); id && *id < vocab_.size()) end_tokens_.push_back(static_cast<text::TokenId>(*id));
  for (const char* s : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>"}) {
    const text::TokenId id = vocab_.token_find(s);
    if (id != text::token_null && vocab_.token_type(id) == text::TokenType::Control) end_tokens_.push_back(id);
  }
}

bool TextGenerator::is_end_token(text::TokenId id) const {
  return std::find(end_tokens_.begin(), end_tokens_.end(), id) != end_tokens_.end();
}

GenerateResult TextGenerator::generate(std::span<const text::TokenId> prompt, const GenerateParams& params,
                                       const std::function<bool(std::string_view)>& on_text) {
  using clock = std::chrono::steady_clock;
  GenerateResult r;
  r.n_prompt = static_cast<int64_t>(prompt.size());
  if (prompt.empty())
    error_throw("the prompt is empty after tokenization", "prompt",
                "give some text, or use a model whose tokenizer adds a BOS token");
  if (r.n_prompt >= ctx_->n_ctx())
    error_throw(fmt::format("the prompt is {} tokens but the context holds {}", r.n_prompt, ctx_->n_ctx()),
                "prompt", "shorten the prompt or raise -c/--ctx-size (up to the model's trained context)");
  for (text::TokenId id : prompt)
    if (id < 0 || id >= model_.n_vocab()) error_throw(fmt::format("token id {} out of range", id), "prompt");

  // Reuse the longest common prefix already in the cache; at least the last prompt token is
  // evaluated again, since its logits are what the first sample needs.
  size_t keep = 0;
  while (keep < cached_.size() && keep < prompt.size() && cached_[keep] == prompt[keep]) ++keep;
  keep = std::min(keep, prompt.size() - 1);
  ctx_->truncate(static_cast<int64_t>(keep));
  cached_.resize(keep);

  Sampler sampler(params.sampling, static_cast<int32_t>(model_.n_vocab()));
  for (text::TokenId id : prompt) sampler.token_accept(id);
  TextStream stream(params.stop);  // n_predict is counted here, end tokens included

  const auto t0 = clock::now();
  const Tensor* logits = &ctx_->eval(prompt.subspan(keep));
  cached_.insert(cached_.end(), prompt.begin() + static_cast<std::ptrdiff_t>(keep), prompt.end());
  r.n_prompt_eval = r.n_prompt - static_cast<int64_t>(keep);
  const auto t1 = clock::now();
  r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();

  // A prompt of control tokens only (just BOS): SPM's first piece carries the space that encode
  // would have added in front of the text; drop it, as decode does at the start of a text.
  bool strip_space = vocab_.model() == text::VocabModel::Spm && vocab_.data().add_space_prefix &&
                     std::all_of(prompt.begin(), prompt.end(), [&](text::TokenId id) {
                       return vocab_.token_type(id) == text::TokenType::Control;
                     });
  std::string out;
  r.end = GenerateEnd::MaxTokens;
  while (true) {
    if (params.n_predict >= 0 && r.n_generated >= params.n_predict) {
      r.end = GenerateEnd::MaxTokens;
      stream.finish(out);
      break;
    }
    const text::TokenId tok =
        sampler.sample({logits->ptr<float>(), static_cast<size_t>(model_.n_vocab())});
    sampler.token_accept(tok);
    ++r.n_generated;
    if (!params.ignore_eos && is_end_token(tok)) {
      r.end = GenerateEnd::EndToken;
      stream.finish(out);
      break;
    }
    std::string piece = vocab_.token_to_piece(tok);
    if (strip_space && !piece.empty()) {
      if (piece[0] == ' ') piece.erase(0, 1);
      strip_space = false;
    }
    const bool go_on = stream.push(piece, out);
    if (!out.empty()) {
      r.text += out;
      if (on_text && !on_text(out)) {
        out.clear();
        r.end = GenerateEnd::Cancelled;
        break;
      }
      out.clear();
    }
    if (!go_on) {
      r.end = stream.stop_reason() == StopReason::StopReasonString ? GenerateEnd::StopString : GenerateEnd::MaxTokens;
      break;
    }
    if (ctx_->n_past() >= ctx_->n_ctx()) {
      r.end = GenerateEnd::ContextFull;
      stream.finish(out);
      break;
    }
    logits = &ctx_->eval({&tok, 1});
    cached_.push_back(tok);
  }
  if (!out.empty()) {
    r.text += out;
    if (on_text) on_text(out);
  }
  r.generate_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace aigc
