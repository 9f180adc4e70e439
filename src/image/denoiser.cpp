#include "image/denoiser.h"

#include <cmath>

#include "core/error.h"

namespace aigc::image {

Denoiser::Denoiser(ModelFn model, const NoiseSchedule& schedule, Prediction prediction, float cfg_scale,
                   std::span<const int64_t> shape)
    : model_(std::move(model)), schedule_(schedule), prediction_(prediction), cfg_scale_(cfg_scale) {
  AIGC_ASSERT(model_ != nullptr);
  if (!std::isfinite(cfg_scale))
    error_throw(fmt::format("guidance scale must be finite, got {}", cfg_scale), "--cfg-scale");
  x_in_ = Tensor::empty(DType::F32, shape);
  cond_ = Tensor::empty(DType::F32, shape);
  if (cfg_scale_ != 1.0f) uncond_ = Tensor::empty(DType::F32, shape);
}

const Tensor& Denoiser::predict(const Tensor& x_in, double t) {
  AIGC_ASSERT(x_in.same_shape(cond_) && x_in.is_contiguous());
  const bool guided = cfg_scale_ != 1.0f;
  model_(x_in, t, cond_, guided ? &uncond_ : nullptr);
  if (guided) {
    float* c = cond_.ptr<float>();
    const float* u = uncond_.ptr<float>();
    const double s = cfg_scale_;
    for (int64_t i = 0, n = cond_.numel(); i < n; ++i)
      c[i] = static_cast<float>(u[i] + s * (static_cast<double>(c[i]) - u[i]));
  }
  return cond_;
}

void Denoiser::denoise(const Tensor& x, double sigma, Tensor& out) {
  AIGC_ASSERT(sigma > 0 && x.same_shape(x_in_) && out.same_shape(x_in_));
  const int64_t n = x.numel();
  const double s2 = sigma * sigma + 1.0;
  const double c_in = 1.0 / std::sqrt(s2);
  const float* xp = x.ptr<float>();
  float* xi = x_in_.ptr<float>();
  for (int64_t i = 0; i < n; ++i) xi[i] = static_cast<float>(c_in * xp[i]);
  const float* m = predict(x_in_, schedule_.sigma_to_t(sigma)).ptr<float>();
  float* o = out.ptr<float>();
  if (prediction_ == Prediction::Epsilon) {
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(xp[i] - sigma * m[i]);
  } else {
    const double c_skip = 1.0 / s2, c_out = -sigma * c_in;
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(c_skip * xp[i] + c_out * m[i]);
  }
}

}  // namespace aigc::image
