// AdamW and the cosine schedule (see adamw.h).
#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/thread_pool.h"

namespace aigc::train {

AdamW::AdamW(size_t n_params, AdamWParams p) : p_(p), m_(n_params, 0.0f), v_(n_params, 0.0f) {}

void AdamW::decay_mask_set(std::vector<uint8_t> mask) {
  AIGC_ASSERT(mask.size() == m_.size(), "AdamW: decay mask of {} for {} parameters", mask.size(), m_.size());
  decay_ = std::move(mask);
}

float AdamW::step(std::span<float> params, std::span<float> grads, float lr) {
  AIGC_ASSERT(params.size() == m_.size() && grads.size() == m_.size(), "AdamW::step: sizes differ");
  const int64_t n = static_cast<int64_t>(m_.size());
  double sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sq += static_cast<double>(grads[i]) * grads[i];
  const float norm = static_cast<float>(std::sqrt(sq));
  const float clip = (p_.grad_clip > 0.0f && norm > p_.grad_clip) ? p_.grad_clip / (norm + 1e-6f) : 1.0f;
  ++t_;
  const float b1 = p_.beta1, b2 = p_.beta2;
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b1), static_cast<double>(t_)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b2), static_cast<double>(t_)));
  const float decay = lr * p_.weight_decay;
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float g = grads[i] * clip;
      grads[i] = g;
      m_[i] = b1 * m_[i] + (1.0f - b1) * g;
      v_[i] = b2 * v_[i] + (1.0f - b2) * g * g;
      float p = params[i];
      if (decay_.empty() || decay_[i]) p -= decay * p;
      params[i] = p - lr * (m_[i] / bc1) / (std::sqrt(v_[i] / bc2) + p_.eps);
    }
  }, 4096);
  return norm;
}

float lr_cosine(int64_t step, const CosineSchedule& s) {
  if (s.warmup > 0 && step < s.warmup)
    return s.lr_max * static_cast<float>(step + 1) / static_cast<float>(s.warmup);
  const int64_t span = std::max<int64_t>(1, s.total - s.warmup);
  const double progress = std::min(1.0, static_cast<double>(step - s.warmup) / static_cast<double>(span));
  return static_cast<float>(s.lr_min + 0.5 * (s.lr_max - s.lr_min) * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace aigc::train
