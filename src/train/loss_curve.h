// Loss-curve plot: training loss (and validation points) against the step, drawn into an RGB
// image for image_write_png (formats/image.h). Gridlines mark each 1.0 of loss, labelled; the x
// axis is labelled with steps at 0, 1/4, ..., the last (a built-in digit font, no font files).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace aigc::train {

struct LossPoint {
  int64_t step;
  float loss;
};

// f32 [1, 3, height, width] in [0, 1]: white background, light grey gridlines at integer losses,
// train loss as a blue line (moving average of `smooth` points), validation as red squares.
// The y axis spans [0, max loss] rounded up to an integer; x spans [0, max step].
Tensor loss_curve_draw(const std::vector<LossPoint>& train, const std::vector<LossPoint>& val, int width = 800,
                       int height = 500, int smooth = 1);

}  // namespace aigc::train
