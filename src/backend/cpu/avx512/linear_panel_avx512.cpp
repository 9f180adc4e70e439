// AVX512-BF16 row conversions for linear_panel: weight rows (and activations) to bf16, 32 elements
// per VCVTNE2PS2BF16 (round to nearest even). Each value is first formed in f32 exactly as the
// reference dequantisation forms it (same operations, same order), so the bf16 results are equal.
// GCC 12 reports its own _mm512_undefined_* inside the widening and unpack intrinsics as uninitialised.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The K-quants compute d1 * q - m1 as two roundings, as the reference does: no fused multiply-add.
#pragma GCC optimize("fp-contract=off")
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/linear_panel.h"
#include "core/quant.h"

namespace aigc::ops::panel {

namespace {

// 32 f32 (lo = elements 0..15, hi = 16..31) -> 32 bf16 at dst.
inline void store_bf16x32(uint16_t* dst, __m512 lo, __m512 hi) {
  _mm512_storeu_si512(dst, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

inline float f16_scale(uint16_t h) { return _cvtsh_ss(h); }

// 16 unsigned bytes -> 16 f32 of (b - bias).
inline __m512 bytes_to_f32(__m128i b, int bias) {
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(b), _mm512_set1_epi32(bias)));
}

}  // namespace

void row_f32_to_bf16_avx512(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) store_bf16x32(dst + i, _mm512_loadu_ps(src + i), _mm512_loadu_ps(src + i + 16));
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, reinterpret_cast<__m256i>(b));
  }
}

void row_f16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 16)));
    store_bf16x32(dst + i, lo, hi);
  }
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512 v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, s + i));
    _mm256_mask_storeu_epi16(dst + i, m, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
  }
}

void row_q8_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b, dst += kQK8_0) {
    const __m512 d = _mm512_set1_ps(f16_scale(x[b].d));
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs + 16));
    store_bf16x32(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0))),
                  _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1))));
  }
}

void row_q4_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(src);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (int64_t b = 0; b < n / kQK4_0; ++b, dst += kQK4_0) {
    const __m512 d = _mm512_set1_ps(f16_scale(x[b].d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs));
    const __m128i lo = _mm_and_si128(q, low4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low4);
    store_bf16x32(dst, _mm512_mul_ps(d, bytes_to_f32(lo, 8)), _mm512_mul_ps(d, bytes_to_f32(hi, 8)));
  }
}

namespace {

// Q4_1, Q5_0, Q5_1 (32-element blocks): low nibbles are elements 0..15, high nibbles 16..31; the
// Q5 types take bit e of the little-endian u32 qh as bit 4 of element e. Q5_0: (q - 16) * d;
// Q4_1 / Q5_1: q * d + m (two roundings, as the reference).
template <typename Block, bool kFifthBit, bool kMin>
void q32_row(const Block* x, uint16_t* dst, int64_t n) {
  const __m128i low4 = _mm_set1_epi8(0x0f), sixteen = _mm_set1_epi8(16);
  for (int64_t b = 0; b < n / 32; ++b, dst += 32) {
    const __m512 d = _mm512_set1_ps(f16_scale(x[b].d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs));
    __m128i lo = _mm_and_si128(q, low4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), low4);
    if constexpr (kFifthBit) {
      uint32_t qh;
      std::memcpy(&qh, x[b].qh, 4);
      lo = _mm_mask_add_epi8(lo, static_cast<__mmask16>(qh & 0xffff), lo, sixteen);
      hi = _mm_mask_add_epi8(hi, static_cast<__mmask16>(qh >> 16), hi, sixteen);
    }
    if constexpr (kMin) {
      const __m512 m = _mm512_set1_ps(f16_scale(x[b].m));
      store_bf16x32(dst, _mm512_add_ps(_mm512_mul_ps(bytes_to_f32(lo, 0), d), m),
                    _mm512_add_ps(_mm512_mul_ps(bytes_to_f32(hi, 0), d), m));
    } else {
      store_bf16x32(dst, _mm512_mul_ps(bytes_to_f32(lo, 16), d), _mm512_mul_ps(bytes_to_f32(hi, 16), d));
    }
  }
}

