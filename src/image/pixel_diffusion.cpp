// Pixel-diffusion inference (see pixel_diffusion.h).
#include "image/pixel_diffusion.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "formats/safetensors.h"
#include "image/generate_shared.h"
#include "image/image_resize.h"
#include "image/noise.h"
#include "image/sampler.h"
#include "train/ddpm.h"

namespace aigc::image {

namespace {

std::string case_set(std::string_view s, bool up) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(up ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return o;
}
std::string lower(std::string_view s) { return case_set(s, false); }
std::string upper(std::string_view s) { return case_set(s, true); }

// What a model that knows these words draws, for the unknown-word message.
std::string drawing_hint(const std::vector<std::string>& vocab) {
  const bool shapes = std::find(vocab.begin(), vocab.end(), "circle") != vocab.end();
  const bool glyphs = std::find(vocab.begin(), vocab.end(), "letter") != vocab.end();
  if (shapes)
    return fmt::format("it draws one to three circles, squares or triangles of one colour on a plain background{}, "
                       "e.g. \"two red circles on a blue background\"",
                       glyphs ? " (or a digit or letter: \"a green letter K\")" : "");
  return "it draws only what its training captions describe";
}

// [B, 3, S, S] in [-1, 1] (contiguous) -> the same images as f32 in [0, 1].
Tensor images_of(const Tensor& x) {
  AIGC_ASSERT(x.is_contiguous());
  Tensor out = Tensor::empty(DType::F32, x.shape());
  const float* src = x.ptr<float>();
  float* dst = out.ptr<float>();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) dst[i] = std::clamp((src[i] + 1.0f) * 0.5f, 0.0f, 1.0f);
  return out;
}

void params_check(const SdGenerateParams& p) {
  pixel_size_check(p.width, p.height);
  generate_params_check(p);
  if (p.hires_scale > 1 && p.width * p.hires_scale > kPixelSizeMax)
    error_throw(fmt::format("hires fix to {} px is beyond the {} px limit of pixel-diffusion models",
                            p.width * p.hires_scale, kPixelSizeMax),
                "--hires-scale", "use a smaller scale");
  if (p.hires_scale > 1 && p.mask.defined())
    error_throw("hires fix is not supported with inpainting", "--hires-scale", "inpaint at the final size instead");
  if (p.clip_skip > 0)
    error_throw("--clip-skip does not apply to pixel-diffusion models (they have no CLIP text encoder)", "--clip-skip");
  if (p.taesd) error_throw("TAESD does not apply to pixel-diffusion models (they draw pixels, no latents)", "--taesd");
}

// One run over a list of per-image prompts (generate: all the same).
std::vector<Tensor> generate_run(PixelDiffusion& model, std::span<const std::string> prompts, int64_t batch_size,
                                 const SdGenerateParams& p, const SdProgressFn& progress, const SdPreviewFn& preview) {
  params_check(p);
  pixel_size_check(p.width, p.height, static_cast<int>(train::unet_size_multiple(model.config().unet)));
  const int64_t S = p.width, Tc = model.config().unet.text_len;
  const int64_t total = static_cast<int64_t>(prompts.size());
  const int batch_count = static_cast<int>((total + batch_size - 1) / batch_size);
  auto report = [&](SdProgress::Stage stage, int batch = 0, int step = 0, int steps = 0) {
    if (progress) progress(SdProgress{stage, batch, batch_count, step, steps});
  };

  // Every prompt is tokenised before anything runs: an unknown word fails at once.
  std::vector<int32_t> ids(static_cast<size_t>(total * Tc)), neg(static_cast<size_t>(Tc));
  for (int64_t i = 0; i < total; ++i) {
    if (i > 0 && prompts[static_cast<size_t>(i)] == prompts[static_cast<size_t>(i - 1)])
      std::copy_n(ids.begin() + (i - 1) * Tc, Tc, ids.begin() + i * Tc);
    else
      model.tokenize(prompts[static_cast<size_t>(i)], std::span<int32_t>(ids).subspan(static_cast<size_t>(i * Tc), static_cast<size_t>(Tc)));
  }
  model.tokenize(p.negative_prompt, neg);  // "" -> the empty caption

  const NoiseSchedule& sched = model.schedule();
  SampleParams s1 = p.sample;
  s1.prediction = model.info().prediction;
  s1.strength = p.strength;
  const bool img2img = p.init_image.defined();
  const SamplerPlan plan = sampler_plan(sched, s1, img2img);
  SampleParams s2 = s1;
  s2.steps = p.hires_steps > 0 ? p.hires_steps : s1.steps;
  s2.strength = p.hires_strength;
  const SamplerPlan plan2 = p.hires_scale > 1 ? sampler_plan(sched, s2, true) : SamplerPlan{};

  Tensor init, mask;  // [1, 3, S, S] in [-1, 1]; [1, 1, S, S] in [0, 1]
  if (img2img) {
    init = image_resize_crop(p.init_image, static_cast<int>(S), static_cast<int>(S));
    float* d = init.ptr<float>();
    for (int64_t i = 0; i < init.numel(); ++i) d[i] = d[i] * 2.0f - 1.0f;
  }
  if (p.mask.defined()) {
    Tensor m = image_resize_crop(p.mask, static_cast<int>(S), static_cast<int>(S));
    mask = m.size(1) == 3 ? image_to_gray(m) : m;
    float* d = mask.ptr<float>();
    for (int64_t i = 0; i < mask.numel(); ++i) d[i] = std::clamp(d[i], 0.0f, 1.0f);
  }
  const bool want_preview = preview && p.preview_every > 0;
  if (p.latents_out) p.latents_out->clear();

  std::vector<Tensor> images;
  for (int k = 0; k < batch_count; ++k) {
    const int64_t first = int64_t{k} * batch_size, B = std::min(batch_size, total - first);
    std::vector<int32_t> cond(ids.begin() + first * Tc, ids.begin() + (first + B) * Tc), uncond;
    for (int64_t b = 0; b < B; ++b) uncond.insert(uncond.end(), neg.begin(), neg.end());
    SeededNoise rng(p.seed + static_cast<uint64_t>(first), static_cast<int>(B));
    Tensor noise = Tensor::empty(DType::F32, {B, 3, S, S});
    rng.noise_fill(noise);
    const Tensor init_b = init.defined() ? batch_repeat(init, B) : Tensor();
    Tensor denoised = want_preview ? Tensor::empty(DType::F32, {B, 3, S, S}) : Tensor();
    const Tensor* shown = &denoised;  // what previews show: the running pass's estimate

    auto on_step = [&](SdProgress::Stage stage, const SamplerPlan& pl, bool blend) {
      return [&, stage, blend](int step, const Tensor& x) {
        if (blend) mask_blend(x, mask, init_b, noise, pl, step, sched);
        report(stage, k, step + 1, pl.steps());
        if (want_preview && (step + 1) % p.preview_every == 0 && step + 1 < pl.steps())
          preview(k, step + 1, images_of(*shown));
      };
    };
    PixelUnetFn fn(model, cond, uncond, B, S, s1.cfg_scale, want_preview ? &denoised : nullptr);
    ModelFn mf = [&fn](const Tensor& x, double t, Tensor& c, Tensor* u) { fn(x, t, c, u); };
    report(SdProgress::Stage::Sample, k, 0, plan.steps());
    Tensor x = sampler_run(mf, sched, s1, noise, img2img ? &init_b : nullptr, rng,
                           on_step(SdProgress::Stage::Sample, plan, mask.defined()));
    if (p.hires_scale > 1) {
      Tensor up = latent_upscale(x, p.hires_scale, p.hires_nearest);
      Tensor noise2 = Tensor::empty(DType::F32, up.shape());
      rng.noise_fill(noise2);
      const int64_t S2 = S * p.hires_scale;
      Tensor denoised2 = want_preview ? Tensor::empty(DType::F32, {B, 3, S2, S2}) : Tensor();
      PixelUnetFn fn2(model, cond, uncond, B, S2, s2.cfg_scale, want_preview ? &denoised2 : nullptr);
      ModelFn mf2 = [&fn2](const Tensor& xx, double t, Tensor& c, Tensor* u) { fn2(xx, t, c, u); };
      report(SdProgress::Stage::Hires, k, 0, plan2.steps());
      shown = &denoised2;
      x = sampler_run(mf2, sched, s2, noise2, &up, rng, on_step(SdProgress::Stage::Hires, plan2, false));
    }
    if (p.latents_out) p.latents_out->push_back(x);
    for (int64_t b = 0; b < B; ++b) images.push_back(images_of(x.slice(0, b, 1)));  // [1, 3, S, S]
  }
  return images;
}

}  // namespace

