#include "server/sd_image_backend.h"

#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/image.h"
#include "image/sd_parameters.h"
#include "image/sd_pipeline.h"
#include "server/image_request_params.h"

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
  const image::SdGenerateParams p = image_request_params(r);
  const ImageCallbacks cb = image_callbacks(progress, cancel, p.sample.steps);
  const std::vector<Tensor> images = image::sd_generate(*model_, p, cb.progress, cb.preview);
  if (cancel.load()) throw ImageCancelled();
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
