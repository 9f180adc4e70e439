// CLIP tokenizer (src/image/clip_tokenizer.h) and A1111 prompt weights (src/image/prompt_weights.h).
// Oracles: A1111's own docstring examples (parse_prompt_attention), public CLIP id anchors, and
// tests/ref/twin_clip_tokenizer.py (CLIP's simple_tokenizer algorithm in Python, on CLIP's merges
// file from ../shared, with Python's `regex` and `html` modules). Token ids are integers: exact.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/refdump.h"
#include "core/error.h"
#include "image/clip_tokenizer.h"
#include "image/prompt_weights.h"

using aigc::image::ClipChunk;
using aigc::image::ClipTokenId;
using aigc::image::ClipTokenizer;
using aigc::image::PromptSegment;
using aigc::image::SdTokenizeOptions;
using aigc::image::prompt_weights_parse;

namespace {

std::string file_slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void file_spit(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("aigc_test_clip_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::string clip_merges_path() {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) return {};
  const std::string p = shared + "/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz";
  return std::filesystem::exists(p) ? p : std::string();
}

const ClipTokenizer& clip_full() {
  static const ClipTokenizer tok = ClipTokenizer::load(clip_merges_path());
  return tok;
}

#define CLIP_REQUIRE()                                                                              \
  if (clip_merges_path().empty())                                                                   \
  GTEST_SKIP() << "../shared/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz not found (set AIGC_SHARED)"

nlohmann::json twin_load() {
  const std::string path = aigc::test::ref_dir() + "/clip_tokenizer_twin.json";
  if (!std::filesystem::exists(path)) return nullptr;
  return nlohmann::json::parse(file_slurp(path));
}

#define TWIN_REQUIRE(j, key)                                                                         \
  const nlohmann::json j = twin_load();                                                              \
  if (j.is_null() || !j.contains(key))                                                               \
  GTEST_SKIP() << "clip_tokenizer_twin.json (or its '" key "' part) missing: twin_clip_tokenizer.py " \
                  "needs python3-regex, and ../shared's CLIP merges for token ids (run tests/ref/gen_all.py)"

std::string escaped(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

// A tiny CLIP vocabulary built in code: ids 512.. are "ab</w>", "ca", "cat</w>", "at</w>".
ClipTokenizer tiny() {
  return ClipTokenizer::from_merges({{"a", "b</w>"}, {"c", "a"}, {"ca", "t</w>"}, {"a", "t</w>"}});
}

}  // namespace

// ---- A1111 prompt weights ---------------------------------------------------------------------

// The examples of A1111's parse_prompt_attention docstring (AUTOMATIC1111/stable-diffusion-webui,
// modules/prompt_parser.py), inputs and outputs as written there.
TEST(PromptWeights, A1111DocstringExamples) {
  struct Case {
    std::string prompt;
    std::vector<std::pair<std::string, double>> want;
  };
  const std::vector<Case> cases = {
      {"normal text", {{"normal text", 1.0}}},
      {"an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}}},
      {"(unbalanced", {{"unbalanced", 1.1}}},
      {"\\(literal\\]", {{"(literal]", 1.0}}},
      {"(unnecessary)(parens)", {{"unnecessaryparens", 1.1}}},
      {"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
       {{"a ", 1.0}, {"house", 1.5730000000000004}, {" ", 1.1}, {"on", 1.0}, {" a ", 1.1}, {"hill", 0.55},
        {", sun, ", 1.1}, {"sky", 1.4641000000000006}, {".", 1.1}}},
  };
  for (const auto& c : cases) {
    const auto got = prompt_weights_parse(c.prompt);
    ASSERT_EQ(got.size(), c.want.size()) << c.prompt;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].text, c.want[i].first) << c.prompt << " #" << i;
      // Same operations in the same order as Python's doubles: equal to the last bit or nearly.
      EXPECT_DOUBLE_EQ(got[i].weight, c.want[i].second) << c.prompt << " #" << i;
      EXPECT_FALSE(got[i].is_break);
    }
  }
}

