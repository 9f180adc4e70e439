// linear: y[..., N] = x[..., K] · w[N, K]^T (+ bias[N]).
//
// Paths of the fast kernel, by weight type and M (rows of x):
//   M >= 16, f16/bf16/quantised weights, AVX512-BF16 CPU: linear_panel (bf16 GEMM on weight panels
//                      dequantised on the fly; activations rounded to bf16), unless the integer
//                      kernels are faster there (linear_quantized_prefers: short prompts; q4_K_x16
//                      and q5_K_x16 always, q6_K_x16 up to 256 rows). Otherwise:
//   quantised          ops::linear_quantized (integer SIMD dot products), bias added here:
//                      q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K, and the R16 / X16 layouts.
//   M <= 4 (decode)    GEMV over N on the thread pool (gemv.h), AVX-512, AVX2 or scalar by CPU;
//                      weights widened to f32 in registers, activations stay f32.
//   M > 4 (prefill)    oneDNN matmul (onednn.h):
//                        f32  f32 x f32 GEMM;
//                        bf16 bf16 x bf16 -> f32: activations are rounded to bf16 first (as
//                             PyTorch's bf16 linear does), so results differ from the f32-activation
//                             GEMV/reference by about 2^-9 relative per product;
//                        f16  oneDNN 2.6 has no f16 matmul on CPUs without AVX512-FP16, so weight
//                             panels are widened to f32 (exact) and run as f32 GEMM. No precision is
//                             lost; the cost is one O(N·K) conversion per call, small next to the
//                             O(M·N·K) GEMM at M > 4. PackedLinear avoids it for repeated calls.
#include <algorithm>
#include <vector>

#include "backend/cpu/gemv.h"
#include "backend/cpu/linear_panel.h"
#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void linear_check(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  AIGC_CHECK(x.type() == DType::F32 && x.ndim() >= 1, "linear: x must be f32 with at least 1 dim, got {}",
             x.shape_str());
  const DType wt = w.type();
  AIGC_CHECK(wt == DType::F32 || wt == DType::F16 || wt == DType::BF16 || linear_quantized_supports(wt),
             "linear: weight type {} is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)",
             dtype_name(wt));
  AIGC_CHECK(w.ndim() == 2 && w.is_contiguous(), "linear: weight must be a contiguous [N, K] tensor, got {}",
             w.shape_str());
  const int64_t K = w.size(1), N = w.size(0);
  AIGC_CHECK(x.size(-1) == K, "linear: x {} does not match weight {} (K = {})", x.shape_str(), w.shape_str(), K);
  if (bias)
    AIGC_CHECK(bias->type() == DType::F32 && bias->ndim() == 1 && bias->size(0) == N && bias->is_contiguous(),
               "linear: bias must be contiguous f32 [{}], got {}", N, bias->shape_str());
  bool shape_ok = y.type() == DType::F32 && y.ndim() == x.ndim() && y.size(-1) == N;
  for (int d = 0; shape_ok && d + 1 < x.ndim(); ++d) shape_ok = y.size(d) == x.size(d);
  AIGC_CHECK(shape_ok, "linear: y {} should be f32 {} with last dim {} (x {}, weight {})", y.shape_str(),
             x.shape_str(), N, x.shape_str(), w.shape_str());
}

// Element stride between consecutive rows when all rows of t (a tensor with dense last dim)
// are evenly spaced, as a [rows, cols] matrix; -1 otherwise.
int64_t row_stride(const Tensor& t) {
  const int64_t cols = t.size(-1);
  if (cols > 1 && t.stride_bytes(-1) != 4) return -1;
  const int64_t rows = t.rows();
  if (rows <= 1) return cols;
  const char* base = static_cast<const char*>(t.row_ptr(0));
  const int64_t ld = (static_cast<const char*>(t.row_ptr(1)) - base) / 4;
  if (ld < cols) return -1;
  for (int64_t r = 2; r < rows; ++r)
    if (static_cast<const char*>(t.row_ptr(r)) != base + r * ld * 4) return -1;
  return ld;
}

