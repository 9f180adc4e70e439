// SdModel: a Stable Diffusion 1.x / 2.x checkpoint as the pipeline uses it: what it is (detected
// from its tensors), and its components (tokenizer, text encoder, UNet, VAE) loaded lazily and
// released on request, so a run holds one big component at a time.
//
// Accepted:
//   - a single .safetensors file with the original CompVis / Stability key names: UNet under
//     "model.diffusion_model.", VAE under "first_stage_model.", text encoder under
//     "cond_stage_model.transformer." (SD 1.x, Hugging Face CLIP names) or "cond_stage_model.model."
//     (SD 2.x, OpenCLIP names);
//   - a diffusers folder: model_index.json, unet/, vae/, text_encoder/ (each *.safetensors or a
//     sharded *.safetensors.index.json), tokenizer/ (vocab.json + merges.txt), and
//     scheduler/scheduler_config.json (prediction_type, timestep_spacing).
// Detection (from the tensors):
//   SD 1.x   text encoder width 768 / HF names in a single file, context 768
//   SD 2.x   OpenCLIP names / context 1024; v-prediction for single files by ComfyUI's heuristic:
//            the std of output_blocks.11.1.transformer_blocks.0.norm1.bias > 0.09 means v (768-v
//            models); diffusers folders say it in scheduler_config.json. --prediction overrides.
//   inpainting  a UNet with 9 input channels (latent, mask, masked-image latent)
//   SD-Turbo    is SD 2.1 with eps prediction: nothing to detect; its sampler settings are the user's.
// Refused with a message naming what was found: SDXL (conditioner.embedders, label_emb, context
// 2048), SD3 (joint_blocks), Flux (double_blocks), pickled .ckpt/.pt/.bin files, GGUF image models.
//
// Heads are not stored in the weights: SD 1.x uses 8 heads, SD 2.x heads of 64 channels (a diffusers
// folder's unet/config.json says which); SdModelOptions::unet_heads overrides (reduced-width test
// models).
//
//   SdModelOptions opt;  opt.precision = ops::Precision::BF16;
//   SdModel m = SdModel::open("v1-5-pruned-emaonly.safetensors", opt);
//   fmt::print("{}\n", m.info().description);          // "SD 1.x (eps), single file"
//   ClipTextModel& te = m.text_encoder();  ...;  m.text_encoder_release();
//   UNet& unet = m.unet();  ...;  m.unet_release();
//   Vae& vae = m.vae(/*with_encoder=*/false);  ...
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/cpu/precision.h"
#include "core/mapped_file.h"
#include "formats/tensor_info.h"
#include "image/clip_text_model.h"
#include "image/clip_tokenizer.h"
#include "image/denoiser.h"
#include "image/noise_schedule.h"
#include "image/sd_key_layout.h"
#include "image/unet.h"
#include "image/vae.h"

namespace aigc {
class SafetensorsFile;
}

namespace aigc::image {

enum class SdFamily { Sd1, Sd2 };

struct SdModelOptions {
  ops::Precision precision = ops::Precision::BF16;
  UNetWeightType unet_type = UNetWeightType::Default;  // Q8_0: about half the UNet's memory
  FileLoadOptions file;
  std::optional<Prediction> prediction;   // overrides the detected one
  std::string clip_vocab;                 // tokenizer file or folder; empty: search (sd_tokenizer_find)
  std::optional<UNetConfig> unet_heads;   // num_heads / num_head_channels; unset: the family's
  int64_t text_heads = 0;                 // text encoder heads; 0: width / 64
};

// What a checkpoint is. Filled by open() before any component is loaded.
struct SdModelInfo {
  SdFamily family = SdFamily::Sd1;
  KeyLayout layout = KeyLayout::CompVis;
  Prediction prediction = Prediction::Epsilon;
  bool prediction_detected = false;       // false: the family's default was assumed
  bool inpainting = false;                // 9-channel UNet
  int64_t unet_in_channels = 4;
  int64_t context_dim = 768;
  int64_t text_width = 768;
  ClipKeyNames text_names = ClipKeyNames::HuggingFace;
  TimestepSpacing spacing = TimestepSpacing::Leading;  // DDIM/DDPM timestep spacing (scheduler config)
  int clip_skip_default = 1;              // 2 for SD 2.x single files (penultimate layer)
  std::string name;                       // file or folder name, for the PNG parameters
  std::string description;                // one line: "SD 2.x (v), single file, inpainting"
};

// What a set of tensors is, without loading anything. `where` names the file in messages.
// Throws aigc::Error for a model type that is not supported (naming it) or for tensors that are no
// Stable Diffusion checkpoint at all. The prediction is left at the family default here.
SdModelInfo sd_detect_single_file(const std::vector<TensorInfo>& tensors, const std::string& where);
// ComfyUI's v-prediction heuristic on an SD 2.x single file (see the file comment).
bool sd_v_prediction_guess(const SafetensorsFile& file);
// Refuses files that are not safetensors (pickles, GGUF), naming what they are; returns when the
// file looks like safetensors.
void sd_file_kind_check(const std::string& path);
// The CLIP BPE file for a checkpoint: `explicit_path` if given, else $AIGC_CLIP_VOCAB, else
// bpe_simple_vocab_16e6.txt[.gz] next to the model or in ../shared/tokenizers/clip from the model's
// folder or the working directory. aigc::Error listing the places looked at when none is found.
std::string sd_tokenizer_find(const std::string& model_path, const std::string& explicit_path);

class SdModel {
 public:
  // PATH: a .safetensors file or a diffusers folder. Reads headers and small configs only.
  static SdModel open(const std::string& path, const SdModelOptions& options = {});
  SdModel(SdModel&&) noexcept;
  SdModel& operator=(SdModel&&) noexcept;
  ~SdModel();

  const SdModelInfo& info() const;
  const SdModelOptions& options() const;

  // Each loads on first use and stays loaded until released.
  const ClipTokenizer& tokenizer();
  ClipTextModel& text_encoder();
  UNet& unet();
  // with_encoder: also the encoder (img2img, inpainting); a loaded decoder-only VAE is reloaded.
  Vae& vae(bool with_encoder);
  void text_encoder_release();
  void unet_release();
  void vae_release();

 private:
  SdModel();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aigc::image
