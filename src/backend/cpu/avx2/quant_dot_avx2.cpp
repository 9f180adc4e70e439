// AVX2 (+FMA, F16C) quantised kernels: Q8_0 activation quantiser, Q8_0/Q4_0 dequantisers, and
// the dot products q8_0, q4_0, q4_1, q5_0, q5_1 · q8_0 and q4_K, q5_K, q6_K · q8_K (contract in
// quant_dot.h).
//
// This file is compiled with -mavx2: it calls no inline function of our shared headers (such a
// function could be emitted here with AVX2 instructions and picked by the linker for every
// caller), only intrinsics; f16 conversions use F16C. (rows_dispatch, a template of quant_dot.h,
// is only instantiated here with this file's own lambdas: those instances are this file's alone.)
#include <immintrin.h>

#include <type_traits>

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

// A block's 32 unsigned values (0..15, or 0..31 with the fifth bit) in element order.
inline __m256i legacy_values(const BlockQ4_0& b) { return nibbles_unpack(b.qs); }
inline __m256i legacy_values(const BlockQ4_1& b) { return nibbles_unpack(b.qs); }
inline __m256i legacy_values(const BlockQ5_0& b) { return _mm256_or_si256(nibbles_unpack(b.qs), q5_high(b.qh)); }
inline __m256i legacy_values(const BlockQ5_1& b) { return _mm256_or_si256(nibbles_unpack(b.qs), q5_high(b.qh)); }

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
  return legacy_dot(n, x, y, [](const BlockQ4_1& b) { return legacy_values(b); }, 0, true);
}

float vec_dot_q5_0_q8_0_avx2(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ5_0& b) { return legacy_values(b); }, 16, false);
}

float vec_dot_q5_1_q8_0_avx2(int64_t n, const BlockQ5_1* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ5_1& b) { return legacy_values(b); }, 0, true);
}

// ---- decode (GEMV) kernels (DecodeRow layout, quant_dot.h) -----------------------------------
// One weight row at a time against an activation row laid out once per linear by
// decode_row_prepare, so that a group of 16 blocks costs a few reductions and one multiply-add per
// 8 blocks instead of vec_dot's per-block horizontal work and scalar scale conversions. AVX2 has
// no VNNI: maddubs (unsigned x signed bytes, pairs to int16) then madd with ones to int32, and
// hadd trees that put 8 blocks' sums in one vector in exactly the order decode_row_prepare gives
// the blocks' scales (kDecodeOrderQ4_0 / kDecodeOrderQ8_0), so no permute is needed.

// Software prefetch of the weight stream, two distances as the AVX-512 kernels do
// (quant_dot_avx512.cpp): into L2 16 KiB ahead, into L1 4 KiB ahead.
__attribute__((always_inline)) inline void decode_prefetch(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + 16384 + o), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(p + 4096 + o), _MM_HINT_T0);
  }
}

// ---- K-quants against Q8_K ----------------------------------------------------------------
// maddubs (unsigned weight values x signed activations, pairs to int16: at most 2 * 63 * 128 <
// 2^15), then madd with the sub-block scale as int16 gives int32 sums: each block's integer sum
// is exact. Scales, mins and the per-block terms stay in vectors (one shuffle per sub-block's
// scale, one madd for a block's eight mins, lanes summed once per row, not per block): the scalar
// scale unpacking and min sums they replace made these kernels compute-bound (TinyLlama Q4_K_S on
// 2 Zen 3 cores generated at 39% of a plain read of its weights).

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// The eight 6-bit scales and mins of a Q4_K / Q5_K block (layout in quant.h) as bytes: 0..7 the
// scales, 8..15 the mins. On 32-bit words: bytes 0..3 hold scales 0..3 (low 6 bits) and the top
// 2 bits of scales 4..7, bytes 4..7 the same for the mins, bytes 8..11 the low 4 bits of scales
// 4..7 (low nibble) and mins 4..7 (high nibble).
inline __m128i k4_scales_mins(const uint8_t* s) {
  uint32_t w0, w1, w2;
  __builtin_memcpy(&w0, s, 4);
  __builtin_memcpy(&w1, s + 4, 4);
  __builtin_memcpy(&w2, s + 8, 4);
  const uint32_t sc_lo = w0 & 0x3f3f3f3fu, mn_lo = w1 & 0x3f3f3f3fu;
  const uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
  const uint32_t mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
  return _mm_set_epi32(static_cast<int>(mn_hi), static_cast<int>(mn_lo), static_cast<int>(sc_hi),
                       static_cast<int>(sc_lo));
}

