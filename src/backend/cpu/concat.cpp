// concat: y = torch.cat(xs, dim). Inputs and y share one plain (unquantised) type; any strides.
#include <cstring>

#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

// Returns the non-negative dim.
int concat_check(std::span<const Tensor> xs, int dim, const Tensor& y) {
  if (xs.empty()) error_throw("concat: no inputs", "concat");
  const int nd = y.ndim();
  const int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd) error_throw(fmt::format("concat: dim {} out of range for y {}", dim, y.shape_str()), "concat");
  if (dtype_traits(y.type()).quantized)
    error_throw(fmt::format("concat: quantised type {}", dtype_name(y.type())), "concat");
  int64_t total = 0;
  for (const Tensor& x : xs) {
    bool ok = x.type() == y.type() && x.ndim() == nd && (x.data() != nullptr || x.numel() == 0);
    for (int k = 0; ok && k < nd; ++k) ok = k == d || x.size(k) == y.size(k);
    if (!ok)
      error_throw(fmt::format("concat: input {} does not fit y {} along dim {}", x.shape_str(), y.shape_str(), d),
                  "concat", "inputs must match y in type and in every dim but the concatenated one");
    total += x.size(d);
  }
  if (total != y.size(d))
    error_throw(fmt::format("concat: inputs add up to {} along dim {}, y has {}", total, d, y.size(d)), "concat");
  return d;
}

}  // namespace

void ref::concat(std::span<const Tensor> xs, int dim, Tensor& y) {
  const int d = concat_check(xs, dim, y);
  const size_t es = dtype_traits(y.type()).block_bytes;
  int64_t start = 0;
  for (const Tensor& x : xs) {
    int64_t idx[kMaxDims];
    for (int64_t f = 0; f < x.numel(); ++f) {
      index_of(x.shape(), f, idx);
      const char* s = static_cast<const char*>(x.data());
      char* t = static_cast<char*>(y.data());
      for (int k = 0; k < x.ndim(); ++k) {
        s += idx[k] * x.stride_bytes(k);
        t += (idx[k] + (k == d ? start : 0)) * y.stride_bytes(k);
      }
      std::memcpy(t, s, es);
    }
    start += x.size(d);
  }
}

void concat(std::span<const Tensor> xs, int dim, Tensor& y) {
  const int d = concat_check(xs, dim, y);
  bool contiguous = y.is_contiguous();
  for (const Tensor& x : xs) contiguous = contiguous && x.is_contiguous();
  if (!contiguous) return ref::concat(xs, dim, y);
  // Contiguous: y is [outer, y.size(d) * inner] and each x a [outer, x.size(d) * inner] block of it.
  const size_t es = dtype_traits(y.type()).block_bytes;
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < d; ++k) outer *= y.size(k);
  for (int k = d + 1; k < y.ndim(); ++k) inner *= y.size(k);
  const size_t y_row = static_cast<size_t>(y.size(d) * inner) * es;
  parallel_for(outer, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      char* t = static_cast<char*>(y.data()) + o * y_row;
      for (const Tensor& x : xs) {
        const size_t x_row = static_cast<size_t>(x.size(d) * inner) * es;
        if (x_row) std::memcpy(t, static_cast<const char*>(x.data()) + o * x_row, x_row);
        t += x_row;
      }
    }
  }, 16);
}

}  // namespace aigc::ops
