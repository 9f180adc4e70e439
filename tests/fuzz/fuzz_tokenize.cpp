// libFuzzer target: the LLM tokenizers on arbitrary bytes (invalid UTF-8, control tokens, huge
// runs). Every input must encode and decode without crashing under each algorithm, with and
// without special-token parsing. Tiny vocabularies are built in code so no file is needed.
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "text/vocab.h"

using namespace aigc::text;

namespace {

std::vector<std::string> byte_level_alphabet() {
  // GPT-2's byte-to-unicode map as UTF-8: printable bytes stand for themselves, the rest map to
  // U+0100 + k, so every byte has a one-character token.
  std::vector<std::string> t;
  int k = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(k++);
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    t.push_back(s);
  }
  return t;
}

const Vocab& vocab_spm() {
  static const Vocab v = [] {
    VocabData d;
    d.model = VocabModel::Spm;
    d.tokens = {"<unk>", "<s>", "</s>"};
    d.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      d.tokens.push_back(buf);
      d.types.push_back(TokenType::Byte);
    }
    for (const char* s : {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "<|user|>"}) {
      d.tokens.push_back(s);
      d.types.push_back(std::string_view(s) == "<|user|>" ? TokenType::UserDefined : TokenType::Normal);
    }
    d.scores.assign(d.tokens.size(), 0.0f);
    d.scores[d.tokens.size() - 2] = 1.0f;
    d.bos = 1; d.eos = 2; d.unk = 0;
    d.add_space_prefix = true;
    return Vocab(d, "fuzz-spm");
  }();
  return v;
}

const Vocab& vocab_bpe() {
  static const Vocab v = [] {
    VocabData d;
    d.model = VocabModel::Bpe;
    d.pre = "llama3";
    d.tokens = byte_level_alphabet();
    d.tokens.push_back("ab");
    d.tokens.push_back("<|endoftext|>");
    d.types.assign(d.tokens.size(), TokenType::Normal);
    d.types.back() = TokenType::Control;
    d.merges = {"a b"};
    d.eos = static_cast<TokenId>(d.tokens.size() - 1);
    return Vocab(d, "fuzz-bpe");
  }();
  return v;
}

const Vocab& vocab_wpm() {
  static const Vocab v = [] {
    VocabData d;
    d.model = VocabModel::Wpm;
    d.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "\xe2\x96\x81" "a", "##b", "\xe2\x96\x81" "ab", ","};
    d.types = {TokenType::Control, TokenType::Unknown, TokenType::Control, TokenType::Control,
               TokenType::Normal, TokenType::Normal, TokenType::Normal, TokenType::Normal};
    d.unk = 1; d.cls = 2; d.sep = 3; d.pad = 0;
    return Vocab(d, "fuzz-wpm");
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const Vocab* v : {&vocab_spm(), &vocab_bpe(), &vocab_wpm()}) {
    for (bool special : {false, true}) {
      try {
        const auto ids = v->encode(text, {.add_special = special, .parse_special = special});
        for (TokenId id : ids)
          if (id < 0 || static_cast<size_t>(id) >= v->size()) __builtin_trap();
        (void)v->decode(ids, {.special = special});
      } catch (const aigc::Error&) {
      }
    }
  }
  return 0;
}
