// llama2.c import: Stories260K converted to GGUF and run by the Llama engine, against the PyTorch
// twin (tests/ref/twin_stories260k.py) and against run.c's expected output; hostile checkpoints and
// tokenizers; the `aigc convert` command.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/compare.h"
#include "common/refdump.h"
#include "common/run_cli.h"
#include "formats/llama2c.h"
#include "text/llama_context.h"

namespace aigc {
namespace {

namespace fs = std::filesystem;

// run.c's stdout for `./run stories260K.bin -z tok512.bin -t 0.0 -n 200` (its final '\n' stripped),
// as hard-coded in karpathy/llama2.c test_all.py (expected_stdout).
const char kRunCExpected[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the "
    "park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find "
    "it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily "
    "didn't want to help her mom, so she";

struct Stories {
  std::string model, vocab;
};

std::optional<Stories> stories_paths() {
  const std::string shared = test::shared_dir();
  if (shared.empty()) return std::nullopt;
  const fs::path dir = fs::path(shared) / "models" / "stories260K";
  if (!fs::exists(dir / "stories260K.bin") || !fs::exists(dir / "tok512.bin")) return std::nullopt;
  return Stories{(dir / "stories260K.bin").string(), (dir / "tok512.bin").string()};
}

std::string temp_path(const std::string& tag) {
  return (fs::path(::testing::TempDir()) / ("llama2c_" + tag + "_" + std::to_string(getpid()))).string();
}

int32_t argmax(const Tensor& logits) {
  const float* p = logits.ptr<float>();
  return static_cast<int32_t>(std::max_element(p, p + logits.size(-1)) - p);
}

// A token's text as run.c prints it: after BOS one leading space is dropped; "<0xXX>" is that byte;
// a lone byte that is neither printable nor whitespace is not printed.
std::string piece_print(const Llama2cVocab& v, int32_t prev, int32_t tok) {
  std::string p = v.pieces[static_cast<size_t>(tok)];
  if (prev == 1 && !p.empty() && p[0] == ' ') p.erase(0, 1);
  unsigned byte = 0;
  if (p.size() == 6 && std::sscanf(p.c_str(), "<0x%02X>", &byte) == 1) p = std::string(1, static_cast<char>(byte));
  if (p.size() == 1 && !(std::isprint(static_cast<unsigned char>(p[0])) || std::isspace(static_cast<unsigned char>(p[0]))))
    return "";
  return p;
}

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto s = stories_paths();
    if (!s) GTEST_SKIP() << "../shared/models/stories260K (or $AIGC_SHARED) is absent";
    paths_ = *s;
    gguf_ = temp_path("stories") + ".gguf";
    llama2c_to_gguf(paths_.model, paths_.vocab).write(gguf_);
  }
  void TearDown() override {
    if (!gguf_.empty()) fs::remove(gguf_);
  }
  Stories paths_;
  std::string gguf_;
};

TEST_F(Stories260K, ConvertedMetadataAsLlamaCppWritesIt) {
  const GgufFile f = GgufFile::open(gguf_);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.embedding_length"), 64u);
  EXPECT_EQ(f.get_u32("llama.feed_forward_length"), 172u);
  EXPECT_EQ(f.get_u32("llama.block_count"), 5u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count"), 8u);
  EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(f.get_u32("llama.context_length"), 512u);
  EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), 8u);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  const auto& toks = f.get_array("tokenizer.ggml.tokens", GgufType::STRING).array_strings();
  ASSERT_EQ(toks.size(), 512u);
  EXPECT_EQ(toks[0], "<unk>");
  EXPECT_EQ(toks[1], "<s>");
  EXPECT_EQ(toks[2], "</s>");
  EXPECT_EQ(toks[3], "<0x00>");
  EXPECT_EQ(toks[403], "\xe2\x96\x81Once");  // FORMAT.md: id 403 is " Once"
  const auto types = f.get_array("tokenizer.ggml.token_type", GgufType::INT32).array_values<int32_t>();
  EXPECT_EQ(types[0], 2);
  EXPECT_EQ(types[1], 3);
  EXPECT_EQ(types[2], 3);
  EXPECT_EQ(types[3], 6);
  EXPECT_EQ(types[258], 6);
  EXPECT_EQ(types[403], 1);
  const auto scores = f.get_array("tokenizer.ggml.scores", GgufType::FLOAT32).array_values<float>();
  EXPECT_EQ(scores[259], 0.0f);
  EXPECT_EQ(scores[300], -41.0f);  // FORMAT.md: -(id - 259)
  EXPECT_EQ(f.tensor_info_find("output.weight"), nullptr) << "shared classifier: tied, not duplicated";
}