// One 32-element block from its unsigned values (lo: elements 0..15, hi: 16..31): (q - kOffset) * d,
// or with a min q * d + m (two roundings), as q32_row.
template <int kOffset, bool kMin>
inline void q32_block(uint16_t* dst, __m128i lo, __m128i hi, uint16_t d16, uint16_t m16) {
  const __m512 d = _mm512_set1_ps(f16_scale(d16));
  if constexpr (kMin) {
    const __m512 m = _mm512_set1_ps(f16_scale(m16));
    store_bf16x32(dst, _mm512_add_ps(_mm512_mul_ps(bytes_to_f32(lo, 0), d), m),
                  _mm512_add_ps(_mm512_mul_ps(bytes_to_f32(hi, 0), d), m));
  } else {
    store_bf16x32(dst, _mm512_mul_ps(bytes_to_f32(lo, kOffset), d), _mm512_mul_ps(bytes_to_f32(hi, kOffset), d));
  }
}

// 16 dwords of 4 vectors, lane L of v[q] = 4 bytes of block L: afterwards 128-bit lane k of v[m]
// holds the 16 bytes [v0, v1, v2, v3] of block 4k + m.
inline void dword_transpose4(__m512i* v) {
  const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]), t1 = _mm512_unpackhi_epi32(v[0], v[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]), t3 = _mm512_unpackhi_epi32(v[2], v[3]);
  v[0] = _mm512_unpacklo_epi64(t0, t2), v[1] = _mm512_unpackhi_epi64(t0, t2);
  v[2] = _mm512_unpacklo_epi64(t1, t3), v[3] = _mm512_unpackhi_epi64(t1, t3);
}

// R16 rows (quant.h) of Q4_0, Q4_1, Q5_0, Q5_1. A group's four 64-byte nibble vectors hold 4 bytes
// of each of its 16 blocks (dword lane j = block j): the values are formed there as the decode
// kernels form them (fifth bits by a constant shift and a mask), a dword transpose per 128-bit
// lane puts each block's 16 low and 16 high values in element order, and each block then goes as
// in q32_row. A row's last, partial group (c < 16 blocks) the same way with its loads masked to c
// lanes and c blocks stored.
// 64 bytes as two 32-byte loads (a group starts at 32 mod 64 every other time; see the decode
// kernels' load_halves), or (kPartial) the first c dwords of them.
template <bool kPartial>
inline __m512i r16_load(const uint8_t* p, __mmask16 lanes) {
  if constexpr (kPartial) return _mm512_maskz_loadu_epi32(lanes, p);
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)), 1);
}

// One group of c blocks (kPartial: c < 16, the row's last) at wg -> dst[32 c].
template <typename Block, bool kPartial>
inline void r16_group_bf16(const uint8_t* wg, uint16_t* dst, int c) {
  using L = R16Layout<Block>;
  constexpr int kOffset = L::kMin ? 0 : L::kHigh ? 16 : 8;
  const __m512i m4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
  const __mmask16 lanes = static_cast<__mmask16>((1u << c) - 1);
  __m512i lo[4], hi[4];
  __m512i bits = _mm512_setzero_si512();
  if constexpr (L::kHigh) bits = r16_load<kPartial>(wg + L::bits(c), lanes);
  for (int v = 0; v < 4; ++v) {
    const __m512i b = r16_load<kPartial>(wg + L::qs(c) + 4 * c * v, lanes);
    lo[v] = _mm512_and_si512(b, m4), hi[v] = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
    if constexpr (L::kHigh) {
      lo[v] = _mm512_or_si512(lo[v], _mm512_and_si512(_mm512_slli_epi32(bits, 4 - v), bit4));
      hi[v] = _mm512_or_si512(hi[v], _mm512_and_si512(_mm512_srli_epi32(bits, v), bit4));
    }
  }
  dword_transpose4(lo);
  dword_transpose4(hi);
  alignas(64) uint8_t vals[2][4][64];  // [low, high][m][16 k + e]: block 4k + m
  for (int m = 0; m < 4; ++m) _mm512_store_si512(vals[0][m], lo[m]), _mm512_store_si512(vals[1][m], hi[m]);
  uint16_t d16[kR16Group], m16[kR16Group] = {};
  std::memcpy(d16, wg, 2 * static_cast<size_t>(c));
  if constexpr (L::kMin) std::memcpy(m16, wg + L::mins(c), 2 * static_cast<size_t>(c));
  for (int j = 0; j < c; ++j) {
    const int k = j / 4, m = j % 4;
    q32_block<kOffset, L::kMin>(dst + 32 * j, _mm_load_si128(reinterpret_cast<const __m128i*>(vals[0][m] + 16 * k)),
                                _mm_load_si128(reinterpret_cast<const __m128i*>(vals[1][m] + 16 * k)), d16[j], m16[j]);
  }
}