TEST(PromptWeights, NestingEscapesAndBreak) {
  auto w = prompt_weights_parse("((a))");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_DOUBLE_EQ(w[0].weight, 1.1 * 1.1);
  w = prompt_weights_parse("[a]");
  EXPECT_DOUBLE_EQ(w[0].weight, 1 / 1.1);
  w = prompt_weights_parse("(a:1.5) b");
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].text, "a");
  EXPECT_DOUBLE_EQ(w[0].weight, 1.5);
  EXPECT_EQ(w[1].text, " b");
  // Escaped brackets, an escaped backslash, a lone backslash (dropped, as in A1111).
  w = prompt_weights_parse("\\(x\\) \\[y\\] \\\\ z\\q");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].text, "(x) [y] \\ zq");
  // Unbalanced closers are text.
  w = prompt_weights_parse("a) b]");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].text, "a) b]");
  // BREAK: a whole upper-case word, surrounding whitespace eaten; "BREAKfast" and "break" are text.
  w = prompt_weights_parse("one  BREAK\ttwo BREAKfast break");
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].text, "one");
  EXPECT_TRUE(w[1].is_break);
  EXPECT_EQ(w[2].text, "two BREAKfast break");
  // Inside brackets BREAK stays a break (A1111 would turn it into a weighted word: see the header).
  w = prompt_weights_parse("(a BREAK b)");
  ASSERT_EQ(w.size(), 3u);
  EXPECT_TRUE(w[1].is_break);
  EXPECT_DOUBLE_EQ(w[0].weight, 1.1);
  EXPECT_DOUBLE_EQ(w[2].weight, 1.1);
  // Weights: sign, spaces, leading/trailing dot, Unicode digits (Python's float() reads them).
  w = prompt_weights_parse("(a:-0.5)(b: +2 )(c:.5)(d:3.)(e:\u0661.\u0665)");
  ASSERT_EQ(w.size(), 5u);
  EXPECT_DOUBLE_EQ(w[0].weight, -0.5);
  EXPECT_DOUBLE_EQ(w[1].weight, 2.0);
  EXPECT_DOUBLE_EQ(w[2].weight, 0.5);
  EXPECT_DOUBLE_EQ(w[3].weight, 3.0);
  EXPECT_DOUBLE_EQ(w[4].weight, 1.5);
  // A number Python's float() rejects: A1111 raises; we throw aigc::Error.
  EXPECT_THROW(prompt_weights_parse("(a:1.2.3)"), aigc::Error);
  EXPECT_THROW(prompt_weights_parse("(a:.)"), aigc::Error);
  // Overflow: float('1' * 400) is inf in Python.
  w = prompt_weights_parse("(a:" + std::string(400, '9') + ")");
  EXPECT_TRUE(std::isinf(w[0].weight));
  // Empty prompt: one empty segment.
  w = prompt_weights_parse("");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].text, "");
  EXPECT_DOUBLE_EQ(w[0].weight, 1.0);
}

TEST(PromptWeights, MatchesTwin) {
  TWIN_REQUIRE(j, "parse");
  for (const auto& c : j.at("parse")) {
    const std::string prompt = c[0].get<std::string>();
    const auto got = prompt_weights_parse(prompt);
    const auto& want = c[1];
    ASSERT_EQ(got.size(), want.size()) << prompt;
    for (size_t i = 0; i < got.size(); ++i) {
      const std::string text = want[i][0].get<std::string>();
      const double weight = want[i][1].get<double>();
      if (got[i].is_break) {
        EXPECT_EQ(text, "BREAK") << prompt;
        EXPECT_EQ(weight, -1.0) << prompt;
      } else {
        EXPECT_EQ(got[i].text, text) << prompt << " #" << i;
        EXPECT_DOUBLE_EQ(got[i].weight, weight) << prompt << " #" << i;
      }
    }
  }
}

// ---- tokenizer without ../shared ----------------------------------------------------------------

TEST(ClipTokenizer, TinyVocabBpe) {
  const ClipTokenizer t = tiny();
  EXPECT_EQ(t.size(), 512u + 4 + 2);
  EXPECT_EQ(t.bos(), 516);
  EXPECT_EQ(t.eos(), 517);
  EXPECT_EQ(t.token_find("!"), 0);  // byte characters in code point order: '!' first
  EXPECT_EQ(t.token_find("!</w>"), 256);
  EXPECT_EQ(t.token_text(512), "ab</w>");
  // "cat": c a t</w> -> (c,a) rank 1 beats (a,t</w>) rank 3 -> ca t</w> -> (ca,t</w>) -> cat</w> (514).
  EXPECT_EQ(t.encode("cat"), (std::vector<ClipTokenId>{514}));
  // "ab" -> ab</w>; "Ab" lower-cased first; "abab" -> a b a b</w>: only the final b has </w>.
  EXPECT_EQ(t.encode("AB ab"), (std::vector<ClipTokenId>{512, 512}));
  const auto abab = t.encode("abab");
  ASSERT_EQ(abab.size(), 3u);
  EXPECT_EQ(t.token_text(abab[0]), "a");
  EXPECT_EQ(t.token_text(abab[1]), "b");
  EXPECT_EQ(t.token_text(abab[2]), "ab</w>");
  EXPECT_EQ(t.decode(t.encode("cat ab")), "cat ab ");
  // Special tokens in the text map to their ids (CLIP's bpe cache).
  EXPECT_EQ(t.encode("<|startoftext|>ab<|endoftext|>"), (std::vector<ClipTokenId>{516, 512, 517}));
  // Invalid UTF-8: each bad byte is U+FFFD (three byte tokens + </w> on the last), no crash.
  const auto bad = t.encode("\xff");
  EXPECT_EQ(t.decode(bad), "\xef\xbf\xbd ");
  EXPECT_THROW(t.decode(std::vector<ClipTokenId>{9999}), aigc::Error);
  EXPECT_THROW(t.decode(std::vector<ClipTokenId>{-1}), aigc::Error);
}