// The engine's greedy decode from BOS matches the twin's token ids exactly and its logits within
// 2e-4 + 1e-4 |x| (f32 vs the twin's float64 over 5 layers; logits are O(10); we see ~1e-5).
// The twin's smallest top-2 margin is ~0.05, far above that, so the argmax cannot flip on rounding.
TEST_F(Stories260K, GreedyDecodeMatchesTwin) {
  const test::RefDump ref = test::RefDump::load("stories260k");
  const Tensor& want_tokens = ref.get("tokens");
  const Tensor& want_logits = ref.get("logits");
  const LlamaModel model = LlamaModel::load(gguf_);
  EXPECT_FALSE(model.hp.rope_neox);
  LlamaContext ctx(model, {.n_ctx = 128});
  int32_t tok = 1;
  for (int64_t i = 0; i < want_logits.size(0); ++i) {
    const Tensor& l = ctx.eval({&tok, 1});
    ASSERT_TRUE(test::tensors_close(l, want_logits.slice(0, i, 1), 2e-4f, 1e-4f)) << "step " << i;
    tok = argmax(l);
    ASSERT_EQ(tok, want_tokens.ptr<int32_t>()[i + 1]) << "step " << i;
  }
  // The same sequence as one prompt: batched prefill gives the same last-token logits.
  LlamaContext batch(model, {.n_ctx = 128, .logits_all = true});
  const int64_t n = want_logits.size(0);
  const Tensor& all = batch.eval({want_tokens.ptr<int32_t>(), static_cast<size_t>(n)});
  EXPECT_TENSORS_CLOSE(all, want_logits, 2e-4f, 1e-4f);
}

// Byte for byte what llama2.c's run.c prints for 200 steps at temperature 0 (test_all.py).
TEST_F(Stories260K, TwoHundredStepsReproduceRunC) {
  const LlamaModel model = LlamaModel::load(gguf_);
  const Llama2cVocab vocab = llama2c_vocab_read(paths_.vocab, 512);
  LlamaContext ctx(model, {.n_ctx = 512});
  std::string text;
  int32_t tok = 1;
  for (int pos = 0; pos < 200; ++pos) {  // run.c: -n 200 steps, position 0 is BOS
    const int32_t next = argmax(ctx.eval({&tok, 1}));
    if (next == 1) break;  // run.c stops on BOS
    text += piece_print(vocab, tok, next);
    tok = next;
  }
  EXPECT_EQ(text, std::string(kRunCExpected));
}