// pshufb masks that spread int16 lane 2j (both 128-bit halves) over every lane of a half: j in
// the low half, j + 1 in the high half (kSpread[j / 2], j even), or j in both (kSpread[4 + j]).
struct KSpread {
  alignas(32) uint8_t m[12][32];
  KSpread() {
    for (int v = 0; v < 12; ++v)
      for (int b = 0; b < 32; ++b) {
        const int lane = v < 4 ? 2 * v + b / 16 : v - 4;
        m[v][b] = static_cast<uint8_t>(2 * lane + b % 2);
      }
  }
};
const KSpread kSpread;

inline __m256i spread(__m256i v, int mask) {
  return _mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(kSpread.m[mask])));
}

// One Q4_K / Q5_K weight row dotted with R activation rows (y + r * y_stride), out[r]: each block
// is unpacked once for all R (short prompts); every out[r] comes out of the same operations in
// the same order whatever R is (R = 1: the vec_dot kernel). `prefetch`: the first pass over the
// row only.
template <bool kHigh, int R>
__attribute__((always_inline)) inline void k45_rows(int64_t n, const uint8_t* xb, size_t stride, const BlockQ8_K* y,
                                                    int64_t y_stride, float* out, bool prefetch) {
  const int64_t nb = n / kQK_K;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 accf[R], minv[R];
  for (int r = 0; r < R; ++r) accf[r] = _mm256_setzero_ps(), minv[r] = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib, xb += stride) {
    if (prefetch) decode_prefetch(xb, static_cast<int64_t>(stride));  // decode streams rows from memory
    // both layouts start with d, dmin, scales[12]; Q5_K then has qh[32] before qs
    uint32_t dd;
    __builtin_memcpy(&dd, xb, 4);
    const __m128 ddf = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd)));  // d, dmin
    const float d = _mm_cvtss_f32(ddf), dmin = _mm_cvtss_f32(_mm_movehdup_ps(ddf));
    const uint8_t* qh = xb + 4 + kKScaleSize;
    const uint8_t* qs = kHigh ? qh + kQK_K / 8 : qh;
    const __m128i scm = k4_scales_mins(xb + 4);
    const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));  // scales 0..7 in each half
    __m256i hb = kHigh ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)) : _mm256_setzero_si256();
    __m256i acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {  // elements 64c .. 64c + 63: sub-blocks 2c (low nibbles), 2c + 1
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
      if (kHigh) {  // bits 2c and 2c+1 of qh[l]; hb is shifted right by 2 per chunk
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
        hb = _mm256_srli_epi16(hb, 2);
      }
      const __m256i s_lo = spread(sc, 4 + 2 * c), s_hi = spread(sc, 5 + 2 * c);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int8_t* qy = y[ib + r * y_stride].qs + 64 * c;
        const __m256i p_lo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy)));
        const __m256i p_hi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy + 32)));
        acc[r] = _mm256_add_epi32(acc[r], _mm256_add_epi32(_mm256_madd_epi16(p_lo, s_lo), _mm256_madd_epi16(p_hi, s_hi)));
      }
    }
    // mins 0..7 each twice (int16 lanes 2j, 2j + 1: beside the bsums of its two 16-element groups)
    const __m256i mn = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const BlockQ8_K& yb = y[ib + r * y_stride];
      // lanes stay apart until the end: no horizontal sum per block
      accf[r] = _mm256_fmadd_ps(_mm256_set1_ps(yb.d * d), _mm256_cvtepi32_ps(acc[r]), accf[r]);
      const __m256i summ = _mm256_madd_epi16(mn, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb.bsums)));
      minv[r] = _mm256_fmadd_ps(_mm256_set1_ps(yb.d * dmin), _mm256_cvtepi32_ps(summ), minv[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(_mm256_sub_ps(accf[r], minv[r]));
}

template <bool kHigh>
float k45_dot(int64_t n, const uint8_t* xb, size_t stride, const BlockQ8_K* y) {
  float out;
  k45_rows<kHigh, 1>(n, xb, stride, y, 0, &out, true);
  return out;
}

float vec_dot_q4_K_q8_K_avx2(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  return k45_dot<false>(n, reinterpret_cast<const uint8_t*>(x), sizeof(BlockQ4_K), y);
}

float vec_dot_q5_K_q8_K_avx2(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  return k45_dot<true>(n, reinterpret_cast<const uint8_t*>(x), sizeof(BlockQ5_K), y);
}

// As k45_rows: one Q6_K row with R activation rows, the R = 1 instance is the vec_dot kernel.
template <int R>
__attribute__((always_inline)) inline void q6_K_rows(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y, int64_t y_stride,
                                                     float* out, bool prefetch) {
  const int64_t nb = n / kQK_K;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m2 = _mm256_set1_epi8(3);
  float sumf[R];
  for (int r = 0; r < R; ++r) sumf[r] = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib) {
    if (prefetch) decode_prefetch(reinterpret_cast<const uint8_t*>(x + ib), sizeof(BlockQ6_K));  // decode streams rows from memory
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[ib].scales)));
    __m256i acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].ql + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qh + 32 * h));
      // scales 8h .. 8h + 7 in each half
      const __m256i sc = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
      for (int k = 0; k < 4; ++k) {  // elements 128h + 32k .. +31: groups 8h + 2k, 8h + 2k + 1
        const __m256i l = k % 2 ? l1 : l0;
        const __m256i lq = k < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
        const __m256i u = _mm256_or_si256(lq, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m2), 4));
        const __m256i s = spread(sc, k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib + r * y_stride].qs + 128 * h + 32 * k));
          acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(u, qy), s));
        }
      }
    }
    const float d = f16_load(x[ib].d);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const BlockQ8_K& yb = y[ib + r * y_stride];
      // the values are q - 32: take 32 * sum_g sc_g * sum(qy in g) off (the bsums), and sum the
      // block in int32 before the conversion: the offset term nearly cancels the products when q
      // is near 32, and one lane's terms can pass 2^24 (lanes converted apart lost bits)
      const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb.bsums)));
      sumf[r] += yb.d * d * static_cast<float>(hsum_i32(_mm256_sub_epi32(acc[r], _mm256_slli_epi32(off, 5))));
    }
  }
  for (int r = 0; r < R; ++r) out[r] = sumf[r];
}

