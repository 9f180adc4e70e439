// linear_quantized: y[M, N] = x[M, K] · dequant(w[N, K])^T for Q8_0 / Q4_0 weights, GGML style:
// each activation row is quantised to Q8_0 once, then each output is one integer-SIMD dot product
// of a weight row with an activation row (kernels in quant_dot.h).
#include "backend/cpu/linear_quantized.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/quant_dot.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void linear_quantized_check(const Tensor& x, const Tensor& w, const Tensor& y) {
  AIGC_CHECK(w.type() == DType::Q8_0 || w.type() == DType::Q4_0,
             "linear_quantized: weight type {} (expected q8_0 or q4_0)", dtype_name(w.type()));
  AIGC_CHECK(w.ndim() == 2 && w.is_contiguous(), "linear_quantized: weight {} must be a contiguous [N, K]",
             w.shape_str());
  AIGC_CHECK(x.type() == DType::F32 && x.ndim() >= 1 && x.is_contiguous(),
             "linear_quantized: input {} must be contiguous f32 [..., K]", x.shape_str());
  AIGC_CHECK(y.type() == DType::F32 && y.ndim() >= 1 && y.is_contiguous(),
             "linear_quantized: output {} must be contiguous f32 [..., N]", y.shape_str());
  AIGC_CHECK(x.size(-1) == w.size(1) && y.size(-1) == w.size(0) && x.rows() == y.rows(),
             "linear_quantized: shapes x {}, w {}, y {} do not match (y[M, N] = x[M, K] · w[N, K]^T)",
             x.shape_str(), w.shape_str(), y.shape_str());
  AIGC_CHECK(w.size(1) % kQK8_0 == 0, "linear_quantized: K = {} is not a multiple of {}", w.size(1), kQK8_0);
}

// Outputs [n0, n1) of every row: a tile of weight rows is dotted with all M activation rows
// while it is in cache, so for M > 1 each weight row is read from memory once.
template <typename BlockW>
void linear_rows(float (*vec_dot)(int64_t, const BlockW*, const BlockQ8_0*), const Tensor& w,
                 const BlockQ8_0* xq, int64_t M, float* y, int64_t n0, int64_t n1) {
  const int64_t N = w.size(0), K = w.size(1), nb = K / kQK8_0;
  const int64_t row_bytes = w.stride_bytes(0);
  const char* wd = static_cast<const char*>(w.data());
  constexpr int64_t kTileBytes = 32 * 1024;  // stays in L1/L2 while the M activation rows pass by
  const int64_t tile = std::clamp<int64_t>(kTileBytes / std::max<int64_t>(1, row_bytes), 1, 64);
  for (int64_t t0 = n0; t0 < n1; t0 += tile) {
    const int64_t t1 = std::min(n1, t0 + tile);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = t0; n < t1; ++n) {
        const auto* w_row = reinterpret_cast<const BlockW*>(wd + n * row_bytes);
        y[m * N + n] = vec_dot(K, w_row, xq + m * nb);
      }
    }
  }
}

}  // namespace

void linear_quantized_with(const QuantKernels& k, const Tensor& x, const Tensor& w, Tensor& y) {
  linear_quantized_check(x, w, y);
  const int64_t M = x.rows(), K = w.size(1), N = w.size(0), nb = K / kQK8_0;
  if (M == 0 || N == 0) return;

  // x as Q8_0 rows [M, nb]. The buffer is thread_local and only grows: after the first call of a
  // given size, decode steps allocate nothing (each calling thread keeps one buffer).
  thread_local std::vector<BlockQ8_0> xq_buf;
  if (xq_buf.size() < static_cast<size_t>(M * nb)) xq_buf.resize(M * nb);
  BlockQ8_0* xq = xq_buf.data();
  const float* xd = x.ptr<float>();
  parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) k.quantize_row_q8_0(xd + m * K, xq + m * nb, K);
  }, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K)));

  // Threads split N; each gets at least ~64K multiply-adds so small layers stay on one thread.
  float* yd = y.ptr<float>();
  const int64_t min_rows = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, M * K));
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    if (w.type() == DType::Q8_0)
      linear_rows(k.vec_dot_q8_0_q8_0, w, xq, M, yd, n0, n1);
    else
      linear_rows(k.vec_dot_q4_0_q8_0, w, xq, M, yd, n0, n1);
  }, min_rows);
}

void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y) {
  linear_quantized_with(quant_kernels(), x, w, y);
}

}  // namespace aigc::ops
