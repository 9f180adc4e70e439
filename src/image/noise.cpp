#include "image/noise.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace aigc::image {

double NoiseRng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  constexpr double k2m53 = 1.0 / 9007199254740992.0;  // 2^-53
  const uint64_t a = engine_(), b = engine_();
  const double u1 = static_cast<double>((a >> 11) + 1) * k2m53;
  const double u2 = static_cast<double>(b >> 11) * k2m53;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double phi = 2.0 * std::numbers::pi * u2;
  spare_ = r * std::sin(phi);
  has_spare_ = true;
  return r * std::cos(phi);
}

void NoiseRng::normal_fill(std::span<float> out) {
  for (float& v : out) v = static_cast<float>(normal());
}

SeededNoise::SeededNoise(uint64_t seed, int batch) {
  AIGC_ASSERT(batch >= 1, "batch {}", batch);
  rngs_.reserve(batch);
  for (int b = 0; b < batch; ++b) rngs_.emplace_back(seed + static_cast<uint64_t>(b));
}

void SeededNoise::noise_fill(Tensor& out) {
  AIGC_ASSERT(out.type() == DType::F32 && out.is_contiguous() && out.ndim() >= 1);
  AIGC_ASSERT(out.size(0) == static_cast<int64_t>(rngs_.size()), "noise for {} images, source has {}",
              out.size(0), rngs_.size());
  const int64_t per = out.numel() / out.size(0);
  for (size_t b = 0; b < rngs_.size(); ++b)
    rngs_[b].normal_fill({out.ptr<float>() + b * per, static_cast<size_t>(per)});
}

}  // namespace aigc::image