float vec_dot_q6_K_q8_K_avx2(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  float out;
  q6_K_rows<1>(n, x, y, 0, &out, true);
  return out;
}

template <bool kHigh>
void vec_dot_rows_k45_avx2(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                           int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch) {
  const size_t stride = kHigh ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  rows_run(nw, static_cast<const uint8_t*>(x), row_bytes, rows, out, ldo, [&]<int R>(const uint8_t* xr, float* o) {
    k45_rows<kHigh, R>(n, xr, stride, y, y_stride, o, prefetch);
  });
}

void vec_dot_rows_q6_K_avx2(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                            int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch) {
  rows_run(nw, static_cast<const uint8_t*>(x), row_bytes, rows, out, ldo, [&]<int R>(const uint8_t* xr, float* o) {
    q6_K_rows<R>(n, reinterpret_cast<const BlockQ6_K*>(xr), y, y_stride, o, prefetch);
  });
}

inline uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  __builtin_memcpy(&v, p, 2);
  return v;
}

// Eight f16 scales as f32: lane i the one at byte offset o_i of g.
inline __m256 scales8(const uint8_t* g, int o0, int o1, int o2, int o3, int o4, int o5, int o6, int o7) {
  const __m128i h = _mm_setr_epi16(static_cast<short>(u16_at(g + o0)), static_cast<short>(u16_at(g + o1)),
                                   static_cast<short>(u16_at(g + o2)), static_cast<short>(u16_at(g + o3)),
                                   static_cast<short>(u16_at(g + o4)), static_cast<short>(u16_at(g + o5)),
                                   static_cast<short>(u16_at(g + o6)), static_cast<short>(u16_at(g + o7)));
  return _mm256_cvtph_ps(h);
}

// A half group's 8 block sums from the blocks' int32 partial sums P[0..7] (8 lanes each), in
// kDecodeOrderQ8_0's order (blocks 0 2 4 6 1 3 5 7).
inline __m256i half_sums(const __m256i* P) {
  // lane halves: even blocks' sums of elements 0..15 | 16..31, then the odd blocks'
  const __m256i e = _mm256_hadd_epi32(_mm256_hadd_epi32(P[0], P[2]), _mm256_hadd_epi32(P[4], P[6]));
  const __m256i o = _mm256_hadd_epi32(_mm256_hadd_epi32(P[1], P[3]), _mm256_hadd_epi32(P[5], P[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(e, o, 0x20), _mm256_permute2x128_si256(e, o, 0x31));
}

// The f16 at the start of each of 8 blocks of `block` bytes, in the same order.
inline __m256 half_scales(const uint8_t* h, int64_t block) {
  const int B = static_cast<int>(block);
  return scales8(h, 0, 2 * B, 4 * B, 6 * B, B, 3 * B, 5 * B, 7 * B);
}

// A tail block (natural order): its 32 unsigned (Q4_0) or sign-moved (Q8_0) products summed.
inline float decode_tail(const uint8_t* blk, __m256i p16, const DecodeRow& a, int64_t ib, bool with_bias) {
  const int32_t t = hsum_i32(_mm256_madd_epi16(p16, _mm256_set1_epi16(1))) - (with_bias ? a.bias[ib] : 0);
  return f16_load(u16_at(blk)) * a.d[ib] * static_cast<float>(t);
}

// A tail block of Q4_0, Q4_1, Q5_0 or Q5_1 (natural order): decode_tail, with the min term
// (m * dy * sum(qy), the bias) for the types with a min.
template <typename Block>
inline float legacy_tail(const uint8_t* blk, const DecodeRow& a, int64_t ib) {
  constexpr bool kMin = sizeof(Block) == 20 || sizeof(Block) == 24;  // Q4_1, Q5_1: d, m, ...
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + ib * 32));
  float t = decode_tail(blk, _mm256_maddubs_epi16(legacy_values(*reinterpret_cast<const Block*>(blk)), y), a, ib, !kMin);
  if constexpr (kMin) t += f16_load(u16_at(blk + 2)) * a.d[ib] * static_cast<float>(a.bias[ib]);
  return t;
}

