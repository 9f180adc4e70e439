// WordPiece ("bert" vocabularies), with BERT's normaliser and pre-tokenizer as Hugging Face's
// BertNormalizer / BertPreTokenizer define them:
//  1. clean: drop NUL, U+FFFD and control characters; every whitespace character becomes a space;
//  2. put spaces around CJK ideographs;
//  3. strip accents (NFD, then drop non-spacing marks) and lowercase;
//  4. split on whitespace, and make every punctuation character a word of its own.
// Then each word is covered greedily by the longest token from the left. In GGUF the word-start
// pieces carry a leading U+2581 and continuation pieces ("##x" in BERT's vocab.txt) are bare.
// A word that cannot be covered, or is longer than 100 characters, becomes [UNK].
#include "text/unicode.h"
#include "text/vocab.h"

namespace aigc::text {

namespace {

constexpr size_t word_chars_max = 100;  // BERT's max_input_chars_per_word

// BERT's notion: \t \n \r and space separators; other control characters are removed instead.
bool bert_is_whitespace(uint32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || unicode_category(c) == UnicodeCategory::Zs;
}

bool bert_is_control(uint32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const UnicodeCategory cat = unicode_category(c);
  return cat == UnicodeCategory::Cc || cat == UnicodeCategory::Cf || cat == UnicodeCategory::Co ||
         cat == UnicodeCategory::Cn;
}

// ASCII punctuation and symbols count as punctuation too (e.g. $ + < = > ^ ` | ~).
bool bert_is_punctuation(uint32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return unicode_is_punctuation(c);
}

// The CJK ideograph blocks BERT pads with spaces (the ranges its reference code lists).
bool bert_is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

}  // namespace

std::vector<std::string> wpm_words(std::string_view text, bool lowercase, bool strip_accents) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    uint32_t c;
    pos += utf8_decode(text, pos, &c);
    if (c == 0 || c == 0xFFFD || bert_is_control(c)) continue;
    if (bert_is_whitespace(c)) c = ' ';
    if (bert_is_cjk(c)) {
      cps.push_back(' ');
      cps.push_back(c);
      cps.push_back(' ');
      continue;
    }
    cps.push_back(c);
  }
  if (strip_accents) {
    cps = unicode_nfd(cps);
    std::erase_if(cps, [](uint32_t c) { return unicode_category(c) == UnicodeCategory::Mn; });
  }
  if (lowercase) {
    for (uint32_t& c : cps) c = unicode_tolower(c);
  }

  std::vector<std::string> words;
  std::string cur;
  auto flush = [&]() {
    if (!cur.empty()) words.push_back(std::move(cur));
    cur.clear();
  };
  for (uint32_t c : cps) {
    if (unicode_is_whitespace(c)) {
      flush();
    } else if (bert_is_punctuation(c)) {
      flush();
      utf8_append(cur, c);
      flush();
    } else {
      utf8_append(cur, c);
    }
  }
  flush();
  return words;
}

void wpm_encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) {
  const VocabData& d = vocab.data();
  std::string word;
  for (const std::string& w : wpm_words(text, d.lowercase, d.strip_accents)) {
    size_t chars = 0;
    for (unsigned char c : w) chars += (c & 0xC0) != 0x80;
    word = "\xE2\x96\x81" + w;  // the word-start marker
    const size_t mark = out.size();
    bool covered = chars <= word_chars_max;
    for (size_t i = 0; covered && i < word.size();) {
      // Longest token that starts at i; candidate ends step back over whole UTF-8 characters.
      size_t j = std::min(word.size(), i + vocab.token_length_max());
      TokenId id = token_null;
      for (; j > i; --j) {
        if (j < word.size() && (static_cast<unsigned char>(word[j]) & 0xC0) == 0x80) continue;
        id = vocab.token_find(std::string_view(word).substr(i, j - i));
        if (id != token_null) break;
      }
      if (id == token_null) {
        covered = false;
        break;
      }
      out.push_back(id);
      i = j;
    }
    if (!covered) {
      out.resize(mark);
      out.push_back(d.unk);
    }
  }
}

}  // namespace aigc::text