TEST(ClipTokenizer, TinySdChunks) {
  const ClipTokenizer t = tiny();
  const ClipTokenId cat = 514, comma = t.token_find(",</w>"), eos = t.eos(), bos = t.bos();
  ASSERT_GE(comma, 0);
  // One short chunk: BOS, tokens, EOS, padding; weights on the tokens only.
  auto ch = t.tokenize_for_sd("(cat:1.5) cat");
  ASSERT_EQ(ch.size(), 1u);
  ASSERT_EQ(ch[0].ids.size(), 77u);
  ASSERT_EQ(ch[0].weights.size(), 77u);
  EXPECT_EQ(ch[0].ids[0], bos);
  EXPECT_EQ(ch[0].ids[1], cat);
  EXPECT_EQ(ch[0].ids[2], cat);
  EXPECT_EQ(ch[0].ids[3], eos);
  EXPECT_EQ(ch[0].ids[76], eos);  // SD 1.x pads with EOS
  EXPECT_FLOAT_EQ(ch[0].weights[1], 1.5f);
  EXPECT_FLOAT_EQ(ch[0].weights[2], 1.0f);
  EXPECT_FLOAT_EQ(ch[0].weights[0], 1.0f);
  SdTokenizeOptions o2;
  o2.pad_id = 0;  // SD 2.x / OpenCLIP
  ch = t.tokenize_for_sd("cat", o2);
  EXPECT_EQ(ch[0].ids[2], eos);
  EXPECT_EQ(ch[0].ids[3], 0);
  EXPECT_EQ(ch[0].ids[76], 0);
  // Empty prompt: one chunk; BREAK: a new chunk.
  EXPECT_EQ(t.tokenize_for_sd("").size(), 1u);
  ch = t.tokenize_for_sd("cat BREAK cat");
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[1].ids[1], cat);
  // 75 tokens fit one chunk exactly; 76 need two.
  std::string p75, p76;
  for (int i = 0; i < 75; ++i) p75 += "cat ";
  p76 = p75 + "cat";
  ch = t.tokenize_for_sd(p75);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].ids[75], cat);
  EXPECT_EQ(ch[0].ids[76], eos);
  ch = t.tokenize_for_sd(p76);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[1].ids[1], cat);
  EXPECT_EQ(ch[1].ids[2], eos);
  // Comma rule: 70 cats, a comma, 10 cats -> the chunk is full at 75 with the comma at index 70
  // (5 back <= 20), so the 4 cats after it move: chunk 1 = 70 cats + comma, chunk 2 = 10 cats.
  std::string pc;
  for (int i = 0; i < 70; ++i) pc += "cat ";
  pc += ", ";
  for (int i = 0; i < 10; ++i) pc += "cat ";
  ch = t.tokenize_for_sd(pc);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].ids[71], comma);
  EXPECT_EQ(ch[0].ids[72], eos);
  EXPECT_EQ(ch[1].ids[10], cat);
  EXPECT_EQ(ch[1].ids[11], eos);
  SdTokenizeOptions plain;
  plain.comma_backtrack = 0;  // cut at exactly 75
  ch = t.tokenize_for_sd(pc, plain);
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].ids[75], cat);
  EXPECT_EQ(ch[1].ids[6], cat);
  EXPECT_EQ(ch[1].ids[7], eos);
  // Weighting off: brackets are text.
  SdTokenizeOptions raw;
  raw.weighting = false;
  ch = t.tokenize_for_sd("(cat:1.5)", raw);
  EXPECT_FLOAT_EQ(ch[0].weights[1], 1.0f);
  EXPECT_EQ(ch[0].ids[1], t.token_find("(</w>"));
}

