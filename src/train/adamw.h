// AdamW (decoupled weight decay, Loshchilov & Hutter) with bias correction, gradient clipping by
// global L2 norm, and the cosine learning-rate schedule with linear warm-up. Works on the flat
// parameter/gradient arrays of a Graph (train/autograd.h); moments are allocated once.
//
//   AdamW opt(g.params_flat().size(), {.weight_decay = 0.1f});
//   opt.decay_mask_set(mask);                          // per element: 1 decays, 0 does not
//   float lr = lr_cosine(step, {.lr_max = 3e-3f, .warmup = 100, .total = 5000});
//   float norm = opt.step(g.params_flat(), g.grads_flat(), lr);
//
// One step, as torch.optim.AdamW after torch.nn.utils.clip_grad_norm_:
//   norm = ||g||_2 over all parameters; if clip > 0 and norm > clip: g *= clip / (norm + 1e-6)
//   t += 1; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2
//   p -= lr * wd * p   (only where the decay mask is set)
//   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace aigc::train {

struct AdamWParams {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  float grad_clip = 1.0f;  // max global norm; 0: no clipping
};

class AdamW {
 public:
  AdamW(size_t n_params, AdamWParams p = {});
  // 1 where weight decay applies (matrices), 0 where not (norm gains); default: everywhere.
  void decay_mask_set(std::vector<uint8_t> mask);
  // Clips `grads` in place, updates `params`; returns the global gradient norm before clipping.
  float step(std::span<float> params, std::span<float> grads, float lr);

  int64_t t() const { return t_; }
  std::span<float> m() { return m_; }
  std::span<float> v() { return v_; }
  void t_set(int64_t t) { t_ = t; }  // resuming from a checkpoint
  const AdamWParams& params() const { return p_; }

 private:
  AdamWParams p_;
  std::vector<float> m_, v_;
  std::vector<uint8_t> decay_;
  int64_t t_ = 0;
};

struct CosineSchedule {
  float lr_max = 1e-3f;
  float lr_min = 0.0f;
  int64_t warmup = 0;  // steps of linear warm-up: lr_max * (step + 1) / warmup
  int64_t total = 1;   // steps in all; after warm-up, cosine from lr_max down to lr_min at `total`
};

// Learning rate of step `step` (0-based).
float lr_cosine(int64_t step, const CosineSchedule& s);

}  // namespace aigc::train
