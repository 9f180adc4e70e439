// aigc tokenize -m FILE -p TEXT: the token ids of a text under a model's tokenizer (works on
// vocab-only GGUF files). One line of space-separated ids, or JSON with --json.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "text/vocab.h"

namespace aigc::cli {

namespace {

struct TokenizeArgs {
  std::string model;
  std::string prompt;
  bool json = false;
  bool add_special = false;
  bool parse_special = false;
};

void tokenize_run(const TokenizeArgs& a) {
  const GgufFile file = GgufFile::open(a.model);
  const text::Vocab vocab = text::vocab_load_gguf(file);
  text::EncodeOptions opt;
  opt.add_special = a.add_special;
  opt.parse_special = a.parse_special;
  const std::vector<text::TokenId> ids = vocab.encode(a.prompt, opt);

  std::string out;
  if (a.json) {
    nlohmann::json j;
    j["ids"] = ids;
    j["n_tokens"] = ids.size();
    out = j.dump() + "\n";
  } else {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void command_tokenize_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text under a model's tokenizer");
  auto args = std::make_shared<TokenizeArgs>();
  cmd->add_option("-m,--model", args->model, "GGUF model or vocab-only file")->required()->type_name("FILE");
  cmd->add_option("-p,--prompt", args->prompt, "Text to tokenize")->required();
  cmd->add_flag("--json", args->json, "Print JSON: {\"ids\": [...], \"n_tokens\": N}");
  cmd->add_flag("--add-special", args->add_special,
                "Add the BOS/EOS tokens the model asks for (BERT: [CLS] ... [SEP])");
  cmd->add_flag("--parse-special", args->parse_special,
                "Read control tokens such as <|endoftext|> in the text as tokens");
  cmd->callback([args]() { tokenize_run(*args); });
}

}  // namespace aigc::cli
