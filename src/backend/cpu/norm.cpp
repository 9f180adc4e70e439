// group_norm, layer_norm, rms_norm. Statistics in double (reference and fast kernels alike); the
// fast kernels split rows (or (n, group) pairs) over threads and use the vectorised row kernels.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels_f32.h"
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void param_check(const Tensor* p, int64_t c, const char* op, const char* name) {
  if (!p) return;
  check_f32(*p, op, name);
  if (!(p->ndim() == 1 && p->size(0) == c && p->is_contiguous()))
    error_throw(fmt::format("{}: {} must be contiguous [{}], got {}", op, name, c, p->shape_str()), op);
}

void group_norm_check(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, const Tensor& y) {
  check_f32(x, "group_norm", "x");
  check_f32(y, "group_norm", "y");
  check_same_shape(x, y, "group_norm");
  if (x.ndim() < 2)
    error_throw(fmt::format("group_norm: x must be [N, C, ...], got {}", x.shape_str()), "group_norm");
  if (groups <= 0 || x.size(1) % groups != 0)
    error_throw(fmt::format("group_norm: {} channels do not split into {} groups", x.size(1), groups),
                "group_norm");
  param_check(&gamma, x.size(1), "group_norm", "gamma");
  param_check(&beta, x.size(1), "group_norm", "beta");
}

void last_dim_check(const Tensor& x, const Tensor* gamma, const Tensor* beta, const Tensor& y, const char* op) {
  check_f32(x, op, "x");
  check_f32(y, op, "y");
  check_same_shape(x, y, op);
  if (x.ndim() < 1) error_throw(fmt::format("{}: x must have at least one dim", op), op);
  param_check(gamma, x.size(-1), op, "gamma");
  param_check(beta, x.size(-1), op, "beta");
}

}  // namespace

// ---- reference ----------------------------------------------------------------------------

void ref::group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, Tensor& y) {
  group_norm_check(x, gamma, beta, groups, y);
  const int64_t n = x.size(0), c = x.size(1), cg = c / groups;
  const int64_t spatial = x.numel() / std::max<int64_t>(1, n * c);
  // flat index of (b, ch, s) in row-major order over x's shape
  auto flat = [&](int64_t b, int64_t ch, int64_t s) { return (b * c + ch) * spatial + s; };
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      double sum = 0.0, sq = 0.0;
      for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch)
        for (int64_t s = 0; s < spatial; ++s) sum += f32_at_flat(x, flat(b, ch, s));
      const double count = static_cast<double>(cg * spatial);
      const double mean = sum / count;
      for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch)
        for (int64_t s = 0; s < spatial; ++s) {
          const double d = f32_at_flat(x, flat(b, ch, s)) - mean;
          sq += d * d;
        }
      const double rstd = 1.0 / std::sqrt(sq / count + eps);
      for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch)
        for (int64_t s = 0; s < spatial; ++s)
          f32_at_flat(y, flat(b, ch, s)) = static_cast<float>(
              (f32_at_flat(x, flat(b, ch, s)) - mean) * rstd * gamma.ptr<float>()[ch] + beta.ptr<float>()[ch]);
    }
  }
}

void ref::layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps, Tensor& y) {
  last_dim_check(x, gamma, beta, y, "layer_norm");
  const int64_t c = x.size(-1), rows = x.rows();
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < c; ++i) sum += f32_at_flat(x, r * c + i);
    const double mean = sum / c;
    for (int64_t i = 0; i < c; ++i) {
      const double d = f32_at_flat(x, r * c + i) - mean;
      sq += d * d;
    }
    const double rstd = 1.0 / std::sqrt(sq / c + eps);
    for (int64_t i = 0; i < c; ++i) {
      double v = (f32_at_flat(x, r * c + i) - mean) * rstd;
      if (gamma) v *= gamma->ptr<float>()[i];
      if (beta) v += beta->ptr<float>()[i];
      f32_at_flat(y, r * c + i) = static_cast<float>(v);
    }
  }
}

