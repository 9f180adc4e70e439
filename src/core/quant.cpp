#include "core/quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/half.h"

namespace aigc {

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  AIGC_ASSERT(n % kQK8_0 == 0);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float* xb = x + b * kQK8_0;
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16_from_f32(d);
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::lround(xb[j] * id));
  }
}

void dequantize_row_q8_0_ref(const BlockQ8_0* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK8_0 == 0);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < kQK8_0; ++j) y[b * kQK8_0 + j] = d * x[b].qs[j];
  }
}

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  AIGC_ASSERT(n % kQK4_0 == 0);
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const float* xb = x + b * kQK4_0;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16_from_f32(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const uint8_t q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f))));
      const uint8_t q1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + kQK4_0 / 2] * id + 8.5f))));
      y[b].qs[j] = q0 | static_cast<uint8_t>(q1 << 4);
    }
  }
}

void dequantize_row_q4_0_ref(const BlockQ4_0* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK4_0 == 0);
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[b * kQK4_0 + j] = d * ((x[b].qs[j] & 0x0f) - 8);
      y[b * kQK4_0 + j + kQK4_0 / 2] = d * ((x[b].qs[j] >> 4) - 8);
    }
  }
}

bool dtype_can_convert(DType type) {
  switch (type) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0:
      return true;
    default:
      return false;
  }
}

void row_to_f32(DType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::copy_n(static_cast<const float*>(src), n, dst); return;
    case DType::F16: for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]); return;
    case DType::BF16: for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]); return;
    case DType::Q8_0: dequantize_row_q8_0_ref(static_cast<const BlockQ8_0*>(src), dst, n); return;
    case DType::Q4_0: dequantize_row_q4_0_ref(static_cast<const BlockQ4_0*>(src), dst, n); return;
    default: error_throw(fmt::format("conversion from {} is not supported yet", dtype_name(type)), "row_to_f32");
  }
}

void row_from_f32(DType type, const float* src, void* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::copy_n(src, n, static_cast<float*>(dst)); return;
    case DType::F16: for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f16_from_f32(src[i]); return;
    case DType::BF16: for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = bf16_from_f32(src[i]); return;
    case DType::Q8_0: quantize_row_q8_0_ref(src, static_cast<BlockQ8_0*>(dst), n); return;
    case DType::Q4_0: quantize_row_q4_0_ref(src, static_cast<BlockQ4_0*>(dst), n); return;
    default: error_throw(fmt::format("conversion to {} is not supported yet", dtype_name(type)), "row_from_f32");
  }
}

}  // namespace aigc
