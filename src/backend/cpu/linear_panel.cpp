// linear_panel (see linear_panel.h): bf16 GEMM over weight panels dequantised on the fly.
//
// Per call: x -> bf16 [M, K] once (scratch), then for each panel of P weight rows: the threads
// dequantise the rows into the bf16 panel buffer (P x K, ~4 MiB), and oneDNN's bf16
// matmul multiplies all M rows by it into y[:, n0 : n0 + P]. bf16 weights need no panel: oneDNN reads
// the weight where it lies. Both scratch buffers belong to the calling thread and only grow (the
// oneDNN glue still builds a small argument map per matmul call).
// Measured (1 thread, M = 512, K = N = 2048, CPU time): q4_0 202 GFLOP/s, q8_0/f16/q4_K/q6_K
// 194-200, bf16 (no panel) 214; oneDNN's own peak with pre-packed bf16 weights is ~220.
#include "backend/cpu/linear_panel.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "backend/cpu/onednn.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

using RowKernel = void (*)(const void* src, uint16_t* dst, int64_t n);

// Grown on demand, 64-byte aligned (buffer_alloc), never shrunk.
class Scratch {
 public:
  template <typename T>
  T* get(size_t count) {
    const size_t bytes = count * sizeof(T);
    if (bytes > cap_) {
      buf_ = buffer_alloc(bytes);
      cap_ = bytes;
    }
    return static_cast<T*>(buf_.get());
  }

 private:
  std::shared_ptr<void> buf_;
  size_t cap_ = 0;
};

// The SIMD kernel for `type`, or null (then row_to_bf16_scalar's two passes, with a SIMD rounding pass).
RowKernel row_kernel_find(DType type) {
  if (!cpu_has_avx512_bf16()) return nullptr;
  switch (type) {
    case DType::F16: return panel::row_f16_to_bf16_avx512;
    case DType::Q8_0: return panel::row_q8_0_to_bf16_avx512;
    case DType::Q4_0: return panel::row_q4_0_to_bf16_avx512;
    case DType::Q4_1: return panel::row_q4_1_to_bf16_avx512;
    case DType::Q5_0: return panel::row_q5_0_to_bf16_avx512;
    case DType::Q5_1: return panel::row_q5_1_to_bf16_avx512;
    case DType::Q4_K: return panel::row_q4_K_to_bf16_avx512;
    case DType::Q5_K: return panel::row_q5_K_to_bf16_avx512;
    case DType::Q6_K: return panel::row_q6_K_to_bf16_avx512;
    case DType::Q4_0_R16: return panel::row_q4_0_r16_to_bf16_avx512;
    case DType::Q4_1_R16: return panel::row_q4_1_r16_to_bf16_avx512;
    case DType::Q5_0_R16: return panel::row_q5_0_r16_to_bf16_avx512;
    case DType::Q5_1_R16: return panel::row_q5_1_r16_to_bf16_avx512;
    default: return nullptr;
  }
}

void row_f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  if (cpu_has_avx512_bf16()) {
    panel::row_f32_to_bf16_avx512(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_f32(src[i]);
}

// Rows per panel: about 4 MiB of bf16, a multiple of 64, at least 256. oneDNN repacks each panel
// into its own blocked layout, per thread, so the panel need not fit in L2; what costs is the fixed
// overhead of each matmul call, and narrow panels (N = 32 ran at 80% of N = 512's rate with K = 5632).
// AIGC_PANEL_ROWS overrides (tuning experiments only).
int64_t panel_rows(int64_t K) {
  static const int64_t forced = [] {
    const char* s = std::getenv("AIGC_PANEL_ROWS");
    return s ? std::atoll(s) : 0;
  }();
  if (forced > 0) return forced;
  return std::max<int64_t>(256, (int64_t{4} << 20) / (2 * K) / 64 * 64);
}

}  // namespace

void panel::row_to_bf16_scalar(DType type, const void* src, uint16_t* dst, int64_t n) {
  std::vector<float> f(static_cast<size_t>(n));
  row_to_f32(type, src, f.data(), n);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_f32(f[i]);
}

