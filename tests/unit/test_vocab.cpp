// Tokenizers: the regex engine and pre-tokenizers, SPM / byte-level BPE / WordPiece on tiny
// hand-built vocabularies (expected ids worked out by hand from the algorithms' rules), the GGUF
// loader, llama.cpp's tokenizer test vectors (made with Hugging Face tokenizers) on every vocab in
// ../shared that has them, and `aigc tokenize`.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/refdump.h"
#include "common/run_cli.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "text/pretokenize.h"
#include "text/unicode.h"
#include "text/vocab.h"

using namespace aigc;
using namespace aigc::text;

namespace {

const std::string sp = "\xE2\x96\x81";  // U+2581

std::vector<std::string> split_strs(const PreTokenizer& p, std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view s : p.split(text)) out.emplace_back(s);
  return out;
}

ptrdiff_t match(std::string_view pattern, std::string_view text, size_t pos = 0) {
  const std::vector<uint32_t> cps = utf8_to_codepoints(text);
  return Regex(pattern).match_at(cps.data(), 0, cps.size(), pos);
}

// Text with control characters and non-ASCII bytes written as escapes, for failure messages.
std::string escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

std::string ids_str(const std::vector<TokenId>& ids) {
  std::string s;
  for (TokenId id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

std::string file_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

// ---- Unicode ------------------------------------------------------------------------------------

TEST(Unicode, Utf8DecodeRejectsMalformedSequencesOneByteAtATime) {
  uint32_t cp;
  EXPECT_EQ(utf8_decode("\xE2\x82\xAC", 0, &cp), 3u);  // €
  EXPECT_EQ(cp, 0x20ACu);
  EXPECT_EQ(utf8_decode("\xF0\x9F\xA6\x99", 0, &cp), 4u);  // 🦙
  EXPECT_EQ(cp, 0x1F999u);
  for (std::string_view bad : {std::string_view("\xC3"), std::string_view("\xC0\x80"), std::string_view("\xED\xA0\x80"),
                               std::string_view("\xFF"), std::string_view("\x80"), std::string_view("\xE2\x82")}) {
    EXPECT_EQ(utf8_decode(bad, 0, &cp), 1u) << escaped(bad);
    EXPECT_EQ(cp, 0xFFFDu);
  }
}

TEST(Unicode, CategoriesCaseAndNfd) {
  EXPECT_EQ(unicode_category('A'), UnicodeCategory::Lu);
  EXPECT_EQ(unicode_category('7'), UnicodeCategory::Nd);
  EXPECT_EQ(unicode_category('!'), UnicodeCategory::Po);
  EXPECT_EQ(unicode_category(0x4E2D), UnicodeCategory::Lo);  // 中
  EXPECT_EQ(unicode_category(0x0301), UnicodeCategory::Mn);  // combining acute
  EXPECT_TRUE(unicode_is_whitespace(0x3000));                // ideographic space
  EXPECT_TRUE(unicode_is_whitespace(0x85));
  EXPECT_FALSE(unicode_is_whitespace(0x200B));  // zero width space is not White_Space
  EXPECT_EQ(unicode_tolower(0xC9), 0xE9u);      // É -> é
  EXPECT_EQ(unicode_nfd({0xE9}), (std::vector<uint32_t>{'e', 0x301}));
  EXPECT_EQ(unicode_nfd({0x1F999}), (std::vector<uint32_t>{0x1F999}));
}

TEST(Unicode, Gpt2ByteMap) {
  EXPECT_EQ(byte_to_unicode('A'), uint32_t('A'));
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);   // Ġ
  EXPECT_EQ(byte_to_unicode('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(byte_to_unicode(0x00), 0x100u);
  EXPECT_EQ(byte_to_unicode(0x7F), 0x121u);
  EXPECT_EQ(byte_to_unicode(0xAD), 0x143u);  // soft hyphen is the last unprintable byte
  EXPECT_EQ(byte_to_unicode(0xFF), 0xFFu);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode_to_byte(byte_to_unicode(static_cast<uint8_t>(b))), b);
  EXPECT_EQ(unicode_to_byte(0x2581), -1);
}

// ---- regex engine -------------------------------------------------------------------------------

TEST(Regex, LeftmostAlternativeWinsNotLongest) {
  EXPECT_EQ(match("a|ab", "ab"), 1);
  EXPECT_EQ(match("ab|a", "ab"), 2);
  EXPECT_EQ(match("x", "ab"), -1);
}

TEST(Regex, QuantifiersGroupsAndClasses) {
  EXPECT_EQ(match(R"(\p{N}{1,3})", "12345"), 3);
  EXPECT_EQ(match(R"(\p{N}{2})", "1"), -1);
  EXPECT_EQ(match(R"((?:ab)+c)", "ababc"), 5);
  EXPECT_EQ(match(R"((?:ab)*abc)", "ababc"), 5);  // the group gives back a round
  EXPECT_EQ(match(R"([^\s\p{L}]+)", "!?a"), 2);
  EXPECT_EQ(match(R"([a-c\-]+)", "ab-cd"), 4);
  EXPECT_EQ(match(R"([\x{4E00}-\x{9FA5}]+)", "中文x"), 2);
  EXPECT_EQ(match(R"(\P{L}+)", "12a"), 2);
  EXPECT_EQ(match(R"(.+)", "ab\ncd"), 2);
}

TEST(Regex, LookaheadAndAnchors) {
  EXPECT_EQ(match(R"(\s+(?!\S))", "   x"), 2);  // leaves the last space to the word
  EXPECT_EQ(match(R"(\s+(?!\S))", "   "), 3);
  EXPECT_EQ(match(R"(a(?=b))", "ab"), 1);
  EXPECT_EQ(match(R"(a(?=b))", "ac"), -1);
  EXPECT_EQ(match(R"(\s+$)", "  x"), -1);
  EXPECT_EQ(match(R"(\s+$)", "  "), 2);
  EXPECT_EQ(match(R"(^a)", "ba", 1), -1);
}

TEST(Regex, CaseInsensitiveGroupCoversAsciiLetters) {
  EXPECT_EQ(match(R"((?i:'s|'ll))", "'S"), 2);
  EXPECT_EQ(match(R"((?i:'s|'ll))", "'Ll"), 3);
  EXPECT_EQ(match(R"('s)", "'S"), -1);
}

TEST(Regex, UnsupportedSyntaxIsAnError) {
  for (std::string_view p : {"a*?", "a++", R"(\p{Han})", "(?<n>x)", "(a", "a)", "[ab", R"(\q)", "(?=a)*"}) {
    EXPECT_THROW(Regex{p}, aigc::Error) << p;
  }
}

TEST(Regex, LongRunsNeedNoDeepRecursion) {
  const std::string text(200000, 'a');
  EXPECT_EQ(match(R"( ?\p{L}+)", text), 200000);
}

// ---- pre-tokenizers -----------------------------------------------------------------------------

TEST(PreTokenizer, Gpt2) {
  auto p = PreTokenizer::from_name("gpt-2");
  EXPECT_EQ(split_strs(p, "Hello world's  42!!"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " 42", "!!"}));
  EXPECT_EQ(split_strs(p, "a\n\n b"), (std::vector<std::string>{"a", "\n\n", " b"}));
  EXPECT_TRUE(p.split("").empty());
}

TEST(PreTokenizer, Llama3) {
  auto p = PreTokenizer::from_name("llama-bpe");
  EXPECT_EQ(split_strs(p, "I'm 12345 ok\n\n"), (std::vector<std::string>{"I", "'m", " ", "123", "45", " ok", "\n\n"}));
  EXPECT_EQ(split_strs(p, "DON'T (x)"), (std::vector<std::string>{"DON", "'T", " (", "x", ")"}));
}

TEST(PreTokenizer, Qwen2SplitsEveryDigit) {
  auto p = PreTokenizer::from_name("qwen2");
  EXPECT_EQ(split_strs(p, "a 123"), (std::vector<std::string>{"a", " ", "1", "2", "3"}));
}

TEST(PreTokenizer, SequencesSplitPiecesFurther) {
  // StarCoder: first every digit alone, then GPT-2 words inside each piece.
  auto p = PreTokenizer::from_name("starcoder");
  EXPECT_EQ(split_strs(p, "x 12y"), (std::vector<std::string>{"x", " ", "1", "2", "y"}));
  // Falcon: punctuation runs first, numbers in threes last.
  auto f = PreTokenizer::from_name("falcon");
  EXPECT_EQ(split_strs(f, "a+=1234"), (std::vector<std::string>{"a", "+=", "123", "4"}));
}

TEST(PreTokenizer, EveryTableEntryCompilesAndUnknownNamesFail) {
  for (std::string_view name : {"", "default", "gpt-2", "mpt", "llama3", "qwen2", "deepseek-llm", "deepseek-coder",
                                "deepseek-v3", "falcon", "starcoder", "refact", "gpt-4o", "tekken", "bloom", "viking"}) {
    EXPECT_TRUE(PreTokenizer::name_known(name)) << name;
    auto p = PreTokenizer::from_name(name);
    const std::string text = "Hello, World! 123 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA6\x99\n\n  x";
    std::string joined;
    for (std::string_view s : p.split(text)) joined += s;
    EXPECT_EQ(joined, text) << name;  // pieces cover the text exactly
  }
  EXPECT_THROW(PreTokenizer::from_name("no-such-pre"), aigc::Error);
}

TEST(PreTokenizer, MatchesPythonRegexTwin) {
  // tests/ref/twin_pretokenize.py splits the same texts with Python's `regex` module.
  const std::string path = aigc::test::ref_dir() + "/pretokenize_twin.json";
  if (!std::filesystem::exists(path)) {
    GTEST_SKIP() << path << " is missing: twin_pretokenize.py needs python3-regex (scripts/setup)";
  }
  const nlohmann::json j = nlohmann::json::parse(file_read(path));
  const auto texts = j.at("texts").get<std::vector<std::string>>();
  ASSERT_FALSE(texts.empty());
  size_t checked = 0;
  for (const auto& [pre, rows] : j.at("splits").items()) {
    const PreTokenizer p = PreTokenizer::from_name(pre);
    ASSERT_EQ(rows.size(), texts.size());
    std::string failures;
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto want = rows[i].get<std::vector<size_t>>();
      std::vector<size_t> got;
      size_t pos = 0;
      for (std::string_view piece : p.split(texts[i])) got.push_back(pos += piece.size());
      if (got != want) {
        auto show = [&](const std::vector<size_t>& ends) {
          std::string s;
          size_t b = 0;
          for (size_t e : ends) {
            s += fmt::format("[{}]", escaped(texts[i].substr(b, e - b)));
            b = e;
          }
          return s;
        };
        failures += fmt::format("\n  \"{}\"\n    twin: {}\n    ours: {}", escaped(texts[i]), show(want), show(got));
      }
      ++checked;
    }
    EXPECT_TRUE(failures.empty()) << pre << ":" << failures;
  }
  EXPECT_GT(checked, 0u);
}

