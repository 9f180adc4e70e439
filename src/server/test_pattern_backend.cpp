#include "server/test_pattern_backend.h"

#include <chrono>
#include <thread>

#include "core/error.h"
#include "core/tensor.h"
#include "formats/image.h"

namespace aigc::server {

namespace {

uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// [1, 3, H, W] in [0, 1]: the decoded image resized (nearest) to w x h.
Tensor image_fit(const Tensor& src, int w, int h) {
  Tensor out = Tensor::empty(DType::F32, {1, 3, h, w});
  const int64_t sh = src.size(2), sw = src.size(3);
  const float* s = src.ptr<float>();
  float* o = out.ptr<float>();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        o[(c * h + y) * w + x] = s[(c * sh + y * sh / h) * sw + x * sw / w];
  return out;
}

}  // namespace

void TestPatternBackend::validate(const ImageRequest& r) const {
  if (r.width > 1024 || r.height > 1024) error_throw("the test pattern backend draws at most 1024x1024", "size");
}

std::vector<std::string> TestPatternBackend::generate(const ImageRequest& r, const ImageProgressFn& progress,
                                                      const std::atomic<bool>& cancel) {
  Tensor init, mask;
  if (r.mode != ImageMode::Txt2Img) {
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(r.init_image.data()), r.init_image.size());
    init = image_fit(image_decode(bytes, "image"), r.width, r.height);
    if (r.mode == ImageMode::Inpaint) {
      const std::span<const uint8_t> m(reinterpret_cast<const uint8_t*>(r.mask.data()), r.mask.size());
      mask = image_fit(image_decode(m, "mask"), r.width, r.height);
    }
  }
  const int64_t W = r.width, H = r.height, plane = W * H;
  std::vector<std::string> out;
  for (int i = 0; i < r.n; ++i) {
    const uint64_t h = fnv1a(r.prompt, fnv1a(std::to_string(r.seed + i)));
    const float base[3] = {(h & 255) / 255.0f, ((h >> 8) & 255) / 255.0f, ((h >> 16) & 255) / 255.0f};
    Tensor img = Tensor::empty(DType::F32, {1, 3, H, W});
    float* p = img.ptr<float>();
    for (int step = 1; step <= r.steps; ++step) {
      if (cancel) throw ImageCancelled();
      if (step_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms_));
      const float t = static_cast<float>(step) / r.steps;  // the pattern "develops" over the steps
      for (int c = 0; c < 3; ++c)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) {
            float v = t * (0.5f * base[c] + 0.25f * x / W + 0.25f * y / H);
            const int64_t k = c * plane + y * W + x;
            if (init.defined() && init.numel() > 0) {
              const float a = mask.numel() > 0 ? r.strength * mask.ptr<float>()[y * W + x] : r.strength;
              v = (1 - a) * init.ptr<float>()[k] + a * v;
            }
            p[k] = v;
          }
      ImageProgress pr{step, r.steps, i, {}};
      if (step == r.steps || step % 4 == 0) {
        const std::vector<uint8_t> png = image_encode_png(img);
        pr.preview_png.assign(png.begin(), png.end());
      }
      progress(pr);
    }
    const std::vector<uint8_t> png = image_encode_png(img, {{"Software", "aigc test pattern"}, {"parameters", r.prompt}});
    out.emplace_back(png.begin(), png.end());
  }
  return out;
}

}  // namespace aigc::server
