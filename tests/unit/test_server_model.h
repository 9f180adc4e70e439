// A tiny random-weight Llama GGUF with a real tokenizer (SentencePiece pieces with byte fallback,
// so any text encodes) and the chatml template, written by the server tests.
#pragma once

#include <string>

namespace aigc::test {

// Writes the model to `path`. The output rows of the special tokens (<unk>, <s>, </s>,
// <|im_start|>, <|im_end|>) are zero, so greedy decoding (logit 0 against random positive maxima)
// practically never ends early: requests end by max_tokens, stop strings or cancellation, as the
// tests want. Word pieces get larger rows than byte tokens, so the text is mostly ASCII words.
void server_tiny_model_write(const std::string& path, int64_t n_ctx = 512);

}  // namespace aigc::test