// ---- SentencePiece-style ------------------------------------------------------------------------

namespace {

// ids: 0 <unk> 1 <s> 2 </s> 3 ▁ 4 a 5 b 6 c 7 ab 8 bc 9 ▁ab 10 <0xC3> 11 <0xA9>
VocabData spm_data(float score_ab, float score_bc) {
  VocabData d;
  d.model = VocabModel::Spm;
  d.tokens = {"<unk>", "<s>", "</s>", sp, "a", "b", "c", "ab", "bc", sp + "ab", "<0xC3>", "<0xA9>"};
  d.scores = {0, 0, 0, -5, -6, -6, -6, score_ab, score_bc, -0.1f, 0, 0};
  d.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal, TokenType::Normal,
             TokenType::Normal, TokenType::Normal, TokenType::Normal, TokenType::Normal, TokenType::Normal,
             TokenType::Byte, TokenType::Byte};
  d.bos = 1, d.eos = 2, d.unk = 0;
  d.add_space_prefix = true;
  d.add_bos = true;
  return d;
}

}  // namespace

TEST(Spm, MergesTheBestScoredPairFirst) {
  // "▁abc": bc (-0.5) beats ab (-1); then a+bc and ▁+a are not tokens.
  EXPECT_EQ(Vocab(spm_data(-1.0f, -0.5f)).encode("abc"), (std::vector<TokenId>{3, 4, 8}));
  // ab (-1) beats bc (-2); then ▁+ab is a token.
  EXPECT_EQ(Vocab(spm_data(-1.0f, -2.0f)).encode("abc"), (std::vector<TokenId>{9, 6}));
}