TEST(ClipTokenizer, HtmlUnescapeBasics) {
  using aigc::image::html_unescape;
  EXPECT_EQ(html_unescape("fish &amp; chips"), "fish & chips");
  EXPECT_EQ(html_unescape("&lt;b&gt;"), "<b>");
  EXPECT_EQ(html_unescape("&#233;&#xE9;&eacute"), "\u00e9\u00e9\u00e9");
  EXPECT_EQ(html_unescape("&ampx &foo; & &#;"), "&x &foo; & &#;");
  EXPECT_EQ(html_unescape("&#x80;&#0;&#1;"), "\u20ac\ufffd");
}

TEST(ClipTokenizer, LoadErrors) {
  EXPECT_THROW(ClipTokenizer::load("/nonexistent/bpe.txt.gz"), aigc::Error);
  const std::string gz = tmp_path("bad.txt.gz");
  file_spit(gz, std::string("\x1f\x8b\x08\x00garbage-not-deflate", 22));
  EXPECT_THROW(ClipTokenizer::load(gz), aigc::Error);
  const std::string txt = tmp_path("bad.txt");
  file_spit(txt, "#version: 0.2\na b c\n");
  EXPECT_THROW(ClipTokenizer::load(txt), aigc::Error);
  file_spit(txt, "#version: 0.2\n");
  EXPECT_THROW(ClipTokenizer::load(txt), aigc::Error);
  file_spit(txt, "#version: 0.2\na b\n\nc d\n");  // blank lines are skipped
  EXPECT_EQ(ClipTokenizer::load(txt).size(), 512u + 2 + 2);
  const std::string dir = tmp_path("hf");
  std::filesystem::create_directories(dir);
  file_spit(dir + "/vocab.json", "[1, 2]");
  file_spit(dir + "/merges.txt", "#version: 0.2\n");
  EXPECT_THROW(ClipTokenizer::load(dir), aigc::Error);
  file_spit(dir + "/vocab.json", R"({"a": 0, "b": 1})");  // no special tokens
  EXPECT_THROW(ClipTokenizer::load(dir), aigc::Error);
  file_spit(dir + "/vocab.json", R"({"a": 0, "<|startoftext|>": 0, "<|endoftext|>": 2})");  // id twice
  EXPECT_THROW(ClipTokenizer::load(dir), aigc::Error);
  file_spit(dir + "/vocab.json", R"({"a": 0, "<|startoftext|>": 1, "<|endoftext|>": 7})");  // id out of range
  EXPECT_THROW(ClipTokenizer::load(dir), aigc::Error);
  file_spit(dir + "/vocab.json", R"({"a</w>": 0, "<start_of_text>": 1, "<end_of_text>": 2})");  // OpenCLIP names
  EXPECT_EQ(ClipTokenizer::load(dir).bos(), 1);
  file_spit(dir + "/vocab.json", R"({"a</w>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2})");
  const ClipTokenizer t = ClipTokenizer::load(dir);
  // "b" is not in this vocab.json: HF maps it to its unk token, <|endoftext|>.
  EXPECT_EQ(t.encode("a b"), (std::vector<ClipTokenId>{0, 2}));
  std::filesystem::remove_all(dir);
  std::remove(gz.c_str());
  std::remove(txt.c_str());
}

// ---- CLIP's real vocabulary (../shared) ---------------------------------------------------------

TEST(ClipTokenizer, PublishedAnchors) {
  CLIP_REQUIRE();
  const ClipTokenizer& t = clip_full();
  EXPECT_EQ(t.size(), 49408u);
  EXPECT_EQ(t.bos(), 49406);
  EXPECT_EQ(t.eos(), 49407);
  // Bumblebee's ClipTokenizerTest (elixir-nx/bumblebee, with HF's openai/clip-vit-base-patch32):
  // "a photo of a cat" -> 49406, 320, 1125, 539, 320, 2368, 49407; "... dog" ends in 1929.
  EXPECT_EQ(t.encode("a photo of a cat"), (std::vector<ClipTokenId>{320, 1125, 539, 320, 2368}));
  EXPECT_EQ(t.encode("a photo of a dog"), (std::vector<ClipTokenId>{320, 1125, 539, 320, 1929}));
  // Case and repeated spaces normalise away.
  EXPECT_EQ(t.encode("  A PHOTO   of a Cat "), t.encode("a photo of a cat"));
  EXPECT_EQ(t.decode(t.encode("a photo of a cat")), "a photo of a cat ");
  const auto ch = t.tokenize_for_sd("a photo of a cat");
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(std::vector<ClipTokenId>(ch[0].ids.begin(), ch[0].ids.begin() + 8),
            (std::vector<ClipTokenId>{49406, 320, 1125, 539, 320, 2368, 49407, 49407}));
}

