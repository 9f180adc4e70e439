// TestPatternBackend: an ImageBackend that draws deterministic test patterns (no diffusion model).
// It exists so the image routes, the queue, progress events and the web UI's studio can be run
// end to end before a real image model is wired (`aigc serve --test-image-model NAME`, used by
// the Node and browser tests). Every image is a colour gradient keyed by prompt and seed; img2img
// and inpaint blend it into the decoded init image (inpaint only where the mask is white), so a
// test can see which inputs arrived. It never claims to be anything else: its PNGs carry
// "aigc test pattern" in a text chunk.
#pragma once

#include "server/image_backend.h"

namespace aigc::server {

class TestPatternBackend : public ImageBackend {
 public:
  explicit TestPatternBackend(int64_t step_delay_ms = 5) : step_delay_ms_(step_delay_ms) {}
  // Named as SdImageBackend's, so the studio's sampler list fits both.
  std::vector<std::string> samplers() const override { return {"euler_a", "euler", "dpm++2m"}; }
  void validate(const ImageRequest& r) const override;
  std::vector<std::string> generate(const ImageRequest& r, const ImageProgressFn& progress,
                                    const std::atomic<bool>& cancel) override;
  int64_t memory_bytes() const override { return 0; }

 private:
  int64_t step_delay_ms_;
};

}  // namespace aigc::server