TEST(Spm, SpacesPrefixAndByteFallback) {
  Vocab v(spm_data(-1.0f, -0.5f));
  EXPECT_EQ(v.encode("a b"), (std::vector<TokenId>{3, 4, 3, 5}));
  EXPECT_EQ(v.encode("\xC3\xA9"), (std::vector<TokenId>{3, 10, 11}));  // é is not a token
  EXPECT_EQ(v.encode(""), std::vector<TokenId>{});
  EXPECT_EQ(v.encode("ab", {.add_special = true}), (std::vector<TokenId>{1, 9}));

  VocabData no_prefix = spm_data(-1.0f, -0.5f);
  no_prefix.add_space_prefix = false;
  EXPECT_EQ(Vocab(no_prefix).encode("ab"), (std::vector<TokenId>{7}));
}

TEST(Spm, DecodeDropsTheAddedSpaceAndControlTokens) {
  Vocab v(spm_data(-1.0f, -0.5f));
  EXPECT_EQ(v.decode(std::vector<TokenId>{3, 4, 3, 5}), "a b");
  EXPECT_EQ(v.decode(std::vector<TokenId>{1, 9, 10, 11, 2}), "ab\xC3\xA9");
  EXPECT_EQ(v.decode(std::vector<TokenId>{9, 2}, {.special = true}), "ab</s>");
  for (std::string text : {"abc", " a  b ", "c\xC3\xA9" "a"}) EXPECT_EQ(v.decode(v.encode(text)), text);
  EXPECT_THROW(v.decode(std::vector<TokenId>{12}), aigc::Error);
  EXPECT_THROW(v.decode(std::vector<TokenId>{-1}), aigc::Error);
}

