#include "common/run_cli.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace aigc::test {

static std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

static std::string file_slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CliResult cli_run(const std::vector<std::string>& args, const std::string& stdin_text) {
  char dir_tmpl[] = "/tmp/aigc_cli_XXXXXX";
  std::string dir = mkdtemp(dir_tmpl);
  std::string cmd = shell_quote(AIGC_AIGC_BIN);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  {
    std::ofstream in(dir + "/in");
    in << stdin_text;
  }
  cmd += " <" + dir + "/in >" + dir + "/out 2>" + dir + "/err";
  int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = file_slurp(dir + "/out");
  r.err = file_slurp(dir + "/err");
  std::remove((dir + "/in").c_str());
  std::remove((dir + "/out").c_str());
  std::remove((dir + "/err").c_str());
  rmdir(dir.c_str());
  return r;
}

}  // namespace aigc::test
