#include "image/image_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace aigc::image {

namespace {

// Weights of a 1-D resample from n_in to n_out samples of the output window [off, off + n_out * scale)
// of the input (scale = input samples per output sample): a triangle kernel, support max(1, scale).
struct Taps {
  std::vector<int> start, count;
  std::vector<float> w;  // count[i] weights per output i, stored at i * max_taps
  int max_taps = 0;
};

Taps taps_make(int n_in, int n_out, double scale, double off) {
  Taps t;
  const double support = std::max(1.0, scale);
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 2;
  t.start.resize(n_out);
  t.count.resize(n_out);
  t.w.assign(static_cast<size_t>(n_out) * t.max_taps, 0.0f);
  for (int i = 0; i < n_out; ++i) {
    const double center = off + (i + 0.5) * scale;  // in input pixel coordinates
    int lo = static_cast<int>(std::floor(center - support));
    int hi = static_cast<int>(std::ceil(center + support));
    lo = std::max(lo, 0);
    hi = std::min(hi, n_in);
    std::vector<double> ws;
    double sum = 0;
    for (int j = lo; j < hi; ++j) {
      const double d = std::abs((j + 0.5 - center) / support);
      const double v = d < 1.0 ? 1.0 - d : 0.0;
      ws.push_back(v);
      sum += v;
    }
    // Drop zero tails so count stays within max_taps.
    int a = 0, b = static_cast<int>(ws.size());
    while (a < b && ws[a] == 0.0) ++a;
    while (b > a && ws[b - 1] == 0.0) --b;
    if (a == b || sum <= 0) {  // only when centre is outside: nearest sample
      const int j = std::clamp(static_cast<int>(center), 0, n_in - 1);
      t.start[i] = j;
      t.count[i] = 1;
      t.w[static_cast<size_t>(i) * t.max_taps] = 1.0f;
      continue;
    }
    AIGC_ASSERT(b - a <= t.max_taps);
    t.start[i] = lo + a;
    t.count[i] = b - a;
    for (int k = a; k < b; ++k) t.w[static_cast<size_t>(i) * t.max_taps + (k - a)] = static_cast<float>(ws[k] / sum);
  }
  return t;
}

}  // namespace

Tensor image_resize_crop(const Tensor& img, int width, int height) {
  AIGC_CHECK(img.ndim() == 4 && img.size(0) == 1 && img.type() == DType::F32 && img.is_contiguous(),
             "image_resize_crop: expected a contiguous f32 [1, C, H, W] image, got {}", img.shape_str());
  AIGC_ASSERT(width > 0 && height > 0);
  const int64_t C = img.size(1), h = img.size(2), w = img.size(3);
  AIGC_CHECK(h > 0 && w > 0, "image_resize_crop: empty image {}", img.shape_str());
  // Cover: the larger of the two scale factors (output / input), then crop the centre.
  const double f = std::max(static_cast<double>(width) / w, static_cast<double>(height) / h);
  const double sx = 1.0 / f, sy = 1.0 / f;  // input pixels per output pixel
  const double offx = (w - width * sx) / 2.0, offy = (h - height * sy) / 2.0;
  const Taps tx = taps_make(static_cast<int>(w), width, sx, offx);
  const Taps ty = taps_make(static_cast<int>(h), height, sy, offy);
  Tensor tmp = Tensor::empty(DType::F32, {C, h, width});  // horizontal pass
  Tensor out = Tensor::empty(DType::F32, {1, C, height, width});
  const float* src = img.ptr<float>();
  float* t = tmp.ptr<float>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < h; ++y) {
      const float* row = src + (c * h + y) * w;
      float* o = t + (c * h + y) * width;
      for (int x = 0; x < width; ++x) {
        const float* wk = &tx.w[static_cast<size_t>(x) * tx.max_taps];
        double acc = 0;
        for (int k = 0; k < tx.count[x]; ++k) acc += wk[k] * row[tx.start[x] + k];
        o[x] = static_cast<float>(acc);
      }
    }
  float* o = out.ptr<float>();
  for (int64_t c = 0; c < C; ++c)
    for (int y = 0; y < height; ++y) {
      const float* wk = &ty.w[static_cast<size_t>(y) * ty.max_taps];
      float* orow = o + (c * height + y) * width;
      for (int x = 0; x < width; ++x) {
        double acc = 0;
        for (int k = 0; k < ty.count[y]; ++k) acc += wk[k] * t[(c * h + ty.start[y] + k) * width + x];
        orow[x] = static_cast<float>(acc);
      }
    }
  return out;
}

