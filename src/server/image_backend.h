// ImageBackend: what the server needs from an image model, so the HTTP routes, the queue and the
// UI do not depend on how images are made.
//
// The real backend is SdImageBackend (server/sd_image_backend.h: Stable Diffusion through
// src/image/sd_pipeline.h), set by `aigc serve` as RegistryOptions::image_backend_open. Tests also
// use a fake backend.
//
//   class MyBackend : public ImageBackend {
//     std::vector<std::string> generate(const ImageRequest& r, const ImageProgressFn& progress,
//                                       const std::atomic<bool>& cancel) override {
//       for (int s = 0; s < r.steps; ++s) { if (cancel) throw ImageCancelled(); progress({s + 1, r.steps, {}}); }
//       return {png_bytes};
//     }
//   };
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace aigc::server {

enum class ImageMode { Txt2Img, Img2Img, Inpaint };

struct ImageRequest {
  ImageMode mode = ImageMode::Txt2Img;
  std::string prompt;
  std::string negative_prompt;
  int n = 1;            // images (each with seed + i)
  int width = 512, height = 512;
  int steps = 20;
  std::string sampler;  // "euler_a", "euler", "dpm++2m", ... ("" = the backend's default)
  float cfg_scale = 7.0f;
  int64_t seed = -1;    // < 0: random
  float strength = 0.75f;     // img2img / inpaint: how much of the init image is replaced
  std::string init_image;     // img2img / inpaint: encoded PNG or JPEG bytes (as uploaded)
  std::string mask;           // inpaint: encoded image; white = repaint
};

struct ImageProgress {
  int step = 0, total = 0;
  int image_index = 0;         // which of the n images
  std::string preview_png;     // optional small preview (PNG bytes), empty when none
};
using ImageProgressFn = std::function<void(const ImageProgress&)>;

// Thrown by generate() when `cancel` became true.
struct ImageCancelled : std::runtime_error {
  ImageCancelled() : std::runtime_error("image generation cancelled") {}
};

class ImageBackend {
 public:
  virtual ~ImageBackend() = default;
  // Samplers this backend knows (for validation and the UI); the first is the default.
  virtual std::vector<std::string> samplers() const = 0;
  // Checks `r` (sizes, steps) and throws aigc::Error naming the bad field for a request it cannot do.
  virtual void validate(const ImageRequest& r) const = 0;
  // Returns r.n encoded PNG images. Calls `progress` after each step; checks `cancel` often and
  // throws ImageCancelled when it is set. Throws aigc::Error for bad input (e.g. an undecodable
  // init image). Runs on the model's worker thread, one request at a time.
  virtual std::vector<std::string> generate(const ImageRequest& r, const ImageProgressFn& progress,
                                            const std::atomic<bool>& cancel) = 0;
  // Bytes this backend holds in memory (for the memory budget).
  virtual int64_t memory_bytes() const = 0;
};

}  // namespace aigc::server
