// The checkpoint of aigc's own text-to-image model: a small pixel-space diffusion model trained by
// `aigc train image` (architecture: train/unet_tiny.h), run by `aigc image` with the samplers of
// image/sampler.h. One .safetensors file:
//   tensors   every parameter of UnetTrainer under its graph name ("text.tok", "res0.conv1.w", ...), F32
//   metadata  "aigc.model"    = "pixel-diffusion"   (how a loader recognises the file)
//             "aigc.config"   = JSON {"image", "ch", "groups", "t_dim", "text_vocab", "text_len",
//                               "text_dim", "heads", "eps", "schedule": {"kind": "linear",
//                               "beta_start", "beta_end", "steps"}, "prediction": "epsilon" | "v"}
//                               (prediction: what the UNet outputs, train/ddpm.h; absent means epsilon)
//             "aigc.vocab"    = JSON array of the caption words, index = token id
//                               (0 pads, 1 is the empty caption: classifier-free guidance's uncond)
//             "aigc.training" = JSON, informative only (steps, batch, seed, seconds, losses, data set)
// Everything read is checked: a wrong or hostile file is one aigc::Error naming the file and field.
// "aigc.config" also holds UnetConfig's "levels", "ch1", "ch2": always written; when absent (files of
// the first version) read as 1, 0, 0.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "train/ddpm.h"
#include "train/unet_tiny.h"

namespace aigc {
class SafetensorsFile;
}

namespace aigc::image {

inline constexpr const char* kPixelDiffusionModel = "pixel-diffusion";

struct PixelDiffusionConfig {
  train::UnetConfig unet;
  train::DdpmSchedule schedule;        // linear betas (the DDPM paper's)
  train::DiffusionTarget prediction = train::DiffusionTarget::Epsilon;  // eps or v
  std::vector<std::string> vocab;      // caption words by token id
  std::string training_json = "{}";    // "aigc.training"
};

struct PixelDiffusionFile {
  PixelDiffusionConfig config;
  std::map<std::string, Tensor> params;  // F32, owned copies, shapes as the graph declares them
};

// True when the safetensors file says it is a pixel-diffusion checkpoint ("aigc.model").
bool pixel_diffusion_is(const SafetensorsFile& file);
// Opens PATH and reads config and parameters; checks every parameter UnetTrainer(config) declares
// is present with its shape and nothing else is in the file.
PixelDiffusionFile pixel_diffusion_read(const std::string& path);
// The same on an opened file (`where` names it in messages): the entry point of the fuzz target.
PixelDiffusionFile pixel_diffusion_parse(const SafetensorsFile& file, const std::string& where);
// Writes the parameters of `trainer`'s graph (written as PATH.tmp, then renamed).
void pixel_diffusion_write(const std::string& path, const PixelDiffusionConfig& config, train::UnetTrainer& trainer);
// Copies file parameters into `trainer` (built with the file's config); aigc::Error on a mismatch.
void pixel_diffusion_params_load(const PixelDiffusionFile& file, train::UnetTrainer& trainer);

}  // namespace aigc::image
