// aigc text and aigc chat as a user runs them, on the real stories260K model (converted by the
// test with aigc convert). Expected text comes from llama2.c's run.c (its test_all.py), not from us.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/refdump.h"
#include "common/run_cli.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "text/generator.h"

namespace {

using aigc::test::cli_run;

// run.c's stdout for `./run stories260K.bin -z tok512.bin -t 0.0 -n 200` (karpathy/llama2.c
// test_all.py, expected_stdout): 200 steps from BOS, each printing the token it samples.
const char kRunCExpected[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the "
    "park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find "
    "it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\nLily "
    "didn't want to help her mom, so she";

class CliText : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string shared = aigc::test::shared_dir();
    if (shared.empty()) return;
    // One file per process: ctest runs these tests in parallel processes.
    model_ = ::testing::TempDir() + "/cli_text_stories260K." + std::to_string(getpid()) + ".gguf";
    const auto r = cli_run({"convert", "--llama2c", shared + "/models/stories260K/stories260K.bin", "--vocab",
                            shared + "/models/stories260K/tok512.bin", "-o", model_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    if (!model_.empty()) std::filesystem::remove(model_);
  }
  void SetUp() override {
    if (model_.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED): stories260K is needed";
  }
  static std::string model_;
};
std::string CliText::model_;

TEST_F(CliText, GreedyFromBosReproducesRunC) {
  const auto r = cli_run({"-t", "1", "text", "-m", model_, "-p", "", "-n", "200", "--temp", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kRunCExpected) + "\n");
  EXPECT_NE(r.err.find("generated 200 tokens"), std::string::npos) << r.err;
}

TEST_F(CliText, EchoesThePromptThenContinuesIt) {
  const auto r = cli_run({"text", "-m", model_, "-p", "Once upon a time", "-n", "30", "--temp", "0", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // run.c's text begins with the same words, so greedy decoding continues it the same way.
  ASSERT_GT(r.out.size(), 60u);
  EXPECT_EQ(std::string(kRunCExpected).rfind(r.out.substr(0, r.out.size() - 1), 0), 0u) << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST_F(CliText, PromptFromStdinAndFile) {
  const auto a = cli_run({"text", "-m", model_, "-n", "20", "--temp", "0", "-q"}, "Once upon a time");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const std::string path = ::testing::TempDir() + "/cli_text_prompt.txt";
  std::ofstream(path) << "Once upon a time";
  const auto b = cli_run({"text", "-m", model_, "-f", path, "-n", "20", "--temp", "0", "-q"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.out.rfind("Once upon a time", 0), 0u);
}

TEST_F(CliText, SameSeedSameTextOtherSeedOther) {
  auto run = [&](const char* seed) {
    return cli_run({"text", "-m", model_, "-p", "Lily", "-n", "40", "--temp", "1", "--seed", seed, "-q"}).out;
  };
  const std::string a = run("11"), b = run("11"), c = run("12");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST_F(CliText, StopStringEndsAndIsNotPrinted) {
  const auto r = cli_run({"text", "-m", model_, "-p", "", "-n", "200", "--temp", "0", "--stop", "Lily"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // run.c's text up to the first "Lily" (exclusive).
  const std::string want(kRunCExpected);
  EXPECT_EQ(r.out, want.substr(0, want.find("Lily")) + "\n");
  EXPECT_NE(r.err.find("stop string"), std::string::npos) << r.err;
}

TEST_F(CliText, PromptLongerThanTheContextIsOneLineError) {
  std::string prompt;
  for (int i = 0; i < 200; ++i) prompt += "Once upon a time ";
  const auto r = cli_run({"text", "-m", model_, "-c", "64", "-p", prompt, "-n", "5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("context holds 64"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST_F(CliText, ChatWithoutTemplateSaysHowToChooseOne) {
  const auto r = cli_run({"chat", "-m", model_}, "hello\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--chat-template"), std::string::npos) << r.err;
}

TEST_F(CliText, ChatStreamsRepliesAndKeepsHistory) {
  // stories260K knows no chat format; chatml over it still exercises the loop: two turns, each
  // answered (the second reusing the cached first turn), then /exit.
  const auto r = cli_run({"-v", "chat", "-m", model_, "--chat-template", "chatml", "-n", "8", "--temp", "0"},
                         "Once upon a time\nLily\n/exit\nnever read\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_NE(r.err.find("reused"), std::string::npos) << r.err;
}

TEST(CliTextErrors, MissingModelIsOneLineError) {
  const auto r = cli_run({"text", "-m", "/nonexistent.gguf", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent.gguf"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST(CliTextErrors, VocabOnlyFileIsNotAModel) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED)";
  const auto r = cli_run({"text", "-m", shared + "/tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", "-p", "hi"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_EQ(r.err.rfind("aigc: error: ", 0), 0u) << r.err;
}

}  // namespace

namespace {

// The built-in model (models/kjv.gguf, trained by scripts/train_text_default.sh) is used when no
// -m is given: found next to the binary (build/../models), so a fresh clone runs with no download.
TEST(CliTextBuiltin, NoModelFlagUsesTheBuiltinModel) {
  const auto r = cli_run({"-t", "1", "text", "-p", "And God said", "-n", "12", "--temp", "0", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("And God said", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), std::string("And God said").size() + 10) << r.out;
}

TEST(CliTextBuiltin, MissingBuiltinModelIsOneClearError) {
  // A copy of the binary in a folder with no models/ beside it, and AIGC_MODELS_DIR pointing nowhere.
  const std::string dir = "/tmp/aigc-builtin-test-" + std::to_string(getpid());
  std::filesystem::create_directories(dir + "/bin");
  std::filesystem::copy_file(AIGC_AIGC_BIN, dir + "/bin/aigc");
  const std::string cmd = "AIGC_MODELS_DIR=" + dir + "/none " + dir + "/bin/aigc text -p x -n 1 2> " + dir + "/err";
  const int status = std::system(cmd.c_str());
  std::ifstream f(dir + "/err");
  const std::string err((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::filesystem::remove_all(dir);
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(err.find("built-in model kjv.gguf was not found"), std::string::npos) << err;
  EXPECT_NE(err.find("-m FILE"), std::string::npos) << err;
}

}  // namespace
