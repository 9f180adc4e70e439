#include "server/image_request_params.h"

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/image.h"

namespace aigc::server {

image::SdGenerateParams image_request_params(const ImageRequest& r) {
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
  p.preview_every = std::max(1, r.steps / 5);
  return p;
}

ImageCallbacks image_callbacks(const ImageProgressFn& progress, const std::atomic<bool>& cancel, int steps) {
  // Steps the sampler really runs (img2img and inpainting run int(steps * strength)): previews
  // give only the step, so they take the total from the last progress report.
  auto steps_run = std::make_shared<int>(steps);
  ImageCallbacks c;
  c.progress = [&progress, &cancel, steps_run](const image::SdProgress& pr) {
    if (cancel.load()) throw ImageCancelled();
    if (pr.stage != image::SdProgress::Stage::Sample && pr.stage != image::SdProgress::Stage::Hires) return;
    *steps_run = pr.steps;
    if (pr.step > 0) progress({pr.step, pr.steps, pr.batch, {}});
  };
  c.preview = [&progress, &cancel, steps_run](int batch, int step, const Tensor& rgb) {
    if (cancel.load()) throw ImageCancelled();
    const std::vector<uint8_t> png = image_encode_png(rgb.slice(0, 0, 1));
    progress({step, *steps_run, batch, std::string(png.begin(), png.end())});
  };
  return c;
}

}  // namespace aigc::server
