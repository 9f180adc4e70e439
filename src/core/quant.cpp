#include "core/quant.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <type_traits>

#include <immintrin.h>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"

namespace aigc {

namespace {

// Block min and max; FLT_MAX starts as GGML's do (a NaN never updates them).
void block_min_max(const float* x, int n, float* mn, float* mx) {
  float lo = std::numeric_limits<float>::max(), hi = -std::numeric_limits<float>::max();
  for (int j = 0; j < n; ++j) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  *mn = lo;
  *mx = hi;
}

// The element of largest magnitude, sign kept; the first one on ties.
float block_signed_max(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// Truncating float -> int8 / uint8 conversions as C casts do, defined for out-of-range values
// (which only NaN/inf inputs produce): they saturate here instead of being undefined.
int8_t trunc_i8(float v) {
  if (!(v > -129.0f)) return v != v ? 0 : -128;
  if (v >= 128.0f) return 127;
  return static_cast<int8_t>(v);
}
uint8_t trunc_u8(float v) {
  if (!(v > -1.0f)) return 0;
  if (v >= 256.0f) return 255;
  return static_cast<uint8_t>(v);
}

uint32_t qh_load(const uint8_t* qh) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 | static_cast<uint32_t>(qh[2]) << 16 |
         static_cast<uint32_t>(qh[3]) << 24;
}
void qh_store(uint8_t* qh, uint32_t v) {
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(v >> (8 * k));
}

}  // namespace

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
      const uint8_t q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(trunc_i8(xb[j] * id + 8.5f))));
      const uint8_t q1 = static_cast<uint8_t>(std::min(15, static_cast<int>(trunc_i8(xb[j + kQK4_0 / 2] * id + 8.5f))));
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

// ---- Q4_1, Q5_0, Q5_1 -------------------------------------------------------------------------

void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n) {
  AIGC_ASSERT(n % kQK4_1 == 0);
  for (int64_t b = 0; b < n / kQK4_1; ++b) {
    const float* xb = x + b * kQK4_1;
    float mn, mx;
    block_min_max(xb, kQK4_1, &mn, &mx);
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16_from_f32(d);
    y[b].m = f16_from_f32(mn);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const float x0 = (xb[j] - mn) * id;
      const float x1 = (xb[j + kQK4_1 / 2] - mn) * id;
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(15, trunc_i8(x0 + 0.5f)));
      const uint8_t q1 = static_cast<uint8_t>(std::min<int>(15, trunc_i8(x1 + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | (q1 << 4));
    }
  }
}

void dequantize_row_q4_1_ref(const BlockQ4_1* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK4_1 == 0);
  for (int64_t b = 0; b < n / kQK4_1; ++b) {
    const float d = f16_to_f32(x[b].d), m = f16_to_f32(x[b].m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[b * kQK4_1 + j] = static_cast<float>(x[b].qs[j] & 0x0f) * d + m;
      y[b * kQK4_1 + j + kQK4_1 / 2] = static_cast<float>(x[b].qs[j] >> 4) * d + m;
    }
  }
}

void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n) {
  AIGC_ASSERT(n % kQK5_0 == 0);
  for (int64_t b = 0; b < n / kQK5_0; ++b) {
    const float* xb = x + b * kQK5_0;
    const float d = block_signed_max(xb, kQK5_0) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16_from_f32(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const uint8_t q0 = static_cast<uint8_t>(std::min<int>(31, trunc_i8(xb[j] * id + 16.5f)));
      const uint8_t q1 = static_cast<uint8_t>(std::min<int>(31, trunc_i8(xb[j + kQK5_0 / 2] * id + 16.5f)));
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + kQK5_0 / 2);
    }
    qh_store(y[b].qh, qh);
  }
}

void dequantize_row_q5_0_ref(const BlockQ5_0* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK5_0 == 0);
  for (int64_t b = 0; b < n / kQK5_0; ++b) {
    const float d = f16_to_f32(x[b].d);
    const uint32_t qh = qh_load(x[b].qh);
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int q0 = (x[b].qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
      const int q1 = (x[b].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      y[b * kQK5_0 + j] = static_cast<float>(q0 - 16) * d;
      y[b * kQK5_0 + j + kQK5_0 / 2] = static_cast<float>(q1 - 16) * d;
    }
  }
}

