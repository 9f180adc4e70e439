// The diffusion model as the samplers see it: a model callback, classifier-free guidance, and
// k-diffusion's denoised estimate D(x, sigma) for epsilon- and v-prediction models.
//
// ModelFn is the UNet (or a test's fake): it gets the model input x_in [B, C, H, W] at timestep t
// (continuous; the DDIM-family samplers pass integers) and writes the prediction (eps or v, the
// shape of x_in) into `cond`; when `uncond` is not null it also writes the unconditional (negative
// prompt) prediction there. Both are asked for in one call so a UNet can run them as one batch of
// 2B ([cond; uncond] stacked along dim 0) later.
//
// Guidance:  out = uncond + cfg_scale * (cond - uncond);  cfg_scale == 1 skips uncond entirely.
//
// k-diffusion scalings (CompVisDenoiser / CompVisVDenoiser, sigma_data = 1), x = x0 + sigma * noise:
//   c_in = 1 / sqrt(sigma^2 + 1),   x_in = c_in * x,   t = sigma_to_t(sigma)
//   epsilon:  D = x - sigma * eps
//   v:        D = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) * v
//
//   Denoiser den(my_unet, NoiseSchedule::sd(), Prediction::Epsilon, 7.5f, {1, 4, 64, 64});
//   den.denoise(x, sigma, d);          // d: D(x, sigma), [1, 4, 64, 64]
//   const Tensor& eps = den.predict(x_in, 999.0);   // guided eps at timestep 999
#pragma once

#include <functional>
#include <span>

#include "core/tensor.h"
#include "image/noise_schedule.h"

namespace aigc::image {

enum class Prediction { Epsilon, V };

using ModelFn = std::function<void(const Tensor& x_in, double t, Tensor& cond, Tensor* uncond)>;

class Denoiser {
 public:
  // shape: the latent batch [B, C, H, W] every call will use (buffers are allocated here only).
  Denoiser(ModelFn model, const NoiseSchedule& schedule, Prediction prediction, float cfg_scale,
           std::span<const int64_t> shape);

  // Guided model output (eps or v) for model input x_in at timestep t. Valid until the next call.
  const Tensor& predict(const Tensor& x_in, double t);
  // k-diffusion D(x, sigma) into out (same shape as x); sigma > 0.
  void denoise(const Tensor& x, double sigma, Tensor& out);

  Prediction prediction() const { return prediction_; }
  const NoiseSchedule& schedule() const { return schedule_; }

 private:
  ModelFn model_;
  const NoiseSchedule& schedule_;
  Prediction prediction_;
  float cfg_scale_;
  Tensor x_in_, cond_, uncond_;
};

}  // namespace aigc::image
