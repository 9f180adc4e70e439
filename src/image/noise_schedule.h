// Noise schedule of Stable Diffusion (1.x / 2.x / Turbo / LCM) and the step schedules built on it
// (and the linear-beta schedule of aigc's own pixel-diffusion models: NoiseSchedule::linear).
//
// Training schedule ("scaled_linear", as the SD configs and diffusers name it):
//   beta_t  = (sqrt(0.00085) + t / 999 * (sqrt(0.012) - sqrt(0.00085)))^2,  t = 0 .. 999
//   abar_t  = prod_{s <= t} (1 - beta_s)                  (alphas_cumprod)
//   sigma_t = sqrt((1 - abar_t) / abar_t)                 (k-diffusion's noise level: x = x0 + sigma * eps)
// Everything is computed in double (ldm / diffusers keep alphas_cumprod in f32; the difference is
// ~1e-7 relative and below what any sampler can see).
//
// Continuous time (k-diffusion's DiscreteSchedule): t_to_sigma interpolates log(sigma) linearly
// between the two neighbouring integer timesteps; sigma_to_t is its inverse (clamped to [0, 999]).
//
// Step schedules (steps = number of model evaluations of a first-order sampler):
//   sigmas_normal   k-diffusion get_sigmas / A1111 "normal": t = linspace(999, 0, steps) -> sigma, then 0
//   sigmas_karras   Karras et al. 2022, rho = 7, from sigma_max to sigma_min of the model, then 0
//   sigmas_from_timesteps  given integer timesteps -> sigma_t, then 0 (e.g. trailing, for SD-Turbo)
//   timesteps_spaced  diffusers' DDIM / DDPM spacings:
//       Leading   (arange(steps) * (1000 // steps)) reversed + steps_offset   (SD 1.x / 2.x configs: offset 1)
//       Trailing  round(1000 - i * 1000 / steps) - 1, i = 0 .. steps-1          (SD-Turbo; starts at 999)
//       Linspace  round(linspace(0, 999, steps)) reversed                      (round half to even, as numpy)
//   timesteps_lcm   diffusers' LCMScheduler: the 50-step distillation grid 19, 39, .., 999 (times
//       strength), reversed, and `steps` of its entries at indices floor(i * len / steps).
//
//   NoiseSchedule s = NoiseSchedule::sd();
//   std::vector<double> sig = sigmas_karras(s, 20);            // 21 values, sig[20] == 0
//   double t = s.sigma_to_t(sig[3]);                            // the UNet's timestep for that sigma
//   std::vector<int> ts = timesteps_spaced(4, TimestepSpacing::Trailing);   // {999, 749, 499, 249}
#pragma once

#include <span>
#include <vector>

namespace aigc::image {

class NoiseSchedule {
 public:
  // Stable Diffusion's schedule: scaled_linear, beta 0.00085 .. 0.012, 1000 training steps.
  static NoiseSchedule sd();
  // Scaled-linear betas: beta_t = (sqrt(beta_start) + t / (T - 1) * (sqrt(beta_end) - sqrt(beta_start)))^2.
  NoiseSchedule(double beta_start, double beta_end, int train_steps);
  // The DDPM paper's linear betas: beta_t = beta_start + t / (T - 1) * (beta_end - beta_start)
  // (diffusers' "linear"; aigc's own pixel-diffusion models, train/ddpm.h).
  static NoiseSchedule linear(double beta_start, double beta_end, int train_steps);

  int train_steps() const { return static_cast<int>(alphas_cumprod_.size()); }
  double alphas_cumprod(int t) const;  // t in [0, train_steps)
  double sigma(int t) const;           // sqrt((1 - abar_t) / abar_t)
  double sigma_min() const { return sigmas_.front(); }
  double sigma_max() const { return sigmas_.back(); }
  // Continuous timestep for a noise level (k-diffusion DiscreteSchedule.sigma_to_t, unquantised).
  double sigma_to_t(double sigma) const;
  // Noise level at a continuous timestep in [0, train_steps - 1] (log-sigma interpolation).
  double t_to_sigma(double t) const;

 private:
  NoiseSchedule() = default;
  // betas -> alphas_cumprod, sigmas, log sigmas.
  void betas_set(std::span<const double> betas);

  std::vector<double> alphas_cumprod_, sigmas_, log_sigmas_;
};

// steps + 1 noise levels, descending, the last one 0. steps >= 1 (checked: aigc::Error).
std::vector<double> sigmas_normal(const NoiseSchedule& s, int steps);
std::vector<double> sigmas_karras(const NoiseSchedule& s, int steps, double rho = 7.0);
std::vector<double> sigmas_from_timesteps(const NoiseSchedule& s, std::span<const int> timesteps);

enum class TimestepSpacing { Leading, Trailing, Linspace };

// `steps` integer timesteps, descending (diffusers DDIMScheduler / DDPMScheduler.set_timesteps).
std::vector<int> timesteps_spaced(int steps, TimestepSpacing spacing, int train_steps = 1000,
                                  int steps_offset = 1);
// diffusers LCMScheduler.set_timesteps(steps, original_inference_steps, strength).
std::vector<int> timesteps_lcm(int steps, int original_steps = 50, double strength = 1.0,
                               int train_steps = 1000);

}  // namespace aigc::image
