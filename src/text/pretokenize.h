// Pre-tokenizers of byte-level BPE vocabularies: the text is split into pieces by a sequence of
// regexes (Hugging Face's `Split` pre-tokenizer with "isolated" behaviour: each regex splits every
// piece further; both the matches and the text between them become pieces), chosen by the GGUF key
// `tokenizer.ggml.pre`.
//
// Regex is a small backtracking matcher over code points with the semantics of the Oniguruma
// regexes in tokenizer.json files (leftmost match, first alternative wins, greedy quantifiers). It
// supports what those patterns use: alternation, (?:...) and (...) groups, (?=...) and (?!...)
// lookaheads, classes with ranges, \p{..}/\P{..} general categories, \s \S \d \D, ^ and $ (line
// anchors, as in Ruby syntax), ., and the quantifiers ? * + {n} {n,} {n,m}. Backtracking recurses
// per pattern item, not per character, so long runs of one class cost no stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace aigc::text {

class Regex {
 public:
  // Throws aigc::Error for syntax it does not support (named in the message).
  explicit Regex(std::string_view pattern);

  // Length in code points of the match that starts at cps[pos], searching only inside the subject
  // cps[begin, end) (anchors and lookaheads see only the subject); -1 when none.
  ptrdiff_t match_at(const uint32_t* cps, size_t begin, size_t end, size_t pos) const;

  struct Program;  // the parsed pattern (pretokenize.cpp)

 private:
  std::shared_ptr<const Program> prog_;
};

class PreTokenizer {
 public:
  explicit PreTokenizer(const std::vector<std::string>& patterns);

  // The regex set for a `tokenizer.ggml.pre` value ("gpt-2", "llama-bpe", "qwen2", ...).
  // Throws aigc::Error naming the value when it is unknown.
  static PreTokenizer from_name(std::string_view pre);
  static bool name_known(std::string_view pre);

  // Pieces of text, in order; their concatenation is exactly text.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  std::vector<Regex> regexes_;
};

}  // namespace aigc::text
