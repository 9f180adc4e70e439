// Vocab: a model's tokenizer as GGUF metadata describes it (tokens, scores, token types, merges,
// special ids, flags), with encode (text -> token ids) and decode (ids -> text).
//
// Three algorithms, chosen by `tokenizer.ggml.model`:
//  - "llama": SentencePiece-style BPE over characters, merges chosen by token score; spaces are
//    written as U+2581 and a leading one is added (add_space_prefix); unknown characters fall back
//    to <0xXX> byte tokens.                                              (tokenizer_spm.cpp)
//  - "gpt2": byte-level BPE: the pre-tokenizer of `tokenizer.ggml.pre` splits the text into words,
//    each word's bytes become GPT-2's printable characters, and merges apply by rank.
//                                                                        (tokenizer_bpe.cpp)
//  - "bert": WordPiece: BERT normalisation (clean, lowercase, strip accents, split on whitespace and
//    punctuation), then greedy longest-prefix pieces; a word that cannot be covered is [UNK].
//                                                                        (tokenizer_wpm.cpp)
// User-defined tokens (type 4) are matched in the raw text first and emitted as they are, as
// Hugging Face does with added tokens; control tokens are matched only with parse_special.
//
//   Vocab v = vocab_load_gguf(gguf);                // or Vocab(VocabData{...}) in tests
//   std::vector<TokenId> ids = v.encode("Hello world");
//   std::string text = v.decode(ids);               // "Hello world"
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/pretokenize.h"

namespace aigc {
class GgufFile;
}

namespace aigc::text {

using TokenId = int32_t;
constexpr TokenId token_null = -1;

enum class VocabModel { Spm, Bpe, Wpm };

// Values of `tokenizer.ggml.token_type`.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// Everything a Vocab is built from; plain data so tests can write tiny vocabularies by hand.
struct VocabData {
  VocabModel model = VocabModel::Spm;
  std::string pre;                  // `tokenizer.ggml.pre` (Bpe only)
  std::vector<std::string> tokens;  // id -> text (GGUF form: U+2581 for spaces, byte-level chars, ...)
  std::vector<float> scores;        // Spm merge priority; empty: all 0
  std::vector<TokenType> types;     // empty: all Normal
  std::vector<std::string> merges;  // Bpe: "left right", in rank order
  TokenId bos = token_null, eos = token_null, unk = token_null, sep = token_null, pad = token_null,
          cls = token_null, mask = token_null;
  bool add_space_prefix = false;  // Spm: a space before the text
  bool add_bos = false, add_eos = false;  // what add_special adds
  bool ignore_merges = false;     // Bpe (llama-3): a word that is a whole token is taken as is
  bool lowercase = true, strip_accents = true;  // Wpm normaliser
};

struct EncodeOptions {
  bool add_special = false;    // BOS/EOS as the vocab asks (bert: [CLS] ... [SEP])
  bool parse_special = false;  // match control tokens such as <|endoftext|> in the text
};

struct DecodeOptions {
  bool special = false;  // write control tokens' text instead of dropping them
};

class Vocab {
 public:
  // Checks the data (sizes agree, ids in range, merges well formed) and builds the lookups.
  // Throws aigc::Error naming the problem; `where` names the source (file) for the message.
  explicit Vocab(VocabData data, std::string where = "vocab");

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& opt = {}) const;
  std::string decode(std::span<const TokenId> ids, const DecodeOptions& opt = {}) const;
  // One token's text as decode writes it (no leading-space removal).
  std::string token_to_piece(TokenId id, bool special = false) const;

  size_t size() const { return data_.tokens.size(); }
  VocabModel model() const { return data_.model; }
  const VocabData& data() const { return data_; }
  const std::string& token_text(TokenId id) const { return data_.tokens.at(static_cast<size_t>(id)); }
  TokenType token_type(TokenId id) const;
  float token_score(TokenId id) const;
  TokenId token_find(std::string_view text) const;  // token_null when absent
  // Rank of the merge "left right" (lower merges first), -1 when absent.
  int32_t merge_rank(std::string_view left, std::string_view right) const;
  // Spm byte fallback: the <0xXX> token of a byte (or the one-byte token), token_null if none.
  TokenId byte_token(uint8_t b) const { return byte_tokens_[b]; }
  size_t token_length_max() const { return token_length_max_; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  void encode_text(std::string_view text, bool prev_special, std::vector<TokenId>& out) const;

  VocabData data_;
  StringMap token_ids_;
  StringMap merge_ranks_;  // "left right" -> rank
  std::array<TokenId, 256> byte_tokens_{};
  size_t token_length_max_ = 0;
  std::unique_ptr<PreTokenizer> pre_;  // Bpe only
  // User-defined and control tokens by their first byte, longest first: the candidates for the
  // added-token match at a text position.
  std::array<std::vector<TokenId>, 256> added_by_byte_;
};

// Reads the tokenizer.ggml.* metadata of a GGUF file (a whole model or a vocab-only file).
// Throws aigc::Error when the file has no tokenizer, an unsupported one, or malformed fields.
// Defaults for keys a file leaves out follow llama.cpp (e.g. SPM: BOS 1, EOS 2, UNK 0, a space
// prefix; BERT: [CLS] 101, [UNK] 100, [SEP] 102).
Vocab vocab_load_gguf(const GgufFile& file);

// ---- the algorithms, one file each; they append to out ----------------------------------------
void spm_encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out);
void bpe_encode(const Vocab& vocab, const PreTokenizer& pre, std::string_view text, std::vector<TokenId>& out);
void wpm_encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out);
// BERT normalisation and pre-tokenization: the words WordPiece then covers (exposed for tests).
std::vector<std::string> wpm_words(std::string_view text, bool lowercase, bool strip_accents);

}  // namespace aigc::text