// Q4_0 row · activation row. Per quad q of a group (blocks 4q..4q+3, 72 bytes): blocks (4q, 4q+1)
// and (4q+2, 4q+3) as two 256-bit vectors of nibbles, low halves matching the activation's quad
// bytes [0, 32) / [32, 64), high halves [64, 96) / [96, 128) (decode_row_prepare's quad layout).
// Each maddubs pair is at most 2 * 15 * 127, the low + high sum 7620: int16 holds it.
float gemv_q4_0_row_avx2(const uint8_t* w, int64_t nb, const DecodeRow& a, bool prefetch) {
  constexpr int64_t kBlock = 18, kQuad = 4 * kBlock, kGroup = kBlock * kDecodeGroup;
  const int64_t ng = nb / kDecodeGroup;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * kGroup;
    const int8_t* qy = a.qs + g * kDecodeGroup * 32;
    if (prefetch) decode_prefetch(wg, kGroup);
    __m256i P01[4], P23[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const uint8_t* quad = wg + q * kQuad;
      const int8_t* y = qy + 128 * q;
      const __m256i b01 = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(quad + kBlock + 2),
                                              reinterpret_cast<const __m128i*>(quad + 2));
      const __m256i b23 = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(quad + 3 * kBlock + 2),
                                              reinterpret_cast<const __m128i*>(quad + 2 * kBlock + 2));
      auto dot = [&](__m256i b, const int8_t* ylo) {
        const __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
        const __m256i p = _mm256_add_epi16(
            _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ylo))),
            _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ylo + 64))));
        return _mm256_madd_epi16(p, ones);
      };
      P01[q] = dot(b01, y), P23[q] = dot(b23, y + 32);
    }
    // positions 0..7: blocks 0 4 8 12 1 5 9 13; 8..15: 2 6 10 14 3 7 11 15 (kDecodeOrderQ4_0)
    const __m256i s0 = _mm256_hadd_epi32(_mm256_hadd_epi32(P01[0], P01[1]), _mm256_hadd_epi32(P01[2], P01[3]));
    const __m256i s1 = _mm256_hadd_epi32(_mm256_hadd_epi32(P23[0], P23[1]), _mm256_hadd_epi32(P23[2], P23[3]));
    const int32_t* bias = a.bias + g * 16;
    const float* d = a.d + g * 16;
    const __m256i t0 = _mm256_sub_epi32(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias)));
    const __m256i t1 = _mm256_sub_epi32(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 8)));
    const int B = static_cast<int>(kBlock);
    const __m256 w0 = scales8(wg, 0, 4 * B, 8 * B, 12 * B, B, 5 * B, 9 * B, 13 * B);
    const __m256 w1 = scales8(wg, 2 * B, 6 * B, 10 * B, 14 * B, 3 * B, 7 * B, 11 * B, 15 * B);
    acc0 = _mm256_fmadd_ps(_mm256_mul_ps(w0, _mm256_loadu_ps(d)), _mm256_cvtepi32_ps(t0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_mul_ps(w1, _mm256_loadu_ps(d + 8)), _mm256_cvtepi32_ps(t1), acc1);
  }
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (int64_t ib = ng * kDecodeGroup; ib < nb; ++ib) {  // the tail, natural order
    const uint8_t* blk = w + ib * kBlock;
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + ib * 32));
    sum += decode_tail(blk, _mm256_maddubs_epi16(nibbles_unpack(blk + 2), y), a, ib, true);
  }
  return sum;
}

