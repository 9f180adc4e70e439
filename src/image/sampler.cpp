#include "image/sampler.h"

#include <cmath>

#include "core/error.h"

namespace aigc::image {

namespace {

constexpr std::string_view kNames[] = {"euler", "euler_a", "heun", "dpm++2m", "dpm++2m_karras",
                                       "ddim",  "ddpm",    "lcm"};

bool uses_sigmas(SamplerKind k) {
  return k != SamplerKind::Ddim && k != SamplerKind::Ddpm && k != SamplerKind::Lcm;
}

// Elementwise helpers over contiguous f32 buffers; arithmetic in double, stored as f32.
struct Buf {
  float* p;
  int64_t n;
  explicit Buf(Tensor& t) : p(t.ptr<float>()), n(t.numel()) {}
};

// x0 and eps from a model output m in DDPM space (diffusers' step functions).
inline void ddpm_x0_eps(Prediction pred, double a_t, double x, double m, double& x0, double& eps) {
  const double sa = std::sqrt(a_t), sb = std::sqrt(1.0 - a_t);
  if (pred == Prediction::Epsilon) {
    x0 = (x - sb * m) / sa;
    eps = m;
  } else {
    x0 = sa * x - sb * m;
    eps = sa * m + sb * x;
  }
}

class Run {
 public:
  Run(const ModelFn& model, const NoiseSchedule& s, const SampleParams& p, const SamplerPlan& plan,
      const Tensor& x, NoiseSource& noise, const StepFn& on_step)
      : s_(s), p_(p), plan_(plan), den_(model, s, p.prediction, p.cfg_scale, x.shape()), x_(x),
        noise_src_(noise), on_step_(on_step) {
    den_out_ = Tensor::empty(DType::F32, x.shape());
  }

  void k_diffusion() {
    const auto& sig = plan_.sigmas;
    const int n_sig = static_cast<int>(sig.size());
    const bool heun = p_.sampler == SamplerKind::Heun;
    const bool dpm = p_.sampler == SamplerKind::Dpmpp2m || p_.sampler == SamplerKind::Dpmpp2mKarras;
    const bool ancestral = p_.sampler == SamplerKind::EulerAncestral;
    if (heun) { x2_ = Tensor::empty(DType::F32, x_.shape()); d_ = Tensor::empty(DType::F32, x_.shape()); }
    if (dpm) old_ = Tensor::empty(DType::F32, x_.shape());
    if (ancestral) eps_ = Tensor::empty(DType::F32, x_.shape());
    Buf x(x_), D(den_out_);
    for (int i = plan_.start; i + 1 < n_sig; ++i) {
      const double s = sig[i], sn = sig[i + 1];
      den_.denoise(x_, s, den_out_);
      if (dpm) {
        Buf old(old_);
        const bool first = i == plan_.start;
        if (first || sn == 0.0) {
          if (sn == 0.0) {
            for (int64_t k = 0; k < x.n; ++k) x.p[k] = D.p[k];
          } else {
            const double h = std::log(s) - std::log(sn);
            const double a = sn / s, b = -std::expm1(-h);
            for (int64_t k = 0; k < x.n; ++k) x.p[k] = static_cast<float>(a * x.p[k] + b * D.p[k]);
          }
        } else {
          const double h = std::log(s) - std::log(sn), h_last = std::log(sig[i - 1]) - std::log(s);
          const double r = h_last / h, c_new = 1.0 + 1.0 / (2.0 * r), c_old = 1.0 / (2.0 * r);
          const double a = sn / s, b = -std::expm1(-h);
          for (int64_t k = 0; k < x.n; ++k)
            x.p[k] = static_cast<float>(a * x.p[k] + b * (c_new * D.p[k] - c_old * old.p[k]));
        }
        for (int64_t k = 0; k < x.n; ++k) old.p[k] = D.p[k];
      } else if (ancestral) {
        const double up = sn == 0.0 ? 0.0 : std::sqrt(sn * sn * (s * s - sn * sn) / (s * s));
        const double down = std::sqrt(sn * sn - up * up);
        const double dt = down - s;
        for (int64_t k = 0; k < x.n; ++k) x.p[k] = static_cast<float>(x.p[k] + (x.p[k] - D.p[k]) / s * dt);
        if (up > 0.0) {
          noise_src_.noise_fill(eps_);
          const float* e = eps_.ptr<float>();
          for (int64_t k = 0; k < x.n; ++k) x.p[k] = static_cast<float>(x.p[k] + up * e[k]);
        }
      } else if (heun && sn != 0.0) {
        Buf x2(x2_), d(d_);
        const double dt = sn - s;
        for (int64_t k = 0; k < x.n; ++k) {
          const double dk = (x.p[k] - static_cast<double>(D.p[k])) / s;
          d.p[k] = static_cast<float>(dk);
          x2.p[k] = static_cast<float>(x.p[k] + dk * dt);
        }
        den_.denoise(x2_, sn, den_out_);
        for (int64_t k = 0; k < x.n; ++k) {
          const double d2 = (x2.p[k] - static_cast<double>(D.p[k])) / sn;
          x.p[k] = static_cast<float>(x.p[k] + (d.p[k] + d2) * 0.5 * dt);
        }
      } else {  // Euler, and Heun's last step
        const double dt = sn - s;
        for (int64_t k = 0; k < x.n; ++k) x.p[k] = static_cast<float>(x.p[k] + (x.p[k] - D.p[k]) / s * dt);
      }
      if (on_step_) on_step_(i - plan_.start, x_);
    }
  }

