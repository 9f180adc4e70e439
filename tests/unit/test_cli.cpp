// The aigc command as a user types it: help, version, errors as one line with a non-zero exit.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <vector>

#include "common/refdump.h"
#include "common/run_cli.h"

using aigc::test::cli_run;

static int line_count(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(Cli, HelpListsCommandsAndGlobalOptions) {
  auto r = cli_run({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("info"), std::string::npos);
  EXPECT_NE(r.out.find("--threads"), std::string::npos);
}

TEST(Cli, VersionIsOneLine) {
  auto r = cli_run({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "aigc " AIGC_VERSION "\n");
}

TEST(Cli, NoCommandFails) {
  auto r = cli_run({});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
}

TEST(Cli, UnknownCommandFails) {
  auto r = cli_run({"frobnicate"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
}

TEST(Cli, InfoMissingFileIsOneLineError) {
  auto r = cli_run({"info", "/nonexistent/model.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind("aigc: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(Cli, InfoOnADirectoryIsOneLineError) {
  auto r = cli_run({"info", "/tmp"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
}

TEST(Cli, InfoShowsGgufMetadataAndTensors) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED)";
  auto r = cli_run({"info", shared + "/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("GGUF v3"), std::string::npos);
  EXPECT_NE(r.out.find("tokenizer.ggml.model"), std::string::npos);
  EXPECT_NE(r.out.find("(50257 items)"), std::string::npos) << r.out.substr(0, 2000);
}

TEST(Cli, InfoJsonOfSafetensors) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED)";
  auto r = cli_run({"info", "--json", shared + "/models/taesd/taef2_encoder.safetensors"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "safetensors");
  ASSERT_TRUE(j["tensors"].is_array());
  EXPECT_GT(j["tensors"].size(), 10u);
  EXPECT_TRUE(j["tensors"][0]["shape"].is_array());
}

TEST(Cli, InfoOnATextFileSaysWhatItReads) {
  const std::string path = ::testing::TempDir() + "/not_a_model.txt";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("hello, this is not a model\n", f);
  std::fclose(f);
  auto r = cli_run({"info", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("not a GGUF or safetensors file"), std::string::npos) << r.err;
}

TEST(Cli, InfoOnATruncatedGgufIsOneLineError) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED)";
  const std::string path = ::testing::TempDir() + "/truncated.gguf";
  FILE* in = std::fopen((shared + "/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf").c_str(), "rb");
  std::vector<char> buf(5000);
  size_t n = std::fread(buf.data(), 1, buf.size(), in);
  std::fclose(in);
  FILE* out = std::fopen(path.c_str(), "wb");
  std::fwrite(buf.data(), 1, n, out);
  std::fclose(out);
  auto r = cli_run({"info", path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("truncated.gguf"), std::string::npos) << r.err;
}
