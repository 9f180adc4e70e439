// Exponential moving average of a model's weights (Polyak averaging, as diffusion trainers keep it:
// the averaged weights sample better than the last step's). After optimiser step `step` (0-based):
//   d   = min(decay, (1 + step) / (10 + step))      warm-up: early averages forget the random init
//   ema = d * ema + (1 - d) * param                  element-wise, in f32
// The EMA starts as a copy of the initial parameters. Works on Graph::params_flat() (train/autograd.h);
// nothing is allocated after construction.
//
//   WeightEma ema(g.params_flat(), 0.999f);
//   opt.step(g.params_flat(), g.grads_flat(), lr);  ema.update(g.params_flat(), step);
//   ema.swap(g.params_flat());  ... evaluate or save the averaged model ...;  ema.swap(g.params_flat());
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace aigc::train {

// The warm-up decay of step `step` (0-based): min(decay, (1 + step) / (10 + step)).
float ema_decay_at(float decay, int64_t step);

class WeightEma {
 public:
  // decay in [0, 1); the average starts as a copy of params.
  WeightEma(std::span<const float> params, float decay);
  // ema = d * ema + (1 - d) * params, d = ema_decay_at(decay, step).
  void update(std::span<const float> params, int64_t step);
  // Exchanges the average and params (bitwise, no allocation): call twice to restore.
  void swap(std::span<float> params);

  float decay() const { return decay_; }
  std::span<float> values() { return ema_; }

 private:
  float decay_;
  std::vector<float> ema_;
};

}  // namespace aigc::train
