// What both image generators share (sd_generate, image/sd_pipeline.h, in latent space, and
// pixel_diffusion_generate, image/pixel_diffusion.h, in pixel space): the model-independent
// parameter checks, batch copies, and mask blending after a sampler step.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "image/noise_schedule.h"
#include "image/sampler.h"
#include "image/sd_pipeline.h"

namespace aigc::image {

// Batch count and size, init image and mask (shapes, a mask needs an image, strength), hires scale
// 1..4 with its strength and steps, the preview interval: aigc::Error naming the flag. Sizes are
// the caller's (they depend on the model).
void generate_params_check(const SdGenerateParams& p);

// [1, ...] -> [B, ...] (B copies).
Tensor batch_repeat(const Tensor& x, int64_t B);

// Inpainting by mask blending, after step `step` (0-based, from the plan's start) of plan `pl`:
// where mask m ([1, 1, h, w], 1 = repaint) is below 1, x ([B, C, h, w], the sampler's own state,
// written in place) becomes m x + (1 - m) * (init at the noise level after the step, with the
// run's initial noise): init + sigma z for the k-diffusion samplers, sqrt(abar) init +
// sqrt(1 - abar) z in DDPM space (the clean init after the last step).
void mask_blend(const Tensor& x, const Tensor& mask, const Tensor& init, const Tensor& noise, const SamplerPlan& pl,
                int step, const NoiseSchedule& schedule);

}  // namespace aigc::image
