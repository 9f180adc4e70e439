// aigc — one engine for local generative AI. Entry point: global flags, subcommands, error policy.
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"

int main(int argc, char** argv) {
  CLI::App app{"aigc " AIGC_VERSION " — local generative AI: text and images in one engine.\n"
               "Run 'aigc COMMAND --help' for a command's options.",
               "aigc"};
  app.set_version_flag("-V,--version", "aigc " AIGC_VERSION);
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("-t,--threads", threads, "Threads for compute (default: one per physical core)")
      ->check(CLI::NonNegativeNumber);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log progress and details to stderr");
  app.parse_complete_callback([&]() {
    aigc::thread_count_set(threads);
    if (verbose) aigc::log_level_set(aigc::LogLevel::Info);
  });
  app.fallthrough();  // -t and -v work before or after the subcommand

  aigc::cli::command_info_register(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const aigc::Error& e) {
    std::fprintf(stderr, "aigc: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aigc: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
