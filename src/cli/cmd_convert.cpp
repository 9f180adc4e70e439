// aigc convert: other model formats to GGUF. Now: llama2.c checkpoints (--llama2c) with their
// tokenizer (--vocab), written as llama.cpp's convert-llama2c-to-ggml does (see formats/llama2c.h).
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/llama2c.h"

namespace aigc::cli {

void command_convert_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert a model to GGUF (llama2.c checkpoints for now)");
  auto model = std::make_shared<std::string>();
  auto vocab = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--llama2c", *model, "llama2.c checkpoint (.bin, legacy format, e.g. stories260K.bin)")->required();
  cmd->add_option("--vocab", *vocab, "llama2.c tokenizer (.bin, e.g. tok512.bin)")->required();
  cmd->add_option("-o,--output", *out, "GGUF file to write")->required();
  cmd->callback([model, vocab, out]() {
    const GgufWriter w = llama2c_to_gguf(*model, *vocab);
    w.write(*out);
    std::printf("wrote %s\n", out->c_str());
  });
}

}  // namespace aigc::cli
