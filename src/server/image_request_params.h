// An ImageRequest (server/image_backend.h) as the image generators' parameters and callbacks: what
// every diffusion backend does the same way (SdImageBackend, PixelImageBackend).
#pragma once

#include <atomic>

#include "image/sd_pipeline.h"
#include "server/image_backend.h"

namespace aigc::server {

// Prompt, negative prompt, size, sampler (default Euler a), steps, cfg, seed (random when < 0),
// r.n images as batches of one, strength, the decoded init image and mask (aigc::Error when
// undecodable or missing for the mode), a preview every steps / 5 steps.
image::SdGenerateParams image_request_params(const ImageRequest& r);

// Progress and preview callbacks for the generators: one event per sampler step (first and hires
// passes; total = the steps the pass really runs), previews as PNG; both throw ImageCancelled once
// `cancel` is set. `progress` and `cancel` must outlive the callbacks.
struct ImageCallbacks {
  image::SdProgressFn progress;
  image::SdPreviewFn preview;
};
ImageCallbacks image_callbacks(const ImageProgressFn& progress, const std::atomic<bool>& cancel, int steps);

}  // namespace aigc::server
