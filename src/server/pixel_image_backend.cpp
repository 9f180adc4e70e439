#include "server/pixel_image_backend.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "formats/image.h"
#include "image/sd_parameters.h"
#include "server/image_request_params.h"

namespace aigc::server {

namespace {

// f32 [1, 3, h, w] -> [1, 3, H, W], nearest neighbour (each output pixel takes the source pixel
// its centre falls in).
Tensor resize_nearest(const Tensor& img, int64_t H, int64_t W) {
  const int64_t h = img.size(2), w = img.size(3);
  if (h == H && w == W) return img;
  Tensor out = Tensor::empty(DType::F32, {1, 3, H, W});
  const float* s = img.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) o[(c * H + y) * W + x] = s[(c * h + y * h / H) * w + x * w / W];
  return out;
}

}  // namespace

PixelImageBackend::PixelImageBackend(const std::string& path)
    : model_(std::make_unique<image::PixelDiffusion>(image::PixelDiffusion::open(path))) {
  bytes_ = model_->memory_bytes();
}

PixelImageBackend::~PixelImageBackend() = default;

std::vector<std::string> PixelImageBackend::samplers() const {
  return {"euler_a", "euler", "heun", "dpm++2m", "dpm++2m_karras", "ddim", "ddpm"};
}

void PixelImageBackend::validate(const ImageRequest& r) const {
  if (r.width < 1 || r.height < 1 || r.width > 4096 || r.height > 4096)
    error_throw(fmt::format("size {}x{} is out of range", r.width, r.height), "size");
  if (r.steps < 1 || r.steps > 150) error_throw(fmt::format("steps must be 1 to 150, got {}", r.steps), "steps");
  if (!r.sampler.empty()) {
    const auto names = samplers();
    if (std::find(names.begin(), names.end(), r.sampler) == names.end())
      error_throw(fmt::format("unknown sampler '{}' for a pixel-diffusion model", r.sampler), "sampler");
  }
  if (!(r.cfg_scale >= 0.0f && r.cfg_scale <= 50.0f))
    error_throw(fmt::format("cfg_scale must be 0 to 50, got {}", r.cfg_scale), "cfg_scale");
  if (r.mode != ImageMode::Txt2Img && !(r.strength > 0.0f && r.strength <= 1.0f))
    error_throw(fmt::format("strength must be in (0, 1], got {}", r.strength), "strength");
  // The prompt's words: an unknown one is a bad request naming the words the model knows.
  std::vector<int32_t> ids(static_cast<size_t>(model_->config().unet.text_len));
  model_->tokenize(r.prompt, ids);
  model_->tokenize(r.negative_prompt, ids);
}

std::vector<std::string> PixelImageBackend::generate(const ImageRequest& r, const ImageProgressFn& progress,
                                                     const std::atomic<bool>& cancel) {
  validate(r);
  std::lock_guard lock(mutex_);
  image::SdGenerateParams p = image_request_params(r);
  p.width = p.height = model_->image_size();  // the model's own size; scaled to the request below
  const ImageCallbacks cb = image_callbacks(progress, cancel, p.sample.steps);
  const std::vector<Tensor> images = image::pixel_diffusion_generate(*model_, p, cb.progress, cb.preview);
  if (cancel.load()) throw ImageCancelled();
  std::vector<std::string> out;
  for (size_t i = 0; i < images.size(); ++i) {
    const image::SdParameters params = image::sd_parameters_of(p, model_->info(), p.seed + i, 0);
    const Tensor img = resize_nearest(images[i], r.height, r.width);
    const std::vector<uint8_t> png = image_encode_png(img, {{"parameters", image::sd_parameters_format(params)}});
    out.emplace_back(png.begin(), png.end());
  }
  bytes_ = model_->memory_bytes();  // the graphs built for this request's shapes stay
  return out;
}

int64_t PixelImageBackend::memory_bytes() const { return bytes_; }

}  // namespace aigc::server