// The same row dotted with `rows` (2..kVecDotRowsMax) activation rows (short prompts, prompt
// chunks): each group is unpacked and its scales converted once, then dotted with every row. The
// float operations per row are gemv_q4_0_row_avx2's, in its order (the integer sums are exact
// either way): each out[r] is the single-row result bit for bit. Kept apart from the single-row
// kernel, which unpacks each quad as it dots it and stays in registers: this form run with one row
// (a compile-time count) decoded 11.7 GB/s against 13.6-16.6 (Q8_0: 17.8-23.2 against 19.8-25.6;
// 224x2048 in L2, 1 thread, alternated in one process).
void gemv_q4_0_rows_avx2(const uint8_t* w, int64_t nb, const DecodeRow* a, int rows, float* out, bool prefetch) {
  constexpr int64_t kBlock = 18, kQuad = 4 * kBlock, kGroup = kBlock * kDecodeGroup;
  const int64_t ng = nb / kDecodeGroup;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc0[kVecDotRowsMax], acc1[kVecDotRowsMax];
  for (int r = 0; r < rows; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * kGroup;
    if (prefetch) decode_prefetch(wg, kGroup);
    __m256i u[16];  // per quad: blocks (4q, 4q+1) low and high nibbles, then (4q+2, 4q+3)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const uint8_t* quad = wg + q * kQuad;
      const __m256i b01 = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(quad + kBlock + 2),
                                              reinterpret_cast<const __m128i*>(quad + 2));
      const __m256i b23 = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(quad + 3 * kBlock + 2),
                                              reinterpret_cast<const __m128i*>(quad + 2 * kBlock + 2));
      u[4 * q] = _mm256_and_si256(b01, m4), u[4 * q + 1] = _mm256_and_si256(_mm256_srli_epi16(b01, 4), m4);
      u[4 * q + 2] = _mm256_and_si256(b23, m4), u[4 * q + 3] = _mm256_and_si256(_mm256_srli_epi16(b23, 4), m4);
    }
    const int B = static_cast<int>(kBlock);
    const __m256 w0 = scales8(wg, 0, 4 * B, 8 * B, 12 * B, B, 5 * B, 9 * B, 13 * B);
    const __m256 w1 = scales8(wg, 2 * B, 6 * B, 10 * B, 14 * B, 3 * B, 7 * B, 11 * B, 15 * B);
    for (int r = 0; r < rows; ++r) {
      const int8_t* qy = a[r].qs + g * kDecodeGroup * 32;
      auto dot = [&](__m256i lo, __m256i hi, const int8_t* ylo) {
        const __m256i p = _mm256_add_epi16(
            _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ylo))),
            _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ylo + 64))));
        return _mm256_madd_epi16(p, ones);
      };
      __m256i P01[4], P23[4];
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q)
        P01[q] = dot(u[4 * q], u[4 * q + 1], qy + 128 * q), P23[q] = dot(u[4 * q + 2], u[4 * q + 3], qy + 128 * q + 32);
      const __m256i s0 = _mm256_hadd_epi32(_mm256_hadd_epi32(P01[0], P01[1]), _mm256_hadd_epi32(P01[2], P01[3]));
      const __m256i s1 = _mm256_hadd_epi32(_mm256_hadd_epi32(P23[0], P23[1]), _mm256_hadd_epi32(P23[2], P23[3]));
      const int32_t* bias = a[r].bias + g * 16;
      const float* d = a[r].d + g * 16;
      const __m256i t0 = _mm256_sub_epi32(s0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias)));
      const __m256i t1 = _mm256_sub_epi32(s1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + 8)));
      acc0[r] = _mm256_fmadd_ps(_mm256_mul_ps(w0, _mm256_loadu_ps(d)), _mm256_cvtepi32_ps(t0), acc0[r]);
      acc1[r] = _mm256_fmadd_ps(_mm256_mul_ps(w1, _mm256_loadu_ps(d + 8)), _mm256_cvtepi32_ps(t1), acc1[r]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    float sum = hsum(_mm256_add_ps(acc0[r], acc1[r]));
    for (int64_t ib = ng * kDecodeGroup; ib < nb; ++ib) {  // the tail, natural order
      const uint8_t* blk = w + ib * kBlock;
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r].qs + ib * 32));
      sum += decode_tail(blk, _mm256_maddubs_epi16(nibbles_unpack(blk + 2), y), a[r], ib, true);
    }
    out[r] = sum;
  }
}

// Q8_0 row · activation row, half groups of 8 blocks (272 bytes): the sign moved onto the
// activation as vec_dot_q8_0_q8_0_avx2 does (no offset: the row's bias is not used).
float gemv_q8_0_row_avx2(const uint8_t* w, int64_t nb, const DecodeRow& a, bool prefetch) {
  constexpr int64_t kBlock = 34, kHalf = kBlock * 8;
  const int64_t nh = nb / 8;  // half groups of 8, a row's last one too
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t h = 0; h < nh; ++h) {
    const uint8_t* wh = w + h * kHalf;
    const int8_t* qy = a.qs + h * 8 * 32;
    if (prefetch) decode_prefetch(wh, kHalf);
    __m256i P[8];
#pragma GCC unroll 8
    for (int b = 0; b < 8; ++b) {
      const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wh + b * kBlock + 2));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy + 32 * b));
      P[b] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(qx), _mm256_sign_epi8(y, qx)), ones);
    }
    const __m256i s = half_sums(P);
    const __m256 sw = half_scales(wh, kBlock);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(sw, _mm256_loadu_ps(a.d + h * 8)), _mm256_cvtepi32_ps(s), acc);
  }
  if (prefetch && nh * 8 < nb) decode_prefetch(w + nh * 8 * kBlock, (nb - nh * 8) * kBlock);  // the last blocks
  float sum = hsum(acc);
  for (int64_t ib = nh * 8; ib < nb; ++ib) {
    const uint8_t* blk = w + ib * kBlock;
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + ib * 32));
    sum += decode_tail(blk, _mm256_maddubs_epi16(_mm256_abs_epi8(qx), _mm256_sign_epi8(y, qx)), a, ib, false);
  }
  return sum;
}