// ---- byte-level BPE -----------------------------------------------------------------------------

namespace {

// ids 0..255: the byte-level character of that byte; 256 ll, 257 he, 258 hell, 259 <tag> (user
// defined), 260 <|eot|> (control).
VocabData bpe_data() {
  VocabData d;
  d.model = VocabModel::Bpe;
  d.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, byte_to_unicode(static_cast<uint8_t>(b)));
    d.tokens.push_back(s);
  }
  d.tokens.insert(d.tokens.end(), {"ll", "he", "hell", "<tag>", "<|eot|>"});
  d.types.assign(d.tokens.size(), TokenType::Normal);
  d.types[259] = TokenType::UserDefined;
  d.types[260] = TokenType::Control;
  d.merges = {"l l", "h e", "he ll"};
  return d;
}

}  // namespace

TEST(Bpe, MergesByRankWithinWords) {
  Vocab v(bpe_data());
  // "hello": ll (rank 0), he (1), he+ll (2) -> hell o.  " hell": Ġ h e l l -> Ġ hell.
  EXPECT_EQ(v.encode("hello hell"), (std::vector<TokenId>{258, 'o', ' ', 258}));
  EXPECT_EQ(v.merge_rank("he", "ll"), 2);
  EXPECT_EQ(v.merge_rank("l", "o"), -1);
}

TEST(Bpe, IgnoreMergesTakesWholeWordTokens) {
  VocabData d = bpe_data();
  d.tokens.push_back("hello");
  d.types.push_back(TokenType::Normal);
  EXPECT_EQ(Vocab(d).encode("hello"), (std::vector<TokenId>{258, 'o'}));
  d.ignore_merges = true;
  EXPECT_EQ(Vocab(d).encode("hello"), (std::vector<TokenId>{261}));
}

TEST(Bpe, AddedTokensAreCutOutFirstControlOnlyWhenAsked) {
  Vocab v(bpe_data());
  EXPECT_EQ(v.encode("a<tag>b"), (std::vector<TokenId>{'a', 259, 'b'}));
  // "x<|eot|>" as text: gpt-2 pieces x, <|, eot, |> and no merges among them.
  EXPECT_EQ(v.encode("x<|eot|>"), (std::vector<TokenId>{'x', '<', '|', 'e', 'o', 't', '|', '>'}));
  EXPECT_EQ(v.encode("x<|eot|>", {.parse_special = true}), (std::vector<TokenId>{'x', 260}));
  EXPECT_EQ(v.decode(std::vector<TokenId>{'x', 260}), "x");
  EXPECT_EQ(v.decode(std::vector<TokenId>{'x', 260}, {.special = true}), "x<|eot|>");
  EXPECT_EQ(v.decode(std::vector<TokenId>{'a', 259, 'b'}), "a<tag>b");
}