bool linear_panel_supports(DType w) {
  switch (w) {
    case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0:
    case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::Q4_0_R16: case DType::Q4_1_R16: case DType::Q5_0_R16: case DType::Q5_1_R16: case DType::Q4_K_X16:
    case DType::Q5_K_X16: case DType::Q6_K_X16:
      return cpu_has_avx512_bf16();
    default:
      return false;
  }
}

void row_to_bf16(DType type, const void* src, uint16_t* dst, int64_t n) {
  if (type == DType::BF16) {
    std::copy_n(static_cast<const uint16_t*>(src), n, dst);
    return;
  }
  if (RowKernel k = row_kernel_find(type)) {
    k(src, dst, n);
    return;
  }
  thread_local std::vector<float> f;  // one row of f32, reused
  if (f.size() < static_cast<size_t>(n)) f.resize(static_cast<size_t>(n));
  row_to_f32(type, src, f.data(), n);
  row_f32_to_bf16(f.data(), dst, n);
}

namespace {

// Rows [0, unit) of w at src into dst [unit, K]: unit 1, or a group of 16 rows of an X16 weight,
// unpacked to the file's layout first (quant.h), then converted as the file's rows are.
void rows_to_bf16(DType type, const uint8_t* src, size_t row_bytes, uint16_t* dst, int64_t K, int64_t unit) {
  const std::optional<DType> file_type = x16_file_type(type);
  if (!file_type) return row_to_bf16(type, src, dst, K);
  thread_local std::vector<uint8_t> rows;  // one group in the file's layout, reused
  rows.resize(kX16Rows * row_bytes);
  x16_unpack(type, src, rows.data(), K);
  for (int64_t i = 0; i < unit; ++i) row_to_bf16(*file_type, rows.data() + i * row_bytes, dst + i * K, K);
}

}  // namespace

void linear_panel(const float* x, int64_t ldx, int64_t M, const Tensor& w, const float* bias, float* y,
                  int64_t ldy) {
  const int64_t N = w.size(0), K = w.size(1);
  AIGC_ASSERT(linear_panel_supports(w.type()) && w.ndim() == 2 && w.is_contiguous() && M >= 1 && K >= 1);
  using onednn::Matrix;
  using onednn::Type;

  thread_local Scratch xs, ws;
  uint16_t* xb = xs.get<uint16_t>(static_cast<size_t>(M * K));  // [M, K] bf16
  parallel_for(M, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row_f32_to_bf16(x + r * ldx, xb + r * K, K);
  }, std::max<int64_t>(1, 16384 / K));
  const Matrix a{xb, Type::BF16, 1, M, K, 0, K, 1};

  if (w.type() == DType::BF16) {  // w[N, K] row-major is the [K, N] matrix with strides (1, K)
    onednn::matmul(a, Matrix{w.data(), Type::BF16, 1, K, N, 0, 1, K}, bias, y, 0, ldy);
    return;
  }
  const int64_t P = std::min(N, panel_rows(K));  // a multiple of 64, or N
  uint16_t* wb = ws.get<uint16_t>(static_cast<size_t>(P * K));  // [P, K] bf16
  const size_t row_bytes = *dtype_row_bytes(w.type(), K);
  const uint8_t* wd = w.ptr<uint8_t>();
  const DType wt = w.type();
  const int64_t unit = x16_row_unit(wt);  // rows converted together
  AIGC_ASSERT(N % unit == 0, "linear_panel: {} rows of {}", N, dtype_name(wt));
  for (int64_t n0 = 0; n0 < N; n0 += P) {
    const int64_t np = std::min(P, N - n0);
    parallel_for(np / unit, [&](int64_t g0, int64_t g1) {
      for (int64_t r = g0 * unit; r < g1 * unit; r += unit) rows_to_bf16(wt, wd + (n0 + r) * row_bytes, row_bytes, wb + r * K, K, unit);
    }, std::max<int64_t>(1, 4 / unit));
    onednn::matmul(a, Matrix{wb, Type::BF16, 1, K, np, 0, 1, K}, bias ? bias + n0 : nullptr, y + n0, 0, ldy);
  }
}

}  // namespace aigc::ops