// ---- model ----

PixelDiffusion PixelDiffusion::open(const std::string& path) {
  return PixelDiffusion(pixel_diffusion_read(path), std::filesystem::path(path).stem().string());
}

PixelDiffusion::PixelDiffusion(PixelDiffusionFile file, std::string name)
    : file_(std::move(file)),
      schedule_(NoiseSchedule::linear(file_.config.schedule.beta_start, file_.config.schedule.beta_end,
                                      static_cast<int>(file_.config.schedule.steps))) {
  const train::UnetConfig& u = file_.config.unet;
  int64_t n = 0;
  for (const auto& [k, t] : file_.params) n += t.numel();
  info_.name = std::move(name);
  // The file's target as the samplers name it; the Denoiser's v formulas (k-diffusion's
  // CompVisVDenoiser, diffusers' v_prediction) hold for any abar schedule, this linear one too.
  info_.prediction = file_.config.prediction == train::DiffusionTarget::V ? Prediction::V : Prediction::Epsilon;
  info_.clip_skip_default = 1;
  info_.description = fmt::format("aigc pixel-diffusion model, {}x{} RGB, {:.2f}M parameters, {} caption words, "
                                  "{}-step linear schedule{}",
                                  u.image, u.image, static_cast<double>(n) / 1e6, file_.config.vocab.size() - 2,
                                  file_.config.schedule.steps, info_.prediction == Prediction::V ? ", v-prediction" : "");
}

