#include "cli/text_options.h"

#include <algorithm>

#include "cli/builtin_models.h"
#include "core/log.h"

namespace aigc::cli {

void text_model_options_add(CLI::App* cmd, TextModelArgs& a) {
  cmd->add_option("-m,--model", a.model,
                  std::string("GGUF model file (architectures: ") + text_model_arch_names() +
                      "); default: the built-in model, a small GPT aigc trained on the King James Bible")
      ->type_name("FILE");
  cmd->add_option("-c,--ctx-size", a.n_ctx, "Context size in tokens (0: the model's, at most 4096)")
      ->default_val(0)
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-b,--batch-size", a.n_batch, "Most prompt tokens per forward pass")
      ->default_val(512)
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_flag("--no-mmap", a.no_mmap, "Read the model into memory instead of mapping it");
  cmd->add_flag("--mlock", a.mlock, "Pin the model in RAM (no paging out)");
  cache_type_options_add(cmd, a.cache_type_k, a.cache_type_v);
}

void cache_type_options_add(CLI::App* cmd, std::string& k, std::string& v) {
  cmd->add_option("--cache-type-k", k, "KV cache type of the keys: f32, or f16 (half the cache memory, keys rounded to f16)")
      ->default_val("f32")
      ->check(CLI::IsMember({"f32", "f16"}));
  cmd->add_option("--cache-type-v", v, "KV cache type of the values: f32 or f16")
      ->default_val("f32")
      ->check(CLI::IsMember({"f32", "f16"}));
}

DType kv_cache_type(const std::string& name) { return name == "f16" ? DType::F16 : DType::F32; }

void sampling_options_add(CLI::App* cmd, SamplingParams& p) {
  cmd->add_option("--temp", p.temp, "Temperature; 0 = greedy")->default_val(p.temp);
  cmd->add_option("--top-k", p.top_k, "Top-k sampling; 0 = off")->default_val(p.top_k);
  cmd->add_option("--top-p", p.top_p, "Top-p (nucleus) sampling; 1 = off")->default_val(p.top_p);
  cmd->add_option("--min-p", p.min_p, "Min-p sampling; 0 = off")->default_val(p.min_p);
  cmd->add_option("--repeat-penalty", p.repeat_penalty, "Penalty for repeated tokens; 1 = off")
      ->default_val(p.repeat_penalty);
  cmd->add_option("--repeat-last-n", p.repeat_last_n, "Tokens the penalties look back over")
      ->default_val(p.repeat_last_n);
  cmd->add_option("--frequency-penalty", p.frequency_penalty, "OpenAI-style frequency penalty; 0 = off")
      ->default_val(p.frequency_penalty);
  cmd->add_option("--presence-penalty", p.presence_penalty, "OpenAI-style presence penalty; 0 = off")
      ->default_val(p.presence_penalty);
  cmd->add_option("-s,--seed", p.seed, "Random seed; -1 = random (printed with -v)")->default_val(p.seed);
}

LoadedText text_model_load(const TextModelArgs& args) {
  TextModelArgs a = args;
  if (a.model.empty()) {
    a.model = builtin_model_path(kBuiltinTextModel);
    log_info("no -m given: the built-in model {}", a.model);
  }
  LoadedText t;
  t.model = aigc::text_model_load(a.model, {.use_mmap = !a.no_mmap, .mlock = a.mlock});
  const TextModel& m = *t.model;
  const int64_t n_ctx_train = m.n_ctx_train();
  int64_t n_ctx = a.n_ctx > 0 ? a.n_ctx : std::min<int64_t>(n_ctx_train > 0 ? n_ctx_train : 4096, 4096);
  if (n_ctx_train > 0 && n_ctx > n_ctx_train)
    log_warn("context {} is longer than the model was trained for ({}); quality may drop", n_ctx, n_ctx_train);
  t.gen = std::make_unique<TextGenerator>(m, TextContextParams{.n_ctx = n_ctx,
                                                                .n_batch = a.n_batch,
                                                                .cache_type_k = kv_cache_type(a.cache_type_k),
                                                                .cache_type_v = kv_cache_type(a.cache_type_v)});
  log_info("model {} ({}): {} layers, n_embd {}, vocab {}, context {}", a.model, m.arch(), m.n_layer(), m.n_embd(),
           m.n_vocab(), n_ctx);
  return t;
}

}  // namespace aigc::cli