// An f16 KV cache (--cache-type-k/v f16) on the real model: the twin's logits within f16's
// rounding, and the same 200 greedy steps as run.c.
TEST_F(Stories260K, F16CacheKeepsTheTwinsLogitsAndRunCText) {
  const test::RefDump ref = test::RefDump::load("stories260k");
  const Tensor& want_tokens = ref.get("tokens");
  const Tensor& want_logits = ref.get("logits");
  const LlamaModel model = LlamaModel::load(gguf_);
  LlamaContext ctx(model, {.n_ctx = 512, .cache_type_k = DType::F16, .cache_type_v = DType::F16});
  EXPECT_EQ(ctx.cache_bytes(), LlamaContext(model, {.n_ctx = 512}).cache_bytes() / 2);
  int32_t tok = 1;
  for (int64_t i = 0; i < want_logits.size(0); ++i) {
    const Tensor& l = ctx.eval({&tok, 1});
    ASSERT_TRUE(test::tensors_close(l, want_logits.slice(0, i, 1), 2e-2f, 2e-3f)) << "step " << i;
    tok = want_tokens.ptr<int32_t>()[i + 1];
  }
  const Llama2cVocab vocab = llama2c_vocab_read(paths_.vocab, 512);
  ctx.reset();
  std::string text;
  tok = 1;
  for (int pos = 0; pos < 200; ++pos) {
    const int32_t next = argmax(ctx.eval({&tok, 1}));
    if (next == 1) break;
    text += piece_print(vocab, tok, next);
    tok = next;
  }
  EXPECT_EQ(text, std::string(kRunCExpected));
}