TEST(Bpe, IsLosslessOnAnyBytes) {
  Vocab v(bpe_data());
  const std::string text = "\xFF\xFE hello\x00\x80 \xE4\xB8\xAD\r\n\tworld";
  const std::vector<TokenId> ids = v.encode(text);
  EXPECT_EQ(v.decode(ids), text);
  // Invalid UTF-8 still becomes one byte token per byte.
  EXPECT_EQ(v.encode("\xFF"), (std::vector<TokenId>{0xFF}));
}

// ---- WordPiece ----------------------------------------------------------------------------------

namespace {

VocabData wpm_data() {
  VocabData d;
  d.model = VocabModel::Wpm;
  d.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", sp + "hello", sp + "world", sp + "un", "aff", "able",
              sp + "!", sp + ",", sp + "\xE4\xB8\xAD", sp + "\xE6\x96\x87"};
  d.types.assign(d.tokens.size(), TokenType::Normal);
  for (int i = 0; i < 4; ++i) d.types[static_cast<size_t>(i)] = TokenType::Control;
  d.unk = 1, d.cls = 2, d.sep = 3, d.pad = 0;
  return d;
}

}  // namespace

TEST(Wpm, NormalisesSplitsAndCoversGreedily) {
  Vocab v(wpm_data());
  EXPECT_EQ(v.encode("Hello, unaffable World!"), (std::vector<TokenId>{4, 10, 6, 7, 8, 5, 9}));
  EXPECT_EQ(v.encode("H\xC3\xA9llo \t W\xC3\xB6rld"), (std::vector<TokenId>{4, 5}));  // accents stripped
  EXPECT_EQ(v.encode("xyz hello unaffablex"), (std::vector<TokenId>{1, 4, 1}));       // whole word -> [UNK]
  EXPECT_EQ(v.encode("\xE4\xB8\xAD\xE6\x96\x87"), (std::vector<TokenId>{11, 12}));      // CJK split apart
  EXPECT_EQ(v.encode(std::string(101, 'a')), (std::vector<TokenId>{1}));
  EXPECT_EQ(v.encode("hello", {.add_special = true}), (std::vector<TokenId>{2, 4, 3}));
  EXPECT_EQ(v.decode(std::vector<TokenId>{2, 4, 10, 6, 7, 8, 3}), "hello , unaffable");
}

