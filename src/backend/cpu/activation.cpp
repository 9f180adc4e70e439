// gelu (exact, x * Phi(x)), gelu_tanh, silu, relu, tanh. Reference kernels in double with libm; fast kernels
// use the vectorised approximations of kernels_f32.h (error bounds there and measured in tests).
#include <algorithm>
#include <cmath>

#include "backend/cpu/kernels_f32.h"
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void activation_check(const Tensor& x, const Tensor& y, const char* op) {
  check_f32(x, op, "x");
  check_f32(y, op, "y");
  check_same_shape(x, y, op);
}

template <typename F>
void activation_ref(const Tensor& x, Tensor& y, F f) {
  for (int64_t i = 0; i < x.numel(); ++i) f32_at_flat(y, i) = static_cast<float>(f(static_cast<double>(f32_at_flat(x, i))));
}

using RowFn = void (*)(const float*, float*, int64_t);

// x and y fill their memory densely in the same dim order (contiguous, or both channels-last
// views of NHWC buffers, ...): the op can run over the memory as one flat array.
bool dense_same_layout(const Tensor& x, const Tensor& y) {
  if (x.ndim() == 0) return false;
  int order[kMaxDims];
  int n = 0;
  for (int d = 0; d < x.ndim(); ++d) {
    if (x.size(d) == 1) continue;
    if (x.stride_bytes(d) != y.stride_bytes(d)) return false;
    order[n++] = d;
  }
  for (int i = 1; i < n; ++i)  // insertion sort by stride, ascending (n <= 4)
    for (int j = i; j > 0 && x.stride_bytes(order[j]) < x.stride_bytes(order[j - 1]); --j) std::swap(order[j], order[j - 1]);
  int64_t expect = static_cast<int64_t>(sizeof(float));
  for (int i = 0; i < n; ++i) {
    if (x.stride_bytes(order[i]) != expect) return false;
    expect *= x.size(order[i]);
  }
  return true;
}

void activation_fast(const Tensor& x, Tensor& y, RowFn row) {
  constexpr int64_t kChunk = 4096;  // elements per task when both are contiguous
  if ((x.is_contiguous() && y.is_contiguous()) || dense_same_layout(x, y)) {
    const int64_t n = x.numel();
    parallel_for((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
      const int64_t i0 = c0 * kChunk, i1 = std::min(n, c1 * kChunk);
      row(x.ptr<float>() + i0, y.ptr<float>() + i0, i1 - i0);
    });
    return;
  }
  const int64_t c = x.ndim() == 0 ? 1 : x.size(-1);
  parallel_for(x.rows(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      row(static_cast<const float*>(x.row_ptr(r)), static_cast<float*>(y.row_ptr(r)), c);
  }, 16);
}

bool activation_dense(const Tensor& x, const Tensor& y) {
  return x.ndim() > 0 && ((rows_dense_f32(x) && rows_dense_f32(y)) || dense_same_layout(x, y));
}

// Written without cancellation in the negative tail, where 1 + erf and 1 + tanh lose every digit
// even in double: 1 + erf(v / sqrt2) = erfc(-v / sqrt2), and 0.5 (1 + tanh(u)) = 1 / (1 + e^(-2u)).
double gelu_exact(double v) { return 0.5 * v * std::erfc(-v * M_SQRT1_2); }
double gelu_tanh_exact(double v) {
  return v / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}
double silu_exact(double v) { return v / (1.0 + std::exp(-v)); }
double relu_exact(double v) { return v > 0.0 || std::isnan(v) ? v : 0.0; }
double tanh_exact(double v) { return std::tanh(v); }

// Row kernels for relu and tanh: plain loops the compiler vectorises (relu) or libm per element
// (tanh: correctly rounded to within an ulp, so fast and reference agree to f32 rounding).
void relu_row(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f || x[i] != x[i] ? x[i] : 0.0f;
}
void tanh_row(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

}  // namespace

void ref::gelu(const Tensor& x, Tensor& y) {
  activation_check(x, y, "gelu");
  activation_ref(x, y, gelu_exact);
}
void ref::gelu_tanh(const Tensor& x, Tensor& y) {
  activation_check(x, y, "gelu_tanh");
  activation_ref(x, y, gelu_tanh_exact);
}
void ref::silu(const Tensor& x, Tensor& y) {
  activation_check(x, y, "silu");
  activation_ref(x, y, silu_exact);
}

void ref::relu(const Tensor& x, Tensor& y) {
  activation_check(x, y, "relu");
  activation_ref(x, y, relu_exact);
}
void ref::tanh(const Tensor& x, Tensor& y) {
  activation_check(x, y, "tanh");
  activation_ref(x, y, tanh_exact);
}

void gelu(const Tensor& x, Tensor& y) {
  activation_check(x, y, "gelu");
  if (!activation_dense(x, y)) return ref::gelu(x, y);
  activation_fast(x, y, kernels_f32().gelu);
}
void gelu_tanh(const Tensor& x, Tensor& y) {
  activation_check(x, y, "gelu_tanh");
  if (!activation_dense(x, y)) return ref::gelu_tanh(x, y);
  activation_fast(x, y, kernels_f32().gelu_tanh);
}
void silu(const Tensor& x, Tensor& y) {
  activation_check(x, y, "silu");
  if (!activation_dense(x, y)) return ref::silu(x, y);
  activation_fast(x, y, kernels_f32().silu);
}

void relu(const Tensor& x, Tensor& y) {
  activation_check(x, y, "relu");
  if (!activation_dense(x, y)) return ref::relu(x, y);
  activation_fast(x, y, relu_row);
}
void tanh(const Tensor& x, Tensor& y) {
  activation_check(x, y, "tanh");
  if (!activation_dense(x, y)) return ref::tanh(x, y);
  activation_fast(x, y, tanh_row);
}

}  // namespace aigc::ops
