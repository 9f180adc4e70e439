// aigc text -m MODEL -p PROMPT: streams the prompt followed by the generated text to stdout.
// Diagnostics (speed, why it stopped) go to stderr.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/text_options.h"
#include "core/error.h"
#include "core/log.h"

namespace aigc::cli {

namespace {

struct TextArgs {
  TextModelArgs model;
  GenerateParams gen;
  std::string prompt, prompt_file;
  bool prompt_given = false;
  bool no_display_prompt = false;
  bool parse_special = false;
  bool quiet = false;
};

std::string prompt_read(const TextArgs& a) {
  if (a.prompt_given) return a.prompt;
  if (!a.prompt_file.empty()) {
    if (a.prompt_file == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      return ss.str();
    }
    std::ifstream f(a.prompt_file, std::ios::binary);
    if (!f) error_throw("cannot read the prompt file", a.prompt_file, "check the path");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  if (!isatty(STDIN_FILENO)) {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  error_throw("no prompt given", "aigc text", "pass -p TEXT, -f FILE (- for stdin), or pipe text in");
}

void text_run(TextArgs& a) {
  const std::string prompt = prompt_read(a);
  LoadedText t = text_model_load(a.model);
  const text::Vocab& vocab = t.gen->vocab();
  const std::vector<text::TokenId> tokens =
      vocab.encode(prompt, {.add_special = true, .parse_special = a.parse_special});
  if (!a.no_display_prompt) {
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    std::fflush(stdout);
  }
  bool ends_newline = !prompt.empty() && prompt.back() == '\n';
  const GenerateResult r = t.gen->generate(tokens, a.gen, [&](std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    ends_newline = s.back() == '\n';
    return true;
  });
  if (!ends_newline) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!a.quiet) {
    const double pt = r.prompt_seconds, gt = r.generate_seconds;
    std::fprintf(stderr,
                 "aigc: prompt %lld tokens in %.2f s (%.1f tok/s); generated %lld tokens in %.2f s (%.1f tok/s); "
                 "end: %s\n",
                 static_cast<long long>(r.n_prompt_eval), pt, pt > 0 ? r.n_prompt_eval / pt : 0.0,
                 static_cast<long long>(r.n_generated), gt, gt > 0 ? r.n_generated / gt : 0.0,
                 r.end == GenerateEnd::EndToken     ? "end token"
                 : r.end == GenerateEnd::StopString ? "stop string"
                 : r.end == GenerateEnd::ContextFull ? "context full"
                                                      : "max tokens");
  }
}

}  // namespace

void command_text_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("text", "Generate text from a prompt (completion), streamed to stdout");
  auto a = std::make_shared<TextArgs>();
  text_model_options_add(cmd, a->model);
  cmd->add_option("-p,--prompt", a->prompt, "Prompt text")->each([a](const std::string&) { a->prompt_given = true; });
  cmd->add_option("-f,--file", a->prompt_file, "Read the prompt from a file (- for stdin)")->type_name("FILE");
  cmd->add_option("-n,--n-predict", a->gen.n_predict, "Tokens to generate; -1 = until an end token or a full context")
      ->default_val(128);
  cmd->add_option("--stop", a->gen.stop, "Stop when this text is generated (repeatable; not printed)")
      ->type_name("TEXT");
  cmd->add_flag("--ignore-eos", a->gen.ignore_eos, "Keep generating past end-of-text tokens");
  cmd->add_flag("--no-display-prompt", a->no_display_prompt, "Print only the generated text");
  cmd->add_flag("--parse-special", a->parse_special, "Read control tokens such as <|im_start|> in the prompt");
  cmd->add_flag("-q,--quiet", a->quiet, "No speed summary on stderr");
  sampling_options_add(cmd, a->gen.sampling);
  cmd->callback([a]() { text_run(*a); });
}

}  // namespace aigc::cli
