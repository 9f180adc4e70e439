// Inference for aigc's own pixel-space diffusion model (the checkpoint of image/pixel_diffusion_file.h,
// trained by `aigc train image`; architecture train/unet_tiny.h): prompt -> images with the samplers
// of image/sampler.h, in every mode `aigc image` offers.
//
//   model      the UnetTrainer graph run forward only (its loss node runs too: one MSE over the
//              output, negligible). One graph per (batch, image side), built on first use and kept;
//              classifier-free guidance runs cond and uncond as one batch of 2B.
//   time       the sampler's continuous timestep t (k-diffusion's sigma_to_t of the model's own
//              linear-beta schedule, NoiseSchedule::linear) -> train::timestep_embedding(t).
//   prompts    word-level tokens from the file's vocabulary: lower-cased, split on whitespace,
//              punctuation stripped from both ends of each word; a word after "letter" is looked up
//              in capitals first ("a blue letter k" -> K). At most text_len words, padded with 0.
//              An unknown word is one aigc::Error listing every word the model knows.
//              The uncond is the empty caption (id 1 then padding); a negative prompt replaces it.
//   pixels     the model works in [-1, 1] RGB at the image size; outputs are (x + 1) / 2 clamped.
//   img2img    the init image is resized to cover the size and centre-cropped, scaled to [-1, 1]
//              and noised to the strength's level (sampler.h). Sketch-to-image: img2img from a drawing.
//   inpainting mask blending in pixel space: after each step, where the mask m (white = repaint) is
//              below 1, x = m x + (1 - m) (init noised to the step's level with the run's initial
//              noise); after the last step that level is 0, so the result already keeps the init
//              image outside the mask (no separate composite).
//   hires fix  the image is upscaled x scale (bilinear or nearest) and an img2img pass runs at the
//              larger size (hires_strength, hires_steps), continuing each image's noise stream.
//   previews   the current denoised estimate x0 = (x_in - sqrt(1 - abar) eps) / sqrt(abar) (or
//              sqrt(abar) x_in - sqrt(1 - abar) v) of the last model call (guided), as an image.
//   prediction the file's (epsilon or v, pixel_diffusion_file.h), passed to the samplers' Denoiser.
// Sizes: square (the graph's images are), even (one 2x downsample; a multiple of 4 with the model's
// levels 2), up to kPixelSizeMax pixels.
//
//   PixelDiffusion model = PixelDiffusion::open("models/shapes.safetensors");
//   SdGenerateParams p;  p.prompt = "two red circles on a blue background";
//   p.width = p.height = model.image_size();  p.sample.cfg_scale = 4;
//   std::vector<Tensor> images = pixel_diffusion_generate(model, p);   // each f32 [1, 3, S, S] in [0, 1]
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "image/noise_schedule.h"
#include "image/pixel_diffusion_file.h"
#include "image/sd_model.h"
#include "image/sd_pipeline.h"

namespace aigc::image {

constexpr int kPixelSizeMax = 256;

class PixelDiffusion {
 public:
  // Reads and checks the checkpoint (pixel_diffusion_read).
  static PixelDiffusion open(const std::string& path);
  // name: what the PNG parameters call the model (the file stem).
  PixelDiffusion(PixelDiffusionFile file, std::string name);

  const PixelDiffusionConfig& config() const { return file_.config; }
  int image_size() const { return static_cast<int>(file_.config.unet.image); }
  const NoiseSchedule& schedule() const { return schedule_; }
  // For sd_parameters_of and messages: name, one-line description, the file's prediction (eps or v).
  const SdModelInfo& info() const { return info_; }

  // prompt -> text_len ids (see the file comment); aigc::Error for an unknown word or too many.
  void tokenize(std::string_view prompt, std::span<int32_t> ids) const;

  // The graph for `batch` images of side `size`, parameters loaded (built on first use, kept; a few
  // shapes at most are kept).
  train::UnetTrainer& unet(int64_t batch, int64_t size);
  // Parameters plus the activations of the graphs built so far.
  int64_t memory_bytes() const;

 private:
  PixelDiffusionFile file_;
  NoiseSchedule schedule_;
  SdModelInfo info_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<train::UnetTrainer>> unets_;
};

// The caption tokenizer on its own (config: the vocabulary and text_len).
void pixel_diffusion_tokenize(const PixelDiffusionConfig& config, std::string_view prompt, std::span<int32_t> ids);

// The samplers' ModelFn (image/denoiser.h) for B images: cond_ids [B * text_len] (image b's caption),
// uncond_ids the same for the unconditional input. With denoised set, each call also writes the
// guided denoised estimate there ([B, 3, S, S], cfg_scale as the Denoiser applies it).
class PixelUnetFn {
 public:
  PixelUnetFn(PixelDiffusion& model, std::vector<int32_t> cond_ids, std::vector<int32_t> uncond_ids, int64_t batch,
              int64_t size, float cfg_scale = 1.0f, Tensor* denoised = nullptr);
  void operator()(const Tensor& x_in, double t, Tensor& cond, Tensor* uncond);

 private:
  PixelDiffusion& model_;
  std::vector<int32_t> cond_ids_, uncond_ids_;
  int64_t B_, S_;
  float cfg_scale_;
  Tensor* denoised_;
  std::vector<float> temb_;
};

// Square, a multiple of `multiple` (2; 4 for a model of levels 2: train::unet_size_multiple), up to
// kPixelSizeMax: aigc::Error naming --width / --height otherwise.
void pixel_size_check(int width, int height, int multiple = 2);

// Like sd_generate (image/sd_pipeline.h) for a pixel-diffusion model: batch_count * batch_size
// images, image i with seed + i, each f32 [1, 3, H, W] in [0, 1]. Not applicable (aigc::Error):
// clip_skip, taesd. latents_out receives each batch's final x in [-1, 1].
std::vector<Tensor> pixel_diffusion_generate(PixelDiffusion& model, const SdGenerateParams& p,
                                             const SdProgressFn& progress = {}, const SdPreviewFn& preview = {});
// One image per prompt, in batches of p.batch_size (the last may be smaller): prompt i gets seed + i.
// p.prompt and p.batch_count are ignored. For `aigc eval image`.
std::vector<Tensor> pixel_diffusion_generate_each(PixelDiffusion& model, std::span<const std::string> prompts,
                                                  const SdGenerateParams& p, const SdProgressFn& progress = {},
                                                  const SdPreviewFn& preview = {});

// True when PATH is a safetensors file with pixel-diffusion metadata (false for anything else,
// unreadable files included: those are for the caller's usual loader to report).
bool pixel_diffusion_file_is(const std::string& path);

}  // namespace aigc::image
