#include "text/text_model.h"

#include <algorithm>

#include "core/error.h"
#include "formats/gguf.h"
#include "text/model_gpt2.h"
#include "text/model_llama.h"

namespace aigc {

void TextContext::truncate(int64_t n) {
  if (n < 0 || n > n_past_)
    error_throw(fmt::format("cannot truncate to {} positions; the context holds {}", n, n_past_), "TextContext");
  n_past_ = n;
}

const Tensor& TextContext::eval(std::span<const int32_t> tokens) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T == 0) error_throw("eval of an empty token list", "TextContext::eval");
  if (n_past_ + T > n_ctx_)
    error_throw(fmt::format("{} tokens after {} would exceed the context size {}", T, n_past_, n_ctx_),
                "TextContext::eval", "create the context with a larger n_ctx, or reset() it");
  if (params_.logits_all && T > n_batch_)
    error_throw(fmt::format("{} tokens with logits_all exceed n_batch {}", T, n_batch_), "TextContext::eval",
                "raise n_batch or evaluate in smaller pieces");
  for (int64_t i = 0; i < T; ++i)
    if (tokens[i] < 0 || tokens[i] >= n_vocab_)
      error_throw(fmt::format("token id {} at index {} is outside the vocabulary [0, {})", tokens[i], i, n_vocab_),
                  "TextContext::eval");
  for (int64_t i0 = 0; i0 < T; i0 += n_batch_) {
    const int64_t n = std::min(n_batch_, T - i0);
    forward(tokens.subspan(i0, n), i0 + n == T);
  }
  return out_;
}

uint64_t tensors_nbytes(std::span<const Tensor* const> ts) {
  uint64_t n = 0;
  for (const Tensor* t : ts)
    if (t->defined()) n += t->nbytes();
  return n;
}

std::span<const uint8_t> tensors_extent(std::span<const Tensor* const> ts) {
  const uint8_t* lo = nullptr;
  const uint8_t* hi = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined() || t->nbytes() == 0) continue;
    const auto* b = static_cast<const uint8_t*>(t->data());
    lo = lo ? std::min(lo, b) : b;
    hi = hi ? std::max(hi, b + t->nbytes()) : b + t->nbytes();
  }
  return lo ? std::span<const uint8_t>(lo, static_cast<size_t>(hi - lo)) : std::span<const uint8_t>();
}

const char* text_model_arch_names() { return "llama, mistral, qwen2, gpt2"; }

std::unique_ptr<TextModel> text_model_load(const std::string& path, FileLoadOptions opt) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path, opt));
  const std::string& arch = file->get_string("general.architecture");
  if (llama_arch_supported(arch)) return std::make_unique<LlamaModel>(LlamaModel::from_gguf(file));
  if (arch == "gpt2") return std::make_unique<Gpt2Model>(Gpt2Model::from_gguf(file));
  error_throw(fmt::format("architecture '{}' is not supported", arch), path,
              std::string("supported architectures: ") + text_model_arch_names());
}

}  // namespace aigc
