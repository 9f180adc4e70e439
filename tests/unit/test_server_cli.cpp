// `aigc serve` as a user starts it: the usage errors are one line with a hint and exit status 1.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "common/run_cli.h"
#include "server/http_server.h"
#include "test_server_model.h"

namespace {

using aigc::test::cli_run;

TEST(ServerCli, UsageErrorsAreOneLineWithAHint) {
  auto r = cli_run({"serve"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no models to serve"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint: give --models DIR"), std::string::npos) << r.err;
  r = cli_run({"serve", "--models", "/nonexistent/models"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a directory"), std::string::npos) << r.err;
  r = cli_run({"serve", "-m", "/nonexistent/m.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no such model file"), std::string::npos) << r.err;
  r = cli_run({"serve", "--models", "/tmp", "--memory-budget", "12Q"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--memory-budget"), std::string::npos) << r.err;
  r = cli_run({"serve", "--models", "/tmp", "--port", "70000"});
  EXPECT_EQ(r.exit_code, 2);  // CLI11 range check: a usage error
  r = cli_run({"serve", "--models", "/tmp", "--test-image-model", "../x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--test-image-model"), std::string::npos) << r.err;
}

TEST(ServerCli, PortInUseIsAnError) {
  const std::string dir = ::testing::TempDir() + "/aigc_server_cli_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  aigc::test::server_tiny_model_write(dir + "/tiny.gguf", 64);
  aigc::server::ServeOptions o;
  o.port = 0;
  o.registry.models_dir = dir;
  aigc::server::HttpServer first(o);
  const int port = first.bind();
  const auto r = cli_run({"serve", "--models", dir, "--port", std::to_string(port)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << r.err;
  std::filesystem::remove_all(dir);
}

}  // namespace
