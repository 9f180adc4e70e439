#include "server/sd_image_backend.h"

#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/image.h"
#include "image/sd_parameters.h"
#include "image/sd_pipeline.h"

namespace aigc::server {

SdImageBackend::SdImageBackend(const std::string& path, const image::SdModelOptions& options)
    : path_(path) {
  model_ = std::make_unique<image::SdModel>(image::SdModel::open(path, options));
}

SdImageBackend::~SdImageBackend() = default;

std::vector<std::string> SdImageBackend::samplers() const {
  return {"euler_a", "euler", "heun", "dpm++2m", "dpm++2m_karras", "ddim", "ddpm", "lcm"};
}

void SdImageBackend::validate(const ImageRequest& r) const {
  image::sd_size_check(r.width, r.height);
  if (r.steps < 1 || r.steps > 150) error_throw(fmt::format("steps must be 1 to 150, got {}", r.steps), "steps");
  if (!r.sampler.empty()) image::sampler_kind_parse(r.sampler);
  if (!(r.cfg_scale >= 0.0f && r.cfg_scale <= 50.0f))
    error_throw(fmt::format("cfg_scale must be 0 to 50, got {}", r.cfg_scale), "cfg_scale");
  if (r.mode != ImageMode::Txt2Img && !(r.strength > 0.0f && r.strength <= 1.0f))
    error_throw(fmt::format("strength must be in (0, 1], got {}", r.strength), "strength");
}

std::vector<std::string> SdImageBackend::generate(const ImageRequest& r, const ImageProgressFn& progress,
                                                  const std::atomic<bool>& cancel) {
  validate(r);
  std::lock_guard lock(mutex_);
  image::SdGenerateParams p;
  p.prompt = r.prompt;
  p.negative_prompt = r.negative_prompt;
  p.width = r.width;
  p.height = r.height;
  p.sample.sampler = r.sampler.empty() ? image::SamplerKind::EulerAncestral : image::sampler_kind_parse(r.sampler);
  p.sample.steps = r.steps;
  p.sample.cfg_scale = r.cfg_scale;
  p.seed = r.seed >= 0 ? static_cast<uint64_t>(r.seed) : (std::random_device{}() & 0xffffffffu);
  p.batch_count = std::max(1, r.n);
  p.batch_size = 1;
  p.strength = r.strength;
  if (r.mode != ImageMode::Txt2Img) {
    if (r.init_image.empty()) error_throw("an init image is required", "image");
    p.init_image = image_decode({reinterpret_cast<const uint8_t*>(r.init_image.data()), r.init_image.size()}, "image");
  }
  if (r.mode == ImageMode::Inpaint) {
    if (r.mask.empty()) error_throw("a mask is required for inpainting", "mask");
    p.mask = image_decode({reinterpret_cast<const uint8_t*>(r.mask.data()), r.mask.size()}, "mask");
  }
  // A preview about five times per image (every step for short runs): the latent -> RGB
  // approximation, W/8 x H/8 pixels, a few hundred bytes.
  p.preview_every = std::max(1, r.steps / 5);
  const auto check_cancel = [&] {
    if (cancel.load()) throw ImageCancelled();
  };
  // Steps the sampler really runs (img2img and inpainting run int(steps * strength)): the preview
  // callback gives only the step, so it takes the total from the last progress report.
  int steps_run = r.steps;
  const std::vector<Tensor> images = image::sd_generate(
      *model_, p,
      [&](const image::SdProgress& pr) {
        check_cancel();
        if (pr.stage != image::SdProgress::Stage::Sample && pr.stage != image::SdProgress::Stage::Hires) return;
        steps_run = pr.steps;
        if (pr.step > 0) progress({pr.step, pr.steps, pr.batch, {}});
      },
      [&](int batch, int step, const Tensor& rgb) {
        check_cancel();
        const std::vector<uint8_t> png = image_encode_png(rgb.slice(0, 0, 1));
        progress({step, steps_run, batch, std::string(png.begin(), png.end())});
      });
  check_cancel();
  std::vector<std::string> out;
  for (size_t i = 0; i < images.size(); ++i) {
    const image::SdParameters params = image::sd_parameters_of(p, model_->info(), p.seed + i, 0);
    const std::vector<uint8_t> png = image_encode_png(images[i], {{"parameters", image::sd_parameters_format(params)}});
    out.emplace_back(png.begin(), png.end());
  }
  return out;
}

int64_t SdImageBackend::memory_bytes() const {
  // Components are released after every request; while one runs, about the checkpoint's size.
  std::error_code ec;
  const auto size = std::filesystem::file_size(path_, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

}  // namespace aigc::server