// The same row dotted with `rows` (2..kVecDotRowsMax) activation rows: each half group's weights
// loaded, |w| taken and the scales converted once. Float operations per row as in
// gemv_q8_0_row_avx2, in its order: each out[r] is the single-row result bit for bit.
void gemv_q8_0_rows_avx2(const uint8_t* w, int64_t nb, const DecodeRow* a, int rows, float* out, bool prefetch) {
  constexpr int64_t kBlock = 34, kHalf = kBlock * 8;
  const int64_t nh = nb / 8;  // half groups of 8, a row's last one too
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[kVecDotRowsMax];
  for (int r = 0; r < rows; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t h = 0; h < nh; ++h) {
    const uint8_t* wh = w + h * kHalf;
    if (prefetch) decode_prefetch(wh, kHalf);
    __m256i qx[8], ax[8];
#pragma GCC unroll 8
    for (int b = 0; b < 8; ++b) {
      qx[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wh + b * kBlock + 2));
      ax[b] = _mm256_abs_epi8(qx[b]);
    }
    const __m256 sw = half_scales(wh, kBlock);
    for (int r = 0; r < rows; ++r) {
      const int8_t* qy = a[r].qs + h * 8 * 32;
      __m256i P[8];
#pragma GCC unroll 8
      for (int b = 0; b < 8; ++b) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy + 32 * b));
        P[b] = _mm256_madd_epi16(_mm256_maddubs_epi16(ax[b], _mm256_sign_epi8(y, qx[b])), ones);
      }
      const __m256i s = half_sums(P);
      acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, _mm256_loadu_ps(a[r].d + h * 8)), _mm256_cvtepi32_ps(s), acc[r]);
    }
  }
  if (prefetch && nh * 8 < nb) decode_prefetch(w + nh * 8 * kBlock, (nb - nh * 8) * kBlock);  // the last blocks
  for (int r = 0; r < rows; ++r) {
    float sum = hsum(acc[r]);
    for (int64_t ib = nh * 8; ib < nb; ++ib) {
      const uint8_t* blk = w + ib * kBlock;
      const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r].qs + ib * 32));
      sum += decode_tail(blk, _mm256_maddubs_epi16(_mm256_abs_epi8(qx), _mm256_sign_epi8(y, qx)), a[r], ib, false);
    }
    out[r] = sum;
  }
}

// DecodeGemv: weight rows [n0, n1); one activation row (decode) with Row, several with Rows, which
// unpacks each weight row once for all of them.
template <float (*Row)(const uint8_t*, int64_t, const DecodeRow&, bool),
          void (*Rows)(const uint8_t*, int64_t, const DecodeRow*, int, float*, bool)>
void gemv_rows_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0,
                    int64_t n1, float* y, int64_t ldy, bool prefetch) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const int64_t nb = K / 32;
  if (rows == 1) {
    for (int64_t n = n0; n < n1; ++n) y[n - n0] = Row(wb + n * row_bytes, nb, a[0], prefetch);
    return;
  }
  float out[kVecDotRowsMax];
  for (int64_t n = n0; n < n1; ++n) {
    Rows(wb + n * row_bytes, nb, a, rows, out, prefetch);
    for (int r = 0; r < rows; ++r) y[r * ldy + n - n0] = out[r];
  }
}

