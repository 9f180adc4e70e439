// The Stable Diffusion pipeline: prompt -> images, with every mode `aigc image` offers.
//
//   txt2img      noise -> sampler (UNet with classifier-free guidance: cond and uncond as one UNet
//                batch of 2B) -> VAE decode (or TAESD with --taesd).
//   img2img      the init image is resized to cover W x H and centre-cropped, encoded by the VAE,
//                and its latent is the posterior MEAN times 0.18215 (deterministic: the posterior's
//                std is tiny, and the seeded noise stream stays the sampler's alone); the sampler
//                starts from it noised to the strength's level (sampler.h: int(steps * strength)
//                steps run).
//   sketch       sketch-to-image is img2img from a drawing: pass the sketch as the init image and a
//                strength of about 0.6-0.8 (higher follows the prompt more, lower the drawing).
//   inpainting   mask: white (>= 0.5 luminance) = repaint, black = keep; resized like the image.
//                9-channel inpainting UNets get [latent, mask (8x8 cell mean), masked-image latent]
//                (the masked image is the init image with the repaint area set to 0 in [-1, 1]);
//                ordinary checkpoints get mask blending: after each step, where the latent mask m
//                is below 1 the latent becomes m * x + (1 - m) * (init latent noised to the step's
//                level with the run's initial noise). Both end with a pixel composite: the output
//                is mask * generated + (1 - mask) * init image. Without an init image an inpainting
//                UNet runs txt2img (mask all 1, masked image 0).
//   hires fix    after the first pass at W x H, the latent is upscaled x scale (bilinear, or
//                nearest) and an img2img pass runs at the larger size with hires_strength
//                (default 0.5) and hires_steps (default: steps), continuing the image's noise stream.
// Batches: batch_count batches of batch_size images; image i of the run has seed + i (noise.h).
// Components are loaded when needed and, with release_components, freed when no longer needed
// (text encoder after the prompts are encoded, UNet after sampling), so the peak is one of them
// plus activations.
//
//   SdModel model = SdModel::open("v1-5.safetensors");
//   SdGenerateParams p;  p.prompt = "a red bicycle";  p.seed = 7;
//   std::vector<Tensor> images = sd_generate(model, p);   // each f32 [1, 3, 512, 512] in [0, 1]
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "image/sampler.h"
#include "image/sd_model.h"

namespace aigc {
class Taesd;
}

namespace aigc::image {

struct SdGenerateParams {
  std::string prompt, negative_prompt;
  int width = 512, height = 512;
  SampleParams sample;               // prediction is taken from the model; strength from below
  bool sample_spacing_set = false;   // false: the model's scheduler spacing for DDIM/DDPM
  uint64_t seed = 42;
  int batch_count = 1, batch_size = 1;
  int clip_skip = 0;                 // 0: the model's default; 1 = last layer (A1111 numbering)
  Tensor init_image;                 // undefined, or f32 [1, 3, h, w] in [0, 1], any size
  Tensor mask;                       // undefined, or f32 [1, 3 or 1, h, w] in [0, 1]; needs init_image
  double strength = 0.75;            // img2img / inpainting
  int hires_scale = 1;               // 1: no hires pass
  int hires_steps = 0;               // 0: the first pass's steps
  double hires_strength = 0.5;
  bool hires_nearest = false;
  Taesd* taesd = nullptr;            // a TAESD decoder: final decode and previews (else the VAE)
  bool taesd_final = true;           // false: TAESD only for previews
  int preview_every = 0;             // steps between previews; 0: none
  bool release_components = true;
  std::vector<Tensor>* latents_out = nullptr;  // if set: each batch's final latent [B, 4, h, w] (tests)
};

struct SdProgress {
  enum class Stage { TextEncode, ImageEncode, Load, Sample, Hires, Decode };
  Stage stage = Stage::Sample;
  int batch = 0, batch_count = 1;    // which batch
  int step = 0, steps = 0;           // Sample / Hires: steps done, of steps (0: the pass starts)
};
using SdProgressFn = std::function<void(const SdProgress&)>;
// A preview of batch `batch` after `step` steps: f32 [B, 3, H, W] in [0, 1] (TAESD when given,
// else a linear latent -> RGB approximation at latent resolution).
using SdPreviewFn = std::function<void(int batch, int step, const Tensor& rgb)>;

// Returns batch_count * batch_size images, f32 [1, 3, H, W] in [0, 1] (H, W of the last pass).
// aigc::Error for bad parameters (size, strength, a mask without an image, ...).
std::vector<Tensor> sd_generate(SdModel& model, const SdGenerateParams& p, const SdProgressFn& progress = {},
                                const SdPreviewFn& preview = {});

// SD images are multiples of 8 pixels (the VAE's scale); the UNet handles latents of any size (odd
// sizes halve rounding up and upsample back to the skip's size). Checks width and height
// (image_size_check), aigc::Error with the nearest sizes as the hint.
constexpr int kSdSizeMultiple = 8;
void sd_size_check(int width, int height);

// A cheap latent -> RGB preview for SD 1.x/2.x latents (fixed 4 x 3 linear map), [B, 3, h, w] in [0, 1].
Tensor sd_latent_preview(const Tensor& latent);

}  // namespace aigc::image
