// Byte-level BPE learned from a corpus (the GPT-2 scheme), written as the tokenizer.ggml.*
// metadata that text/vocab loads ("gpt2" model, a named pre-tokenizer).
//
//   BpeTrainParams p{.vocab_size = 2048};
//   BpeTokenizer tok = bpe_train(corpus_text, p);
//   std::vector<GgufKV> kvs = bpe_gguf_kvs(tok);       // add to a model file, or write alone:
//   bpe_gguf_write(tok, "tokenizer.gguf");
//
// Training: the pre-tokenizer splits the text into words (as encoding will); each distinct word
// becomes its bytes' tokens, weighted by its count. Repeatedly the most frequent adjacent pair
// (ties: the pair of smaller ids) is merged into a new token, until vocab_size tokens exist
// (256 byte tokens + merges + the special tokens). Pair counts are updated incrementally (only
// the words that contain the merged pair are recounted), so a few MB of text trains in seconds.
// Token ids: 0..255 the bytes in byte order (GPT-2's printable characters), then merges in rank
// order, then the specials ("<|endoftext|>", the BOS and EOS token).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf.h"

namespace aigc::train {

struct BpeTrainParams {
  int64_t vocab_size = 4096;     // total, specials included; at least 256 + specials
  std::string pre = "gpt-2";     // tokenizer.ggml.pre: the pre-tokenizer that splits words
  int64_t min_pair_count = 2;    // stop early when the best pair occurs fewer times
};

struct BpeTokenizer {
  std::string pre;
  std::vector<std::string> tokens;   // GGUF form (byte-level characters)
  std::vector<int32_t> types;        // 1 normal, 3 control
  std::vector<std::string> merges;   // "left right", rank order
  int32_t eos = -1;                  // "<|endoftext|>": BOS and EOS
};

BpeTokenizer bpe_train(std::string_view text, const BpeTrainParams& p);
std::vector<GgufKV> bpe_gguf_kvs(const BpeTokenizer& tok);
// A vocab-only GGUF (general.architecture "llama" is not set: the file holds only a tokenizer).
void bpe_gguf_write(const BpeTokenizer& tok, const std::string& path);

}  // namespace aigc::train