template <typename Block>
void r16_row(const uint8_t* src, uint16_t* dst, int64_t n) {
  const int64_t nb = n / 32, ng = nb / kR16Group;
  for (int64_t g = 0; g < ng; ++g)
    r16_group_bf16<Block, false>(src + g * R16Layout<Block>::kGroupBytes, dst + g * 32 * kR16Group, kR16Group);
  if (const int64_t c = nb - ng * kR16Group; c > 0)
    r16_group_bf16<Block, true>(src + ng * R16Layout<Block>::kGroupBytes, dst + ng * 32 * kR16Group, static_cast<int>(c));
}

// 32 bytes of 4- or 5-bit values q -> dst[0..31] = d1 * q - m1, in f32 then bf16.
inline void k_sub_block(uint16_t* dst, __m256i q, float d1, float m1) {
  const __m512 d = _mm512_set1_ps(d1), m = _mm512_set1_ps(m1);
  store_bf16x32(dst, _mm512_sub_ps(_mm512_mul_ps(d, bytes_to_f32(_mm256_castsi256_si128(q), 0)), m),
                _mm512_sub_ps(_mm512_mul_ps(d, bytes_to_f32(_mm256_extracti128_si256(q, 1), 0)), m));
}

// Q4_K (qh == nullptr) and Q5_K: chunk j of 64 elements, sub-blocks 2j (low nibbles) and 2j + 1.
template <typename Block>
void k4_row(const Block* x, uint16_t* dst, int64_t n) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_scale(x[b].d), dmin = f16_scale(x[b].dmin);
    for (int j = 0; j < kQK_K / 64; ++j, dst += 64) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * j));
      __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      if constexpr (sizeof(Block) == sizeof(BlockQ5_K)) {
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh));
        const __m256i sixteen = _mm256_set1_epi8(16);
        lo = _mm256_mask_add_epi8(lo, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << (2 * j)))),
                                  lo, sixteen);
        hi = _mm256_mask_add_epi8(hi, _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(2 << (2 * j)))),
                                  hi, sixteen);
      }
      uint8_t sc, m;
      scale_min_k4_get(2 * j, x[b].scales, &sc, &m);
      k_sub_block(dst, lo, d * static_cast<float>(sc), dmin * static_cast<float>(m));
      scale_min_k4_get(2 * j + 1, x[b].scales, &sc, &m);
      k_sub_block(dst + 32, hi, d * static_cast<float>(sc), dmin * static_cast<float>(m));
    }
  }
}

}  // namespace

void row_q4_1_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  q32_row<BlockQ4_1, false, true>(static_cast<const BlockQ4_1*>(src), dst, n);
}

void row_q5_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  q32_row<BlockQ5_0, true, false>(static_cast<const BlockQ5_0*>(src), dst, n);
}

void row_q5_1_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  q32_row<BlockQ5_1, true, true>(static_cast<const BlockQ5_1*>(src), dst, n);
}

void row_q4_0_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  r16_row<BlockQ4_0>(static_cast<const uint8_t*>(src), dst, n);
}

void row_q4_1_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  r16_row<BlockQ4_1>(static_cast<const uint8_t*>(src), dst, n);
}

void row_q5_0_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  r16_row<BlockQ5_0>(static_cast<const uint8_t*>(src), dst, n);
}

void row_q5_1_r16_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  r16_row<BlockQ5_1>(static_cast<const uint8_t*>(src), dst, n);
}

void row_q4_K_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  k4_row(static_cast<const BlockQ4_K*>(src), dst, n);
}

void row_q5_K_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  k4_row(static_cast<const BlockQ5_K*>(src), dst, n);
}

void row_q6_K_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ6_K*>(src);
  const __m256i low4 = _mm256_set1_epi8(0x0f), low2 = _mm256_set1_epi8(0x03);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = f16_scale(x[b].d);
    for (int h = 0; h < 2; ++h, dst += 128) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh + 32 * h));
      const int8_t* sc = x[b].scales + 8 * h;
      // Quarter i holds elements 32 i .. 32 i + 31 of this half (see dequantize_row_q6_K_ref).
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4)),
          _mm256_or_si256(_mm256_and_si256(ql1, low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4))};
      for (int i = 0; i < 4; ++i) {
        // The reference computes (d * scale) * q in f32: the same two roundings here.
        const __m512 s0 = _mm512_set1_ps(d * static_cast<float>(sc[2 * i]));
        const __m512 s1 = _mm512_set1_ps(d * static_cast<float>(sc[2 * i + 1]));
        store_bf16x32(dst + 32 * i, _mm512_mul_ps(s0, bytes_to_f32(_mm256_castsi256_si128(q[i]), 32)),
                      _mm512_mul_ps(s1, bytes_to_f32(_mm256_extracti128_si256(q[i], 1), 32)));
      }
    }
  }
}

}  // namespace aigc::ops::panel