void PixelDiffusion::tokenize(std::string_view prompt, std::span<int32_t> ids) const {
  pixel_diffusion_tokenize(file_.config, prompt, ids);
}

train::UnetTrainer& PixelDiffusion::unet(int64_t batch, int64_t size) {
  const auto key = std::make_pair(batch, size);
  auto it = unets_.find(key);
  if (it != unets_.end()) return *it->second;
  if (unets_.size() >= 4) unets_.clear();  // a few shapes are kept (guided and not, a hires size)
  train::UnetConfig c = file_.config.unet;
  c.image = size;
  auto u = std::make_unique<train::UnetTrainer>(c, batch);
  pixel_diffusion_params_load(file_, *u);
  std::fill_n(u->noise().ptr<float>(), u->noise().numel(), 0.0f);  // the loss node's target: kept finite
  return *unets_.emplace(key, std::move(u)).first->second;
}

int64_t PixelDiffusion::memory_bytes() const {
  int64_t params = 0;
  for (const auto& [k, t] : file_.params) params += static_cast<int64_t>(t.nbytes());
  int64_t n = params;
  for (const auto& [k, u] : unets_) n += 2 * params + u->graph().activation_bytes();  // values + gradients
  return n;
}

void pixel_diffusion_tokenize(const PixelDiffusionConfig& config, std::string_view prompt, std::span<int32_t> ids) {
  const int64_t Tc = config.unet.text_len;
  AIGC_CHECK(static_cast<int64_t>(ids.size()) == Tc, "pixel_diffusion_tokenize: {} ids, the model reads {}", ids.size(), Tc);
  const std::vector<std::string>& vocab = config.vocab;
  std::fill(ids.begin(), ids.end(), 0);
  auto find = [&](const std::string& w) -> int32_t {
    for (size_t i = 2; i < vocab.size(); ++i)  // 0 pads, 1 is the empty caption: never a word
      if (vocab[i] == w) return static_cast<int32_t>(i);
    return -1;
  };
  std::vector<std::string> words;
  for (size_t i = 0; i < prompt.size();) {
    while (i < prompt.size() && std::isspace(static_cast<unsigned char>(prompt[i]))) ++i;
    size_t j = i;
    while (j < prompt.size() && !std::isspace(static_cast<unsigned char>(prompt[j]))) ++j;
    std::string_view w = prompt.substr(i, j - i);
    while (!w.empty() && std::ispunct(static_cast<unsigned char>(w.front()))) w.remove_prefix(1);
    while (!w.empty() && std::ispunct(static_cast<unsigned char>(w.back()))) w.remove_suffix(1);
    if (!w.empty()) words.emplace_back(w);
    i = j;
  }
  if (words.empty()) {
    ids[0] = 1;  // the empty caption
    return;
  }
  if (static_cast<int64_t>(words.size()) > Tc)
    error_throw(fmt::format("the prompt has {} words; this model reads at most {}", words.size(), Tc), "prompt",
                drawing_hint(vocab));
  for (size_t n = 0; n < words.size(); ++n) {
    const bool after_letter = n > 0 && lower(words[n - 1]) == "letter";
    int32_t id = after_letter ? find(upper(words[n])) : -1;
    if (id < 0) id = find(lower(words[n]));
    if (id < 0) id = find(upper(words[n]));  // a digit or letter on its own
    if (id < 0) {
      std::vector<std::string> known(vocab.begin() + std::min<size_t>(2, vocab.size()), vocab.end());
      error_throw(fmt::format("unknown word '{}' in the prompt '{}'", words[n], prompt), "prompt",
                  fmt::format("this model knows only these words: {}; {}", fmt::join(known, " "), drawing_hint(vocab)));
    }
    ids[n] = id;
  }
}

