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

// The built-in image model: aigc's own pixel-diffusion model of captioned coloured shapes
// (scripts/train_image_default.sh; image/pixel_diffusion.h).
constexpr std::string_view kBuiltinImageModel = "shapes.safetensors";

// The path of built-in model NAME; aigc::Error listing the places looked at when it is missing
// (`how_to_make`, when given, is added to the hint).
std::string builtin_model_path(std::string_view name, std::string_view how_to_make = {});
// builtin_model_path(kBuiltinImageModel), saying how to make it when it is missing.
std::string builtin_image_model_path();

}  // namespace aigc::cli