// Per-thread conversion buffer, grown on demand (no allocation per call once warm).
template <typename T>
T* scratch_get(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

gemv::Kernel gemv_kernel_find(DType t) {
  const bool avx512 = cpu_has_avx512(), avx2 = cpu_has_avx2();
  switch (t) {
    case DType::F32: return avx512 ? gemv::gemv_f32_avx512 : avx2 ? gemv::gemv_f32_avx2 : gemv::gemv_f32_scalar;
    case DType::F16: return avx512 ? gemv::gemv_f16_avx512 : avx2 ? gemv::gemv_f16_avx2 : gemv::gemv_f16_scalar;
    case DType::BF16:
      return avx512 ? gemv::gemv_bf16_avx512 : avx2 ? gemv::gemv_bf16_avx2 : gemv::gemv_bf16_scalar;
    default: AIGC_ASSERT(false, "no GEMV kernel for {}", dtype_name(t));
  }
}

void linear_gemv(const float* x, int64_t ldx, int64_t M, const Tensor& w, const float* bias, float* y,
                 int64_t ldy) {
  const int64_t N = w.size(0), K = w.size(1);
  const gemv::Kernel kernel = gemv_kernel_find(w.type());
  // At least 16 rows of w per thread: fewer is not worth the wake-up.
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t m0 = 0; m0 < M; m0 += gemv::kMaxRows) {
      const int rows = static_cast<int>(std::min<int64_t>(gemv::kMaxRows, M - m0));
      kernel(x + m0 * ldx, ldx, rows, w.data(), K, K, n0, n1, y + m0 * ldy, ldy);
    }
    if (bias)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = n0; n < n1; ++n) y[m * ldy + n] += bias[n];
  }, 16);
}

void linear_gemm(const float* x, int64_t ldx, int64_t M, const Tensor& w, const float* bias, float* y,
                 int64_t ldy) {
  const int64_t N = w.size(0), K = w.size(1);
  using onednn::Matrix;
  using onednn::Type;
  switch (w.type()) {
    case DType::F32: {
      // w[N, K] row-major is the [K, N] matrix with strides (1, K).
      onednn::matmul(Matrix{x, Type::F32, 1, M, K, 0, ldx, 1}, Matrix{w.data(), Type::F32, 1, K, N, 0, 1, K}, bias,
                     y, 0, ldy);
      return;
    }
    case DType::BF16: {
      thread_local std::vector<uint16_t> xb_buf;
      uint16_t* xb = scratch_get(xb_buf, static_cast<size_t>(M * K));
      parallel_for(M, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t i = 0; i < K; ++i) xb[r * K + i] = bf16_from_f32(x[r * ldx + i]);
      });
      onednn::matmul(Matrix{xb, Type::BF16, 1, M, K, 0, K, 1}, Matrix{w.data(), Type::BF16, 1, K, N, 0, 1, K}, bias,
                     y, 0, ldy);
      return;
    }
    case DType::F16: {
      // Panels of about 4 MiB of f32 weights (a multiple of 64 rows), widened then multiplied.
      const int64_t panel = std::min<int64_t>(N, std::max<int64_t>(64, (int64_t{1} << 20) / K / 64 * 64));
      thread_local std::vector<float> wf_buf;
      float* wf = scratch_get(wf_buf, static_cast<size_t>(panel * K));
      const auto* wh = w.ptr<uint16_t>();
      for (int64_t n0 = 0; n0 < N; n0 += panel) {
        const int64_t np = std::min(panel, N - n0);
        parallel_for(np, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) row_to_f32(DType::F16, wh + (n0 + r) * K, wf + r * K, K);
        }, 8);
        onednn::matmul(Matrix{x, Type::F32, 1, M, K, 0, ldx, 1}, Matrix{wf, Type::F32, 1, K, np, 0, 1, K},
                       bias ? bias + n0 : nullptr, y + n0, 0, ldy);
      }
      return;
    }
    default: AIGC_ASSERT(false, "linear_gemm: unexpected weight type");
  }
}

}  // namespace

// Scalar GEMV kernels (gemv.h): one weight element widened at a time, f32 accumulation.
namespace gemv {

namespace {

template <typename Widen>
void gemv_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                 int64_t n1, float* y, int64_t ldy, Widen widen) {
  for (int64_t n = n0; n < n1; ++n)
    for (int r = 0; r < rows; ++r) {
      float acc = 0.0f;
      for (int64_t i = 0; i < k; ++i) acc += x[r * ldx + i] * widen(w, n * ldw + i);
      y[r * ldy + n] = acc;
    }
}

}  // namespace

void gemv_f32_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                     int64_t n1, float* y, int64_t ldy) {
  gemv_scalar(x, ldx, rows, w, ldw, k, n0, n1, y, ldy,
              [](const void* p, int64_t i) { return static_cast<const float*>(p)[i]; });
}
void gemv_f16_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                     int64_t n1, float* y, int64_t ldy) {
  gemv_scalar(x, ldx, rows, w, ldw, k, n0, n1, y, ldy,
              [](const void* p, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(p)[i]); });
}
void gemv_bf16_scalar(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                      int64_t n1, float* y, int64_t ldy) {
  gemv_scalar(x, ldx, rows, w, ldw, k, n0, n1, y, ldy,
              [](const void* p, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(p)[i]); });
}

}  // namespace gemv