void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n) {
  AIGC_ASSERT(n % kQK5_1 == 0);
  for (int64_t b = 0; b < n / kQK5_1; ++b) {
    const float* xb = x + b * kQK5_1;
    float mn, mx;
    block_min_max(xb, kQK5_1, &mn, &mx);
    const float d = (mx - mn) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f16_from_f32(d);
    y[b].m = f16_from_f32(mn);
    uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const uint8_t q0 = trunc_u8((xb[j] - mn) * id + 0.5f);
      const uint8_t q1 = trunc_u8((xb[j + kQK5_1 / 2] - mn) * id + 0.5f);
      y[b].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= static_cast<uint32_t>((q0 >> 4) & 1) << j;
      qh |= static_cast<uint32_t>((q1 >> 4) & 1) << (j + kQK5_1 / 2);
    }
    qh_store(y[b].qh, qh);
  }
}

void dequantize_row_q5_1_ref(const BlockQ5_1* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK5_1 == 0);
  for (int64_t b = 0; b < n / kQK5_1; ++b) {
    const float d = f16_to_f32(x[b].d), m = f16_to_f32(x[b].m);
    const uint32_t qh = qh_load(x[b].qh);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int q0 = (x[b].qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
      const int q1 = (x[b].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      y[b * kQK5_1 + j] = static_cast<float>(q0) * d + m;
      y[b * kQK5_1 + j + kQK5_1 / 2] = static_cast<float>(q1) * d + m;
    }
  }
}

// ---- K-quants -----------------------------------------------------------------------------------

