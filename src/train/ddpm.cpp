// DDPM schedule, timestep embedding and the image training batch (see ddpm.h).
#include "train/ddpm.h"

#include <cmath>
#include <random>

#include "core/error.h"
#include "train/shapes_dataset.h"

namespace aigc::train {

const char* diffusion_target_name(DiffusionTarget t) { return t == DiffusionTarget::V ? "v" : "epsilon"; }

std::vector<float> ddpm_alphas_cumprod(const DdpmSchedule& s) {
  AIGC_CHECK(s.steps >= 2 && s.beta_start > 0 && s.beta_end < 1 && s.beta_start <= s.beta_end,
             "ddpm_alphas_cumprod: need steps >= 2 and 0 < beta_start <= beta_end < 1");
  std::vector<float> a(static_cast<size_t>(s.steps));
  double prod = 1.0;
  for (int64_t t = 0; t < s.steps; ++t) {
    const double beta = s.beta_start + (s.beta_end - s.beta_start) * static_cast<double>(t) / static_cast<double>(s.steps - 1);
    prod *= 1.0 - beta;
    a[static_cast<size_t>(t)] = static_cast<float>(prod);
  }
  return a;
}

void timestep_embedding(double t, std::span<float> out) {
  AIGC_CHECK(!out.empty() && out.size() % 2 == 0, "timestep_embedding: dim {} must be even", out.size());
  const size_t half = out.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    const double f = std::exp(-std::log(10000.0) * static_cast<double>(i) / static_cast<double>(half));
    out[i] = static_cast<float>(std::sin(t * f));
    out[half + i] = static_cast<float>(std::cos(t * f));
  }
}

void image_batch_fill(UnetTrainer& u, int64_t batch, int64_t step, const ImageBatchOptions& o,
                      std::span<const float> alphas_cumprod) {
  const UnetConfig& c = u.config();
  AIGC_CHECK(c.text_len == kShapesCaptionTokens && c.text_vocab >= shapes_vocab_size(),
             "image_batch_fill: the model's text input ({} tokens, vocabulary {}) does not fit the captions ({}, {})",
             c.text_len, c.text_vocab, kShapesCaptionTokens, shapes_vocab_size());
  AIGC_CHECK(u.x().size(0) == batch && !alphas_cumprod.empty(), "image_batch_fill: batch {} does not match", batch);
  const int64_t S = c.image, px = S * S;
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  float* x = u.x().ptr<float>();
  float* target = u.noise().ptr<float>();
  const bool v = o.prediction == DiffusionTarget::V;
  float* temb = u.temb().ptr<float>();
  std::span<int32_t> ids = u.text_ids();
  for (int64_t b = 0; b < batch; ++b) {
    const ShapesSample s = shapes_sample(o.seed, step * batch + b, static_cast<int>(S), o.glyphs);
    const int64_t t = static_cast<int64_t>(rng() % alphas_cumprod.size());
    const float ab = alphas_cumprod[static_cast<size_t>(t)], sa = std::sqrt(ab), sn = std::sqrt(1.0f - ab);
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t p = 0; p < px; ++p) {
        const float x0 = s.rgb[static_cast<size_t>(p * 3 + ch)] / 127.5f - 1.0f;  // HWC bytes -> CHW [-1, 1]
        const float e = normal(rng);
        const int64_t i = (b * 3 + ch) * px + p;
        target[i] = v ? sa * e - sn * x0 : e;
        x[i] = sa * x0 + sn * e;
      }
    timestep_embedding(static_cast<double>(t), std::span<float>(temb + b * c.t_dim, static_cast<size_t>(c.t_dim)));
    const bool drop = uni(rng) < o.caption_dropout;
    shapes_caption_tokenize(drop ? std::string_view() : std::string_view(s.caption),
                            ids.subspan(static_cast<size_t>(b * kShapesCaptionTokens), kShapesCaptionTokens));
  }
}

}  // namespace aigc::train
