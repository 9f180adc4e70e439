#include "image/noise_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace aigc::image {

namespace {

void steps_check(int steps, int most) {
  if (steps < 1 || steps > most)
    error_throw(fmt::format("sampling steps must be in [1, {}], got {}", most, steps), "--steps",
                "pass e.g. --steps 20");
}

}  // namespace

NoiseSchedule NoiseSchedule::sd() { return NoiseSchedule(0.00085, 0.012, 1000); }

NoiseSchedule::NoiseSchedule(double beta_start, double beta_end, int train_steps) {
  AIGC_ASSERT(train_steps >= 2 && beta_start > 0 && beta_end < 1 && beta_start <= beta_end);
  const double a = std::sqrt(beta_start), b = std::sqrt(beta_end);
  std::vector<double> betas(train_steps);
  for (int t = 0; t < train_steps; ++t) {
    const double r = a + (b - a) * t / (train_steps - 1);  // torch.linspace(sqrt(start), sqrt(end), n)
    betas[t] = r * r;
  }
  betas_set(betas);
}

NoiseSchedule NoiseSchedule::linear(double beta_start, double beta_end, int train_steps) {
  AIGC_ASSERT(train_steps >= 2 && beta_start > 0 && beta_end < 1 && beta_start <= beta_end);
  std::vector<double> betas(train_steps);
  for (int t = 0; t < train_steps; ++t) betas[t] = beta_start + (beta_end - beta_start) * t / (train_steps - 1);
  NoiseSchedule s;
  s.betas_set(betas);
  return s;
}

void NoiseSchedule::betas_set(std::span<const double> betas) {
  const size_t n = betas.size();
  alphas_cumprod_.resize(n);
  sigmas_.resize(n);
  log_sigmas_.resize(n);
  double prod = 1.0;
  for (size_t t = 0; t < n; ++t) {
    prod *= 1.0 - betas[t];
    alphas_cumprod_[t] = prod;
    sigmas_[t] = std::sqrt((1.0 - prod) / prod);
    log_sigmas_[t] = std::log(sigmas_[t]);
  }
}

double NoiseSchedule::alphas_cumprod(int t) const {
  AIGC_ASSERT(t >= 0 && t < train_steps(), "timestep {}", t);
  return alphas_cumprod_[t];
}

double NoiseSchedule::sigma(int t) const {
  AIGC_ASSERT(t >= 0 && t < train_steps(), "timestep {}", t);
  return sigmas_[t];
}

double NoiseSchedule::sigma_to_t(double sigma) const {
  AIGC_ASSERT(sigma > 0, "sigma {}", sigma);
  const double ls = std::log(sigma);
  const int n = train_steps();
  // low: the last index whose log sigma is <= ls (0 when none), at most n - 2.
  const auto it = std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), ls);
  int low = static_cast<int>(it - log_sigmas_.begin()) - 1;
  low = std::clamp(low, 0, n - 2);
  const double lo = log_sigmas_[low], hi = log_sigmas_[low + 1];
  const double w = std::clamp((lo - ls) / (lo - hi), 0.0, 1.0);
  return (1.0 - w) * low + w * (low + 1);
}

double NoiseSchedule::t_to_sigma(double t) const {
  AIGC_ASSERT(t >= 0 && t <= train_steps() - 1, "timestep {}", t);
  const int low = static_cast<int>(std::floor(t)), high = static_cast<int>(std::ceil(t));
  const double w = t - low;
  return std::exp((1.0 - w) * log_sigmas_[low] + w * log_sigmas_[high]);
}

std::vector<double> sigmas_normal(const NoiseSchedule& s, int steps) {
  steps_check(steps, 10000);
  const double t_max = s.train_steps() - 1;
  std::vector<double> out(steps + 1, 0.0);
  for (int i = 0; i < steps; ++i) {
    // torch.linspace(t_max, 0, steps); a single step is t_max.
    const double t = steps == 1 ? t_max : t_max - t_max * i / (steps - 1);
    out[i] = s.t_to_sigma(std::max(t, 0.0));
  }
  return out;
}

std::vector<double> sigmas_karras(const NoiseSchedule& s, int steps, double rho) {
  steps_check(steps, 10000);
  const double min_inv = std::pow(s.sigma_min(), 1.0 / rho), max_inv = std::pow(s.sigma_max(), 1.0 / rho);
  std::vector<double> out(steps + 1, 0.0);
  for (int i = 0; i < steps; ++i) {
    const double ramp = steps == 1 ? 0.0 : static_cast<double>(i) / (steps - 1);
    out[i] = std::pow(max_inv + ramp * (min_inv - max_inv), rho);
  }
  return out;
}

std::vector<double> sigmas_from_timesteps(const NoiseSchedule& s, std::span<const int> timesteps) {
  std::vector<double> out;
  out.reserve(timesteps.size() + 1);
  for (int t : timesteps) {
    if (t < 0 || t >= s.train_steps())
      error_throw(fmt::format("timestep {} is outside [0, {}]", t, s.train_steps() - 1), "timesteps");
    out.push_back(s.sigma(t));
  }
  out.push_back(0.0);
  return out;
}

std::vector<int> timesteps_spaced(int steps, TimestepSpacing spacing, int train_steps, int steps_offset) {
  steps_check(steps, train_steps);
  std::vector<int> out(steps);
  for (int i = 0; i < steps; ++i) {
    const int j = steps - 1 - i;  // ascending index; the result is descending
    switch (spacing) {
      case TimestepSpacing::Leading:
        out[i] = j * (train_steps / steps) + steps_offset;
        break;
      case TimestepSpacing::Trailing:
        out[i] = static_cast<int>(std::nearbyint(train_steps - i * (static_cast<double>(train_steps) / steps))) - 1;
        break;
      case TimestepSpacing::Linspace:
        out[i] = steps == 1 ? 0 : static_cast<int>(std::nearbyint(static_cast<double>(train_steps - 1) * j / (steps - 1)));
        break;
    }
    if (out[i] < 0 || out[i] >= train_steps)  // leading + offset 1 with steps == train_steps
      error_throw(fmt::format("{} steps with leading spacing would reach timestep {}", steps, out[i]),
                  "--steps", fmt::format("use at most {} steps", train_steps - 1));
  }
  return out;
}

std::vector<int> timesteps_lcm(int steps, int original_steps, double strength, int train_steps) {
  AIGC_ASSERT(original_steps >= 1 && original_steps <= train_steps);
  if (!(strength > 0.0 && strength <= 1.0))
    error_throw(fmt::format("strength must be in (0, 1], got {}", strength), "--strength");
  const int k = train_steps / original_steps;
  const int n_origin = static_cast<int>(original_steps * strength);
  if (steps < 1 || steps > n_origin)
    error_throw(fmt::format("LCM takes 1 to {} steps here (its {}-step distillation grid x strength {}), got {}",
                            n_origin, original_steps, strength, steps),
                "--steps", "LCM is meant for 1-8 steps; raise --strength for img2img");
  std::vector<int> origin(n_origin);  // descending: n_origin * k - 1, ..., k - 1
  for (int i = 0; i < n_origin; ++i) origin[i] = (n_origin - i) * k - 1;
  std::vector<int> out(steps);
  for (int i = 0; i < steps; ++i)
    out[i] = origin[static_cast<int>(std::floor(i * (static_cast<double>(n_origin) / steps)))];  // as np.linspace
  return out;
}

}  // namespace aigc::image