  void ddpm_family() {
    const auto& ts = plan_.timesteps;
    const int n = static_cast<int>(ts.size());
    const int T = s_.train_steps();
    Buf x(x_);
    const bool ddim = p_.sampler == SamplerKind::Ddim, lcm = p_.sampler == SamplerKind::Lcm;
    eps_ = Tensor::empty(DType::F32, x_.shape());
    const float* e = eps_.ptr<float>();
    for (int i = plan_.start; i < n; ++i) {
      const int t = ts[i];
      const double a_t = s_.alphas_cumprod(t);
      const float* m = den_.predict(x_, t).ptr<float>();
      double x0, eps;
      if (ddim) {
        const int prev = t - T / n;
        const double a_prev = s_.alphas_cumprod(prev >= 0 ? prev : 0);
        const double var = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
        const double sd = p_.eta * std::sqrt(var);
        const double c_x0 = std::sqrt(a_prev), c_eps = std::sqrt(std::max(1.0 - a_prev - sd * sd, 0.0));
        if (p_.eta > 0) noise_src_.noise_fill(eps_);
        for (int64_t k = 0; k < x.n; ++k) {
          ddpm_x0_eps(p_.prediction, a_t, x.p[k], m[k], x0, eps);
          x.p[k] = static_cast<float>(c_x0 * x0 + c_eps * eps + (p_.eta > 0 ? sd * e[k] : 0.0));
        }
      } else if (lcm) {
        const bool last = i == n - 1;
        const double a_prev = s_.alphas_cumprod(last ? t : ts[i + 1]);
        const double st = 10.0 * t;  // timestep_scaling 10, sigma_data 0.5
        const double c_skip = 0.25 / (st * st + 0.25), c_out = st / std::sqrt(st * st + 0.25);
        if (!last) noise_src_.noise_fill(eps_);
        const double sa = std::sqrt(a_prev), sb = std::sqrt(1.0 - a_prev);
        for (int64_t k = 0; k < x.n; ++k) {
          ddpm_x0_eps(p_.prediction, a_t, x.p[k], m[k], x0, eps);
          const double d = c_out * x0 + c_skip * x.p[k];
          x.p[k] = static_cast<float>(last ? d : sa * d + sb * e[k]);
        }
      } else {  // DDPM
        const int prev = i + 1 < n ? ts[i + 1] : -1;
        const double a_prev = prev >= 0 ? s_.alphas_cumprod(prev) : 1.0;
        const double cur_alpha = a_t / a_prev, cur_beta = 1.0 - cur_alpha;
        const double c_x0 = std::sqrt(a_prev) * cur_beta / (1.0 - a_t);
        const double c_x = std::sqrt(cur_alpha) * (1.0 - a_prev) / (1.0 - a_t);
        const double sd = std::sqrt(std::max((1.0 - a_prev) / (1.0 - a_t) * cur_beta, 1e-20));
        if (t > 0) noise_src_.noise_fill(eps_);
        for (int64_t k = 0; k < x.n; ++k) {
          ddpm_x0_eps(p_.prediction, a_t, x.p[k], m[k], x0, eps);
          x.p[k] = static_cast<float>(c_x0 * x0 + c_x * x.p[k] + (t > 0 ? sd * e[k] : 0.0));
        }
      }
      if (on_step_) on_step_(i - plan_.start, x_);
    }
  }

