#include "image/generate_shared.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace aigc::image {

void generate_params_check(const SdGenerateParams& p) {
  if (p.batch_count < 1 || p.batch_count > 100000)
    error_throw(fmt::format("batch count must be in [1, 100000], got {}", p.batch_count), "--batch-count");
  if (p.batch_size < 1 || p.batch_size > 64)
    error_throw(fmt::format("batch size must be in [1, 64], got {}", p.batch_size), "--batch-size");
  if (p.mask.defined() && !p.init_image.defined())
    error_throw("a mask needs an init image", "--mask", "pass the image to inpaint with --init-img");
  if (p.init_image.defined()) {
    const Tensor& t = p.init_image;
    AIGC_CHECK(t.ndim() == 4 && t.size(0) == 1 && t.size(1) == 3 && t.type() == DType::F32 && t.is_contiguous(),
               "init image must be f32 [1, 3, H, W], got {}", t.shape_str());
    if (!(p.strength > 0.0 && p.strength <= 1.0))
      error_throw(fmt::format("strength must be in (0, 1], got {}", p.strength), "--strength",
                  "0.75 keeps the layout of the init image and repaints the details");
  }
  if (p.mask.defined()) {
    const Tensor& t = p.mask;
    AIGC_CHECK(t.ndim() == 4 && t.size(0) == 1 && (t.size(1) == 3 || t.size(1) == 1) && t.type() == DType::F32 &&
                   t.is_contiguous(),
               "mask must be f32 [1, 1 or 3, H, W], got {}", t.shape_str());
  }
  if (p.hires_scale < 1 || p.hires_scale > 4)
    error_throw(fmt::format("hires scale must be 1 (off) to 4, got {}", p.hires_scale), "--hires-scale");
  if (p.hires_scale > 1) {
    if (!(p.hires_strength > 0.0 && p.hires_strength <= 1.0))
      error_throw(fmt::format("hires strength must be in (0, 1], got {}", p.hires_strength), "--hires-strength",
                  "0.5 keeps the composition and adds detail");
    if (p.hires_steps < 0) error_throw(fmt::format("hires steps must be >= 0, got {}", p.hires_steps), "--hires-steps");
  }
  if (p.preview_every < 0) error_throw("preview interval must be >= 0", "--preview-every");
}

Tensor batch_repeat(const Tensor& x, int64_t B) {
  AIGC_ASSERT(x.size(0) == 1 && x.is_contiguous() && x.type() == DType::F32);
  std::vector<int64_t> shape = x.shape_vec();
  shape[0] = B;
  Tensor out = Tensor::empty(DType::F32, shape);
  const size_t n = static_cast<size_t>(x.numel());
  for (int64_t b = 0; b < B; ++b) std::memcpy(out.ptr<float>() + b * n, x.ptr<float>(), n * sizeof(float));
  return out;
}

void mask_blend(const Tensor& x, const Tensor& mask, const Tensor& init, const Tensor& noise, const SamplerPlan& pl,
                int step, const NoiseSchedule& schedule) {
  AIGC_ASSERT(x.ndim() == 4 && x.same_shape(init) && x.same_shape(noise) && mask.size(2) == x.size(2) &&
              mask.size(3) == x.size(3));
  const int i = pl.start + step + 1;
  double a = 1.0, c = 0.0;
  if (pl.uses_sigmas()) {
    c = pl.sigmas[static_cast<size_t>(i)];
  } else if (i < static_cast<int>(pl.timesteps.size())) {
    const double ab = schedule.alphas_cumprod(pl.timesteps[static_cast<size_t>(i)]);
    a = std::sqrt(ab), c = std::sqrt(1.0 - ab);
  }
  Tensor xm = x;  // the sampler's own state: blending writes into it
  float* xp = xm.ptr<float>();
  const float* m = mask.ptr<float>();
  const float* x0 = init.ptr<float>();
  const float* z = noise.ptr<float>();
  const int64_t plane = x.size(2) * x.size(3);
  for (int64_t bc = 0; bc < x.size(0) * x.size(1); ++bc)
    for (int64_t q = 0; q < plane; ++q) {
      const int64_t idx = bc * plane + q;
      const float keep = static_cast<float>(a * x0[idx] + c * z[idx]);
      xp[idx] = m[q] * xp[idx] + (1.0f - m[q]) * keep;
    }
}

}  // namespace aigc::image
