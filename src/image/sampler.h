// Diffusion samplers: turn noise into a latent with a Denoiser (image/denoiser.h).
//
// Two families, each in the space its reference defines:
//  - k-diffusion samplers (crowsonkb/k-diffusion sampling.py, A1111's names), on noise levels
//    sigma_0 > ... > sigma_n = 0, latent x = x0 + sigma * noise, start x = sigma_0 * noise:
//      Euler           x += (x - D) / sigma * (sigma_next - sigma)
//      EulerAncestral  eta 1: sigma_up = sqrt(s_next^2 (s^2 - s_next^2) / s^2), sigma_down =
//                      sqrt(s_next^2 - sigma_up^2); Euler step to sigma_down, + sigma_up * noise
//      Heun            Euler predictor, trapezoid corrector (Euler on the last step, sigma_next = 0)
//      Dpmpp2m         DPM-Solver++(2M): first order on the first and last step, else the
//                      2nd-order multistep with r = h_last / h
//      Dpmpp2mKarras   Dpmpp2m on the karras schedule (the only difference)
//    Schedule: SigmaSchedule::Default means Normal (A1111 "normal"), Karras for Dpmpp2mKarras;
//    Karras or Trailing (trailing timesteps -> sigmas, for SD-Turbo) can be asked for.
//  - diffusers schedulers, in the DDPM space x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise,
//    start x = noise, the model is called on x itself at integer t:
//      Ddim  DDIMScheduler.step with eta (noise when eta > 0); prev_t = t - 1000 // steps;
//            abar_prev = abar_0 below t = 0 (SD's set_alpha_to_one = false)
//      Ddpm  DDPMScheduler.step, fixed_small variance; prev_t = the next timestep (-1 at the end,
//            abar = 1 there); noise whenever t > 0
//      Lcm   LCMScheduler.step: boundary scalings c_skip = 0.25 / ((10 t)^2 + 0.25),
//            c_out = 10 t / sqrt((10 t)^2 + 0.25); noise between steps, none after the last;
//            returns the last `denoised`
//    Timesteps: Ddim and Ddpm use TimestepSpacing `spacing` (default Leading with offset 1, as the
//    SD 1.x / 2.x scheduler configs; Trailing for SD-Turbo); Lcm uses timesteps_lcm (50-step grid).
//
// Defaults the CLI will use (SampleParams' defaults; SD 1.x / 2.x unless noted):
//   sampler  euler_a (A1111's default);  steps 20;  cfg 7;  prediction epsilon (v for SD 2.x 768-v)
//   euler, euler_a, heun, dpm++2m   -> normal sigmas (A1111 "normal": t = linspace(999, 0, steps))
//   dpm++2m_karras                  -> karras sigmas (rho 7, sigma 14.6146 .. 0.0292)
//   ddim, ddpm                      -> leading timesteps + offset 1 (the SD scheduler configs)
//   lcm                             -> timesteps_lcm (50-step grid); use cfg 1 (LCM models embed
//                                      guidance; an LCM-LoRA may take 1..2)
//   SD-Turbo                        -> euler with SigmaSchedule::Trailing (diffusers'
//                                      EulerDiscreteScheduler, timestep_spacing "trailing") or
//                                      ddim with TimestepSpacing::Trailing; 1-4 steps, cfg 1
//
// img2img (init_latent given, strength in (0, 1]):
//   all but Lcm: the schedule for `steps`, started at index steps - int(steps * strength), so
//     int(steps * strength) steps run (diffusers' img2img convention; A1111 runs one step more).
//     The init latent is noised to the start: x = init + sigma * noise (k-diffusion) or
//     sqrt(abar_t) init + sqrt(1 - abar_t) noise (DDPM space).
//   Lcm: diffusers' LCM img2img: timesteps_lcm(steps, 50, strength), all `steps` run.
//
//   NoiseSchedule sched = NoiseSchedule::sd();
//   SampleParams p;  p.sampler = SamplerKind::Dpmpp2mKarras;  p.steps = 20;  p.cfg_scale = 7.5f;
//   auto shape = latent_shape(batch, 512, 512);               // image/image_size.h
//   Tensor noise = Tensor::empty(DType::F32, shape);
//   SeededNoise rng(seed, batch);  rng.noise_fill(noise);      // image/noise.h
//   Tensor latent = sampler_run(unet_fn, sched, p, noise, nullptr, rng);   // -> VAE decode
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "image/denoiser.h"
#include "image/noise.h"
#include "image/noise_schedule.h"

namespace aigc::image {

enum class SamplerKind { Euler, EulerAncestral, Heun, Dpmpp2m, Dpmpp2mKarras, Ddim, Ddpm, Lcm };
enum class SigmaSchedule { Default, Normal, Karras, Trailing };

struct SampleParams {
  SamplerKind sampler = SamplerKind::EulerAncestral;
  SigmaSchedule schedule = SigmaSchedule::Default;      // k-diffusion samplers only
  TimestepSpacing spacing = TimestepSpacing::Leading;   // Ddim / Ddpm only
  int steps = 20;
  float cfg_scale = 7.0f;                               // 1: no guidance, the model skips uncond
  Prediction prediction = Prediction::Epsilon;
  double eta = 0.0;                                     // Ddim only
  double strength = 1.0;                                // img2img only, (0, 1]
  int lcm_original_steps = 50;                          // Lcm only
};

// What a run will do: k-diffusion samplers fill `sigmas` (steps + 1, ends in 0), the others
// `timesteps`; `start` is the first step index run (img2img), `steps` the number of steps.
struct SamplerPlan {
  std::vector<double> sigmas;
  std::vector<int> timesteps;
  int start = 0;
  bool uses_sigmas() const { return !sigmas.empty(); }
  int steps() const {
    return static_cast<int>(uses_sigmas() ? sigmas.size() - 1 : timesteps.size()) - start;
  }
};

// Checks the parameters (aigc::Error on bad ones) and builds the plan. img2img: whether an init
// latent will be given (strength applies only then).
SamplerPlan sampler_plan(const NoiseSchedule& schedule, const SampleParams& p, bool img2img);

// Called after each step with the step number (0-based, counted from the first step run) and
// the latent after that step (in the sampler's own space, see above).
using StepFn = std::function<void(int step, const Tensor& x)>;

// Runs a sampler. noise: [B, C, H, W] standard normal (the initial noise); init_latent: null for
// txt2img, else the clean latent [B, C, H, W] for img2img; noise_source: noise for the ancestral
// steps (Euler a, Ddim with eta > 0, Ddpm, Lcm). Returns the final latent [B, C, H, W].
Tensor sampler_run(const ModelFn& model, const NoiseSchedule& schedule, const SampleParams& p,
                   const Tensor& noise, const Tensor* init_latent, NoiseSource& noise_source,
                   const StepFn& on_step = {});

// "euler", "euler_a", "heun", "dpm++2m", "dpm++2m_karras", "ddim", "ddpm", "lcm" (aigc::Error else).
SamplerKind sampler_kind_parse(std::string_view name);
std::string_view sampler_kind_name(SamplerKind kind);

}  // namespace aigc::image
