// aigc bench text as a user runs it, on a tiny random Llama GGUF written here (n_embd 64, 2 layers):
// the JSON has every field, the figures are consistent with each other and with the file (params,
// weight bytes per token counted here from the shapes we wrote), the markdown table has a pp and a
// tg row per thread count, and bad input gives a one-line error. Speeds are not checked (busy VM).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "common/compare.h"
#include "common/run_cli.h"
#include "formats/gguf.h"

namespace {

using aigc::test::cli_run;

int line_count(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// Shapes and byte counts of the tiny model (f32 weights: 4 bytes per value).
constexpr int64_t kVocab = 50, kEmbd = 64, kLayers = 2, kHeads = 4, kHeadsKv = 2, kFf = 96;
constexpr int64_t kKv = kEmbd / kHeads * kHeadsKv;
// Weight values in the file, and those one decode step reads: every layer matrix, both norms per
// layer, the output norm and matrix, and one embedding row.
constexpr int64_t kLayerMatrices = kEmbd * kEmbd * 2 + kKv * kEmbd * 2 + kFf * kEmbd * 3;
constexpr int64_t kParams = kVocab * kEmbd * 2 + kEmbd + kLayers * (kLayerMatrices + 2 * kEmbd);
constexpr int64_t kBytesPerToken = 4 * (kLayers * (kLayerMatrices + 2 * kEmbd) + kEmbd + kVocab * kEmbd + kEmbd);

// A random f32 Llama GGUF of n_embd `embd` (head dim 16, half as many KV heads), the shapes above
// otherwise.
void tiny_llama_write(const std::string& path, int64_t embd) {
  const int64_t heads = embd / 16, kv = embd / 2;
  aigc::GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("general.file_type", uint32_t{0});
  w.metadata_add("llama.context_length", uint32_t{128});
  w.metadata_add("llama.embedding_length", static_cast<uint32_t>(embd));
  w.metadata_add("llama.block_count", uint32_t{kLayers});
  w.metadata_add("llama.feed_forward_length", uint32_t{kFf});
  w.metadata_add("llama.attention.head_count", static_cast<uint32_t>(heads));
  w.metadata_add("llama.attention.head_count_kv", static_cast<uint32_t>(heads / 2));
  w.metadata_add("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  uint32_t seed = 1;
  auto add = [&](const std::string& name, std::initializer_list<int64_t> shape) {
    w.tensor_add(name, aigc::test::random_f32(shape, seed++, -0.1f, 0.1f));
  };
  add("token_embd.weight", {kVocab, embd});
  for (int64_t i = 0; i < kLayers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {embd});
    add(p + "attn_q.weight", {embd, embd});
    add(p + "attn_k.weight", {kv, embd});
    add(p + "attn_v.weight", {kv, embd});
    add(p + "attn_output.weight", {embd, embd});
    add(p + "ffn_norm.weight", {embd});
    add(p + "ffn_gate.weight", {kFf, embd});
    add(p + "ffn_up.weight", {kFf, embd});
    add(p + "ffn_down.weight", {embd, kFf});
  }
  add("output_norm.weight", {embd});
  add("output.weight", {kVocab, embd});
  w.write(path);
}

class CliBench : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = ::testing::TempDir() + "/cli_bench_tiny." + std::to_string(getpid()) + ".gguf";
    static_assert(kEmbd / 16 == kHeads && kEmbd / 2 == kKv);
    tiny_llama_write(model_, kEmbd);
  }
  static void TearDownTestSuite() { std::filesystem::remove(model_); }
  static std::string model_;
};
std::string CliBench::model_;

