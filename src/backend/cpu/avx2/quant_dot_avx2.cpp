// AVX2 (+FMA, F16C) quantised kernels: Q8_0 activation quantiser, Q8_0/Q4_0 dequantisers, and
// q8_0·q8_0, q4_0·q8_0 dot products (contract in quant_dot.h).
//
// This file is compiled with -mavx2: it calls no inline function of our shared headers (such a
// function could be emitted here with AVX2 instructions and picked by the linker for every
// caller), only intrinsics; f16 conversions use F16C.
#include <immintrin.h>

#include "backend/cpu/quant_dot.h"

namespace aigc {

namespace {

inline float f16_load(uint16_t h) { return _cvtsh_ss(h); }
// Round to nearest even, overflow to inf: the same as f16_from_f32 (half.h).
inline uint16_t f16_store(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// roundf (half away from zero), exactly as the reference's lround: r = trunc|v| + (|v| >= trunc|v| + 0.5).
// It never subtracts from v, so -ffp-contract cannot fuse v's multiply into an FMA and change v.
inline __m256i round_half_away(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign, v);
  const __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up = _mm256_cmp_ps(a, _mm256_add_ps(t, _mm256_set1_ps(0.5f)), _CMP_GE_OQ);
  const __m256 r = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
  return _mm256_cvttps_epi32(_mm256_or_ps(r, _mm256_and_ps(v, sign)));  // sign back; r is integral
}

void quantize_row_q8_0_avx2(const float* x, BlockQ8_0* y, int64_t n) {
  const int64_t nb = n / kQK8_0;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float* xb = x + ib * kQK8_0;
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(xb + 8 * k);
    __m256 amaxv = _mm256_andnot_ps(sign, v[0]);
    for (int k = 1; k < 4; ++k) amaxv = _mm256_max_ps(amaxv, _mm256_andnot_ps(sign, v[k]));
    // Same scalar arithmetic as quantize_row_q8_0_ref, so the bytes are identical.
    const float amax = hmax(amaxv);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[ib].d = f16_store(d);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = round_half_away(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
    // packs work per 128-bit lane: the bytes come out as dwords 0,2,4,6,1,3,5,7; permute them back
    const __m256i q01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i q23 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i q8 = _mm256_packs_epi16(q01, q23);
    const __m256i qs = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[ib].qs), qs);
  }
}

void dequantize_row_q8_0_avx2(const BlockQ8_0* x, float* y, int64_t n) {
  const int64_t nb = n / kQK8_0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m256 d = _mm256_set1_ps(f16_load(x[ib].d));
    for (int k = 0; k < 4; ++k) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[ib].qs + 8 * k));
      _mm256_storeu_ps(y + ib * kQK8_0 + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

void dequantize_row_q4_0_avx2(const BlockQ4_0* x, float* y, int64_t n) {
  const int64_t nb = n / kQK4_0;
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m256i off = _mm256_set1_epi32(8);
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m256 d = _mm256_set1_ps(f16_load(x[ib].d));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[ib].qs));
    // elements 0..15: low nibbles; 16..31: high nibbles
    const __m128i half[2] = {_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4)};
    for (int k = 0; k < 4; ++k) {
      const __m128i u = k & 1 ? _mm_srli_si128(half[k / 2], 8) : half[k / 2];
      const __m256i q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(u), off);
      _mm256_storeu_ps(y + ib * kQK4_0 + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
    }
  }
}

float vec_dot_q8_0_q8_0_avx2(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK8_0;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m256 d = _mm256_set1_ps(f16_load(x[ib].d) * f16_load(y[ib].d));
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qs));
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
    // maddubs multiplies unsigned by signed bytes: move x's sign onto y. |x| <= 128 fits u8 (even
    // for -128); y in [-127, 127] negates safely; a pair sums to at most 2*128*127 < 2^15.
    const __m256i ax = _mm256_abs_epi8(qx);
    const __m256i sy = _mm256_sign_epi8(qy, qx);
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);  // 8 x int32
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float vec_dot_q4_0_q8_0_avx2(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK4_0;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i eight = _mm256_set1_epi8(8);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m256 d = _mm256_set1_ps(f16_load(x[ib].d) * f16_load(y[ib].d));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[ib].qs));
    // low 128 bits: low nibbles (elements 0..15); high 128 bits: high nibbles (16..31)
    const __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), m4);
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
    // (u - 8)·y = u·y - 8·y: u in [0, 15] is the unsigned operand maddubs wants; exact for any y
    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(u, qy), _mm256_maddubs_epi16(eight, qy));
    const __m256i p = _mm256_madd_epi16(p16, ones);  // 8 x int32
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

const QuantKernels kQuantKernelsAvx2 = {
    "avx2",
    quantize_row_q8_0_avx2,
    dequantize_row_q8_0_avx2,
    dequantize_row_q4_0_avx2,
    vec_dot_q8_0_q8_0_avx2,
    vec_dot_q4_0_q8_0_avx2,
};

}  // namespace

const QuantKernels& quant_kernels_avx2() { return kQuantKernelsAvx2; }

}  // namespace aigc
