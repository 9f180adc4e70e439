// AVX-512 (F/BW/VL/DQ + VNNI) quantised kernels: Q8_0 activation quantiser, Q8_0/Q4_0 row
// dequantisers (the float GEMM path uses them for prefill), and q8_0·q8_0, q4_0·q8_0 dot
// products with vpdpbusd (contract in quant_dot.h). The dots take two 32-element blocks per
// 512-bit register (block ib in the low 256 bits, ib+1 in the high), an odd last block in 256 bits.
//
// This file is compiled with AVX-512 flags: it calls no inline function of our shared headers (such
// a function could be emitted here with AVX-512 instructions and picked by the linker for every
// caller), only intrinsics; f16 conversions use F16C.
#include <immintrin.h>

// GCC 12's avx512fintrin.h builds _mm512_undefined_*() by self-initialisation, which -Wuninitialized
// reports wherever an intrinsic using it is inlined: false positives.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

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

// The 32 qs of block a in the low half, of block b in the high half.
inline __m512i load_pair(const int8_t* a, const int8_t* b) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// d0 in the 8 low lanes, d1 in the 8 high lanes (matching load_pair).
inline __m512 scale_pair(float d0, float d1) {
  return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

// A Q4_0 block's 32 nibbles as bytes in element order: low nibbles (0..15), then high (16..31).
inline __m256i q4_0_unpack(const uint8_t* qs) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
}

// roundf (half away from zero), exactly as the reference's lround: r = trunc|v| + (|v| >= trunc|v| + 0.5).
// It never subtracts from v, so -ffp-contract cannot fuse v's multiply into an FMA and change v.
inline __m512i round_half_away(__m512 v) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80000000u));
  const __m512 a = _mm512_abs_ps(v);
  const __m512 t = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 up = _mm512_cmp_ps_mask(a, _mm512_add_ps(t, _mm512_set1_ps(0.5f)), _CMP_GE_OQ);
  const __m512 r = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
  const __m512i s = _mm512_and_si512(_mm512_castps_si512(v), sign);
  return _mm512_cvttps_epi32(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), s)));
}

void quantize_row_q8_0_avx512(const float* x, BlockQ8_0* y, int64_t n) {
  const int64_t nb = n / kQK8_0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 v0 = _mm512_loadu_ps(x + ib * kQK8_0);
    const __m512 v1 = _mm512_loadu_ps(x + ib * kQK8_0 + 16);
    // Same scalar arithmetic as quantize_row_q8_0_ref, so the bytes are identical.
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[ib].d = f16_store(d);
    const __m512 vid = _mm512_set1_ps(id);
    // values are in [-127, 127]: the truncating int32 -> int8 narrowing is exact
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[ib].qs), _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v0, vid))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[ib].qs + 16), _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v1, vid))));
  }
}

void dequantize_row_q8_0_avx512(const BlockQ8_0* x, float* y, int64_t n) {
  const int64_t nb = n / kQK8_0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 d = _mm512_set1_ps(f16_load(x[ib].d));
    for (int k = 0; k < 2; ++k) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[ib].qs + 16 * k));
      _mm512_storeu_ps(y + ib * kQK8_0 + 16 * k, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
  }
}

void dequantize_row_q4_0_avx512(const BlockQ4_0* x, float* y, int64_t n) {
  const int64_t nb = n / kQK4_0;
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m512i off = _mm512_set1_epi32(8);
  for (int64_t ib = 0; ib < nb; ++ib) {
    const __m512 d = _mm512_set1_ps(f16_load(x[ib].d));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[ib].qs));
    // elements 0..15: low nibbles; 16..31: high nibbles
    const __m128i half[2] = {_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4)};
    for (int k = 0; k < 2; ++k) {
      const __m512i q = _mm512_sub_epi32(_mm512_cvtepu8_epi32(half[k]), off);
      _mm512_storeu_ps(y + ib * kQK4_0 + 16 * k, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q)));
    }
  }
}

// vpdpbusd multiplies unsigned by signed bytes. For q8_0·q8_0 the weight bytes get +128 (flip the
// sign bit) to become unsigned, and 128·sum(y) is taken off again: exact for every int8 pair.
float vec_dot_q8_0_q8_0_avx512(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK8_0;
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc = _mm512_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const __m512 d = scale_pair(f16_load(x[ib].d) * f16_load(y[ib].d), f16_load(x[ib + 1].d) * f16_load(y[ib + 1].d));
    const __m512i qx = load_pair(x[ib].qs, x[ib + 1].qs);
    const __m512i qy = load_pair(y[ib].qs, y[ib + 1].qs);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(qx, bias), qy);
    const __m512i p = _mm512_sub_epi32(dot, _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, qy));  // 16 x int32
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
  }
  float sumf = _mm512_reduce_add_ps(acc);
  if (ib < nb) {  // odd last block, same arithmetic in 256 bits
    const __m256i b256 = _mm512_castsi512_si256(bias);
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qs));
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(qx, b256), qy);
    const __m256i p = _mm256_sub_epi32(dot, _mm256_dpbusd_epi32(_mm256_setzero_si256(), b256, qy));
    sumf += f16_load(x[ib].d) * f16_load(y[ib].d) * hsum(_mm256_cvtepi32_ps(p));
  }
  return sumf;
}

// q4_0·q8_0: the nibble u in [0, 15] is already unsigned; (u - 8)·y = u·y - 8·y, exact for any y.
float vec_dot_q4_0_q8_0_avx512(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK4_0;
  const __m512i eight = _mm512_set1_epi8(8);
  __m512 acc = _mm512_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const __m512 d = scale_pair(f16_load(x[ib].d) * f16_load(y[ib].d), f16_load(x[ib + 1].d) * f16_load(y[ib + 1].d));
    const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(q4_0_unpack(x[ib].qs)), q4_0_unpack(x[ib + 1].qs), 1);
    const __m512i qy = load_pair(y[ib].qs, y[ib + 1].qs);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, qy);
    const __m512i p = _mm512_sub_epi32(dot, _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, qy));  // 16 x int32
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
  }
  float sumf = _mm512_reduce_add_ps(acc);
  if (ib < nb) {  // odd last block, same arithmetic in 256 bits
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q4_0_unpack(x[ib].qs), qy);
    const __m256i p = _mm256_sub_epi32(dot, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm512_castsi512_si256(eight), qy));
    sumf += f16_load(x[ib].d) * f16_load(y[ib].d) * hsum(_mm256_cvtepi32_ps(p));
  }
  return sumf;
}

const QuantKernels kQuantKernelsAvx512Vnni = {
    "avx512vnni",
    quantize_row_q8_0_avx512,
    dequantize_row_q8_0_avx512,
    dequantize_row_q4_0_avx512,
    vec_dot_q8_0_q8_0_avx512,
    vec_dot_q4_0_q8_0_avx512,
};

}  // namespace

const QuantKernels& quant_kernels_avx512vnni() { return kQuantKernelsAvx512Vnni; }

}  // namespace aigc