TEST_F(CliBench, MoreGenerationThanPromptTokensFitsTheContext) {
  // tg evaluates n_gen + 1 tokens (an untimed first one); the context must hold them even when the
  // prompt is shorter (this once failed with "would exceed the context size").
  const auto r = cli_run({"bench", "text", "-m", model_, "-p", "4", "-n", "8", "-r", "1", "--threads-list", "1",
                          "--no-probe", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("n_gen"), nlohmann::json::array({8}));
}

TEST_F(CliBench, JsonHasEveryFieldAndTheBoundIsConsistent) {
  // One thread count with the bandwidth probe (about a second), one without it.
  const auto r = cli_run({"bench", "text", "-m", model_, "-p", "8", "-n", "4", "-r", "2", "--threads-list", "1",
                          "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("model"), model_);
  EXPECT_EQ(j.at("file_bytes").get<uint64_t>(), std::filesystem::file_size(model_));
  EXPECT_EQ(j.at("params").get<int64_t>(), kParams);
  EXPECT_EQ(j.at("type"), "f32");
  EXPECT_EQ(j.at("file_type"), "F32");
  EXPECT_EQ(j.at("n_prompt"), nlohmann::json::array({8}));
  EXPECT_EQ(j.at("n_gen"), nlohmann::json::array({4}));
  EXPECT_EQ(j.at("repetitions"), 2);
  EXPECT_EQ(j.at("mmap"), false);  // weights read into memory by default
  EXPECT_EQ(j.at("mlock"), false);
  EXPECT_EQ(j.at("weight_bytes_per_token").get<int64_t>(), kBytesPerToken);
  // At least the weights read into memory are resident.
  EXPECT_GT(j.at("peak_rss_bytes").get<uint64_t>(), std::filesystem::file_size(model_));
  ASSERT_EQ(j.at("results").size(), 2u);  // one row per test, as llama-bench's
  const nlohmann::json& pp = j.at("results")[0];
  const nlohmann::json& res = j.at("results")[1];
  EXPECT_EQ(pp.at("test"), "pp8");
  EXPECT_EQ(pp.at("n_prompt"), 8);
  EXPECT_EQ(pp.at("n_gen"), 0);
  EXPECT_FALSE(pp.contains("tg_bound_tps"));
  EXPECT_EQ(res.at("test"), "tg4");
  EXPECT_EQ(res.at("n_prompt"), 0);
  EXPECT_EQ(res.at("n_gen"), 4);
  for (const nlohmann::json* row : {&pp, &res}) {
    EXPECT_EQ(row->at("threads"), 1);
    const nlohmann::json& s = row->at("tps");
    ASSERT_EQ(s.at("samples").size(), 2u) << row->at("test");
    const double a = s.at("samples")[0], b = s.at("samples")[1];
    EXPECT_GT(a, 0);
    EXPECT_GT(b, 0);
    EXPECT_NEAR(s.at("mean").get<double>(), (a + b) / 2, 1e-9 * (a + b));
    EXPECT_NEAR(s.at("stddev").get<double>(), std::abs(a - b) / std::sqrt(2.0), 1e-9 * (a + b));
  }
  const double gbs = res.at("read_gbs"), bound = res.at("tg_bound_tps");
  EXPECT_GT(gbs, 0.1);
  EXPECT_NEAR(bound, gbs * 1e9 / kBytesPerToken, 1e-9 * bound);
  EXPECT_NEAR(res.at("tg_fraction_of_bound").get<double>(), res.at("tps").at("mean").get<double>() / bound, 1e-9);
  // One plain read of the weights before and after each tg run: per run, tg's weight bytes per
  // second over the mean of the two.
  const nlohmann::json& during = res.at("read_gbs_during").at("samples");
  const nlohmann::json& of_during = res.at("tg_fraction_of_read_during").at("samples");
  ASSERT_EQ(during.size(), 2u);
  ASSERT_EQ(of_during.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_GT(during[i].get<double>(), 0.1);
    const double tg = res.at("tps").at("samples")[i];
    EXPECT_NEAR(of_during[i].get<double>(), tg * kBytesPerToken * 1e-9 / during[i].get<double>(), 1e-9);
  }
}

// --cache-type-k/v as llama-bench's: the run takes them and the JSON says which; other types are refused.
TEST_F(CliBench, CacheTypesF16) {
  const auto r = cli_run({"bench", "text", "-m", model_, "-p", "20", "-n", "4", "-d", "8", "-r", "1", "--no-probe",
                          "--json", "--cache-type-k", "f16", "--cache-type-v", "f16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("cache_type_k"), "f16");
  EXPECT_EQ(j.at("cache_type_v"), "f16");
  const auto bad = cli_run({"bench", "text", "-m", model_, "--cache-type-k", "q8_0"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(line_count(bad.err), 1) << bad.err;
  EXPECT_NE(bad.err.find("--cache-type-k"), std::string::npos) << bad.err;
}

// llama-bench's lists: a test per -p and per -n entry, 0 skips that kind.
TEST_F(CliBench, ListsRunOneTestPerSizeAndZeroSkips) {
  const auto r = cli_run({"bench", "text", "-m", model_, "-p", "4,8", "-n", "2,3", "-r", "1", "--threads-list", "1",
                          "--no-probe"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  size_t at = 0;
  for (const char* row : {"| 1 | pp4 |", "| 1 | pp8 |", "| 1 | tg2 |", "| 1 | tg3 |"}) {  // in this order
    const size_t found = r.out.find(row, at);
    ASSERT_NE(found, std::string::npos) << row << "\n" << r.out;
    at = found;
  }
  const auto pp_only = cli_run({"bench", "text", "-m", model_, "-p", "8", "-n", "0", "-r", "1", "--no-probe"});
  ASSERT_EQ(pp_only.exit_code, 0) << pp_only.err;
  EXPECT_NE(pp_only.out.find("| pp8 |"), std::string::npos) << pp_only.out;
  EXPECT_EQ(pp_only.out.find("| tg"), std::string::npos) << pp_only.out;
  EXPECT_EQ(pp_only.out.find("weights read per generated token"), std::string::npos) << pp_only.out;
  EXPECT_EQ(line_count(pp_only.out), 2 + 1) << pp_only.out;
  const auto tg_only = cli_run({"bench", "text", "-m", model_, "-p", "0", "-n", "2", "-r", "1", "--no-probe", "--json"});
  ASSERT_EQ(tg_only.exit_code, 0) << tg_only.err;
  const nlohmann::json j = nlohmann::json::parse(tg_only.out);
  ASSERT_EQ(j.at("results").size(), 1u);
  EXPECT_EQ(j.at("results")[0].at("test"), "tg2");
}

TEST_F(CliBench, MarkdownRowsPerThreadCountWithoutProbe) {
  const auto r = cli_run({"bench", "text", "-m", model_, "-p", "8", "-n", "4", "-r", "1", "--threads-list", "1,2",
                          "--no-probe", "--mlock"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| model | size | params | type |"), std::string::npos) << r.out;
  for (const char* row : {"| read+mlock | 1 | pp8 |", "| read+mlock | 1 | tg4 |", "| read+mlock | 2 | pp8 |",
                          "| read+mlock | 2 | tg4 |"})
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  EXPECT_NE(r.out.find("| tg4 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" | - | - | - | - | "), std::string::npos) << r.out;  // no probe: no bound, no "during"
  EXPECT_EQ(line_count(r.out), 2 + 4 + 1 + 3) << r.out;  // header, 4 rows, blank line, 3-line note
}

TEST_F(CliBench, DepthRunsTheTestsAfterThatManyCachedTokens) {
  const auto r = cli_run({"bench", "text", "-m", model_, "-p", "8", "-n", "4", "-d", "20", "-r", "1", "--no-probe"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* row : {"| pp8 @ d20 |", "| tg4 @ d20 |"}) EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  EXPECT_NE(r.err.find("evaluating 20 tokens of depth"), std::string::npos) << r.err;  // progress on stderr, not stdout
  EXPECT_EQ(r.out.find("depth"), std::string::npos) << r.out;
  const auto j = cli_run({"bench", "text", "-m", model_, "-p", "8", "-n", "4", "-d", "20", "-r", "1", "--no-probe",
                          "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(nlohmann::json::parse(j.out).at("n_depth"), 20);
  const auto bad = cli_run({"bench", "text", "-m", model_, "-d", "-1"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("-d/--n-depth must be 0 or more"), std::string::npos) << bad.err;
  for (const char* flag : {"-d", "-p", "-n"}) {  // no overflow, no giant allocation: one line
    const auto huge = cli_run({"bench", "text", "-m", model_, flag, "9223372036854775807"});
    EXPECT_EQ(huge.exit_code, 1) << flag;
    EXPECT_EQ(line_count(huge.err), 1) << huge.err;
    EXPECT_NE(huge.err.find("needs a context of more than 16777216 tokens"), std::string::npos) << huge.err;
  }
}

TEST_F(CliBench, BadInputGivesOneLineErrors) {
  const auto missing = cli_run({"bench", "text", "-m", "/nonexistent/model.gguf", "-p", "8", "-n", "4"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(line_count(missing.err), 1) << missing.err;
  EXPECT_NE(missing.err.find("/nonexistent/model.gguf"), std::string::npos) << missing.err;
  EXPECT_TRUE(missing.out.empty());

  const auto p_neg = cli_run({"bench", "text", "-m", model_, "-p", "8,-1"});
  EXPECT_EQ(p_neg.exit_code, 1);
  EXPECT_EQ(line_count(p_neg.err), 1) << p_neg.err;
  EXPECT_NE(p_neg.err.find("-p/--n-prompt must be 0 (no pp test) or more, got -1"), std::string::npos) << p_neg.err;

  const auto none = cli_run({"bench", "text", "-m", model_, "-p", "0", "-n", "0"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_EQ(line_count(none.err), 1) << none.err;
  EXPECT_NE(none.err.find("nothing to run"), std::string::npos) << none.err;

  const auto n_neg = cli_run({"bench", "text", "-m", model_, "-n", "-3"});
  EXPECT_EQ(n_neg.exit_code, 1);
  EXPECT_EQ(line_count(n_neg.err), 1) << n_neg.err;
  EXPECT_NE(n_neg.err.find("-n/--n-gen must be 0 (no tg test) or more, got -3"), std::string::npos) << n_neg.err;

  const auto threads0 = cli_run({"bench", "text", "-m", model_, "--threads-list", "1,0"});
  EXPECT_EQ(threads0.exit_code, 1);
  EXPECT_EQ(line_count(threads0.err), 1) << threads0.err;

  const auto both = cli_run({"bench", "text", "-m", model_, "--json", "--markdown"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_EQ(line_count(both.err), 1) << both.err;

  const auto no_sub = cli_run({"bench"});
  EXPECT_EQ(no_sub.exit_code, 2);
  EXPECT_EQ(line_count(no_sub.err), 1) << no_sub.err;
}

// GPT-2 (learned positions, fused QKV, biases, tied classifier) through the same command: the
// weight bytes a decode step reads, counted here from the shapes written (the tied token
// embedding is read whole as the classifier, plus one of its rows and one position row), and a
// context past the learned positions is refused before anything runs.
TEST(CliBenchGpt2, RunsAndCountsItsWeightsAndItsContextLimit) {
  constexpr int64_t V = 40, C = 32, F = 64, L = 2, P = 24;
  const std::string path = ::testing::TempDir() + "/cli_bench_gpt2." + std::to_string(getpid()) + ".gguf";
  aigc::GgufWriter w;
  w.metadata_add("general.architecture", "gpt2");
  w.metadata_add("gpt2.context_length", uint32_t{P});
  w.metadata_add("gpt2.embedding_length", uint32_t{C});
  w.metadata_add("gpt2.block_count", uint32_t{L});
  w.metadata_add("gpt2.feed_forward_length", uint32_t{F});
  w.metadata_add("gpt2.attention.head_count", uint32_t{4});
  w.metadata_add("gpt2.attention.layer_norm_epsilon", 1e-5f);
  uint32_t seed = 100;
  auto add = [&](const std::string& name, std::initializer_list<int64_t> shape) {
    w.tensor_add(name, aigc::test::random_f32(shape, seed++, -0.1f, 0.1f));
  };
  add("token_embd.weight", {V, C});
  add("position_embd.weight", {P, C});
  for (int64_t i = 0; i < L; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    for (const char* n : {"attn_norm", "ffn_norm"}) add(p + n + ".weight", {C}), add(p + n + ".bias", {C});
    add(p + "attn_qkv.weight", {3 * C, C});
    add(p + "attn_qkv.bias", {3 * C});
    add(p + "attn_output.weight", {C, C});
    add(p + "attn_output.bias", {C});
    add(p + "ffn_up.weight", {F, C});
    add(p + "ffn_up.bias", {F});
    add(p + "ffn_down.weight", {C, F});
    add(p + "ffn_down.bias", {C});
  }
  add("output_norm.weight", {C});
  add("output_norm.bias", {C});
  w.write(path);
  constexpr int64_t kLayer = 4 * C + 3 * C * C + 3 * C + C * C + C + F * C + F + C * F + C;
  constexpr int64_t kGpt2BytesPerToken = 4 * (L * kLayer + 2 * C + V * C + C + C);

  const auto r = cli_run({"bench", "text", "-m", path, "-p", "8", "-n", "4", "-r", "1", "--threads-list", "1,2",
                          "--no-probe", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("params").get<int64_t>(), V * C + P * C + L * kLayer + 2 * C);
  EXPECT_EQ(j.at("weight_bytes_per_token").get<int64_t>(), kGpt2BytesPerToken);
  ASSERT_EQ(j.at("results").size(), 4u);  // pp8 and tg4 at 1 and 2 threads
  for (const nlohmann::json& row : j.at("results")) EXPECT_GT(row.at("tps").at("mean").get<double>(), 0);

  // -p 16 and -n 8 fit 24 positions; -p 24 with -n 24 needs 25.
  const auto fits = cli_run({"bench", "text", "-m", path, "-p", "16", "-n", "8", "-r", "1", "--no-probe"});
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
  const auto past = cli_run({"bench", "text", "-m", path, "-p", "24", "-n", "24", "-r", "1", "--no-probe"});
  EXPECT_EQ(past.exit_code, 1);
  EXPECT_EQ(line_count(past.err), 1) << past.err;
  EXPECT_NE(past.err.find("needs a context of more than 24 tokens, the most this gpt2 model holds"), std::string::npos) << past.err;
  EXPECT_TRUE(past.out.empty());
  std::filesystem::remove(path);
}

// llama.cpp's Q4_0 mix, from aigc quantize: q4_0 matrices and a q6_K output.weight (rows of 256).
TEST(CliBenchQuantized, Q4_0WithQ6KOutputLoadsAndRuns) {
  const std::string base = ::testing::TempDir() + "/cli_bench_256." + std::to_string(getpid());
  constexpr int64_t C = 256, KV = C / 2;
  tiny_llama_write(base + ".f32.gguf", C);
  const auto q = cli_run({"quantize", base + ".f32.gguf", base + ".q4_0.gguf", "--type", "q4_0"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  const auto r = cli_run({"bench", "text", "-m", base + ".q4_0.gguf", "-p", "4", "-n", "2", "-r", "1", "--no-probe",
                          "--threads-list", "1", "--json"});
  std::filesystem::remove(base + ".f32.gguf");
  std::filesystem::remove(base + ".q4_0.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("type"), "q4_0");
  EXPECT_EQ(j.at("file_type"), "Q4_0");
  EXPECT_TRUE(j.at("results")[1].at("tg_bound_tps").is_null());  // tg2; --no-probe
  // GGML block sizes: q4_0 18 bytes per 32 values, q6_K 210 bytes per 256; norms stay f32.
  const int64_t matrices = C * C * 2 + KV * C * 2 + kFf * C * 3;
  const int64_t expected = kLayers * (matrices / 32 * 18 + 2 * C * 4) + C * 4 + kVocab * C / 256 * 210 + C / 32 * 18;
  EXPECT_EQ(j.at("weight_bytes_per_token").get<int64_t>(), expected);
}

}  // namespace