// R16 weights (quant.h): per group of 16 blocks, 8 32-byte loads that each hold 4 bytes of 8
// blocks, so the dots leave the 8 blocks' sums in block order (one madd, no hadd trees) and the 16
// scales (and mins) load as two vectors (the file layouts' kernels gather them 18-24 bytes apart
// with pinsrw). Fifth bits: one load of a half group's 8 permuted words, then per vector a shift by
// a constant and a mask put them at bit 4 of each byte. Q4_0 / Q5_0 subtract the offset (the
// bias); Q4_1 / Q5_1 add the mins times sum(qy) (the bias). A row's last, partial group (c < 16
// blocks) runs the same code with masked loads. One template for one and several activation
// rows: each output's operations are the same for any R. int16 sums: a 4-bit half group stays
// below 8 * 2 * 15 * 127 < 2^15; 5-bit ones are widened every two vectors.
template <typename Block, int R>
__attribute__((always_inline)) inline void gemv_r16_pass(const uint8_t* w, int64_t nb, const DecodeRow* a, float* out,
                                                         bool prefetch) {
  using L = R16Layout<Block>;
  constexpr bool kHigh = L::kHigh, kMin = L::kMin;
  const __m256i m4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  // Blocks 8h .. 8h + 7 of group g (c blocks) at wg; kPartial: only the first ch of them exist, and
  // every load is masked to them (the other lanes add 0 x 0).
  auto half = [&]<bool kPartial>(const uint8_t* wg, int64_t g, int64_t c, int h, int64_t ch) __attribute__((always_inline)) {
    const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(ch)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    auto load = [&](const void* p) {
      return kPartial ? _mm256_maskload_epi32(static_cast<const int*>(p), lanes)
                      : _mm256_loadu_si256(static_cast<const __m256i*>(p));
    };
    auto scales = [&](size_t at) {  // 8 f16
      if constexpr (!kPartial) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wg + at)));
      // a partial group's: the (ch + 1) / 2 words that hold them (an odd ch's last one reads 2 bytes
      // of the group's next section), then the lanes past ch cleared (whatever those bytes are)
      const __m128i pairs = _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>((ch + 1) / 2)), _mm_setr_epi32(0, 1, 2, 3));
      const __m256 f = _mm256_cvtph_ps(_mm_maskload_epi32(reinterpret_cast<const int*>(wg + at), pairs));
      return _mm256_and_ps(f, _mm256_castsi256_ps(lanes));
    };
    __m256i p[R], p32[R];
    for (int r = 0; r < R; ++r) p[r] = p32[r] = _mm256_setzero_si256();
    __m256i bits = _mm256_setzero_si256();
    if constexpr (kHigh) bits = load(wg + L::bits(c) + 32 * h);
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m256i b = load(wg + L::qs(c) + 4 * c * v + 32 * h);
      __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
      if constexpr (kHigh) {
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi32(bits, 4 - v), bit4));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srli_epi32(bits, v), bit4));
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int8_t* y = a[r].qs + g * kDecodeGroup * 32 + 8 * c * v + 32 * h;
        p[r] = _mm256_add_epi16(p[r], _mm256_add_epi16(_mm256_maddubs_epi16(lo, load(y)), _mm256_maddubs_epi16(hi, load(y + 4 * c))));
        if (kHigh && v % 2 == 1) p32[r] = _mm256_add_epi32(p32[r], _mm256_madd_epi16(p[r], ones)), p[r] = _mm256_setzero_si256();
      }
    }
    const __m256 sw = scales(16 * h);
    __m256 sm = _mm256_setzero_ps();
    if constexpr (kMin) sm = scales(L::mins(c) + 16 * h);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t o = g * kDecodeGroup + 8 * h;
      const __m256i s = kHigh ? p32[r] : _mm256_madd_epi16(p[r], ones);
      const __m256i bias = load(a[r].bias + o);
      const __m256 dy = _mm256_castsi256_ps(load(a[r].d + o));
      if constexpr (kMin) {
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, dy), _mm256_cvtepi32_ps(s), acc[r]);
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sm, dy), _mm256_cvtepi32_ps(bias), acc[r]);
      } else {
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, dy), _mm256_cvtepi32_ps(_mm256_sub_epi32(s, bias)), acc[r]);
      }
    }
  };
  const int64_t ng = nb / kDecodeGroup;
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * L::kGroupBytes;
    if (prefetch) decode_prefetch(wg, L::kGroupBytes);
    for (int h = 0; h < 2; ++h) half.template operator()<false>(wg, g, kDecodeGroup, h, 8);
  }
  if (const int64_t c = nb - ng * kDecodeGroup; c > 0) {
    if (prefetch) decode_prefetch(w + ng * L::kGroupBytes, static_cast<int64_t>(c * sizeof(Block)));
    for (int h = 0; 8 * h < c; ++h)
      half.template operator()<true>(w + ng * L::kGroupBytes, ng, c, h, c - 8 * h < 8 ? c - 8 * h : 8);
  }
  for (int r = 0; r < R; ++r) out[r] = hsum(acc[r]);
}