void ref::rms_norm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) {
  last_dim_check(x, gamma, nullptr, y, "rms_norm");
  const int64_t c = x.size(-1), rows = x.rows();
  for (int64_t r = 0; r < rows; ++r) {
    double sq = 0.0;
    for (int64_t i = 0; i < c; ++i) {
      const double v = f32_at_flat(x, r * c + i);
      sq += v * v;
    }
    const double rstd = 1.0 / std::sqrt(sq / c + eps);
    for (int64_t i = 0; i < c; ++i) {
      double v = f32_at_flat(x, r * c + i) * rstd;
      if (gamma) v *= gamma->ptr<float>()[i];
      f32_at_flat(y, r * c + i) = static_cast<float>(v);
    }
  }
}

// ---- fast ---------------------------------------------------------------------------------

namespace {

// x is a channels-last [N, C, H, W] view of an NHWC buffer (what PackedConv2d reads and writes
// without reorders).
bool channels_last(const Tensor& x) {
  if (x.ndim() != 4) return false;
  const int64_t es = static_cast<int64_t>(sizeof(float)), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.stride_bytes(1) == es && x.stride_bytes(3) == c * es && x.stride_bytes(2) == w * c * es &&
         x.stride_bytes(0) == h * w * c * es;
}

// group_norm on channels-last x and y: a pixel's channels are contiguous, so statistics are
// accumulated per channel over pixels (vectorised across channels, pixels split over threads,
// partial sums in double per thread) and reduced per group; then y = x * a[c] + b[c] per pixel.
void group_norm_channels_last(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,
                              Tensor& y) {
  const int64_t n = x.size(0), c = x.size(1), pixels = x.size(2) * x.size(3), cg = c / groups;
  const int nth = thread_count();
  std::vector<double> part(static_cast<size_t>(nth) * c), mean(groups), rstd(groups);
  std::vector<float> a(c), b(c);
  const double count = static_cast<double>(cg * pixels);
  for (int64_t bi = 0; bi < n; ++bi) {
    const float* xb = x.ptr<float>() + bi * pixels * c;
    float* yb = y.ptr<float>() + bi * pixels * c;
    // pass 1: per-channel sums; pass 2: per-channel sums of squared deviations from the group mean
    for (int pass = 0; pass < 2; ++pass) {
      std::fill(part.begin(), part.end(), 0.0);
      std::vector<float> center(c);
      for (int64_t ch = 0; ch < c; ++ch) center[ch] = pass == 0 ? 0.0f : static_cast<float>(mean[ch / cg]);
      thread_pool_run([&](int ith, int nt) {
        const int64_t p0 = pixels * ith / nt, p1 = pixels * (ith + 1) / nt;
        double* acc = part.data() + static_cast<size_t>(ith) * c;
        std::vector<float> chunk(c);
        constexpr int64_t kChunk = 64;  // pixels summed in float before joining the double sum
        for (int64_t q0 = p0; q0 < p1; q0 += kChunk) {
          std::fill(chunk.begin(), chunk.end(), 0.0f);
          const int64_t q1 = std::min(p1, q0 + kChunk);
          for (int64_t q = q0; q < q1; ++q) {
            const float* xp = xb + q * c;
            if (pass == 0) {
#pragma omp simd
              for (int64_t ch = 0; ch < c; ++ch) chunk[ch] += xp[ch];
            } else {
#pragma omp simd
              for (int64_t ch = 0; ch < c; ++ch) {
                const float d = xp[ch] - center[ch];
                chunk[ch] += d * d;
              }
            }
          }
          for (int64_t ch = 0; ch < c; ++ch) acc[ch] += chunk[ch];
        }
      });
      for (int g = 0; g < groups; ++g) {
        double sum = 0.0;
        for (int t = 0; t < nth; ++t)
          for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch) sum += part[static_cast<size_t>(t) * c + ch];
        if (pass == 0) mean[g] = sum / count;
        else rstd[g] = 1.0 / std::sqrt(sum / count + eps);
      }
    }
    for (int64_t ch = 0; ch < c; ++ch) {  // y = (x - mean) * rstd * gamma + beta == x * a + b
      const double ad = rstd[ch / cg] * gamma.ptr<float>()[ch];
      a[ch] = static_cast<float>(ad);
      b[ch] = static_cast<float>(beta.ptr<float>()[ch] - mean[ch / cg] * ad);
    }
    parallel_for(pixels, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const float* xp = xb + q * c;
        float* yp = yb + q * c;
#pragma omp simd
        for (int64_t ch = 0; ch < c; ++ch) yp[ch] = xp[ch] * a[ch] + b[ch];
      }
    }, 16);
  }
}

}  // namespace

