// The models aigc ships (trained by aigc itself, committed under models/), so a fresh clone runs
// with no download. Looked for in $AIGC_MODELS_DIR, then next to the binary: <exe>/../models
// (a build folder inside the checkout), <exe>/models, <exe>/../share/aigc/models (installed).
#pragma once

#include <string>
#include <string_view>

namespace aigc::cli {

// The built-in text model: a 2.6M-parameter Llama-architecture GPT trained on the King James Bible
// (scripts/train_text_default.sh), Q8_0.
constexpr std::string_view kBuiltinTextModel = "kjv.gguf";

// The path of built-in model NAME; aigc::Error listing the places looked at when it is missing.
std::string builtin_model_path(std::string_view name);

}  // namespace aigc::cli
