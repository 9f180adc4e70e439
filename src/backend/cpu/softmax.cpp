// softmax over the last dim, optionally causal: x [..., Tq, Tk], key j of query row i is masked
// (probability 0) when j > q_offset + i, as torch.softmax of x + triu(-inf, diagonal=q_offset+1).
#include <cmath>

#include "backend/cpu/kernels_f32.h"
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void softmax_check(const Tensor& x, const Tensor& y, bool causal, int64_t q_offset) {
  check_f32(x, "softmax", "x");
  check_f32(y, "softmax", "y");
  check_same_shape(x, y, "softmax");
  if (x.ndim() < (causal ? 2 : 1))
    error_throw(fmt::format("softmax: x {} has too few dims{}", x.shape_str(), causal ? " for a causal mask" : ""),
                "softmax");
  if (q_offset < 0) error_throw(fmt::format("softmax: q_offset {} is negative", q_offset), "softmax");
}

// Keys of row r that are not masked (at least 1: key 0 is always visible).
int64_t row_valid(const Tensor& x, int64_t r, bool causal, int64_t q_offset) {
  const int64_t tk = x.size(-1);
  if (!causal) return tk;
  const int64_t i = r % x.size(-2);
  return std::min(tk, q_offset + i + 1);
}

}  // namespace

void ref::softmax(const Tensor& x, Tensor& y, bool causal, int64_t q_offset) {
  softmax_check(x, y, causal, q_offset);
  const int64_t n = x.size(-1);
  for (int64_t r = 0; r < x.rows(); ++r) {
    const int64_t valid = row_valid(x, r, causal, q_offset);
    double m = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < valid; ++j) m = std::max(m, static_cast<double>(f32_at_flat(x, r * n + j)));
    for (int64_t j = 0; j < valid; ++j) s += std::exp(f32_at_flat(x, r * n + j) - m);
    for (int64_t j = 0; j < n; ++j)
      f32_at_flat(y, r * n + j) = j < valid ? static_cast<float>(std::exp(f32_at_flat(x, r * n + j) - m) / s) : 0.0f;
  }
}

void softmax(const Tensor& x, Tensor& y, bool causal, int64_t q_offset) {
  softmax_check(x, y, causal, q_offset);
  if (!rows_dense_f32(x) || !rows_dense_f32(y)) return ref::softmax(x, y, causal, q_offset);
  const KernelsF32& k = kernels_f32();
  const int64_t n = x.size(-1);
  if (n == 0) return;
  parallel_for(x.rows(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      k.softmax(static_cast<const float*>(x.row_ptr(r)), static_cast<float*>(y.row_ptr(r)), n,
                row_valid(x, r, causal, q_offset));
  }, 4);
}

}  // namespace aigc::ops