void ref::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  linear_check(x, w, bias, y);
  const int64_t N = w.size(0), K = w.size(1), M = x.rows();
  const size_t w_row_bytes = *dtype_row_bytes(w.type(), K);
  const int64_t xs = x.stride_bytes(-1), ys = y.stride_bytes(-1);
  std::vector<float> wf(K);
  // X16 weights: each group of 16 rows back in the file's layout first
  const std::optional<DType> x16_file = x16_file_type(w.type());
  AIGC_CHECK(N % x16_row_unit(w.type()) == 0, "linear: {} weight {} has rows in groups of {}", dtype_name(w.type()),
             w.shape_str(), x16_row_unit(w.type()));
  std::vector<uint8_t> group(x16_file ? kX16Rows * w_row_bytes : 0);
  for (int64_t n = 0; n < N; ++n) {
    if (x16_file && n % kX16Rows == 0) x16_unpack(w.type(), w.ptr<uint8_t>() + n * w_row_bytes, group.data(), K);
    if (x16_file)
      row_to_f32(*x16_file, group.data() + n % kX16Rows * w_row_bytes, wf.data(), K);
    else
      row_to_f32(w.type(), w.ptr<char>() + n * w_row_bytes, wf.data(), K);
    for (int64_t m = 0; m < M; ++m) {
      const char* xr = static_cast<const char*>(x.row_ptr(m));
      float acc = bias ? bias->ptr<float>()[n] : 0.0f;
      for (int64_t i = 0; i < K; ++i) acc += *reinterpret_cast<const float*>(xr + i * xs) * wf[i];
      *reinterpret_cast<float*>(static_cast<char*>(y.row_ptr(m)) + n * ys) = acc;
    }
  }
}

bool linear_takes_panel(DType w, int64_t M) {
  // short prompts of quantised w: the integer kernels
  return M >= kPanelMinRows && linear_panel_supports(w) && !linear_quantized_prefers(w, M);
}

void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  linear_check(x, w, bias, y);
  const int64_t N = w.size(0), K = w.size(1), M = x.rows();
  if (M == 0 || N == 0) return;
  const int64_t ldx = row_stride(x), ldy = row_stride(y);
  if (ldx < 0 || ldy < 0) {  // rows not evenly spaced (an unusual view): run on contiguous copies
    Tensor xc = Tensor::empty(DType::F32, x.shape()), yc = Tensor::empty(DType::F32, y.shape());
    copy(x, xc);
    linear(xc, w, bias, yc);
    copy(yc, y);
    return;
  }
  const float* xp = static_cast<const float*>(x.row_ptr(0));
  float* yp = static_cast<float*>(y.row_ptr(0));
  const float* bp = bias ? bias->ptr<float>() : nullptr;
  if (K == 0) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) yp[m * ldy + n] = bp ? bp[n] : 0.0f;
    return;
  }
  if (linear_takes_panel(w.type(), M)) {  // prefill, 16-bit or quantised w: bf16 GEMM
    linear_panel(xp, ldx, M, w, bp, yp, ldy);
    return;
  }
  if (dtype_traits(w.type()).quantized) {
    // linear_quantized wants contiguous [M, K] and [M, N].
    const int64_t x2_shape[] = {M, K}, y2_shape[] = {M, N};  // arrays, not vectors: no allocation per call
    Tensor x2 = Tensor::view_of(DType::F32, x2_shape, const_cast<float*>(xp));
    Tensor y2 = Tensor::view_of(DType::F32, y2_shape, yp);
    Tensor xc, yc;
    if (ldx != K) {
      xc = Tensor::empty(DType::F32, {M, K});
      for (int64_t m = 0; m < M; ++m) std::copy_n(xp + m * ldx, K, xc.ptr<float>() + m * K);
      x2 = xc;
    }
    if (ldy != N) y2 = yc = Tensor::empty(DType::F32, {M, N});
    linear_quantized(x2, w, y2);
    float* yq = y2.ptr<float>();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        if (bp) yq[m * N + n] += bp[n];
        if (ldy != N) yp[m * ldy + n] = yq[m * N + n];
      }
    return;
  }
  if (M <= gemv::kMaxRows)
    linear_gemv(xp, ldx, M, w, bp, yp, ldy);
  else
    linear_gemm(xp, ldx, M, w, bp, yp, ldy);
}

}  // namespace aigc::ops
