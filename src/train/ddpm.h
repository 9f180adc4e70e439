// The DDPM training objective's pieces (Ho et al. 2020), as the image trainer uses them:
//   alpha_bar(t) = prod_{s<=t} (1 - beta_s), betas linear from beta_start to beta_end over T steps;
//   x_t = sqrt(alpha_bar(t)) x0 + sqrt(1 - alpha_bar(t)) eps;  the model predicts eps (MSE);
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

struct ImageBatchOptions {
  uint64_t seed = 1;
  bool glyphs = false;        // digit/letter samples too (shapes_dataset.h)
  float caption_dropout = 0.1f;  // probability that a sample's caption is replaced by the empty one
};

// Fills the trainer's inputs for training step `step`: B data set samples (indices step*B ..),
// pixels scaled to [-1, 1], a timestep and Gaussian noise per sample (a generator seeded by seed and
// step: a resumed run draws the same batches), x_t, the timestep embedding and the caption tokens.
// The trainer's config must have text_len == kShapesCaptionTokens, text_vocab >= shapes_vocab_size().
void image_batch_fill(UnetTrainer& u, int64_t batch, int64_t step, const ImageBatchOptions& o,
                      std::span<const float> alphas_cumprod);

}  // namespace aigc::train
