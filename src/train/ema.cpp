// Exponential moving average of weights (see ema.h).
#include "train/ema.h"

#include <algorithm>

#include "core/error.h"

namespace aigc::train {

float ema_decay_at(float decay, int64_t step) {
  const double warm = (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step));
  return std::min(decay, static_cast<float>(warm));
}

WeightEma::WeightEma(std::span<const float> params, float decay) : decay_(decay), ema_(params.begin(), params.end()) {
  AIGC_CHECK(decay >= 0.0f && decay < 1.0f, "EMA decay {} must be in [0, 1)", decay);
}

void WeightEma::update(std::span<const float> params, int64_t step) {
  AIGC_ASSERT(params.size() == ema_.size() && step >= 0);
  const float d = ema_decay_at(decay_, step), w = 1.0f - d;
  float* e = ema_.data();
  const float* p = params.data();
  for (size_t i = 0, n = ema_.size(); i < n; ++i) e[i] = d * e[i] + w * p[i];
}

void WeightEma::swap(std::span<float> params) {
  AIGC_ASSERT(params.size() == ema_.size());
  std::swap_ranges(ema_.begin(), ema_.end(), params.begin());
}

}  // namespace aigc::train
