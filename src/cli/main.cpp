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
      ->check(CLI::Range(0, 4096));
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log progress and details to stderr");
  app.parse_complete_callback([&]() {
    aigc::thread_count_set(threads);
    if (verbose) aigc::log_level_set(aigc::LogLevel::Info);
  });
  app.fallthrough();  // -t and -v work before or after the subcommand

  aigc::cli::command_text_register(app);
  aigc::cli::command_chat_register(app);
  aigc::cli::command_image_register(app);
  aigc::cli::command_info_register(app);
  aigc::cli::command_tokenize_register(app);
  aigc::cli::command_quantize_register(app);
  aigc::cli::command_convert_register(app);
  aigc::cli::command_bench_register(app);
  aigc::cli::command_train_register(app);
  aigc::cli::command_serve_register(app);
  aigc::cli::command_eval_register(app);

  // Usage errors: one line, same shape as every other error; exit status 2.
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    auto used = a->get_subcommands();
    return fmt::format("aigc: error: {}; hint: run 'aigc{} --help'\n", e.what(),
                       used.empty() ? std::string() : " " + used[0]->get_name());
  });
  if (argc > 1 && argv[1][0] != '-' && app.get_subcommands([&](CLI::App* s) { return s->check_name(argv[1]); }).empty()) {
    std::fprintf(stderr, "aigc: error: unknown command '%s'; hint: run 'aigc --help' for the list\n", argv[1]);
    return 2;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    app.exit(e);
    return 2;
  } catch (const aigc::Error& e) {
    std::fprintf(stderr, "aigc: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aigc: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