// ---- the model function ----

PixelUnetFn::PixelUnetFn(PixelDiffusion& model, std::vector<int32_t> cond_ids, std::vector<int32_t> uncond_ids,
                         int64_t batch, int64_t size, float cfg_scale, Tensor* denoised)
    : model_(model),
      cond_ids_(std::move(cond_ids)),
      uncond_ids_(std::move(uncond_ids)),
      B_(batch),
      S_(size),
      cfg_scale_(cfg_scale),
      denoised_(denoised),
      temb_(static_cast<size_t>(model.config().unet.t_dim)) {
  const int64_t Tc = model.config().unet.text_len;
  AIGC_ASSERT(static_cast<int64_t>(cond_ids_.size()) == B_ * Tc && static_cast<int64_t>(uncond_ids_.size()) == B_ * Tc);
}

void PixelUnetFn::operator()(const Tensor& x_in, double t, Tensor& cond, Tensor* uncond) {
  const int64_t B = B_, S = S_, n = B * 3 * S * S, Tc = model_.config().unet.text_len;
  AIGC_ASSERT(x_in.ndim() == 4 && x_in.size(0) == B && x_in.size(1) == 3 && x_in.size(2) == S && x_in.size(3) == S &&
              x_in.is_contiguous());
  const int64_t nb = uncond ? 2 * B : B;
  train::UnetTrainer& u = model_.unet(nb, S);
  float* x = u.x().ptr<float>();
  std::memcpy(x, x_in.ptr<float>(), static_cast<size_t>(n) * sizeof(float));
  if (uncond) std::memcpy(x + n, x_in.ptr<float>(), static_cast<size_t>(n) * sizeof(float));
  train::timestep_embedding(t, temb_);
  float* te = u.temb().ptr<float>();
  for (int64_t b = 0; b < nb; ++b) std::copy(temb_.begin(), temb_.end(), te + b * static_cast<int64_t>(temb_.size()));
  std::span<int32_t> ids = u.text_ids();
  std::copy(cond_ids_.begin(), cond_ids_.end(), ids.begin());
  if (uncond) std::copy(uncond_ids_.begin(), uncond_ids_.end(), ids.begin() + B * Tc);
  u.forward();
  const float* out = u.prediction().ptr<float>();
  std::memcpy(cond.ptr<float>(), out, static_cast<size_t>(n) * sizeof(float));
  if (uncond) std::memcpy(uncond->ptr<float>(), out + n, static_cast<size_t>(n) * sizeof(float));
  if (denoised_) {
    // x0 = (x_in - sqrt(1 - abar) eps) / sqrt(abar), or sqrt(abar) x_in - sqrt(1 - abar) v: the same
    // in k-diffusion's scaling (x_in = x / sqrt(sigma^2 + 1), abar = 1 / (sigma^2 + 1)) and in DDPM
    // space (x_in = x_t).
    const NoiseSchedule& s = model_.schedule();
    const double sigma = s.t_to_sigma(std::clamp(t, 0.0, static_cast<double>(s.train_steps() - 1)));
    const double ab = 1.0 / (sigma * sigma + 1.0), sa = std::sqrt(ab), sn = std::sqrt(1.0 - ab);
    const float* c = out;
    const float* un = uncond ? out + n : nullptr;
    const float* xi = x_in.ptr<float>();
    float* d = denoised_->ptr<float>();
    const bool v = model_.info().prediction == Prediction::V;
    for (int64_t i = 0; i < n; ++i) {
      const double m = un ? un[i] + static_cast<double>(cfg_scale_) * (static_cast<double>(c[i]) - un[i]) : c[i];
      d[i] = static_cast<float>(v ? sa * xi[i] - sn * m : (xi[i] - sn * m) / sa);
    }
  }
}