TEST_F(Stories260K, ConvertCommand) {
  const std::string out = temp_path("cli") + ".gguf";
  const test::CliResult r = test::cli_run({"convert", "--llama2c", paths_.model, "--vocab", paths_.vocab, "-o", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const LlamaModel m = LlamaModel::load(out);
  EXPECT_EQ(m.hp.n_layer, 5);
  // Same bytes as the library call.
  std::ifstream a(out, std::ios::binary), b(gguf_, std::ios::binary);
  EXPECT_TRUE(std::equal(std::istreambuf_iterator<char>(a), {}, std::istreambuf_iterator<char>(b)));
  fs::remove(out);
  const test::CliResult bad = test::cli_run({"convert", "--llama2c", paths_.vocab, "--vocab", paths_.vocab, "-o", out});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("aigc: error:"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(out));
}

// ---- synthetic and hostile files ------------------------------------------------------------

std::vector<uint8_t> tiny_checkpoint(int32_t vocab_field, std::vector<float>* floats_out = nullptr) {
  // dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab |vocab_field|, seq_len 4; head 4, kv_dim 4.
  const int32_t hdr[7] = {8, 12, 1, 2, 1, vocab_field, 4};
  const int64_t V = std::abs(vocab_field);
  const int64_t n = V * 8 + 8 + 64 + 32 + 32 + 64 + 8 + 96 * 3 + 8 + 4 * 4 + (vocab_field < 0 ? V * 8 : 0);
  std::vector<float> f(static_cast<size_t>(n));
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>((i * 37 % 101) - 50) / 100.0f;
  std::vector<uint8_t> bytes(28 + f.size() * 4);
  std::memcpy(bytes.data(), hdr, 28);
  std::memcpy(bytes.data() + 28, f.data(), f.size() * 4);
  if (floats_out) *floats_out = f;
  return bytes;
}

std::vector<uint8_t> tiny_vocab(int n) {
  std::vector<uint8_t> b;
  auto put = [&](const void* p, size_t k) { b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + k); };
  const int32_t max_len = 6;
  put(&max_len, 4);
  for (int i = 0; i < n; ++i) {
    const float score = -static_cast<float>(i);
    const std::string s = i == 3 ? "<0x41>" : i == 4 ? " a b" : "t" + std::to_string(i);
    const int32_t len = static_cast<int32_t>(s.size());
    put(&score, 4);
    put(&len, 4);
    put(s.data(), s.size());
  }
  return b;
}

std::string write_file(const std::string& tag, const std::vector<uint8_t>& bytes) {
  const std::string p = temp_path(tag);
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return p;
}

std::string convert_error(const std::vector<uint8_t>& model, const std::vector<uint8_t>& vocab) {
  const std::string m = write_file("m", model), v = write_file("v", vocab);
  std::string msg = "(no error)";
  try {
    llama2c_to_gguf(m, v);
  } catch (const Error& e) {
    msg = e.what();
  }
  fs::remove(m);
  fs::remove(v);
  return msg;
}

TEST(Llama2c, UnsharedClassifierBecomesOutputWeight) {
  std::vector<float> f;
  const std::string m = write_file("m", tiny_checkpoint(-16, &f)), v = write_file("v", tiny_vocab(16));
  const std::string out = temp_path("unshared") + ".gguf";
  llama2c_to_gguf(m, v).write(out);
  const LlamaModel model = LlamaModel::load(out);
  EXPECT_EQ(model.hp.n_vocab, 16);
  ASSERT_NE(model.output.data(), model.tok_embd.data());
  // The classifier is the last [V, C] block of the file.
  EXPECT_EQ(std::memcmp(model.output.data(), f.data() + f.size() - 16 * 8, 16 * 8 * 4), 0);
  EXPECT_EQ(std::memcmp(model.tok_embd.data(), f.data(), 16 * 8 * 4), 0);
  const auto toks = model.file->get_array("tokenizer.ggml.tokens", GgufType::STRING).array_strings();
  EXPECT_EQ(toks[4], "\xe2\x96\x81" "a\xe2\x96\x81" "b");
  LlamaContext ctx(model, {});
  const int32_t t[] = {1, 5, 7};
  EXPECT_EQ(ctx.eval(t).size(1), 16);
  fs::remove(m);
  fs::remove(v);
  fs::remove(out);
}

TEST(Llama2c, HostileCheckpoints) {
  const auto vocab = tiny_vocab(16);
  auto good = tiny_checkpoint(16);
  EXPECT_EQ(convert_error(good, vocab), "(no error)");
  // Truncated anywhere: header or data.
  for (size_t n : {size_t{0}, size_t{10}, size_t{27}, size_t{28}, good.size() / 2, good.size() - 1}) {
    const std::string msg = convert_error({good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)}, vocab);
    EXPECT_NE(msg, "(no error)") << n << " bytes";
  }
  auto extra = good;
  extra.push_back(0);
  EXPECT_NE(convert_error(extra, vocab).find("implies"), std::string::npos);
  // Header fields out of range or inconsistent.
  for (auto [field, value] : std::vector<std::pair<int, int32_t>>{{0, 0}, {0, -8}, {1, 0}, {2, 0}, {3, 0}, {3, 3},
                                                                   {4, 0}, {4, 3}, {5, 0}, {6, -1}, {0, 1 << 30}}) {
    auto bad = good;
    std::memcpy(bad.data() + 4 * field, &value, 4);
    EXPECT_NE(convert_error(bad, vocab), "(no error)") << "field " << field << " = " << value;
  }
  // Unshared flag without the classifier's bytes.
  auto unshared = good;
  const int32_t neg = -16;
  std::memcpy(unshared.data() + 20, &neg, 4);
  EXPECT_NE(convert_error(unshared, vocab).find("truncated"), std::string::npos);
}

TEST(Llama2c, HostileTokenizers) {
  const auto model = tiny_checkpoint(16);
  const auto good = tiny_vocab(16);
  for (size_t n : {size_t{0}, size_t{3}, size_t{4}, size_t{10}, good.size() - 1})
    EXPECT_NE(convert_error(model, {good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)}), "(no error)") << n;
  EXPECT_NE(convert_error(model, tiny_vocab(17)).find("remain"), std::string::npos);  // too many entries
  auto bad_len = good;
  const int32_t huge = 1 << 30;
  std::memcpy(bad_len.data() + 8, &huge, 4);  // token 0's length
  EXPECT_NE(convert_error(model, bad_len).find("length"), std::string::npos);
  auto neg_len = good;
  const int32_t neg = -5;
  std::memcpy(neg_len.data() + 8, &neg, 4);
  EXPECT_NE(convert_error(model, neg_len), "(no error)");
  auto bad_max = good;
  std::memcpy(bad_max.data(), &neg, 4);
  EXPECT_NE(convert_error(model, bad_max).find("max_token_length"), std::string::npos);
}

}  // namespace
}  // namespace aigc
