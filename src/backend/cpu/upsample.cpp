// upsample_nearest: x [N, C, H, W] -> y [N, C, H*scale, W*scale], y[.., i, j] = x[.., i/scale, j/scale]
// (F.interpolate(mode='nearest') with an integer scale factor).
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void upsample_check(const Tensor& x, int scale, const Tensor& y) {
  check_f32(x, "upsample_nearest", "x");
  check_f32(y, "upsample_nearest", "y");
  if (scale < 1) error_throw(fmt::format("upsample_nearest: scale {} must be >= 1", scale), "upsample_nearest");
  if (x.ndim() != 4 || y.ndim() != 4 || y.size(0) != x.size(0) || y.size(1) != x.size(1) ||
      y.size(2) != x.size(2) * scale || y.size(3) != x.size(3) * scale)
    error_throw(fmt::format("upsample_nearest: x {} with scale {} does not give y {}", x.shape_str(), scale,
                            y.shape_str()),
                "upsample_nearest", "x and y must be [N, C, H, W] and [N, C, H*scale, W*scale]");
}

}  // namespace

void ref::upsample_nearest(const Tensor& x, int scale, Tensor& y) {
  upsample_check(x, scale, y);
  for (int64_t n = 0; n < y.size(0); ++n)
    for (int64_t c = 0; c < y.size(1); ++c)
      for (int64_t i = 0; i < y.size(2); ++i)
        for (int64_t j = 0; j < y.size(3); ++j) y.at<float>(n, c, i, j) = x.at<float>(n, c, i / scale, j / scale);
}

void upsample_nearest(const Tensor& x, int scale, Tensor& y) {
  upsample_check(x, scale, y);
  if (!rows_dense_f32(x) || !rows_dense_f32(y)) return ref::upsample_nearest(x, scale, y);
  const int64_t w = x.size(3), wo = y.size(3);
  // one task per input row: it fills `scale` output rows
  parallel_for(x.rows(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = static_cast<const float*>(x.row_ptr(r));
      const int64_t h = r % x.size(2), nc = r / x.size(2);
      float* y0 = static_cast<float*>(y.row_ptr(nc * y.size(2) + h * scale));
      for (int64_t j = 0; j < w; ++j)
        for (int s = 0; s < scale; ++s) y0[j * scale + s] = xr[j];
      for (int s = 1; s < scale; ++s) {
        float* ys = static_cast<float*>(y.row_ptr(nc * y.size(2) + h * scale + s));
        for (int64_t j = 0; j < wo; ++j) ys[j] = y0[j];
      }
    }
  }, 16);
}

}  // namespace aigc::ops