// ---- generation ----

void pixel_size_check(int width, int height, int multiple) {
  if (width != height)
    error_throw(fmt::format("pixel-diffusion models draw square images, got {}x{}", width, height), "--width",
                fmt::format("pass -W {} -H {}", std::max(width, height), std::max(width, height)));
  for (const auto& [v, flag] : {std::pair{width, "--width"}, std::pair{height, "--height"}})
    if (v < multiple || v > kPixelSizeMax || v % multiple != 0)
      error_throw(multiple == 2 ? fmt::format("image {} must be an even number from 2 to {} for a pixel-diffusion "
                                              "model, got {}", flag + 2, kPixelSizeMax, v)
                                : fmt::format("image {} must be a multiple of {} from {} to {} for this pixel-diffusion "
                                              "model (it halves the size {} times), got {}",
                                              flag + 2, multiple, multiple, kPixelSizeMax, multiple / 2, v),
                  flag, "the model's own size (its training size) works best");
}

std::vector<Tensor> pixel_diffusion_generate(PixelDiffusion& model, const SdGenerateParams& p,
                                             const SdProgressFn& progress, const SdPreviewFn& preview) {
  generate_params_check(p);  // before the prompt list is made: batch count and size are in range
  const std::vector<std::string> prompts(static_cast<size_t>(p.batch_count) * static_cast<size_t>(p.batch_size), p.prompt);
  return generate_run(model, prompts, p.batch_size, p, progress, preview);
}

std::vector<Tensor> pixel_diffusion_generate_each(PixelDiffusion& model, std::span<const std::string> prompts,
                                                  const SdGenerateParams& p, const SdProgressFn& progress,
                                                  const SdPreviewFn& preview) {
  if (prompts.empty()) return {};
  return generate_run(model, prompts, p.batch_size, p, progress, preview);
}

bool pixel_diffusion_file_is(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  try {
    return pixel_diffusion_is(SafetensorsFile::open(path));
  } catch (const Error&) {
    return false;
  }
}

}  // namespace aigc::image
