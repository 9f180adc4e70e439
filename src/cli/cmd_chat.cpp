// aigc chat -m MODEL: an interactive chat. Each line on stdin is a user message; the reply streams
// to stdout. The conversation is rendered with the model's chat template each turn; the KV cache
// keeps the shared prefix, so only the new turn is evaluated. /reset forgets, /exit (or EOF) ends.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/text_options.h"
#include "core/error.h"
#include "core/log.h"
#include "formats/gguf.h"
#include "text/chat_template.h"

namespace aigc::cli {

namespace {

struct ChatArgs {
  TextModelArgs model;
  GenerateParams gen;
  std::string chat_template;
  std::string system;
};

std::string token_text_or(const text::Vocab& v, text::TokenId id, const char* fallback) {
  return id == text::token_null ? fallback : v.token_text(id);
}

void chat_run(ChatArgs& a) {
  LoadedText t = text_model_load(a.model);
  const text::Vocab& vocab = t.gen->vocab();
  std::string jinja;
  if (const GgufValue* v = t.model->gguf().find("tokenizer.chat_template"); v && v->type() == GgufType::STRING)
    jinja = v->as_string();
  const ChatTemplate tmpl = chat_template_resolve(a.chat_template, jinja);
  const std::string bos = token_text_or(vocab, vocab.data().bos, "<s>");
  const std::string eos = token_text_or(vocab, vocab.data().eos, "</s>");
  const bool interactive = isatty(STDIN_FILENO);
  if (interactive)
    std::fprintf(stderr, "aigc chat: %s, template %s. Type a message; /reset forgets, /exit ends.\n",
                 a.model.model.empty() ? "(built-in)" : a.model.model.c_str(), std::string(chat_template_name(tmpl)).c_str());

  std::vector<ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  const size_t first_turn = history.size();
  std::string line;
  while (true) {
    if (interactive) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.resize(first_turn);
      continue;
    }
    if (line.empty()) continue;
    history.push_back({"user", line});
    std::vector<text::TokenId> tokens;
    while (true) {  // drop the oldest turns until the conversation fits, leaving room for a reply
      const std::string prompt = chat_template_render(tmpl, history, true, bos, eos);
      tokens = vocab.encode(prompt, {.add_special = true, .parse_special = true});
      if (static_cast<int64_t>(tokens.size()) + 64 < t.gen->n_ctx() || history.size() <= first_turn + 1) break;
      history.erase(history.begin() + static_cast<std::ptrdiff_t>(first_turn));
    }
    try {
      const GenerateResult r = t.gen->generate(tokens, a.gen, [](std::string_view s) {
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
        return true;
      });
      std::fputc('\n', stdout);
      std::fflush(stdout);
      history.push_back({"assistant", r.text});
      log_info("{} prompt tokens evaluated ({} reused), {} generated, {:.1f} tok/s", r.n_prompt_eval,
               r.n_prompt - r.n_prompt_eval, r.n_generated,
               r.generate_seconds > 0 ? r.n_generated / r.generate_seconds : 0.0);
    } catch (const Error& e) {  // e.g. one message longer than the context: say so, keep chatting
      std::fprintf(stderr, "aigc: error: %s\n", e.what());
      history.pop_back();
    }
  }
}

}  // namespace

void command_chat_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat", "Chat with a model interactively (one message per line on stdin)");
  auto a = std::make_shared<ChatArgs>();
  a->gen.n_predict = -1;
  text_model_options_add(cmd, a->model);
  cmd->add_option("--chat-template", a->chat_template,
                  "Template family, overriding the model's (" + chat_template_names() + ")")
      ->type_name("NAME");
  cmd->add_option("--system", a->system, "System message at the start of the conversation");
  cmd->add_option("-n,--n-predict", a->gen.n_predict, "Most tokens per reply; -1 = until the model ends its turn")
      ->default_val(-1);
  cmd->add_option("--stop", a->gen.stop, "Also end a reply at this text (repeatable)")->type_name("TEXT");
  sampling_options_add(cmd, a->gen.sampling);
  cmd->callback([a]() { chat_run(*a); });
}

}  // namespace aigc::cli
