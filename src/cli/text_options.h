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
  std::string cache_type_k = "f32", cache_type_v = "f32";  // KV cache types (cache_type_options_add)
};

void text_model_options_add(CLI::App* cmd, TextModelArgs& a);
// --cache-type-k / --cache-type-v (llama.cpp's names): "f32" or "f16"; kv_cache_type maps one to its DType.
void cache_type_options_add(CLI::App* cmd, std::string& k, std::string& v);
DType kv_cache_type(const std::string& name);
void sampling_options_add(CLI::App* cmd, SamplingParams& p);

// Loads the model (one line on stderr with what was loaded, when verbose) and makes a generator.
struct LoadedText {
  std::unique_ptr<TextModel> model;
  std::unique_ptr<TextGenerator> gen;
};
LoadedText text_model_load(const TextModelArgs& a);

}  // namespace aigc::cli
