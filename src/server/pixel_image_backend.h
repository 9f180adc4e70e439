// PixelImageBackend: aigc's own pixel-diffusion model (src/image/pixel_diffusion.h) served as an
// ImageBackend. The model is small: it loads when the backend opens and stays. It draws at its own
// training size (the only size it knows); the PNGs are scaled to the requested size with nearest
// neighbour, so the shapes stay crisp. Progress: one event per sampler step, with a preview (the
// current denoised estimate) every few steps. Output PNGs carry A1111's 'parameters' chunk.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "image/pixel_diffusion.h"
#include "server/image_backend.h"

namespace aigc::server {

class PixelImageBackend : public ImageBackend {
 public:
  // Throws aigc::Error for a file that is no pixel-diffusion checkpoint.
  explicit PixelImageBackend(const std::string& path);
  ~PixelImageBackend() override;

  std::vector<std::string> samplers() const override;
  void validate(const ImageRequest& r) const override;
  std::vector<std::string> generate(const ImageRequest& r, const ImageProgressFn& progress,
                                    const std::atomic<bool>& cancel) override;
  int64_t memory_bytes() const override;

 private:
  std::unique_ptr<image::PixelDiffusion> model_;
  std::mutex mutex_;
  std::atomic<int64_t> bytes_{0};  // read without the lock: the registry asks while a request runs
};

}  // namespace aigc::server