void scale_min_k4_get(int j, const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

namespace {

// Round to nearest, ties to even, by GGML's trick: adding 1.5 * 2^23 leaves the integer in the
// low mantissa bits. Exact for |v| < 2^22; larger or non-finite v give an arbitrary int (callers clamp).
int nearest_int(float v) {
  const float r = v + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &r, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// One sub-block's scale and min for values L in [0, nmax] (x ~ scale * L - the_min), by GGML's
// make_qkx2_quants search: start from the min/max fit, then try iscales (rmin + rdelta*is + nmax) /
// (max - min) for is = 0..nstep, each followed by a weighted least-squares fit of scale and min;
// keep the one of least weighted squared (use_mad: absolute) error.
float qkx2_quants_make(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// One sub-block's signed scale for values L in [-nmax, nmax - 1] (stored + nmax), by GGML's
// make_qx_quants with rmse_type 1 (weights x^2): the max-based iscale, then iscales
// -(nmax + 0.1 is) / max for is = -9..9, keeping the best weighted least-squares scale.
float qx_quants_make(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {  // GGML's GROUP_MAX_EPS: all zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per sub-block scale/min search, 6-bit packing of
// scales and mins, then the values L requantised with the stored (f16, 6-bit) scales.
void k_scales_quantize(const float* x, int nmax, float rmin, float rdelta, int nstep, uint16_t* d16,
                       uint16_t* dmin16, uint8_t* packed, uint8_t* L) {
  float mins[kQK_K / 32], scales[kQK_K / 32], weights[32];
  uint8_t Laux[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = qkx2_quants_make(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0x0f) | ((lm & 0x0f) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  *d16 = f16_from_f32(max_scale / 63.0f);
  *dmin16 = f16_from_f32(max_min / 63.0f);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    scale_min_k4_get(j, packed, &sc, &m);
    const float d = f16_to_f32(*d16) * sc;
    if (d == 0.0f) continue;
    const float dm = f16_to_f32(*dmin16) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace

void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    std::memset(y[b].scales, 0, kKScaleSize);
    k_scales_quantize(xb, 15, -1.0f, 0.1f, 20, &y[b].d, &y[b].dmin, y[b].scales, L);
    uint8_t* q = y[b].qs;
    for (int j = 0; j < kQK_K; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

void dequantize_row_q4_K_ref(const BlockQ4_K* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    for (int j = 0; j < kQK_K / 64; ++j, q += 32) {
      uint8_t sc, m;
      scale_min_k4_get(2 * j, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4_get(2 * j + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      float* yb = y + b * kQK_K + 64 * j;
      for (int l = 0; l < 32; ++l) yb[l] = d1 * static_cast<float>(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) yb[l + 32] = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  uint8_t L[kQK_K];
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    std::memset(y[b].scales, 0, kKScaleSize);
    k_scales_quantize(xb, 31, -0.5f, 0.1f, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
    std::memset(y[b].qh, 0, sizeof y[b].qh);
    uint8_t* ql = y[b].qs;
    uint8_t m1 = 1, m2 = 2;
    for (int j = 0; j < kQK_K; j += 64, ql += 32) {
      for (int l = 0; l < 32; ++l) {
        int l1 = L[j + l], l2 = L[j + l + 32];
        if (l1 > 15) { l1 -= 16; y[b].qh[l] |= m1; }
        if (l2 > 15) { l2 -= 16; y[b].qh[l] |= m2; }
        ql[l] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
    }
  }
}

void dequantize_row_q5_K_ref(const BlockQ5_K* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_to_f32(x[b].d), dmin = f16_to_f32(x[b].dmin);
    const uint8_t* ql = x[b].qs;
    const uint8_t* qh = x[b].qh;
    for (int j = 0; j < kQK_K / 64; ++j, ql += 32) {
      uint8_t sc, m;
      scale_min_k4_get(2 * j, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4_get(2 * j + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      const uint8_t u1 = static_cast<uint8_t>(1 << (2 * j)), u2 = static_cast<uint8_t>(2 << (2 * j));
      float* yb = y + b * kQK_K + 64 * j;
      for (int l = 0; l < 32; ++l) yb[l] = d1 * static_cast<float>((ql[l] & 0x0f) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) yb[l + 32] = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      scales[ib] = qx_quants_make(16, 32, xb + 16 * ib, L + 16 * ib);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    std::memset(&y[b], 0, sizeof(BlockQ6_K));
    if (max_abs_scale < 1e-15f) continue;  // all zero: d = 0 and zero bytes, as GGML writes it
    const float iscale = -128.0f / max_scale;
    y[b].d = f16_from_f32(1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib)
      y[b].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = f16_to_f32(y[b].d) * y[b].scales[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(xb[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y[b].ql;
    uint8_t* qh = y[b].qh;
    for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
        ql[l] = static_cast<uint8_t>((q1 & 0x0f) | ((q3 & 0x0f) << 4));
        ql[l + 32] = static_cast<uint8_t>((q2 & 0x0f) | ((q4 & 0x0f) << 4));
        qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
      }
    }
  }
}

void dequantize_row_q6_K_ref(const BlockQ6_K* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_to_f32(x[b].d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[b].ql + 64 * h;
      const uint8_t* qh = x[b].qh + 32 * h;
      const int8_t* sc = x[b].scales + 8 * h;
      float* yb = y + b * kQK_K + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        yb[l] = d * sc[is + 0] * static_cast<float>(q1);
        yb[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        yb[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        yb[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    const float max = block_signed_max(xb, kQK_K);
    if (max == 0.0f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) y[b].qs[j] = static_cast<int8_t>(std::max(-128, std::min(127, nearest_int(iscale * xb[j]))));
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += y[b].qs[16 * g + j];
      y[b].bsums[g] = static_cast<int16_t>(sum);
    }
    y[b].d = 1 / iscale;
  }
}

void dequantize_row_q8_K_ref(const BlockQ8_K* x, float* y, int64_t n) {
  AIGC_ASSERT(n % kQK_K == 0);
  for (int64_t b = 0; b < n / kQK_K; ++b)
    for (int j = 0; j < kQK_K; ++j) y[b * kQK_K + j] = x[b].d * x[b].qs[j];
}

namespace {

// The permuted fifth-bit word of a block's qh (quant.h), and back.
uint32_t r16_bits_permute(uint32_t qh) {
  uint32_t p = 0;
  for (int v = 0; v < 4; ++v)
    for (int i = 0; i < 4; ++i) {
      p |= ((qh >> (4 * v + i)) & 1u) << (8 * i + v);
      p |= ((qh >> (16 + 4 * v + i)) & 1u) << (8 * i + 4 + v);
    }
  return p;
}

uint32_t r16_bits_unpermute(uint32_t p) {
  uint32_t qh = 0;
  for (int v = 0; v < 4; ++v)
    for (int i = 0; i < 4; ++i) {
      qh |= ((p >> (8 * i + v)) & 1u) << (4 * v + i);
      qh |= ((p >> (8 * i + 4 + v)) & 1u) << (16 + 4 * v + i);
    }
  return qh;
}

// One group of c <= kR16Group blocks: `in` blocks -> `out` packed bytes, or (kUnpack) the other
// way. Both are c blocks long; every byte has one place on each side, except the fifth bits, whose
// words are permuted.
template <typename Block, bool kUnpack>
void r16_group(const uint8_t* in, uint8_t* out, size_t c) {
  using L = R16Layout<Block>;
  constexpr size_t B = sizeof(Block), d_at = offsetof(Block, d), qs_at = offsetof(Block, qs);
  auto move = [&](size_t at_block, size_t at_packed) {
    if (kUnpack) out[at_block] = in[at_packed]; else out[at_packed] = in[at_block];
  };
  for (size_t j = 0; j < c; ++j) move(j * B + d_at, 2 * j), move(j * B + d_at + 1, 2 * j + 1);
  if constexpr (L::kMin) {
    constexpr size_t m_at = offsetof(Block, m);
    for (size_t j = 0; j < c; ++j) move(j * B + m_at, L::mins(c) + 2 * j), move(j * B + m_at + 1, L::mins(c) + 2 * j + 1);
  }
  for (size_t v = 0; v < 4; ++v)
    for (size_t j = 0; j < c; ++j)
      for (size_t i = 0; i < 4; ++i) move(j * B + qs_at + 4 * v + i, L::qs(c) + 4 * c * v + 4 * j + i);
  if constexpr (L::kHigh) {
    constexpr size_t qh_at = offsetof(Block, qh);
    for (size_t j = 0; j < c; ++j) {
      uint32_t w;
      std::memcpy(&w, in + (kUnpack ? L::bits(c) + 4 * j : j * B + qh_at), 4);
      w = kUnpack ? r16_bits_unpermute(w) : r16_bits_permute(w);
      std::memcpy(out + (kUnpack ? j * B + qh_at : L::bits(c) + 4 * j), &w, 4);
    }
  }
}

// A row of n elements (src and dst not overlapping): its groups, the last one partial where nb is
// not a multiple of 16.
template <typename Block, bool kUnpack>
void r16_convert(const void* src, void* dst, int64_t n) {
  AIGC_ASSERT(n % 32 == 0, "r16 pack: n = {}", n);
  const int64_t nb = n / 32;
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b0 = 0; b0 < nb; b0 += kR16Group) {
    const size_t o = static_cast<size_t>(b0) * sizeof(Block);
    r16_group<Block, kUnpack>(in + o, out + o, static_cast<size_t>(std::min<int64_t>(kR16Group, nb - b0)));
  }
}

// f(Block{}) for the file type of an R16 type.
template <typename F>
void r16_dispatch(DType r16, F f) {
  switch (r16) {
    case DType::Q4_0_R16: return f(BlockQ4_0{});
    case DType::Q4_1_R16: return f(BlockQ4_1{});
    case DType::Q5_0_R16: return f(BlockQ5_0{});
    case DType::Q5_1_R16: return f(BlockQ5_1{});
    default: AIGC_ASSERT(false, "not an R16 type: {}", dtype_name(r16));
  }
}

}  // namespace

std::optional<DType> r16_of(DType file_type) {
  switch (file_type) {
    case DType::Q4_0: return DType::Q4_0_R16;
    case DType::Q4_1: return DType::Q4_1_R16;
    case DType::Q5_0: return DType::Q5_0_R16;
    case DType::Q5_1: return DType::Q5_1_R16;
    default: return std::nullopt;
  }
}

std::optional<DType> r16_file_type(DType r16) {
  switch (r16) {
    case DType::Q4_0_R16: return DType::Q4_0;
    case DType::Q4_1_R16: return DType::Q4_1;
    case DType::Q5_0_R16: return DType::Q5_0;
    case DType::Q5_1_R16: return DType::Q5_1;
    default: return std::nullopt;
  }
}

void r16_pack(DType r16, const void* blocks, uint8_t* dst, int64_t n) {
  r16_dispatch(r16, [&](auto b) { r16_convert<decltype(b), false>(blocks, dst, n); });
}

void r16_unpack(DType r16, const uint8_t* src, void* blocks, int64_t n) {
  r16_dispatch(r16, [&](auto b) { r16_convert<decltype(b), true>(src, blocks, n); });
}

std::optional<DType> x16_of(DType file_type) {
  switch (file_type) {
    case DType::Q4_K: return DType::Q4_K_X16;
    case DType::Q5_K: return DType::Q5_K_X16;
    case DType::Q6_K: return DType::Q6_K_X16;
    default: return std::nullopt;
  }
}

std::optional<DType> x16_file_type(DType x16) {
  switch (x16) {
    case DType::Q4_K_X16: return DType::Q4_K;
    case DType::Q5_K_X16: return DType::Q5_K;
    case DType::Q6_K_X16: return DType::Q6_K;
    default: return std::nullopt;
  }
}

namespace {

// Moves the bytes of a group of 16 rows between the file's layout and an X16 layout, both ways:
// fields(r, move) calls move(offset in the block, offset in the column, bytes) for every piece of
// row r's block (the same for every column c of bytes 16 x block_bytes).
template <bool kUnpack, typename Fields>
void x16_convert(const uint8_t* src, uint8_t* dst, int64_t n, size_t block_bytes, Fields fields) {
  AIGC_ASSERT(n % kQK_K == 0, "x16 pack: n = {}", n);
  const int64_t nb = n / kQK_K;
  for (int64_t c = 0; c < nb; ++c)
    for (int r = 0; r < kX16Rows; ++r) {
      const size_t b = static_cast<size_t>(r * nb + c) * block_bytes;  // the block in the rows
      const size_t col = static_cast<size_t>(c) * kX16Rows * block_bytes;
      fields(r, [&](size_t block_off, size_t col_off, size_t bytes) {
        if (kUnpack)
          std::memcpy(dst + b + block_off, src + col + col_off, bytes);
        else
          std::memcpy(dst + col + col_off, src + b + block_off, bytes);
      });
    }
}

// Q4_K_X16 (quant.h): where the pieces of row r's block go in its column.
template <typename Move>
void x16_q4_K_fields(int r, Move move) {
  move(offsetof(BlockQ4_K, d), 2 * r, 2);
  move(offsetof(BlockQ4_K, dmin), 32 + 2 * r, 2);
  for (int k = 0; k < 3; ++k) move(offsetof(BlockQ4_K, scales) + 4 * k, 64 + 64 * k + 4 * r, 4);
  for (int t = 0; t < 32; ++t) move(offsetof(BlockQ4_K, qs) + 4 * t, 256 + 64 * (4 * (t % 8) + t / 8) + 4 * r, 4);
}

// Q5_K_X16 (quant.h): the same for every field but qh (x16_q5_K_masks).
template <typename Move>
void x16_q5_K_fields(int r, Move move) {
  move(offsetof(BlockQ5_K, d), 2 * r, 2);
  move(offsetof(BlockQ5_K, dmin), 32 + 2 * r, 2);
  for (int k = 0; k < 3; ++k) move(offsetof(BlockQ5_K, scales) + 4 * k, 64 + 64 * k + 4 * r, 4);
  for (int t = 0; t < 32; ++t) move(offsetof(BlockQ5_K, qs) + 4 * t, 256 + 320 * (t % 8) + 64 * (1 + t / 8) + 4 * r, 4);
}

// Q5_K_X16's fifth bits: qh word tp of row r (bytes 4tp + i, i < 4) and the four bits 4r .. 4r + 3
// of mask j of slot tp (bit j of those bytes), both ways. Multiplying by 0x204081 (shifts 0, 7, 14,
// 21, no two products overlapping) gathers bits 0, 8, 16, 24 at 21..24 and spreads 0..3 back.
template <bool kUnpack>
void x16_q5_K_masks(const uint8_t* src, uint8_t* dst, int64_t n) {
  const int64_t nb = n / kQK_K;
  for (int64_t c = 0; c < nb; ++c)
    for (int r = 0; r < kX16Rows; ++r) {
      const size_t b = static_cast<size_t>(r * nb + c) * sizeof(BlockQ5_K) + offsetof(BlockQ5_K, qh);  // in the rows
      const size_t col = static_cast<size_t>(c) * kX16ColumnQ5K + 256;
      for (int tp = 0; tp < 8; ++tp) {
        const size_t at = col + 320 * tp;  // the slot's eight masks
        if (kUnpack) {
          uint32_t word = 0;
          for (int j = 0; j < 8; ++j) {
            uint64_t m;
            std::memcpy(&m, src + at + 8 * j, 8);
            word |= static_cast<uint32_t>((((m >> (4 * r)) & 0xf) * 0x204081u) & 0x01010101u) << j;
          }
          std::memcpy(dst + b + 4 * tp, &word, 4);
        } else {
          uint32_t word;
          std::memcpy(&word, src + b + 4 * tp, 4);
          for (int j = 0; j < 8; ++j) {
            uint64_t m;
            std::memcpy(&m, dst + at + 8 * j, 8);
            const uint64_t bits = ((static_cast<uint64_t>((word >> j) & 0x01010101u) * 0x204081u) >> 21) & 0xf;
            m = (m & ~(uint64_t{0xf} << (4 * r))) | bits << (4 * r);
            std::memcpy(dst + at + 8 * j, &m, 8);
          }
        }
      }
    }
}

// Q6_K_X16 (quant.h): the same.
template <typename Move>
void x16_q6_K_fields(int r, Move move) {
  move(offsetof(BlockQ6_K, d), 2 * r, 2);
  for (int k = 0; k < 4; ++k) move(offsetof(BlockQ6_K, scales) + 4 * k, 32 + 64 * k + 4 * r, 4);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 8; ++i) {
      const size_t slot = 288 + 64 * 3 * (8 * h + i) + 4 * r;
      move(offsetof(BlockQ6_K, ql) + 64 * h + 4 * i, slot, 4);
      move(offsetof(BlockQ6_K, ql) + 64 * h + 32 + 4 * i, slot + 64, 4);
      move(offsetof(BlockQ6_K, qh) + 32 * h + 4 * i, slot + 128, 4);
    }
}

template <bool kUnpack>
void x16_convert(DType x16, const uint8_t* src, uint8_t* dst, int64_t n) {
  AIGC_ASSERT(x16_file_type(x16), "not an X16 type: {}", dtype_name(x16));
  if (x16 == DType::Q6_K_X16) {
    x16_convert<kUnpack>(src, dst, n, sizeof(BlockQ6_K), [](int r, auto move) { x16_q6_K_fields(r, move); });
  } else if (x16 == DType::Q5_K_X16) {
    x16_convert<kUnpack>(src, dst, n, sizeof(BlockQ5_K), [](int r, auto move) { x16_q5_K_fields(r, move); });
    x16_q5_K_masks<kUnpack>(src, dst, n);
  } else {
    x16_convert<kUnpack>(src, dst, n, sizeof(BlockQ4_K), [](int r, auto move) { x16_q4_K_fields(r, move); });
  }
}

}  // namespace

void x16_pack(DType x16, const void* rows, uint8_t* dst, int64_t n) {
  x16_convert<false>(x16, static_cast<const uint8_t*>(rows), dst, n);
}

void x16_unpack(DType x16, const uint8_t* src, void* rows, int64_t n) {
  x16_convert<true>(x16, src, static_cast<uint8_t*>(rows), n);
}

int64_t x16_row_unit(DType type) { return x16_file_type(type) ? kX16Rows : 1; }

namespace {

// R16 rows converted a group of blocks at a time through their file type (no allocation).
void row_r16_to_f32(DType r16, const uint8_t* src, float* dst, int64_t n) {
  const DType ft = *r16_file_type(r16);
  const size_t bb = dtype_traits(ft).block_bytes;
  alignas(8) uint8_t b[kR16Group * 24];
  for (int64_t e = 0; e < n; e += kR16Group * 32) {
    const int64_t m = std::min<int64_t>(kR16Group * 32, n - e);
    r16_unpack(r16, src + e / 32 * bb, b, m);
    row_to_f32(ft, b, dst + e, m);
  }
}

void row_r16_from_f32(DType r16, const float* src, uint8_t* dst, int64_t n) {
  const DType ft = *r16_file_type(r16);
  const size_t bb = dtype_traits(ft).block_bytes;
  alignas(8) uint8_t b[kR16Group * 24];
  for (int64_t e = 0; e < n; e += kR16Group * 32) {
    const int64_t m = std::min<int64_t>(kR16Group * 32, n - e);
    row_from_f32(ft, src + e, b, m);
    r16_pack(r16, b, dst + e / 32 * bb, m);
  }
}

}  // namespace

bool dtype_can_convert(DType type) {
  switch (type) {
    case DType::Q4_0_R16: case DType::Q4_1_R16: case DType::Q5_0_R16: case DType::Q5_1_R16:
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0:
    case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

namespace {

// f16 -> f32 with F16C, 8 at a time: exact, like the scalar f16_to_f32 (every f16 is an f32).
// Used to widen f16 weight panels before GEMM, which otherwise spends a quarter of its time here.
__attribute__((target("avx2,f16c"))) void row_f16_to_f32_f16c(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

}  // namespace

void row_f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  if (cpu_has_avx2()) {
    row_f16_to_f32_f16c(src, dst, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

void row_to_f32(DType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case DType::F32: std::copy_n(static_cast<const float*>(src), n, dst); return;
    case DType::F16: row_f16_to_f32(static_cast<const uint16_t*>(src), dst, n); return;
    case DType::BF16: for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]); return;
    case DType::Q8_0: dequantize_row_q8_0_ref(static_cast<const BlockQ8_0*>(src), dst, n); return;
    case DType::Q4_0: dequantize_row_q4_0_ref(static_cast<const BlockQ4_0*>(src), dst, n); return;
    case DType::Q4_1: dequantize_row_q4_1_ref(static_cast<const BlockQ4_1*>(src), dst, n); return;
    case DType::Q5_0: dequantize_row_q5_0_ref(static_cast<const BlockQ5_0*>(src), dst, n); return;
    case DType::Q5_1: dequantize_row_q5_1_ref(static_cast<const BlockQ5_1*>(src), dst, n); return;
    case DType::Q4_K: dequantize_row_q4_K_ref(static_cast<const BlockQ4_K*>(src), dst, n); return;
    case DType::Q5_K: dequantize_row_q5_K_ref(static_cast<const BlockQ5_K*>(src), dst, n); return;
    case DType::Q6_K: dequantize_row_q6_K_ref(static_cast<const BlockQ6_K*>(src), dst, n); return;
    case DType::Q4_0_R16: case DType::Q4_1_R16: case DType::Q5_0_R16: case DType::Q5_1_R16:
      row_r16_to_f32(type, static_cast<const uint8_t*>(src), dst, n);
      return;
    case DType::Q4_K_X16: case DType::Q5_K_X16: case DType::Q6_K_X16:
      error_throw(fmt::format("{} rows are interleaved 16 at a time and cannot be converted one by one", dtype_name(type)),
                  "row_to_f32", "convert a group of 16 rows with x16_unpack");
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
    case DType::Q4_1: quantize_row_q4_1_ref(src, static_cast<BlockQ4_1*>(dst), n); return;
    case DType::Q5_0: quantize_row_q5_0_ref(src, static_cast<BlockQ5_0*>(dst), n); return;
    case DType::Q5_1: quantize_row_q5_1_ref(src, static_cast<BlockQ5_1*>(dst), n); return;
    case DType::Q4_K: quantize_row_q4_K_ref(src, static_cast<BlockQ4_K*>(dst), n); return;
    case DType::Q5_K: quantize_row_q5_K_ref(src, static_cast<BlockQ5_K*>(dst), n); return;
    case DType::Q6_K: quantize_row_q6_K_ref(src, static_cast<BlockQ6_K*>(dst), n); return;
    case DType::Q4_0_R16: case DType::Q4_1_R16: case DType::Q5_0_R16: case DType::Q5_1_R16:
      row_r16_from_f32(type, src, static_cast<uint8_t*>(dst), n);
      return;
    default: error_throw(fmt::format("conversion to {} is not supported yet", dtype_name(type)), "row_from_f32");
  }
}

}  // namespace aigc