TEST(Wpm, BertNormaliserWords) {
  EXPECT_EQ(wpm_words("a\tb\xC2\xA0" "c", true, true), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(wpm_words("a\x01" "b", true, true), (std::vector<std::string>{"ab"}));  // control removed
  EXPECT_EQ(wpm_words("$5+x", true, true), (std::vector<std::string>{"$", "5", "+", "x"}));
  EXPECT_EQ(wpm_words("\xC3\x89t\xC3\xA9", false, false), (std::vector<std::string>{"\xC3\x89t\xC3\xA9"}));
  EXPECT_EQ(wpm_words("\xC3\x89t\xC3\xA9", true, true), (std::vector<std::string>{"ete"}));
}

// ---- construction errors ------------------------------------------------------------------------

TEST(Vocab, RejectsInconsistentData) {
  VocabData d = spm_data(-1, -1);
  d.scores.pop_back();
  EXPECT_THROW(Vocab{d}, aigc::Error);
  d = spm_data(-1, -1);
  d.tokens[5] = "a";  // duplicate
  EXPECT_THROW(Vocab{d}, aigc::Error);
  VocabData b = bpe_data();
  b.merges.push_back("nospace");
  EXPECT_THROW(Vocab{b}, aigc::Error);
  b = bpe_data();
  b.pre = "unknown-pre";
  EXPECT_THROW(Vocab{b}, aigc::Error);
  EXPECT_THROW(Vocab{VocabData{}}, aigc::Error);
}

// ---- GGUF loading -------------------------------------------------------------------------------

namespace {

GgufFile gguf_from(const GgufWriter& w, const std::string& name) {
  auto bytes = std::make_shared<std::vector<uint8_t>>(w.to_bytes());
  return GgufFile::parse(*bytes, bytes, name);
}

}  // namespace

TEST(VocabGguf, LoadsATinyBpeVocab) {
  const VocabData d = bpe_data();
  GgufWriter w;
  w.metadata_add("tokenizer.ggml.model", "gpt2");
  w.metadata_add("tokenizer.ggml.pre", "gpt-2");
  w.metadata_add("tokenizer.ggml.tokens", GgufValue::array(d.tokens));
  std::vector<int32_t> types;
  for (TokenType t : d.types) types.push_back(static_cast<int32_t>(t));
  w.metadata_add("tokenizer.ggml.token_type", GgufValue::array(types));
  w.metadata_add("tokenizer.ggml.merges", GgufValue::array(d.merges));
  w.metadata_add("tokenizer.ggml.eos_token_id", uint32_t{260});
  Vocab v = vocab_load_gguf(gguf_from(w, "tiny.gguf"));
  EXPECT_EQ(v.encode("hello hell"), (std::vector<TokenId>{258, 'o', ' ', 258}));
  EXPECT_EQ(v.data().eos, 260);
  EXPECT_EQ(v.token_type(259), TokenType::UserDefined);
}

TEST(VocabGguf, MissingOrBadFieldsAreErrors) {
  GgufWriter none;
  none.metadata_add("general.architecture", "llama");
  EXPECT_THROW(vocab_load_gguf(gguf_from(none, "none.gguf")), aigc::Error);

  GgufWriter t5;
  t5.metadata_add("tokenizer.ggml.model", "t5");
  t5.metadata_add("tokenizer.ggml.tokens", GgufValue::array(std::vector<std::string>{"a"}));
  EXPECT_THROW(vocab_load_gguf(gguf_from(t5, "t5.gguf")), aigc::Error);

  GgufWriter no_merges;
  no_merges.metadata_add("tokenizer.ggml.model", "gpt2");
  no_merges.metadata_add("tokenizer.ggml.tokens", GgufValue::array(std::vector<std::string>{"a"}));
  EXPECT_THROW(vocab_load_gguf(gguf_from(no_merges, "m.gguf")), aigc::Error);

  GgufWriter short_scores;
  short_scores.metadata_add("tokenizer.ggml.model", "llama");
  short_scores.metadata_add("tokenizer.ggml.tokens", GgufValue::array(std::vector<std::string>{"a", "b"}));
  short_scores.metadata_add("tokenizer.ggml.scores", GgufValue::array(std::vector<float>{0.0f}));
  EXPECT_THROW(vocab_load_gguf(gguf_from(short_scores, "s.gguf")), aigc::Error);
}

// ---- llama.cpp's test vectors -------------------------------------------------------------------

namespace {

struct VocabCase {
  std::string name;
  bool lossless;  // decode(encode(text)) == text for every text
};
void PrintTo(const VocabCase& c, std::ostream* os) { *os << c.name; }

// WordPiece lowercases, strips accents and drops whitespace, so bert-bge cannot round-trip. The
// SPM vocabs (llama-spm, phi-3) round-trip because decode drops the space encode added in front.
const VocabCase vocab_cases[] = {
    {"bert-bge", false},   {"deepseek-coder", true}, {"deepseek-llm", true}, {"falcon", true},
    {"gpt-2", true},       {"llama-spm", true},      {"mpt", true},          {"phi-3", true},
    {"refact", true},      {"starcoder", true},
};

struct Vectors {
  std::vector<std::string> texts;
  std::vector<std::string> ids;  // one line of " id id id" per text
};

Vectors vectors_read(const std::string& base) {
  Vectors v;
  const std::string inp = file_read(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0, hit; (hit = inp.find(sep, pos)) != std::string::npos; pos = hit + sep.size()) {
    v.texts.push_back(inp.substr(pos, hit - pos));
  }
  std::istringstream out(file_read(base + ".out"));
  for (std::string line; std::getline(out, line);) v.ids.push_back(line);
  return v;
}

std::string vocab_dir() {
  const std::string shared = aigc::test::shared_dir();
  return shared.empty() ? std::string() : shared + "/tokenizers/llama.cpp-vocab";
}

}  // namespace

class VocabVectors : public ::testing::TestWithParam<VocabCase> {};

TEST_P(VocabVectors, EncodeMatchesAndDecodeRoundTrips) {
  const std::string dir = vocab_dir();
  if (dir.empty() || !std::filesystem::exists(dir)) GTEST_SKIP() << "no ../shared/tokenizers/llama.cpp-vocab";
  const VocabCase& c = GetParam();
  const std::string base = dir + "/ggml-vocab-" + c.name + ".gguf";
  if (!std::filesystem::exists(base + ".inp")) GTEST_SKIP() << "no test vectors for " << c.name;

  const Vocab vocab = vocab_load_gguf(GgufFile::open(base));
  const Vectors vec = vectors_read(base);
  ASSERT_FALSE(vec.texts.empty());
  ASSERT_EQ(vec.texts.size(), vec.ids.size()) << "the .inp and .out files disagree on the number of texts";

  size_t encoded = 0, round_tripped = 0;
  std::string failures;
  for (size_t i = 0; i < vec.texts.size(); ++i) {
    const std::string& text = vec.texts[i];
    const std::vector<TokenId> ids = vocab.encode(text);
    if (ids_str(ids) == vec.ids[i]) {
      ++encoded;
    } else {
      failures += fmt::format("\n  text #{} \"{}\"\n    expected:{}\n    got:     {}", i, escaped(text),
                              vec.ids[i], ids_str(ids));
    }
    const std::string back = vocab.decode(ids);
    if (back == text) {
      ++round_tripped;
    } else if (c.lossless) {
      failures += fmt::format("\n  text #{} \"{}\" decodes to \"{}\"", i, escaped(text), escaped(back));
    }
  }
  std::printf("[ vectors  ] %s: %zu/%zu texts encode as expected; %zu/%zu round-trip\n", c.name.c_str(), encoded,
              vec.texts.size(), round_tripped, vec.texts.size());
  EXPECT_EQ(encoded, vec.texts.size()) << c.name << failures;
  if (c.lossless) {
    EXPECT_EQ(round_tripped, vec.texts.size()) << c.name << failures;
  }
}

INSTANTIATE_TEST_SUITE_P(LlamaCppVocabs, VocabVectors, ::testing::ValuesIn(vocab_cases),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(VocabVectorsPerformance, SeveralKilobytesEncodeWithoutQuadraticBlowUp) {
  // Not a timing assertion: a 64 KB text must simply finish (an O(n^2) path would take minutes).
  const std::string dir = vocab_dir();
  if (dir.empty() || !std::filesystem::exists(dir)) GTEST_SKIP() << "no ../shared/tokenizers/llama.cpp-vocab";
  const std::string base = dir + "/ggml-vocab-llama-spm.gguf";
  const Vocab vocab = vocab_load_gguf(GgufFile::open(base));
  std::string text;
  for (const std::string& t : vectors_read(base).texts) text += t + "\n";
  while (text.size() < 65536) text += text;
  const std::vector<TokenId> ids = vocab.encode(text);
  EXPECT_EQ(vocab.decode(ids), text);
}

TEST(VocabHostileInput, RandomBytesRoundTripThroughByteLevelAndByteFallback) {
  // Hostile input: random byte strings (mostly invalid UTF-8, NULs, lone surrogates' bytes).
  // Byte-level BPE and SPM with byte fallback must give every byte back; WordPiece must not crash.
  std::vector<std::pair<std::string, Vocab>> vocabs;
  vocabs.emplace_back("tiny-bpe", Vocab(bpe_data()));
  vocabs.emplace_back("tiny-wpm", Vocab(wpm_data()));
  const std::string dir = vocab_dir();
  if (!dir.empty() && std::filesystem::exists(dir)) {
    for (const char* name : {"gpt-2", "llama-spm", "deepseek-llm", "bert-bge"}) {
      vocabs.emplace_back(name, vocab_load_gguf(GgufFile::open(dir + "/ggml-vocab-" + name + ".gguf")));
    }
  }
  uint32_t state = 12345;
  auto next = [&]() { return state = state * 1664525u + 1013904223u; };
  for (int round = 0; round < 300; ++round) {
    std::string text(next() % 40, '\0');
    for (char& c : text) {
      const uint32_t r = next() >> 24;
      static constexpr std::string_view alphabet{" a\n\t'1<|\0\xC3\xE4\xF0\x80\xBF", 14};
      c = static_cast<char>(r < 128 ? alphabet[r % alphabet.size()] : r);
    }
    for (const auto& [name, v] : vocabs) {
      const std::vector<TokenId> ids = v.encode(text);
      for (TokenId id : ids) ASSERT_TRUE(id >= 0 && static_cast<size_t>(id) < v.size()) << name;
      // Exceptions: WordPiece normalises; DeepSeek's vocabs hold the byte-level characters of the
      // bytes C0, C1 and F5..FF (never in valid UTF-8) only as added tokens ("\xC3\xB6" = o-umlaut ...),
      // which decode as the text they match (the character), not as the byte.
      if (v.model() == VocabModel::Wpm || name == "deepseek-llm") continue;
      EXPECT_EQ(v.decode(ids), text) << name << ": \"" << escaped(text) << "\"";
    }
  }
}

// ---- aigc tokenize ------------------------------------------------------------------------------

namespace {

// The expected ids of one text, taken from the vocab's .out vector.
std::string vector_ids_of(const std::string& base, const std::string& text) {
  const Vectors v = vectors_read(base);
  for (size_t i = 0; i < v.texts.size() && i < v.ids.size(); ++i) {
    if (v.texts[i] == text) return v.ids[i].substr(v.ids[i].find_first_not_of(' '));
  }
  return {};
}

int line_count(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

TEST(CliTokenize, PrintsTheVectorIds) {
  const std::string dir = vocab_dir();
  if (dir.empty() || !std::filesystem::exists(dir)) GTEST_SKIP() << "no ../shared/tokenizers/llama.cpp-vocab";
  const std::string base = dir + "/ggml-vocab-gpt-2.gguf";
  const std::string want = vector_ids_of(base, "Hello world");
  ASSERT_FALSE(want.empty()) << "\"Hello world\" not found in " << base << ".inp";

  auto r = aigc::test::cli_run({"tokenize", "-m", base, "-p", "Hello world"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, want + "\n");

  auto j = aigc::test::cli_run({"tokenize", "-m", base, "-p", "Hello world", "--json"});
  EXPECT_EQ(j.exit_code, 0) << j.err;
  std::string want_json = want;
  std::replace(want_json.begin(), want_json.end(), ' ', ',');
  EXPECT_NE(j.out.find("\"ids\":[" + want_json + "]"), std::string::npos) << j.out;
}

TEST(CliTokenize, AddSpecialWrapsBertInClsSep) {
  const std::string dir = vocab_dir();
  if (dir.empty() || !std::filesystem::exists(dir)) GTEST_SKIP() << "no ../shared/tokenizers/llama.cpp-vocab";
  const std::string base = dir + "/ggml-vocab-bert-bge.gguf";
  const std::string want = vector_ids_of(base, "Hello world");
  ASSERT_FALSE(want.empty());
  auto r = aigc::test::cli_run({"tokenize", "-m", base, "-p", "Hello world", "--add-special"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "101 " + want + " 102\n");  // [CLS] and [SEP] of BERT's vocab.txt
}

TEST(CliTokenize, MissingFileIsOneLineError) {
  auto r = aigc::test::cli_run({"tokenize", "-m", "/nonexistent/vocab.gguf", "-p", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind("aigc: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/vocab.gguf"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CliTokenize, FileWithoutTokenizerIsOneLineError) {
  const auto path = std::filesystem::temp_directory_path() / fmt::format("aigc_test_novocab_{}.gguf", ::getpid());
  GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.write(path.string());
  auto r = aigc::test::cli_run({"tokenize", "-m", path.string(), "-p", "x"});
  std::filesystem::remove(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("tokenizer"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CliTokenize, MissingPromptIsUsageError) {
  auto r = aigc::test::cli_run({"tokenize", "-m", "x.gguf"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
}