// Q4_1, Q5_0 and Q5_1 weights as the file has them, half groups of 8 blocks as the Q8_0 kernel
// takes them (its hadd tree leaves the block sums in kDecodeOrderQ8_0, where decode_row_prepare
// put these types' scales and biases): each block unpacked once to 32 unsigned values, then per
// activation row one maddubs (pairs at most 2 * 31 * 127 < 2^15) and one madd a block; Q5_0's
// offset subtracted as 16 * sum(qy) (the bias), or the mins times sum(qy) added. One template for
// one and several rows: each output's operations are the same for any R.
template <typename Block, int R>
__attribute__((always_inline)) inline void gemv_legacy_pass(const uint8_t* w, int64_t nb, const DecodeRow* a, float* out,
                                                            bool prefetch) {
  constexpr int64_t kBlock = sizeof(Block), kHalf = 8 * kBlock;
  constexpr bool kMin = !std::is_same_v<Block, BlockQ5_0>;  // Q4_1, Q5_1: d, m, ...
  const int64_t nh = nb / 8;  // half groups of 8, a row's last one too
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t h = 0; h < nh; ++h) {
    const uint8_t* wh = w + h * kHalf;
    if (prefetch) decode_prefetch(wh, kHalf);
    __m256i u[8];
#pragma GCC unroll 8
    for (int b = 0; b < 8; ++b) u[b] = legacy_values(*reinterpret_cast<const Block*>(wh + b * kBlock));
    const __m256 sw = half_scales(wh, kBlock);
    __m256 sm = _mm256_setzero_ps();
    if constexpr (kMin) sm = half_scales(wh + 2, kBlock);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int8_t* qy = a[r].qs + h * 8 * 32;
      __m256i P[8];
#pragma GCC unroll 8
      for (int b = 0; b < 8; ++b)
        P[b] = _mm256_madd_epi16(_mm256_maddubs_epi16(u[b], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy + 32 * b))), ones);
      const __m256i s = half_sums(P);
      const __m256 dy = _mm256_loadu_ps(a[r].d + h * 8);
      const __m256i bias = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r].bias + h * 8));
      if constexpr (kMin) {
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, dy), _mm256_cvtepi32_ps(s), acc[r]);
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sm, dy), _mm256_cvtepi32_ps(bias), acc[r]);
      } else {
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(sw, dy), _mm256_cvtepi32_ps(_mm256_sub_epi32(s, bias)), acc[r]);
      }
    }
  }
  if (prefetch && nh * 8 < nb) decode_prefetch(w + nh * 8 * kBlock, (nb - nh * 8) * kBlock);  // the last blocks
  for (int r = 0; r < R; ++r) {
    float sum = hsum(acc[r]);
    for (int64_t ib = nh * 8; ib < nb; ++ib) {  // the tail, natural order
      sum += legacy_tail<Block>(w + ib * kBlock, a[r], ib);
    }
    out[r] = sum;
  }
}

// DecodeGemv over rows [n0, n1) with the R16 pass (kR16) or the file-layout pass of Block.
template <typename Block, bool kR16>
void gemv_pass_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const int64_t nb = K / 32;
  rows_dispatch(rows, [&]<int R>() {
    float out[R];
    for (int64_t n = n0; n < n1; ++n) {
      if constexpr (kR16)
        gemv_r16_pass<Block, R>(wb + n * row_bytes, nb, a, out, prefetch);
      else
        gemv_legacy_pass<Block, R>(wb + n * row_bytes, nb, a, out, prefetch);
      for (int r = 0; r < R; ++r) y[r * ldy + n - n0] = out[r];
    }
  });
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
    gemv_rows_avx2<gemv_q4_0_row_avx2, gemv_q4_0_rows_avx2>,
    gemv_rows_avx2<gemv_q8_0_row_avx2, gemv_q8_0_rows_avx2>,
    decode_row_prepare,
    vec_dot_rows_k45_avx2<false>,
    vec_dot_rows_k45_avx2<true>,
    vec_dot_rows_q6_K_avx2,
    gemv_pass_avx2<BlockQ4_0, true>,
    gemv_pass_avx2<BlockQ4_1, false>,
    gemv_pass_avx2<BlockQ5_0, false>,
    gemv_pass_avx2<BlockQ5_1, false>,
    gemv_pass_avx2<BlockQ4_1, true>,
    gemv_pass_avx2<BlockQ5_0, true>,
    gemv_pass_avx2<BlockQ5_1, true>,
    nullptr,  // K-quant activations as quantised
    nullptr,  // Q4_K_X16, Q5_K_X16, Q6_K_X16: no kernels (the loader keeps the file's layouts)
    nullptr,
    nullptr,
};

}  // namespace

const QuantKernels& quant_kernels_avx2() { return kQuantKernelsAvx2; }

void gemv_q4_1_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch) {
  gemv_pass_avx2<BlockQ4_1, false>(w, row_bytes, K, a, rows, n0, n1, y, ldy, prefetch);
}
void gemv_q5_0_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch) {
  gemv_pass_avx2<BlockQ5_0, false>(w, row_bytes, K, a, rows, n0, n1, y, ldy, prefetch);
}
void gemv_q5_1_avx2(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch) {
  gemv_pass_avx2<BlockQ5_1, false>(w, row_bytes, K, a, rows, n0, n1, y, ldy, prefetch);
}

}  // namespace aigc
