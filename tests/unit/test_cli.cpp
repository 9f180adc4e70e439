// The aigc command as a user types it: help, version, errors as one line with a non-zero exit.
#include <gtest/gtest.h>

#include <algorithm>

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
