// CLIP's tokenizer (the text encoders of Stable Diffusion 1.x/2.x/XL), as OpenAI CLIP's
// simple_tokenizer.py and Hugging Face's CLIPTokenizer define it:
//   1. clean: html-unescape twice, strip, collapse whitespace runs to one space, lower-case
//      (Python's full str.lower(), via ICU);
//   2. split with the regex <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|
//      [^\s\p{L}\p{N}]+ (case-insensitive; text between matches, i.e. whitespace, is dropped);
//   3. each piece's UTF-8 bytes become GPT-2's printable byte characters, the last one with "</w>"
//      appended, and merges apply by rank (lowest first) until none applies.
// The vocabulary comes from either
//   - CLIP's merges file (bpe_simple_vocab_16e6.txt[.gz]): the 256 byte characters (in code point
//     order), the same with "</w>", the joined merges 1..48894, <|startoftext|>, <|endoftext|>;
//   - or a Hugging Face / diffusers tokenizer folder: vocab.json (token -> id) and merges.txt.
// Both read at most 48,894 merges after the header line, as both reference implementations do.
// (OpenCLIP's vocab.json may name the special tokens <start_of_text>/<end_of_text>: accepted too.)
//
// Differences from the reference, by design:
//  - ftfy.fix_text (mojibake repair, curly quotes, ...) is not done; the text is NFC-normalised
//    (which fix_text also does) and otherwise taken as is. The two differ only on broken or
//    typographic text.
//  - html.unescape knows numeric references and a common subset of named ones (html_unescape).
//  - invalid UTF-8 is read as U+FFFD per bad byte (Python would not have such a str at all).
//
// Stable Diffusion conditioning (tokenize_for_sd) follows A1111 (modules/sd_hijack_clip.py):
// the prompt is parsed for weights (prompt_weights.h), each segment is encoded on its own, and the
// tokens are cut into chunks of 75, each written as 77 ids: BOS, the tokens, EOS, then padding.
//   - Padding id: SD 1.x (OpenAI CLIP ViT-L/14) pads with EOS (49407); SD 2.x and SDXL's OpenCLIP
//     encoder pads with 0 (A1111's id_pad). Everything after the chunk's first EOS is padding (so
//     an "<|endoftext|>" typed in the prompt ends the chunk's text there, as in A1111).
//   - Comma rule: when a chunk is full and a comma (",</w>") was seen among its last
//     `comma_backtrack` tokens (A1111's default 20), the tokens after that comma move to the next
//     chunk, so a phrase is not cut in two. 0 turns it off (plain cut every 75 tokens).
//   - BREAK closes the current chunk (padding it) and starts a new one.
//   - An empty prompt gives one chunk (BOS, EOS, padding).
// BOS, EOS and padding carry weight 1.
//
//   ClipTokenizer tok = ClipTokenizer::load("../shared/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz");
//   tok.encode("a photo of a cat");   // {320, 1125, 539, 320, 2368}
//   auto chunks = tok.tokenize_for_sd("a (red:1.3) cat, BREAK sitting");
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/pretokenize.h"

namespace aigc::image {

using ClipTokenId = int32_t;

constexpr size_t clip_chunk_tokens = 75;  // prompt tokens per chunk
constexpr size_t clip_context = 77;       // ids per chunk: BOS + 75 + EOS
constexpr size_t clip_merges_max = 49152 - 256 - 2;  // 48,894: what CLIP's vocab uses

struct SdTokenizeOptions {
  ClipTokenId pad_id = -1;  // -1: the EOS id (SD 1.x); 0 for SD 2.x / SDXL's OpenCLIP encoder
  int comma_backtrack = 20; // A1111's comma_padding_backtrack; 0: cut at exactly 75 tokens
  bool weighting = true;    // parse A1111 weights and BREAK; false: the whole prompt is plain text
};

struct ClipChunk {
  std::vector<ClipTokenId> ids;  // [77]
  std::vector<float> weights;    // [77]
};

class ClipTokenizer {
 public:
  // A merges file (.gz: gzip-compressed) or a tokenizer folder holding vocab.json and merges.txt.
  // Throws aigc::Error naming the file when it is missing or malformed.
  static ClipTokenizer load(const std::string& path);
  static ClipTokenizer load_merges_file(const std::string& path);  // .txt or .txt.gz
  static ClipTokenizer load_hf(const std::string& vocab_json_path, const std::string& merges_txt_path);
  // From the text of a merges file (header line first), CLIP-style vocabulary.
  static ClipTokenizer from_merges_text(std::string_view text, const std::string& where = "merges");
  // From merge pairs in rank order (tests, the fuzzer): CLIP-style vocabulary.
  static ClipTokenizer from_merges(const std::vector<std::pair<std::string, std::string>>& merges);
  // From an explicit vocabulary (id -> token text) and merges (HF layout).
  ClipTokenizer(std::vector<std::string> tokens, const std::vector<std::pair<std::string, std::string>>& merges,
                const std::string& where);

  // Token ids of text, without BOS/EOS. "<|startoftext|>" / "<|endoftext|>" in the text give the
  // special ids, as in CLIP.
  std::vector<ClipTokenId> encode(std::string_view text) const;
  // Text of ids: "</w>" becomes a space (so the text usually ends with one). Throws aigc::Error
  // for an id outside the vocabulary.
  std::string decode(std::span<const ClipTokenId> ids) const;
  // The Stable Diffusion conditioning chunks of a prompt (see the file comment).
  std::vector<ClipChunk> tokenize_for_sd(std::string_view prompt, const SdTokenizeOptions& opt = {}) const;

  ClipTokenId bos() const { return bos_; }
  ClipTokenId eos() const { return eos_; }
  size_t size() const { return tokens_.size(); }
  const std::string& token_text(ClipTokenId id) const { return tokens_.at(static_cast<size_t>(id)); }
  ClipTokenId token_find(std::string_view text) const;  // -1 when absent

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  void piece_encode(std::string_view piece, std::vector<ClipTokenId>& out) const;

  std::vector<std::string> tokens_;  // id -> text
  StringMap ids_;                    // text -> id
  StringMap ranks_;                  // "left right" -> rank
  ClipTokenId bos_ = -1, eos_ = -1, comma_ = -1;
  text::Regex pattern_;
};

// CLIP's text cleaning (step 1 above): the text the regex then splits. Exposed for tests.
std::string clip_text_clean(std::string_view text);
// Python's html.unescape for numeric references (&#233; &#xE9;, with the HTML5 fix-ups) and the
// named references amp lt gt quot apos nbsp and a few dozen common others; unknown names stay.
std::string html_unescape(std::string_view text);

}  // namespace aigc::image
