// `aigc train image`: the small text-conditioned UNet (train/unet_tiny.h) trained from scratch as a
// pixel-space DDPM (train/ddpm.h) on the captioned shapes data set (train/shapes_dataset.h),
// written as a pixel-diffusion checkpoint (image/pixel_diffusion_file.h) that `aigc image` runs.
//
// Data: step s trains on samples s*B .. s*B+B-1 of the data set (seed), each with its own timestep
// and noise, a caption dropped (the empty caption) with probability caption_dropout; a resumed run
// draws the same batches as an uninterrupted one. Validation: eval_batches batches of a data set
// with another, fixed seed, with fixed timesteps and noise and no caption dropout, so the number
// is comparable across steps and runs.
// Target: prediction epsilon (the model predicts the noise) or v (v-prediction, train/ddpm.h); the
// checkpoint says which, and `aigc image` samples accordingly. Validation uses the same target.
// EMA (ema > 0): an exponential moving average of the weights after every optimiser step, with the
// warm-up d = min(ema, (1 + step) / (10 + step)) (train/ema.h); validation runs on the EMA weights
// and OUT holds them.
// Checkpoints: OUT (the model: the EMA weights when ema > 0, else the raw ones) and OUT.optim (AdamW
// moments, the step, the loss history; with EMA also the raw weights "params" and the average "ema"),
// written every save_every steps and at the end; resume continues from them exactly (a resumed run
// equals an uninterrupted one bit for bit, on one thread).
// Output: a progress bar on stderr (step, smoothed loss, samples/s, ETA), validation loss every
// eval_every steps, a loss-curve PNG at the end.
#pragma once

#include <cstdint>
#include <string>

#include "train/adamw.h"
#include "train/ddpm.h"
#include "train/unet_tiny.h"

namespace aigc::train {

struct TrainImageOptions {
  std::string out = "image.safetensors";
  std::string curve;           // loss-curve PNG; empty: OUT with .png added
  UnetConfig model{.image = 32, .ch = 32, .groups = 8, .t_dim = 32, .text_vocab = 0, .text_len = 0, .text_dim = 32,
                   .heads = 4};  // text_vocab / text_len are the data set's
  DdpmSchedule schedule;
  int64_t batch = 32;
  int64_t steps = 2000;
  CosineSchedule lr{2e-3f, 1e-4f, 100, 2000};
  AdamWParams adamw{.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f, .grad_clip = 1.0f};
  uint64_t seed = 1;
  bool glyphs = false;          // digit/letter samples (a quarter of the data; needs the DejaVu font)
  float caption_dropout = 0.1f;
  DiffusionTarget prediction = DiffusionTarget::Epsilon;  // the regression target (train/ddpm.h)
  float ema = 0.0f;             // EMA decay of the weights, in [0, 1); 0: off (typical: 0.999)
  int64_t eval_every = 250;
  int64_t eval_batches = 4;
  int64_t save_every = 500;
  bool resume = false;
  double max_seconds = 0;       // > 0: stop (and save) after this much training time
};

struct TrainImageResult {
  int64_t steps_done = 0;
  float train_loss = 0;  // mean of the last 50 steps
  float val_loss = 0;    // last validation (on the EMA weights when ema > 0)
  double seconds = 0;    // training time of this run
  double samples_per_second = 0;
};

// The data seed of the validation set (never a training seed in practice).
inline constexpr uint64_t kImageValSeed = 0x5EED0F0A1DA7Aull;

TrainImageResult train_image_run(const TrainImageOptions& o);

}  // namespace aigc::train
