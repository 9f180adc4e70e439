#include "image/image_size.h"

#include "core/error.h"

namespace aigc::image {

namespace {

void side_check(int v, const char* flag) {
  if (v <= 0 || v > kImageSizeMax)
    error_throw(fmt::format("image {} must be in [8, {}], got {}", flag + 2, kImageSizeMax, v), flag,
                "SD 1.x works best at 512, SD 2.x at 768");
  if (v % kLatentFactor != 0) {
    const int down = v / kLatentFactor * kLatentFactor, up = down + kLatentFactor;
    error_throw(fmt::format("image {} must be a multiple of 8, got {}", flag + 2, v), flag,
                down > 0 ? fmt::format("use {} or {}", down, up) : fmt::format("use {}", up));
  }
}

}  // namespace

void image_size_check(int width, int height) {
  side_check(width, "--width");
  side_check(height, "--height");
}

std::array<int64_t, 4> latent_shape(int batch, int width, int height) {
  image_size_check(width, height);
  if (batch < 1) error_throw(fmt::format("batch count must be >= 1, got {}", batch), "--batch-count");
  return {batch, kLatentChannels, height / kLatentFactor, width / kLatentFactor};
}

}  // namespace aigc::image
