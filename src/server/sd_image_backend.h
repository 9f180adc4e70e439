// SdImageBackend: a Stable Diffusion 1.x / 2.x checkpoint (src/image/sd_model.h) served as an
// ImageBackend. The model file is detected when the backend opens (headers only); components load
// on the first request and are released after each one (release_components), so an idle image
// model holds little memory. Progress: one event per sampler step, with a preview (the fast
// latent -> RGB approximation) every few steps. Output PNGs carry A1111's 'parameters' chunk.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "image/sd_model.h"
#include "server/image_backend.h"

namespace aigc::server {

class SdImageBackend : public ImageBackend {
 public:
  // Throws aigc::Error for an unsupported file.
  explicit SdImageBackend(const std::string& path, const image::SdModelOptions& options = {});
  ~SdImageBackend() override;

  std::vector<std::string> samplers() const override;
  void validate(const ImageRequest& r) const override;
  std::vector<std::string> generate(const ImageRequest& r, const ImageProgressFn& progress,
                                    const std::atomic<bool>& cancel) override;
  int64_t memory_bytes() const override;

 private:
  std::string path_;
  std::unique_ptr<image::SdModel> model_;
  std::mutex mutex_;
};

}  // namespace aigc::server