void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, Tensor& y) {
  group_norm_check(x, gamma, beta, groups, y);
  if (channels_last(x) && channels_last(y) && !x.is_contiguous())
    return group_norm_channels_last(x, gamma, beta, groups, eps, y);
  if (!x.is_contiguous() || !y.is_contiguous()) return ref::group_norm(x, gamma, beta, groups, eps, y);
  const KernelsF32& k = kernels_f32();
  const int64_t n = x.size(0), c = x.size(1), cg = c / groups;
  const int64_t spatial = x.numel() / std::max<int64_t>(1, n * c);
  const int64_t group_len = cg * spatial;  // a group is contiguous: channels [g*cg, (g+1)*cg) x spatial
  const float* gm = gamma.ptr<float>();
  const float* bt = beta.ptr<float>();
  parallel_for(n * groups, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xg = x.ptr<float>() + t * group_len;
      float* yg = y.ptr<float>() + t * group_len;
      const double mean = k.sum(xg, group_len) / static_cast<double>(group_len);
      const double var = k.sum_sq_dev(xg, group_len, static_cast<float>(mean)) / static_cast<double>(group_len);
      const double rstd = 1.0 / std::sqrt(var + eps);
      const int64_t ch0 = (t % groups) * cg;
      for (int64_t j = 0; j < cg; ++j) {
        // y = (x - mean) * rstd * gamma + beta == x * a + b per channel
        const double a = rstd * gm[ch0 + j];
        const double b = bt[ch0 + j] - mean * a;
        k.scale_shift(xg + j * spatial, yg + j * spatial, spatial, static_cast<float>(a), static_cast<float>(b));
      }
    }
  });
}

namespace {

// Shared body of layer_norm (center = true) and rms_norm (center = false, no beta).
void norm_rows(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps, bool center, Tensor& y) {
  const KernelsF32& k = kernels_f32();
  const int64_t c = x.size(-1);
  const float* g = gamma ? gamma->ptr<float>() : nullptr;
  const float* b = beta ? beta->ptr<float>() : nullptr;
  parallel_for(x.rows(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = static_cast<const float*>(x.row_ptr(r));
      float* yr = static_cast<float*>(y.row_ptr(r));
      const double mean = center ? k.sum(xr, c) / c : 0.0;
      const double var = k.sum_sq_dev(xr, c, static_cast<float>(mean)) / c;
      const float rstd = static_cast<float>(1.0 / std::sqrt(var + eps));
      k.normalize(xr, yr, c, static_cast<float>(mean), rstd, g, b);
    }
  }, 4);
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps, Tensor& y) {
  last_dim_check(x, gamma, beta, y, "layer_norm");
  if (!rows_dense_f32(x) || !rows_dense_f32(y)) return ref::layer_norm(x, gamma, beta, eps, y);
  norm_rows(x, gamma, beta, eps, true, y);
}

void rms_norm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) {
  last_dim_check(x, gamma, nullptr, y, "rms_norm");
  if (!rows_dense_f32(x) || !rows_dense_f32(y)) return ref::rms_norm(x, gamma, eps, y);
  norm_rows(x, gamma, nullptr, eps, false, y);
}

}  // namespace aigc::ops
