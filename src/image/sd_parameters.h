// The generation parameters as AUTOMATIC1111's webui writes them into a PNG's "parameters" text
// chunk, so that existing tools (webui's PNG Info, ComfyUI, civitai) read them back:
//
//   a cat sitting on a mat
//   Negative prompt: ugly, blurry
//   Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 42, Size: 512x512, Model: v1-5
//
// Line 1..n: the prompt (may span lines); then "Negative prompt: ..." (omitted when empty); the
// last line: "Key: value" pairs joined by ", " (a value holding ',', ':' or '"' is written quoted
// with JSON escapes, as webui's quote() does).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "image/sampler.h"

namespace aigc::image {

struct SdGenerateParams;
struct SdModelInfo;

struct SdParameters {
  std::string prompt, negative_prompt;
  std::vector<std::pair<std::string, std::string>> fields;  // in order: {"Steps", "20"}, ...

  const std::string* field(std::string_view key) const;
};

std::string sd_parameters_format(const SdParameters& p);
// Reads the text back (webui's parse_generation_parameters, for what it writes).
SdParameters sd_parameters_parse(std::string_view text);

// What `aigc image` and the server write into each PNG: the parameters of image `batch_pos` (of
// its batch) generated with `seed` by a run with `p` on model `info`.
SdParameters sd_parameters_of(const SdGenerateParams& p, const SdModelInfo& info, uint64_t seed, int batch_pos);

// webui's sampler names: "Euler", "Euler a", "Heun", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "DDPM", "LCM".
std::string_view sd_sampler_a1111_name(SamplerKind kind);

}  // namespace aigc::image
