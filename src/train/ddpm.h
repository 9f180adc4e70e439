// The DDPM training objective's pieces (Ho et al. 2020), as the image trainer uses them:
//   alpha_bar(t) = prod_{s<=t} (1 - beta_s), betas linear from beta_start to beta_end over T steps;
//   x_t = sqrt(alpha_bar(t)) x0 + sqrt(1 - alpha_bar(t)) eps;  the model regresses (MSE) a target:
//     epsilon  eps (Ho et al.)
//     v        v = sqrt(alpha_bar(t)) eps - sqrt(1 - alpha_bar(t)) x0 (Salimans & Ho 2022, "v-prediction",
//              as SD 2.x's 768-v models; image/denoiser.h turns it back into eps and x0);
//   the timestep enters through a sinusoidal embedding [sin(t f_i), cos(t f_i)],
//   f_i = exp(-ln(10000) i / (dim/2)), i < dim/2.
// And one batch of the shapes data set made ready for UnetTrainer (train/unet_tiny.h), with caption
// dropout (the empty caption) for classifier-free guidance.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "train/unet_tiny.h"

namespace aigc::train {

struct DdpmSchedule {
  int64_t steps = 1000;
  double beta_start = 1e-4, beta_end = 0.02;
};

// alpha_bar(t) for t = 0 .. steps-1 (accumulated in double).
std::vector<float> ddpm_alphas_cumprod(const DdpmSchedule& s);
// out [dim] (dim even) for timestep t.
void timestep_embedding(double t, std::span<float> out);

// What the model learns to predict (the trainer's regression target; the checkpoint's "prediction").
enum class DiffusionTarget { Epsilon, V };

// "epsilon" / "v" (the checkpoint's and the CLI's spelling).
const char* diffusion_target_name(DiffusionTarget t);

struct ImageBatchOptions {
  uint64_t seed = 1;
  bool glyphs = false;        // digit/letter samples too (shapes_dataset.h)
  float caption_dropout = 0.1f;  // probability that a sample's caption is replaced by the empty one
  DiffusionTarget prediction = DiffusionTarget::Epsilon;  // what UnetTrainer::noise() (the target) holds
};

// Fills the trainer's inputs for training step `step`: B data set samples (indices step*B ..),
// pixels scaled to [-1, 1], a timestep and Gaussian noise per sample (a generator seeded by seed and
// step: a resumed run draws the same batches), x_t, the timestep embedding, the caption tokens and
// the regression target (eps or v, o.prediction; the random draws do not depend on it).
// The trainer's config must have text_len == kShapesCaptionTokens, text_vocab >= shapes_vocab_size().
void image_batch_fill(UnetTrainer& u, int64_t batch, int64_t step, const ImageBatchOptions& o,
                      std::span<const float> alphas_cumprod);

}  // namespace aigc::train
