// AVX2 (+FMA, F16C) quantised kernels: Q8_0 activation quantiser, Q8_0/Q4_0 dequantisers, and
// the dot products q8_0, q4_0, q4_1, q5_0, q5_1 · q8_0 and q4_K, q5_K, q6_K · q8_K (contract in
// quant_dot.h).
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

// ---- Q4_1, Q5_0, Q5_1 against Q8_0 -----------------------------------------------------------

// Q4_0-style nibbles in element order: low nibbles (0..15) in the low 128 bits, high (16..31) above.
inline __m256i nibbles_unpack(const uint8_t* qs) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
}

// Bit 4 of element e = bit e of the block's qh (little-endian u32), as a byte 0x10 or 0: byte e
// is given a copy of qh's byte e/8, masked with bit e%8.
inline __m256i q5_high(const uint8_t* qh) {
  uint32_t h;
  __builtin_memcpy(&h, qh, 4);
  const __m256i rep = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(h)),
                                          _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                           2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(rep, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

inline uint16_t block_min(const BlockQ4_1& b) { return b.m; }
inline uint16_t block_min(const BlockQ5_1& b) { return b.m; }
inline uint16_t block_min(const BlockQ5_0&) { return 0; }

// Shared driver: u(block) gives the 32 unsigned values (0..31) in element order; `offset` is
// subtracted from each (Q5_0: 16); with_min adds m * dy * sum(qy). maddubs pairs stay below
// 2 * 31 * 128 < 2^15.
template <typename Block, typename Unpack>
float legacy_dot(int64_t n, const Block* x, const BlockQ8_0* y, Unpack u, int offset, bool with_min) {
  const int64_t nb = n / 32;
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const __m256i off = _mm256_set1_epi8(static_cast<char>(offset));
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const float dy = f16_load(y[ib].d);
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
    __m256i p16 = _mm256_maddubs_epi16(u(x[ib]), qy);
    if (offset) p16 = _mm256_sub_epi16(p16, _mm256_maddubs_epi16(off, qy));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(x[ib].d) * dy), _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones16)), acc);
    if (with_min) {
      const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, qy), ones16);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_load(block_min(x[ib])) * dy), _mm256_cvtepi32_ps(s), acc);
    }
  }
  return hsum(acc);
}

float vec_dot_q4_1_q8_0_avx2(int64_t n, const BlockQ4_1* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ4_1& b) { return nibbles_unpack(b.qs); }, 0, true);
}

float vec_dot_q5_0_q8_0_avx2(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ5_0& b) { return _mm256_or_si256(nibbles_unpack(b.qs), q5_high(b.qh)); }, 16, false);
}

float vec_dot_q5_1_q8_0_avx2(int64_t n, const BlockQ5_1* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ5_1& b) { return _mm256_or_si256(nibbles_unpack(b.qs), q5_high(b.qh)); }, 0, true);
}

// ---- K-quants against Q8_K ----------------------------------------------------------------
// maddubs (unsigned weight values x signed activations, pairs to int16: at most 2 * 63 * 128 <
// 2^15), then madd with the sub-block scale as int16 gives int32 sums: each block's integer sum
// is exact.

inline void k4_scales_unpack(const uint8_t* s, int16_t* sc, int32_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = static_cast<int16_t>((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
    mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

template <bool kHigh>
float k45_dot(int64_t n, const uint8_t* xb, size_t stride, const BlockQ8_K* y) {
  const int64_t nb = n / kQK_K;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 accf = _mm256_setzero_ps();
  float minf = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib, xb += stride) {
    uint16_t d16, dmin16;
    __builtin_memcpy(&d16, xb, 2);
    __builtin_memcpy(&dmin16, xb + 2, 2);
    const uint8_t* qh = xb + 4 + kKScaleSize;
    const uint8_t* qs = kHigh ? qh + kQK_K / 8 : qh;
    int16_t sc[8];
    int32_t mn[8];
    k4_scales_unpack(xb + 4, sc, mn);
    __m256i hb = kHigh ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)) : _mm256_setzero_si256();
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
      if (kHigh) {  // bits 2c and 2c+1 of qh[l]; hb is shifted right by 2 per chunk
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
        hb = _mm256_srli_epi16(hb, 2);
      }
      const __m256i qy0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs + 64 * c));
      const __m256i qy1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs + 64 * c + 32));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, qy0), _mm256_set1_epi16(sc[2 * c])));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, qy1), _mm256_set1_epi16(sc[2 * c + 1])));
    }
    // lanes stay apart until the end: no horizontal sum per block
    accf = _mm256_fmadd_ps(_mm256_set1_ps(y[ib].d * f16_load(d16)), _mm256_cvtepi32_ps(acc), accf);
    int32_t summ = 0;
    for (int j = 0; j < 8; ++j) summ += mn[j] * (y[ib].bsums[2 * j] + y[ib].bsums[2 * j + 1]);
    minf += y[ib].d * f16_load(dmin16) * static_cast<float>(summ);
  }
  return hsum(accf) - minf;
}

float vec_dot_q4_K_q8_K_avx2(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  return k45_dot<false>(n, reinterpret_cast<const uint8_t*>(x), sizeof(BlockQ4_K), y);
}

float vec_dot_q5_K_q8_K_avx2(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  return k45_dot<true>(n, reinterpret_cast<const uint8_t*>(x), sizeof(BlockQ5_K), y);
}

// int16 lanes 0-7 (bytes 0..15) get sc[0], lanes 8-15 sc[1].
inline __m256i scale16_two(const int8_t* sc) {
  return _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
}

float vec_dot_q6_K_q8_K_avx2(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  const int64_t nb = n / kQK_K;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m2 = _mm256_set1_epi8(3);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib) {
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].ql + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qh + 32 * h));
      const __m256i u[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4)),
      };
      for (int k = 0; k < 4; ++k) {  // elements 128h + 32k .. +31: groups 8h + 2k, 8h + 2k + 1
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs + 128 * h + 32 * k));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], qy), scale16_two(x[ib].scales + 8 * h + 2 * k)));
      }
    }
    // the values are q - 32: take 32 * sum_g sc_g * sum(qy in g) off, from the bsums
    int32_t off = 0;
    for (int g = 0; g < 16; ++g) off += x[ib].scales[g] * y[ib].bsums[g];
    // the integer sum first: the offset term nearly cancels the products when q is near 32
    const int32_t sumi = hsum_i32(acc) - 32 * off;
    sumf += y[ib].d * f16_load(x[ib].d) * static_cast<float>(sumi);
  }
  return sumf;
}

const QuantKernels kQuantKernelsAvx2 = {
    "avx2",
    quantize_row_q8_0_avx2,
    dequantize_row_q8_0_avx2,
    dequantize_row_q4_0_avx2,
    vec_dot_q8_0_q8_0_avx2,
    vec_dot_q4_0_q8_0_avx2,
    quantize_row_q8_K_ref,  // once per activation row: not worth a SIMD copy
    vec_dot_q4_1_q8_0_avx2,
    vec_dot_q5_0_q8_0_avx2,
    vec_dot_q5_1_q8_0_avx2,
    vec_dot_q4_K_q8_K_avx2,
    vec_dot_q5_K_q8_K_avx2,
    vec_dot_q6_K_q8_K_avx2,
    nullptr,  // decode kernels: AVX-512 VNNI only; linear_quantized uses the dots above
    nullptr,
    decode_row_prepare,
    nullptr,  // several rows per pass: AVX-512 only
    nullptr,
    nullptr,
};

}  // namespace

const QuantKernels& quant_kernels_avx2() { return kQuantKernelsAvx2; }

}  // namespace aigc