 private:
  const NoiseSchedule& s_;
  const SampleParams& p_;
  const SamplerPlan& plan_;
  Denoiser den_;
  Tensor x_, den_out_, x2_, d_, old_, eps_;
  NoiseSource& noise_src_;
  const StepFn& on_step_;
};

}  // namespace

SamplerPlan sampler_plan(const NoiseSchedule& schedule, const SampleParams& p, bool img2img) {
  if (p.steps < 1 || p.steps > schedule.train_steps())
    error_throw(fmt::format("sampling steps must be in [1, {}], got {}", schedule.train_steps(), p.steps),
                "--steps", "pass e.g. --steps 20");
  if (!std::isfinite(p.cfg_scale))
    error_throw(fmt::format("guidance scale must be finite, got {}", p.cfg_scale), "--cfg-scale");
  if (!(p.eta >= 0.0 && p.eta <= 1e3))
    error_throw(fmt::format("eta must be >= 0, got {}", p.eta), "--eta", "0 is deterministic DDIM, 1 is DDPM-like");
  if (img2img && !(p.strength > 0.0 && p.strength <= 1.0))
    error_throw(fmt::format("strength must be in (0, 1], got {}", p.strength), "--strength",
                "0.75 keeps the layout of the init image and repaints the details");
  SamplerPlan plan;
  if (p.sampler == SamplerKind::Lcm) {
    if (p.lcm_original_steps < 1 || p.lcm_original_steps > schedule.train_steps())
      error_throw(fmt::format("LCM original steps must be in [1, {}], got {}", schedule.train_steps(),
                              p.lcm_original_steps), "lcm_original_steps");
    plan.timesteps = timesteps_lcm(p.steps, p.lcm_original_steps, img2img ? p.strength : 1.0,
                                   schedule.train_steps());
    return plan;
  }
  if (uses_sigmas(p.sampler)) {
    SigmaSchedule kind = p.schedule;
    if (kind == SigmaSchedule::Default)
      kind = p.sampler == SamplerKind::Dpmpp2mKarras ? SigmaSchedule::Karras : SigmaSchedule::Normal;
    if (kind == SigmaSchedule::Normal) plan.sigmas = sigmas_normal(schedule, p.steps);
    else if (kind == SigmaSchedule::Karras) plan.sigmas = sigmas_karras(schedule, p.steps);
    else plan.sigmas = sigmas_from_timesteps(schedule, timesteps_spaced(p.steps, TimestepSpacing::Trailing,
                                                                        schedule.train_steps()));
  } else {
    plan.timesteps = timesteps_spaced(p.steps, p.spacing, schedule.train_steps());
  }
  if (img2img) {
    const int run = static_cast<int>(p.steps * p.strength);  // diffusers: int(steps * strength)
    if (run < 1)
      error_throw(fmt::format("strength {} with {} steps runs no step", p.strength, p.steps), "--strength",
                  fmt::format("raise --strength to at least {:.3g} or --steps", 1.0 / p.steps));
    plan.start = p.steps - run;
  }
  return plan;
}

Tensor sampler_run(const ModelFn& model, const NoiseSchedule& schedule, const SampleParams& p,
                   const Tensor& noise, const Tensor* init_latent, NoiseSource& noise_source,
                   const StepFn& on_step) {
  AIGC_ASSERT(noise.type() == DType::F32 && noise.is_contiguous() && noise.ndim() == 4);
  if (init_latent && !(init_latent->same_shape(noise) && init_latent->type() == DType::F32 &&
                       init_latent->is_contiguous()))
    error_throw(fmt::format("init latent {} does not match the noise {}", init_latent->shape_str(),
                            noise.shape_str()), "init image", "the init image must have the output's size");
  const SamplerPlan plan = sampler_plan(schedule, p, init_latent != nullptr);
  Tensor x = Tensor::empty(DType::F32, noise.shape());
  const float* z = noise.ptr<float>();
  const float* x0 = init_latent ? init_latent->ptr<float>() : nullptr;
  float* xp = x.ptr<float>();
  const int64_t n = x.numel();
  if (plan.uses_sigmas()) {
    const double s = plan.sigmas[plan.start];
    for (int64_t k = 0; k < n; ++k) xp[k] = static_cast<float>((x0 ? x0[k] : 0.0) + s * z[k]);
  } else if (!x0) {
    for (int64_t k = 0; k < n; ++k) xp[k] = z[k];
  } else {
    const double a = schedule.alphas_cumprod(plan.timesteps[plan.start]);
    const double sa = std::sqrt(a), sb = std::sqrt(1.0 - a);
    for (int64_t k = 0; k < n; ++k) xp[k] = static_cast<float>(sa * x0[k] + sb * z[k]);
  }
  Run run(model, schedule, p, plan, x, noise_source, on_step);
  if (plan.uses_sigmas()) run.k_diffusion();
  else run.ddpm_family();
  return x;
}

SamplerKind sampler_kind_parse(std::string_view name) {
  for (size_t i = 0; i < std::size(kNames); ++i)
    if (kNames[i] == name) return static_cast<SamplerKind>(i);
  error_throw(fmt::format("unknown sampler '{}'", name), "--sampler",
              "one of: euler, euler_a, heun, dpm++2m, dpm++2m_karras, ddim, ddpm, lcm");
}

std::string_view sampler_kind_name(SamplerKind kind) { return kNames[static_cast<int>(kind)]; }

}  // namespace aigc::image
