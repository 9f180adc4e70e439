// Loss curve drawing (see loss_curve.h): lines by Bresenham, one pixel wide, thickened by one;
// axis numbers in a built-in 3x5 digit font.
#include "train/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

namespace aigc::train {

namespace {

struct Canvas {
  Tensor img;
  int w, h;
  void set(int x, int y, float r, float g, float b) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    float* p = img.ptr<float>();
    p[(0 * h + y) * w + x] = r;
    p[(1 * h + y) * w + x] = g;
    p[(2 * h + y) * w + x] = b;
  }
  // Digits in a 3x5 pixel font (rows top to bottom, 3 bits each, MSB left), drawn at 2x.
  void text(int x, int y, const std::string& str) {
    static const uint8_t font[10][5] = {{7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7},
                                        {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1},
                                        {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}};
    for (char ch : str) {
      if (ch >= '0' && ch <= '9')
        for (int r = 0; r < 5; ++r)
          for (int col = 0; col < 3; ++col)
            if (font[ch - '0'][r] & (4 >> col))
              for (int k = 0; k < 4; ++k) set(x + col * 2 + (k & 1), y + r * 2 + (k >> 1), 0.2f, 0.2f, 0.2f);
      x += 8;
    }
  }
  void line(int x0, int y0, int x1, int y1, float r, float g, float b) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      set(x0, y0, r, g, b);
      set(x0, y0 + 1, r, g, b);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) { err += dy; x0 += sx; }
      if (e2 <= dx) { err += dx; y0 += sy; }
    }
  }
};

}  // namespace

Tensor loss_curve_draw(const std::vector<LossPoint>& train, const std::vector<LossPoint>& val, int width, int height,
                       int smooth) {
  Canvas c{Tensor::empty(DType::F32, {1, 3, height, width}), width, height};
  std::fill(c.img.ptr<float>(), c.img.ptr<float>() + c.img.numel(), 1.0f);
  int64_t max_step = 1;
  float max_loss = 1.0f;
  for (const auto* v : {&train, &val})
    for (const LossPoint& p : *v) {
      max_step = std::max(max_step, p.step);
      if (std::isfinite(p.loss)) max_loss = std::max(max_loss, p.loss);
    }
  max_loss = std::ceil(max_loss);
  const int left = 40, right = 24, top = 20, bottom = 30;
  const int pw = width - left - right, ph = height - top - bottom;
  auto px = [&](int64_t step) { return left + static_cast<int>(static_cast<double>(step) / max_step * pw); };
  auto py = [&](float loss) {
    return top + ph - static_cast<int>(std::clamp(loss / max_loss, 0.0f, 1.0f) * static_cast<float>(ph));
  };
  for (int l = 0; l <= static_cast<int>(max_loss); ++l) c.line(left, py(static_cast<float>(l)), left + pw, py(static_cast<float>(l)), 0.85f, 0.85f, 0.85f);
  for (int l = 0; l <= static_cast<int>(max_loss); ++l) {  // y labels: the loss at each gridline
    const std::string t = std::to_string(l);
    c.text(left - 6 - 8 * static_cast<int>(t.size()), py(static_cast<float>(l)) - 5, t);
  }
  for (int i = 0; i <= 4; ++i) {  // x labels: steps at 0, 1/4, ..., the end
    const int64_t st = max_step * i / 4;
    const std::string t = std::to_string(st);
    c.text(std::min(px(st) - 4 * static_cast<int>(t.size()), width - 8 * static_cast<int>(t.size())), top + ph + 8, t);
  }
  c.line(left, top, left, top + ph, 0, 0, 0);            // y axis
  c.line(left, top + ph, left + pw, top + ph, 0, 0, 0);  // x axis
  smooth = std::max(1, smooth);
  int prev_x = -1, prev_y = -1;
  double acc = 0;
  for (size_t i = 0; i < train.size(); ++i) {
    acc += train[i].loss;
    if (i >= static_cast<size_t>(smooth)) acc -= train[i - static_cast<size_t>(smooth)].loss;
    const double mean = acc / static_cast<double>(std::min(i + 1, static_cast<size_t>(smooth)));
    const int x = px(train[i].step), y = py(static_cast<float>(mean));
    if (prev_x >= 0) c.line(prev_x, prev_y, x, y, 0.1f, 0.3f, 0.9f);
    prev_x = x;
    prev_y = y;
  }
  for (const LossPoint& p : val)
    for (int dy = -3; dy <= 3; ++dy)
      for (int dx = -3; dx <= 3; ++dx) c.set(px(p.step) + dx, py(p.loss) + dy, 0.9f, 0.1f, 0.1f);
  return c.img;
}

}  // namespace aigc::train
