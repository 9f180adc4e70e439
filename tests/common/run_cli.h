// Runs the aigc command (the binary built beside the tests) and captures its output.
#pragma once

#include <string>
#include <vector>

namespace aigc::test {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// args are passed through the shell, each single-quoted.
CliResult cli_run(const std::vector<std::string>& args, const std::string& stdin_text = "");

}  // namespace aigc::test
