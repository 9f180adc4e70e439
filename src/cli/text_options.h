// Flags shared by the text commands (text, chat, later serve and bench): the model and its
// context, and the sampler. Names as llama.cpp's where it has them.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "text/generator.h"

namespace aigc::cli {

struct TextModelArgs {
  std::string model;
  int64_t n_ctx = 0;  // 0: min(the model's trained context, 4096)
  int64_t n_batch = 512;
  bool no_mmap = false;
  bool mlock = false;
};

void text_model_options_add(CLI::App* cmd, TextModelArgs& a);
void sampling_options_add(CLI::App* cmd, SamplingParams& p);

// Loads the model (one line on stderr with what was loaded, when verbose) and makes a generator.
struct LoadedText {
  std::unique_ptr<TextModel> model;
  std::unique_ptr<TextGenerator> gen;
};
LoadedText text_model_load(const TextModelArgs& a);

}  // namespace aigc::cli