Tensor latent_upscale(const Tensor& x, int scale, bool nearest) {
  AIGC_ASSERT(x.ndim() == 4 && x.type() == DType::F32 && x.is_contiguous() && scale >= 1);
  const int64_t N = x.size(0) * x.size(1), h = x.size(2), w = x.size(3), H = h * scale, W = w * scale;
  Tensor out = Tensor::empty(DType::F32, {x.size(0), x.size(1), H, W});
  const float* s = x.ptr<float>();
  float* o = out.ptr<float>();
  // Source coordinate of output pixel i (align_corners=False), clamped at 0 as PyTorch does.
  auto src_coord = [scale](int64_t i, int64_t n, int64_t& i0, int64_t& i1, float& l1) {
    double c = (i + 0.5) / scale - 0.5;
    if (c < 0) c = 0;
    i0 = std::min<int64_t>(static_cast<int64_t>(c), n - 1);
    i1 = std::min<int64_t>(i0 + 1, n - 1);
    l1 = static_cast<float>(c - static_cast<double>(i0));
  };
  for (int64_t p = 0; p < N; ++p) {
    const float* sp = s + p * h * w;
    float* op = o + p * H * W;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t xx = 0; xx < W; ++xx) {
        if (nearest) {
          op[y * W + xx] = sp[(y / scale) * w + xx / scale];
          continue;
        }
        int64_t y0, y1, x0, x1;
        float ly, lx;
        src_coord(y, h, y0, y1, ly);
        src_coord(xx, w, x0, x1, lx);
        const float top = (1 - lx) * sp[y0 * w + x0] + lx * sp[y0 * w + x1];
        const float bot = (1 - lx) * sp[y1 * w + x0] + lx * sp[y1 * w + x1];
        op[y * W + xx] = (1 - ly) * top + ly * bot;
      }
  }
  return out;
}

Tensor mask_to_latent(const Tensor& mask) {
  AIGC_ASSERT(mask.ndim() == 4 && mask.size(0) == 1 && mask.size(1) == 1 && mask.is_contiguous() &&
              mask.size(2) % 8 == 0 && mask.size(3) % 8 == 0);
  const int64_t H = mask.size(2), W = mask.size(3), h = H / 8, w = W / 8;
  Tensor out = Tensor::empty(DType::F32, {1, 1, h, w});
  const float* m = mask.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double acc = 0;
      for (int dy = 0; dy < 8; ++dy)
        for (int dx = 0; dx < 8; ++dx) acc += m[(y * 8 + dy) * W + x * 8 + dx];
      o[y * w + x] = static_cast<float>(acc / 64.0);
    }
  return out;
}

Tensor image_to_gray(const Tensor& img) {
  AIGC_ASSERT(img.ndim() == 4 && img.size(0) == 1 && img.size(1) == 3 && img.is_contiguous());
  const int64_t n = img.size(2) * img.size(3);
  Tensor out = Tensor::empty(DType::F32, {1, 1, img.size(2), img.size(3)});
  const float* p = img.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t i = 0; i < n; ++i) o[i] = 0.299f * p[i] + 0.587f * p[n + i] + 0.114f * p[2 * n + i];
  return out;
}

}  // namespace aigc::image
