// Rotary position embedding. x [T, H, D] or [B, T, H, D], positions [T]. For i < n_dims/2 the
// angle is theta_i = pos * freq_scale * freq_base^(-2i / n_dims) (divided by freq_factors[i] when
// given: Llama 3.1's rope_freqs) and a pair (x_a, x_b) becomes (x_a cos - x_b sin, x_a sin + x_b cos),
// where the pair is (2i, 2i+1) (GPT-J / llama.cpp "normal", Meta's complex-number form) or
// (i, i + n_dims/2) (NeoX, HF rotate_half). Dims from n_dims on pass through unchanged.
#include <cmath>
#include <vector>

#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

int64_t rope_check(const Tensor& x, std::span<const int32_t> positions, const RopeParams& p, const Tensor& y) {
  check_f32(x, "rope", "x");
  check_f32(y, "rope", "y");
  check_same_shape(x, y, "rope");
  if (x.ndim() != 3 && x.ndim() != 4)
    error_throw(fmt::format("rope: x must be [T, H, D] or [B, T, H, D], got {}", x.shape_str()), "rope");
  const int64_t t = x.size(-3), d = x.size(-1);
  if (static_cast<int64_t>(positions.size()) != t)
    error_throw(fmt::format("rope: {} positions for T = {} ({})", positions.size(), t, x.shape_str()), "rope");
  const int64_t n_dims = p.n_dims == 0 ? d : p.n_dims;
  if (n_dims < 0 || n_dims > d || n_dims % 2 != 0)
    error_throw(fmt::format("rope: n_dims {} must be even and at most the head dim {}", n_dims, d), "rope");
  if (!(p.freq_base > 0.0f)) error_throw(fmt::format("rope: freq_base {} must be positive", p.freq_base), "rope");
  if (p.freq_factors)
    for (int64_t i = 0; i < n_dims / 2; ++i)
      if (!(p.freq_factors[i] > 0.0f) || std::isinf(p.freq_factors[i]))
        error_throw(fmt::format("rope: freq_factors[{}] = {} must be positive and finite", i, p.freq_factors[i]),
                    "rope", "the model's rope_freqs tensor is damaged");
  return n_dims;
}

// theta_i of pair i at position pos, in double (the fast kernel's table).
inline double rope_theta(int32_t pos, int64_t i, int64_t n_dims, const RopeParams& p) {
  const double theta = static_cast<double>(pos) * p.freq_scale * std::pow(static_cast<double>(p.freq_base), -2.0 * i / n_dims);
  return p.freq_factors ? theta / p.freq_factors[i] : theta;
}

// Element indices of pair i: (2i, 2i+1) or (i, i + n_dims/2).
inline void rope_pair(bool neox, int64_t i, int64_t half, int64_t* a, int64_t* b) {
  *a = neox ? i : 2 * i;
  *b = neox ? i + half : 2 * i + 1;
}

}  // namespace

void ref::rope(const Tensor& x, std::span<const int32_t> positions, const RopeParams& p, Tensor& y) {
  const int64_t n_dims = rope_check(x, positions, p, y);
  const int64_t T = x.size(-3), H = x.size(-2), D = x.size(-1), half = n_dims / 2;
  for (int64_t r = 0; r < x.rows(); ++r) {
    const int64_t t = (r / H) % T;
    for (int64_t d = n_dims; d < D; ++d) f32_at_flat(y, r * D + d) = f32_at_flat(x, r * D + d);
    for (int64_t i = 0; i < half; ++i) {
      double theta = static_cast<double>(positions[t]) * p.freq_scale *
                     std::pow(static_cast<double>(p.freq_base), -2.0 * i / n_dims);
      if (p.freq_factors) theta /= p.freq_factors[i];
      int64_t ia, ib;
      rope_pair(p.neox, i, half, &ia, &ib);
      const double xa = f32_at_flat(x, r * D + ia), xb = f32_at_flat(x, r * D + ib);
      f32_at_flat(y, r * D + ia) = static_cast<float>(xa * std::cos(theta) - xb * std::sin(theta));
      f32_at_flat(y, r * D + ib) = static_cast<float>(xa * std::sin(theta) + xb * std::cos(theta));
    }
  }
}

void rope(const Tensor& x, std::span<const int32_t> positions, const RopeParams& p, Tensor& y) {
  const int64_t n_dims = rope_check(x, positions, p, y);
  if (!rows_dense_f32(x) || !rows_dense_f32(y)) return ref::rope(x, positions, p, y);
  const int64_t T = x.size(-3), H = x.size(-2), D = x.size(-1), half = n_dims / 2;
  // cos/sin per (t, i), computed once per call in double and shared by every head and batch; the
  // calling thread's buffer grows to the largest call and is reused (no allocation per token).
  thread_local std::vector<float> table;
  if (table.size() < static_cast<size_t>(T * half * 2)) table.resize(static_cast<size_t>(T * half * 2));
  float* cs = table.data();  // [T, half, 2]; a plain pointer, so worker threads see this thread's buffer
  parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double theta = rope_theta(positions[t], i, n_dims, p);
        cs[(t * half + i) * 2] = static_cast<float>(std::cos(theta));
        cs[(t * half + i) * 2 + 1] = static_cast<float>(std::sin(theta));
      }
  }, 8);
  parallel_for(x.rows(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = static_cast<const float*>(x.row_ptr(r));
      float* yr = static_cast<float*>(y.row_ptr(r));
      const float* c = &cs[((r / H) % T) * half * 2];
      if (p.neox) {
        for (int64_t i = 0; i < half; ++i) {
          const float xa = xr[i], xb = xr[i + half];
          yr[i] = xa * c[2 * i] - xb * c[2 * i + 1];
          yr[i + half] = xa * c[2 * i + 1] + xb * c[2 * i];
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float xa = xr[2 * i], xb = xr[2 * i + 1];
          yr[2 * i] = xa * c[2 * i] - xb * c[2 * i + 1];
          yr[2 * i + 1] = xa * c[2 * i + 1] + xb * c[2 * i];
        }
      }
      if (yr != xr)
        for (int64_t d = n_dims; d < D; ++d) yr[d] = xr[d];
    }
  }, 8);
}

}  // namespace aigc::ops