TEST(ClipTokenizer, FolderAndTruncatedGzip) {
  CLIP_REQUIRE();
  // A folder holding the merges file loads the same vocabulary.
  const std::string dir = std::filesystem::path(clip_merges_path()).parent_path().string();
  EXPECT_EQ(ClipTokenizer::load(dir).encode("a photo of a cat"), clip_full().encode("a photo of a cat"));
  // The gzip file cut short: a clear error, not a partial vocabulary.
  const std::string cut = tmp_path("cut.txt.gz");
  file_spit(cut, file_slurp(clip_merges_path()).substr(0, 4096));
  EXPECT_THROW(ClipTokenizer::load(cut), aigc::Error);
  std::remove(cut.c_str());
}

TEST(ClipTokenizer, MatchesTwin) {
  CLIP_REQUIRE();
  TWIN_REQUIRE(j, "ids");
  const ClipTokenizer& t = clip_full();
  EXPECT_EQ(j.at("anchors").at("vocab_size").get<size_t>(), t.size());
  const auto texts = j.at("texts").get<std::vector<std::string>>();
  const auto cleaned = j.at("cleaned").get<std::vector<std::string>>();
  const auto ids = j.at("ids").get<std::vector<std::vector<ClipTokenId>>>();
  ASSERT_EQ(texts.size(), ids.size());
  ASSERT_GE(texts.size(), 30u);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(aigc::image::clip_text_clean(texts[i]), cleaned[i]) << "text #" << i << ": " << escaped(texts[i]);
    EXPECT_EQ(t.encode(texts[i]), ids[i]) << "text #" << i << ": " << escaped(texts[i]);
  }
}

TEST(ClipTokenizer, HtmlUnescapeMatchesPython) {
  TWIN_REQUIRE(j, "unescape");
  size_t n = 0;
  for (const auto& c : j.at("unescape")) {
    const std::string in = c[0].get<std::string>(), want = c[1].get<std::string>();
    EXPECT_EQ(aigc::image::html_unescape(in), want) << escaped(in);
    ++n;
  }
  EXPECT_GT(n, 300u);
}

TEST(ClipTokenizer, HfLayoutMatchesTwin) {
  CLIP_REQUIRE();
  TWIN_REQUIRE(j, "hf_ids");
  const std::string dir = aigc::test::ref_dir() + "/clip_hf";
  const auto texts = j.at("texts").get<std::vector<std::string>>();
  const auto ids = j.at("hf_ids").get<std::vector<std::vector<ClipTokenId>>>();
  const ClipTokenizer hf = ClipTokenizer::load(dir);  // vocab.json + merges.txt
  EXPECT_EQ(hf.size(), 512u + 4000 + 2);
  // The same merges read as a plain (not gzip'd) CLIP merges file give the same vocabulary.
  const ClipTokenizer plain = ClipTokenizer::load(dir + "/merges.txt");
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(hf.encode(texts[i]), ids[i]) << "text #" << i << ": " << escaped(texts[i]);
    EXPECT_EQ(plain.encode(texts[i]), ids[i]) << "text #" << i << ": " << escaped(texts[i]);
  }
}

TEST(ClipTokenizer, SdChunksMatchTwin) {
  CLIP_REQUIRE();
  TWIN_REQUIRE(j, "sd");
  const ClipTokenizer& t = clip_full();
  size_t multi = 0;
  for (const auto& c : j.at("sd")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    SdTokenizeOptions opt;
    opt.pad_id = c.at("pad").get<ClipTokenId>();
    opt.comma_backtrack = c.at("comma_backtrack").get<int>();
    const auto got = t.tokenize_for_sd(prompt, opt);
    const auto& want = c.at("chunks");
    ASSERT_EQ(got.size(), want.size()) << prompt.substr(0, 60) << " pad " << opt.pad_id << " bt " << opt.comma_backtrack;
    multi += got.size() > 1;
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k].ids, want[k].at("ids").get<std::vector<ClipTokenId>>()) << prompt.substr(0, 60) << " chunk " << k;
      const auto ws = want[k].at("weights").get<std::vector<double>>();
      ASSERT_EQ(got[k].weights.size(), ws.size());
      // The weight is Python's double rounded to float once: exact up to that rounding.
      for (size_t i = 0; i < ws.size(); ++i) EXPECT_FLOAT_EQ(got[k].weights[i], static_cast<float>(ws[i])) << i;
    }
  }
  EXPECT_GE(multi, 5u);  // long prompts, comma rule and BREAK cases were exercised
}
