// AVX-512 (F/BW/VL/DQ + VNNI) quantised kernels: Q8_0 activation quantiser, Q8_0/Q4_0 row
// dequantisers (the float GEMM path uses them for prefill), and the dot products q8_0, q4_0, q4_1,
// q5_0, q5_1 · q8_0 (vpdpbusd) and q4_K, q5_K, q6_K · q8_K (vpdpbusd, packed to int16 for the scales) (contract in
// quant_dot.h). The dots take two 32-element blocks per
// 512-bit register (block ib in the low 256 bits, ib+1 in the high), an odd last block in 256 bits.
// Decode kernels (DecodeRow layout) for Q4_0 and Q8_0 as the file has them and for the R16
// layouts of Q4_0, Q4_1, Q5_0, Q5_1 (the model loader repacks into them).
//
// This file is compiled with AVX-512 flags: it calls no inline function of our shared headers (such
// a function could be emitted here with AVX-512 instructions and picked by the linker for every
// caller), only intrinsics; f16 conversions use F16C. (rows_dispatch, a template of quant_dot.h,
// is only instantiated here with this file's own lambdas: those instances are this file's alone.)
#include <immintrin.h>

#include <cstddef>

// GCC 12's avx512fintrin.h builds _mm512_undefined_*() by self-initialisation, which -Wuninitialized
// reports wherever an intrinsic using it is inlined: false positives.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "backend/cpu/quant_dot.h"
#include "core/cpu_features.h"

namespace aigc {

namespace {

// Software prefetch of the decode kernels, two distances: every line of the weight rows 16 KiB
// ahead of the group being read into L2 (prefetcht1), and again 4 KiB ahead into L1 (prefetcht0).
// The hardware prefetcher alone falls behind while the core is busy with the dots. prefetcht0 at
// 4 KiB alone (what these kernels did first) reads at the memory's speed when the memory is slow
// but leaves a fast memory underused: it holds an L1 miss buffer per line for a whole memory
// latency, and with few of those in flight the stream stalls; prefetcht1 alone lags a little when
// the memory is slow. Measured on Zen 4 (scratch benchmark, Q4_0 VBMI kernel, 5632x2048 rows from
// memory, best of 5 beside a plain read of the same bytes; the VM's memory switches between a slow
// and a fast state):
//   2 threads, memory fast (read 59-60 GB/s): t0 4K 46-47, t1 16K 55-56, both 55.7
//   2 threads, memory slow (read 35.6):        t0 4K 35.3, t1 16K 32.3, both 34.0-34.4
//   1 thread (read 30.6-30.9):                 t0 4K 23.0, t1 16K 28.5, both 28.5
// Distances: prefetcht1 at 4 KiB read 21 (1 thread), 8 KiB 26.5-27.5, 12 to 32 KiB 28-28.6.
// Zen 5 (AMD family 1Ah) is the other way round: there the prefetcht1 costs more than it brings
// (its own prefetchers keep the L2 ahead), and prefetcht0 at 4 KiB alone streams best. Measured
// there (bench_decode, R16 kernels, 5632x2048 from memory, 1 thread, alternated; read ~40 GB/s):
// both 86-92% of the read, t0 4K alone 94-96%, t0 2K or 8K alone 93-95%, none 87-91%; a
// TinyLlama Q4_0 token (R16), 1 thread: both 55.0 t/s, t0 4K alone 59.8-62.5, 8K 59.5-61, 2K
// 54-55.5, none 52-55; 2 threads with the memory fast (read ~85 GB/s): both 71-98, t0 alone 105.
// A later Zen 4 VM (family 19h model 11h; bench_decode, 5632x2048 from memory, 1 thread,
// alternated; read 27-34 GB/s): the kernels that outrun the memory (R16: 39-47 GB/s in L2) read
// at 66-83% with both prefetches or t0 alone, at 89-104% with t1 alone or (R16) none; Q8_0 93-97%
// either way; the K-quant kernels, bound by their instructions there (25-27 GB/s in L2), 77-82%
// with both or t1 alone, 71-78% with t0 alone, 55% with none (Q6_K 81-86% with none). A TinyLlama
// Q4_0 token (R16), 1 thread: both 36.3-38.3 t/s, t1 alone 40.9-42.5; Q8_0, Q4_K_M and F16 the
// same either way. So on Zen 4 the kernels prefetch to L2 only.
// The choice: cpu_decode_prefetch_l2() and cpu_decode_prefetch_l1() (AIGC_PREFETCH_L2 / _L1=0 or 1
// in the environment override).
constexpr int64_t kDecodePrefetchL2 = 16384, kDecodePrefetchL1 = 4096;

const bool kDecodePrefetchToL2 = cpu_decode_prefetch_l2(), kDecodePrefetchToL1 = cpu_decode_prefetch_l1();
// the K-quant kernels of the file layouts: their own choice (cpu_kquant_prefetch_l2 / _l1)
const bool kKQuantPrefetchToL2 = cpu_kquant_prefetch_l2(), kKQuantPrefetchToL1 = cpu_kquant_prefetch_l1();

// always_inline: GCC 12 judges a prefetch to have no side effects, so where this was left a call
// (the multi-row kernels' templates) it deemed the function const and dropped every call to it.
__attribute__((always_inline)) inline void prefetch_ahead(const uint8_t* p, int64_t bytes, bool l2, bool l1) {
  for (int64_t o = 0; o < bytes; o += 64) {
    if (l2) _mm_prefetch(reinterpret_cast<const char*>(p + kDecodePrefetchL2 + o), _MM_HINT_T1);
    if (l1) _mm_prefetch(reinterpret_cast<const char*>(p + kDecodePrefetchL1 + o), _MM_HINT_T0);
  }
}

__attribute__((always_inline)) inline void decode_prefetch(const uint8_t* p, int64_t bytes) {
  prefetch_ahead(p, bytes, kDecodePrefetchToL2, kDecodePrefetchToL1);
}

__attribute__((always_inline)) inline void kquant_prefetch(const uint8_t* p, int64_t bytes) {
  prefetch_ahead(p, bytes, kKQuantPrefetchToL2, kKQuantPrefetchToL1);
}

inline float f16_load(uint16_t h) { return _cvtsh_ss(h); }
// Round to nearest even, overflow to inf: the same as f16_from_f32 (half.h).
inline uint16_t f16_store(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_epi32(__m256i p) {
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
  const __m128i t = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1)));
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

// quantize_row_q8_K_ref's bytes in SIMD (once per activation row, but serial at 2 threads: ~2% of
// a Q4_K_M token). The scale: the first value of largest magnitude (NaN skipped, as the scalar
// loop's comparisons skip it); each value by nearest_int's magic-number rounding. The products and
// sums use embedded rounding so the compiler cannot fuse them into an FMA (the reference rounds
// the product, then the sum).
void quantize_row_q8_K_avx512(const float* x, BlockQ8_K* y, int64_t n) {
  const __m512 magic = _mm512_set1_ps(12582912.0f);
  const __m512i mant = _mm512_set1_epi32(0x007fffff), bias = _mm512_set1_epi32(0x00400000);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    __m512 vmax = _mm512_setzero_ps();
    for (int i = 0; i < 16; ++i) vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)), vmax);  // NaN: keeps vmax
    const float amax = _mm512_reduce_max_ps(vmax);
    if (amax == 0.0f) {
      __builtin_memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    float max = 0.0f;
    for (int i = 0; i < 16; ++i) {
      const __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (m) {
        max = xb[16 * i + __builtin_ctz(m)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int g = 0; g < 16; ++g) {
      const __m512 p = _mm512_mul_round_ps(vs, _mm512_loadu_ps(xb + 16 * g), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512 r = _mm512_add_round_ps(p, magic, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      __m512i q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(r), mant), bias);
      q = _mm512_max_epi32(_mm512_set1_epi32(-128), _mm512_min_epi32(_mm512_set1_epi32(127), q));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * g), _mm512_cvtepi32_epi8(q));
      y[b].bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    y[b].d = 1 / iscale;
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

// ---- Q4_1, Q5_0, Q5_1 against Q8_0 -----------------------------------------------------------

// Bit 4 of element e = bit e of the block's qh (little-endian u32), as a byte 0x10 or 0.
inline __m256i q5_high(const uint8_t* qh) {
  uint32_t h;
  __builtin_memcpy(&h, qh, 4);
  return _mm256_maskz_set1_epi8(h, 0x10);
}

inline __m512i pair256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

inline uint16_t block_min(const BlockQ4_1& b) { return b.m; }
inline uint16_t block_min(const BlockQ5_1& b) { return b.m; }
inline uint16_t block_min(const BlockQ5_0&) { return 0; }

// Shared driver of the three: u(ib) gives a block's 32 unsigned values (0..15 or 0..31) in element
// order; `offset` is subtracted from each (Q5_0: 16); with_min adds m * dy * sum(qy).
template <typename Block, typename Unpack>
float legacy_dot(int64_t n, const Block* x, const BlockQ8_0* y, Unpack u, int offset, bool with_min) {
  const int64_t nb = n / 32;
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i off = _mm512_set1_epi8(static_cast<char>(offset));
  __m512 acc = _mm512_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const float dy0 = f16_load(y[ib].d), dy1 = f16_load(y[ib + 1].d);
    const __m512 d = scale_pair(f16_load(x[ib].d) * dy0, f16_load(x[ib + 1].d) * dy1);
    const __m512i qx = pair256(u(x[ib]), u(x[ib + 1]));
    const __m512i qy = load_pair(y[ib].qs, y[ib + 1].qs);
    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, qy);  // 16 x int32
    if (offset) p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, qy));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    if (with_min) {
      const __m512 m = scale_pair(f16_load(block_min(x[ib])) * dy0, f16_load(block_min(x[ib + 1])) * dy1);
      acc = _mm512_fmadd_ps(m, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, qy)), acc);
    }
  }
  float sumf = _mm512_reduce_add_ps(acc);
  if (ib < nb) {  // odd last block in 256 bits
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u(x[ib]), qy);
    if (offset) p = _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm512_castsi512_si256(off), qy));
    const float dy = f16_load(y[ib].d);
    sumf += f16_load(x[ib].d) * dy * hsum(_mm256_cvtepi32_ps(p));
    if (with_min) {
      const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm512_castsi512_si256(ones), qy);
      sumf += f16_load(block_min(x[ib])) * dy * hsum(_mm256_cvtepi32_ps(s));
    }
  }
  return sumf;
}

float vec_dot_q4_1_q8_0_avx512(int64_t n, const BlockQ4_1* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ4_1& b) { return q4_0_unpack(b.qs); }, 0, true);
}

float vec_dot_q5_0_q8_0_avx512(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ5_0& b) { return _mm256_or_si256(q4_0_unpack(b.qs), q5_high(b.qh)); }, 16, false);
}

float vec_dot_q5_1_q8_0_avx512(int64_t n, const BlockQ5_1* x, const BlockQ8_0* y) {
  return legacy_dot(n, x, y, [](const BlockQ5_1& b) { return _mm256_or_si256(q4_0_unpack(b.qs), q5_high(b.qh)); }, 0, true);
}

// ---- K-quants against Q8_K ----------------------------------------------------------------
// maddubs (unsigned weight values x signed activations, pairs summed to int16: at most
// 2 * 63 * 128 < 2^15, no saturation), then vpdpwssd multiplies those pairs by the sub-block
// scale (int16) and accumulates in int32: each block's integer sum is exact.

// The eight 6-bit scales and mins of a Q4_K / Q5_K block (layout in quant.h), as 16 bytes (in
// each 128-bit lane: one block's per lane, four blocks at once):
// bytes 0..7 the scales, 8..15 the mins. Bytes 0..3 hold scales 0..3 (low 6 bits) and the top 2
// bits of scales 4..7, bytes 4..7 the same for the mins, bytes 8..11 the low 4 bits of scales 4..7
// (low nibble) and mins 4..7 (high nibble). In vector registers: one 16-byte load (s[12..15] are
// the block's first quants: read, then not used), two byte shuffles, shifts and masks; a 4-block
// pass shares them (blocks in fours: in L2, one Zen 5 core, Q4_K 45 -> 48 GB/s). (The scalar
// version, 3 loads, ~10 integer operations and 4 inserts, bounded the kernel: with the scales taken
// as a constant it read 47-48 GB/s in L2 instead of 34, one Zen 5 core.)
inline __m512i k4_scales_mins(__m512i b) {
  // in each 128-bit lane: low bits: sc0..3 from bytes 0..3, sc4..7 from 8..11 (low nibble),
  // mn0..3 from 4..7, mn4..7 from 8..11 (high nibble)
  const __m512i a = _mm512_shuffle_epi8(b, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11)));
  const __m512i a2 = _mm512_mask_blend_epi8(static_cast<__mmask64>(0xf000f000f000f000ull), a, _mm512_srli_epi16(a, 4));
  const __m512i low = _mm512_and_si512(a2, _mm512_broadcast_i32x4(_mm_setr_epi8(0x3f, 0x3f, 0x3f, 0x3f, 0x0f, 0x0f, 0x0f, 0x0f, 0x3f,
                                                                             0x3f, 0x3f, 0x3f, 0x0f, 0x0f, 0x0f, 0x0f)));
  // high 2 bits of sc4..7 / mn4..7: the top bits of bytes 0..3 / 4..7, to bits 4..5
  const __m512i t = _mm512_shuffle_epi8(b, _mm512_broadcast_i32x4(_mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7)));
  const __m512i high = _mm512_and_si512(_mm512_srli_epi16(t, 2), _mm512_set1_epi8(0x30));
  return _mm512_or_si512(low, high);
}

// vpshufb controls (within each 128-bit lane of the 16 scale / min bytes broadcast). The products
// of a block come as four vectors of 16 int32 (vpdpbusd: four weight x activation byte products
// each). Vector 2h holds the low nibbles of 64 quants qs[64h ..], sub-blocks 4h (first 256 bits)
// and 4h + 2, vector 2h + 1 their high nibbles, sub-blocks 4h + 1 and 4h + 3: the activations
// are in that order (q8_K_reorder_paired), so a 64-byte load of quants needs no shuffle.
// vpackssdw packs vectors (0, 1) and (2, 3) into int16 (|sum| <= 4 * 31 * 128 < 2^15: exact),
// lane L word w < 4 from the first vector, w >= 4 from the second; `pair[k]`
// puts the scale of each word's sub-block on it as int16 for vpmaddwd / vpdpwssd. `mins` puts the min
// of each bsum's sub-block as int16 beside it.
// (vpdpbusd, two packs and two scale multiplies per block instead of four maddubs and four
// dpwssd with four scale shuffles; and the scales d, dmin converted as one vector: fewer vector
// operations, which bound this kernel.)
struct K4ScaleIdx {
  alignas(64) int8_t pair[2][64];
  alignas(32) int8_t mins[32];
  K4ScaleIdx() {
    for (int k = 0; k < 2; ++k)
      for (int L = 0; L < 4; ++L)
        for (int w = 0; w < 8; ++w) {
          // vector 2k + w / 4's lane L: sub-block 4k + w / 4 (low nibbles) or + 2 (high)
          pair[k][16 * L + 2 * w] = static_cast<int8_t>(4 * k + w / 4 + 2 * (L / 2)), pair[k][16 * L + 2 * w + 1] = -1;
        }
    // bsums[p] is group kQ8KPairedBsums[p]'s sum, of sub-block kQ8KPairedBsums[p] / 2
    for (int p = 0; p < 16; ++p) mins[2 * p] = static_cast<int8_t>(8 + kQ8KPairedBsums[p] / 2), mins[2 * p + 1] = -1;
  }
};

// One weight row dotted with R activation rows (y + r * y_stride), out[r]: each block is unpacked
// once for all R (short prompts); every out[r] comes out of the same operations in the same order
// whatever R is (R = 1: the vec_dot kernel). `prefetch`: the first pass over the row only.
template <bool kHigh, int R>
__attribute__((always_inline)) inline void k45_rows(int64_t n, const uint8_t* xb, size_t stride, const BlockQ8_K* y,
                                                    int64_t y_stride, float* out, bool prefetch) {
  static const K4ScaleIdx kIdx;
  const __m512i idx_pair[2] = {_mm512_load_si512(kIdx.pair[0]), _mm512_load_si512(kIdx.pair[1])};
  const __m256i idx_mins = _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx.mins));
  const int64_t nb = n / kQK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0f), x10 = _mm512_set1_epi8(0x10);
  // Q5_K: the qh bit of chunk c's low nibbles is 2c, of its high ones 2c + 1; [h][0]: the low
  // nibbles of chunks 2h (first 256 bits) and 2h + 1, [h][1]: their high nibbles
  __m512i hbit[2][2];
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 2; ++k)
      hbit[h][k] = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (4 * h + k))),
                                      _mm256_set1_epi8(static_cast<char>(1 << (4 * h + 2 + k))), 1);
  __m512 accf[R];
  __m256 minv[R];
  for (int r = 0; r < R; ++r) accf[r] = _mm512_setzero_ps(), minv[r] = _mm256_setzero_ps();
  // block ib at xb, its scales and mins (k4_scales_mins) in every 128-bit lane of sc
  const auto block = [&](int64_t ib, const uint8_t* xb, __m512i sc) __attribute__((always_inline)) {
    if (prefetch) kquant_prefetch(xb, static_cast<int64_t>(stride));  // decode streams rows from memory
    // both layouts start with d, dmin, scales[12]; Q5_K then has qh[32] before qs. d and dmin
    // as one dword broadcast: lanes 2i hold d, 2i + 1 dmin
    uint32_t ddmin;
    __builtin_memcpy(&ddmin, xb, 4);
    const __m512 dd = _mm512_cvtph_ps(_mm256_set1_epi32(static_cast<int>(ddmin)));
    const uint8_t* qh = xb + 4 + kKScaleSize;
    const uint8_t* qs = kHigh ? qh + kQK_K / 8 : qh;
    // Q5_K: qh broadcast to both halves; chunk c's low / high nibbles take bits 2c / 2c + 1
    const __m512i hb = kHigh ? _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh))) : _mm512_setzero_si512();
    __m512i q[4];
    for (int h = 0; h < 2; ++h) {
      // chunks 2h and 2h + 1 in one load: their low nibbles side by side, then their high ones, in
      // the activations' order (in L2, one Zen 5 core: 4 fewer shuffles a block, Q4_K 48 -> 52 GB/s, Q5_K 46 -> 52)
      const __m512i b = _mm512_loadu_si512(qs + 64 * h);
      __m512i lo = _mm512_and_si512(b, m4), hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
      if (kHigh) {
        lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hb, hbit[h][0]), lo, x10);
        hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(hb, hbit[h][1]), hi, x10);
      }
      q[2 * h] = lo, q[2 * h + 1] = hi;
    }
    const __m512i s01 = _mm512_shuffle_epi8(sc, idx_pair[0]), s23 = _mm512_shuffle_epi8(sc, idx_pair[1]);
    const __m256i mn = _mm256_shuffle_epi8(_mm512_castsi512_si256(sc), idx_mins);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const BlockQ8_K& yb = y[ib + r * y_stride];
      __m512i p[4];
      for (int c = 0; c < 4; ++c) p[c] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[c], _mm512_loadu_si512(yb.qs + 64 * c));
      const __m512i acc = _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_packs_epi32(p[0], p[1]), s01),
                                              _mm512_packs_epi32(p[2], p[3]), s23);
      // [d * yd, dmin * yd] pairs: each product rounded as the scalar one would be
      const __m512 t = _mm512_mul_ps(dd, _mm512_set1_ps(yb.d));
      // lanes stay apart until the end: no horizontal sum per block
      accf[r] = _mm512_fmadd_ps(_mm512_permute_ps(t, 0x00), _mm512_cvtepi32_ps(acc), accf[r]);
      // sum_g mn_(g/2) * bsum_g: exact in int32, lanes kept apart (one horizontal sum
      // per row, not per block: Q4_K rows from memory, one Zen 4 core, 19 -> 20.3 GB/s, compute-bound)
      const __m256i summ = _mm256_madd_epi16(mn, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb.bsums)));
      minv[r] = _mm256_fmadd_ps(_mm256_permute_ps(_mm512_castps512_ps256(t), 0x55), _mm256_cvtepi32_ps(summ), minv[r]);
    }
  };
  const auto lane = [](__m512i v, auto L) __attribute__((always_inline)) { return _mm512_shuffle_i32x4(v, v, 0x55 * decltype(L)::value); };
  int64_t ib = 0;
  for (; ib + 4 <= nb; ib += 4, xb += 4 * stride) {
    // the four blocks' scale bytes, one block per 128-bit lane, decoded once
    __m512i sb = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 4)));
    sb = _mm512_inserti32x4(sb, _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + stride + 4)), 1);
    sb = _mm512_inserti32x4(sb, _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 2 * stride + 4)), 2);
    sb = _mm512_inserti32x4(sb, _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 3 * stride + 4)), 3);
    const __m512i sc4 = k4_scales_mins(sb);
    block(ib, xb, lane(sc4, std::integral_constant<int, 0>()));
    block(ib + 1, xb + stride, lane(sc4, std::integral_constant<int, 1>()));
    block(ib + 2, xb + 2 * stride, lane(sc4, std::integral_constant<int, 2>()));
    block(ib + 3, xb + 3 * stride, lane(sc4, std::integral_constant<int, 3>()));
  }
  for (; ib < nb; ++ib, xb += stride)
    block(ib, xb, k4_scales_mins(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 4)))));
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(_mm512_sub_ps(accf[r], _mm512_castps256_ps512(minv[r])));
}

template <bool kHigh>
float k45_dot(int64_t n, const uint8_t* xb, size_t stride, const BlockQ8_K* y) {
  float out;
  k45_rows<kHigh, 1>(n, xb, stride, y, 0, &out, true);
  return out;
}

float vec_dot_q4_K_q8_K_avx512(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  return k45_dot<false>(n, reinterpret_cast<const uint8_t*>(x), sizeof(BlockQ4_K), y);
}

float vec_dot_q5_K_q8_K_avx512(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  return k45_dot<true>(n, reinterpret_cast<const uint8_t*>(x), sizeof(BlockQ5_K), y);
}

// vpermw indices spreading a Q6_K block's 16 int16 scales over its packed products. As in
// k45_rows, the activations are in q8_K_reorder_paired' order: vector 2h + k holds elements
// 128h + 32k + [0, 32) (first 256 bits) and 128h + 64 + 32k + [0, 32), its 128-bit lane L the 16
// of scale 8h + 2k + L + 2 (L / 2); vpackssdw packs vectors (0, 1) and (2, 3) (|sum| <= 4 * 63 *
// 128 < 2^15), lane L word w < 4 from the first, w >= 4 from the second. (vpdpbusd, two packs,
// two vpermw and two scale multiplies per block, with the 6-bit values built by a variable shift
// and a ternary logic op per vector, in place of maddubs, dpwssd, four vpermw and shift-and-or
// chains: in L2, one Zen 5 core, 48 -> 61 GB/s in the quantiser's order; 57 in this one, which
// gains Q4_K and Q5_K more.)
struct Q6KScaleIdx {
  alignas(64) uint16_t v[2][32];
  // the scales in the bsums' order (kQ8KPairedBsums: per L, [g, g + 8, g + 2, g + 10] with g =
  // L + 2 (L / 2)): vpmaddwd then sums the offset terms of the groups whose products an
  // accumulator dword pair holds (below)
  alignas(32) uint16_t off[16];
  Q6KScaleIdx() {
    for (int h = 0; h < 2; ++h)
      for (int L = 0; L < 4; ++L)
        for (int w = 0; w < 8; ++w) v[h][8 * L + w] = static_cast<uint16_t>(8 * h + 2 * (w / 4) + L + 2 * (L / 2));
    for (int i = 0; i < 16; ++i) off[i] = static_cast<uint16_t>(kQ8KPairedBsums[i]);
  }
};

// As k45_rows: one Q6_K row with R activation rows, the R = 1 instance is the vec_dot kernel.
template <int R>
__attribute__((always_inline)) inline void q6_K_rows(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y, int64_t y_stride,
                                                     float* out, bool prefetch) {
  static const Q6KScaleIdx kIdx;
  const __m512i idx01 = _mm512_load_si512(kIdx.v[0]), idx23 = _mm512_load_si512(kIdx.v[1]);
  const __m256i idx_off = _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx.off));
  const int64_t nb = n / kQK_K;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  // ql[32k ..] (broadcast to both 256-bit halves) gives vector 2h + k: its low nibbles in the
  // first half, its high nibbles (shifted down 4) in the second
  const __m512i lshift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  // qh (broadcast) to bits 4, 5 of each element: vector 2h takes bits 0, 1 (first half, << 4) and
  // 4, 5 (second half, in place), vector 2h + 1 bits 2, 3 (<< 2) and 6, 7 (>> 2: rotate by 30)
  const __m512i hmask0 = _mm512_inserti64x4(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x30), 1);
  const __m512i hmask1 = _mm512_inserti64x4(_mm512_set1_epi8(0x0c), _mm256_set1_epi8(static_cast<char>(0xc0)), 1);
  const __m512i hshift0 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_setzero_si256(), 1);
  const __m512i hrot1 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(30), 1);
  __m512 accf[R];
  for (int r = 0; r < R; ++r) accf[r] = _mm512_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    if (prefetch) kquant_prefetch(reinterpret_cast<const uint8_t*>(x + ib), sizeof(BlockQ6_K));  // decode streams rows from memory
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[ib].scales)));
    const __m512i s01 = _mm512_permutexvar_epi16(idx01, _mm512_castsi256_si512(sc16));
    const __m512i s23 = _mm512_permutexvar_epi16(idx23, _mm512_castsi256_si512(sc16));
    __m512i u[4];
    for (int h = 0; h < 2; ++h) {
      const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qh + 32 * h)));
      const __m512i th0 = _mm512_sllv_epi16(_mm512_and_si512(hb, hmask0), hshift0);
      const __m512i th1 = _mm512_rolv_epi32(_mm512_and_si512(hb, hmask1), hrot1);
      for (int k = 0; k < 2; ++k) {
        const __m512i l = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].ql + 64 * h + 32 * k)));
        u[2 * h + k] = _mm512_ternarylogic_epi32(_mm512_srlv_epi16(l, lshift), m4, k == 0 ? th0 : th1, 0xea);  // (l & 0x0f) | th
      }
    }
    // the values are q - 32: 32 * sum_g sc_g * sum(qy in g) (the bsums) comes off in int32, group
    // by group, before any conversion: with q near 32 it nearly cancels the products. The
    // accumulator's dword pair (4L, 4L + 1) holds all the products of groups g and g + 8, (4L + 2,
    // 4L + 3) those of g + 2 and g + 10 (g = L + 2 (L / 2)): pairs are summed and the even dwords
    // take the offset.
    const __m256i sc32 = _mm256_permutexvar_epi16(idx_off, _mm256_slli_epi16(sc16, 5));  // |32 sc| <= 4096
    const float d = f16_load(x[ib].d);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const BlockQ8_K& yb = y[ib + r * y_stride];
      __m512i p[4];
      for (int j = 0; j < 4; ++j) p[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u[j], _mm512_loadu_si512(yb.qs + 64 * j));
      const __m512i acc = _mm512_dpwssd_epi32(_mm512_madd_epi16(_mm512_packs_epi32(p[0], p[1]), s01),
                                              _mm512_packs_epi32(p[2], p[3]), s23);
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb.bsums));  // kQ8KPairedBsums order
      const __m512i off = _mm512_cvtepu32_epi64(_mm256_madd_epi16(sc32, bs));  // dword m at 2m
      const __m512i t = _mm512_sub_epi32(_mm512_add_epi32(acc, _mm512_srli_epi64(acc, 32)), off);
      // lanes stay apart until the end: no horizontal sum per block (odd dwords: not used)
      accf[r] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(yb.d * d), _mm512_cvtepi32_ps(t), accf[r], static_cast<__mmask16>(0x5555));
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(accf[r]);
}

float vec_dot_q6_K_q8_K_avx512(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  float out;
  q6_K_rows<1>(n, x, y, 0, &out, true);
  return out;
}

template <bool kHigh>
void vec_dot_rows_k45_avx512(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                           int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch) {
  const size_t stride = kHigh ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  rows_run(nw, static_cast<const uint8_t*>(x), row_bytes, rows, out, ldo, [&]<int R>(const uint8_t* xr, float* o) {
    k45_rows<kHigh, R>(n, xr, stride, y, y_stride, o, prefetch);
  });
}

void vec_dot_rows_q6_K_avx512(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                            int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch) {
  rows_run(nw, static_cast<const uint8_t*>(x), row_bytes, rows, out, ldo, [&]<int R>(const uint8_t* xr, float* o) {
    q6_K_rows<R>(n, reinterpret_cast<const BlockQ6_K*>(xr), y, y_stride, o, prefetch);
  });
}

// ---- Q4_K_X16: 16 weight rows interleaved (quant.h) ---------------------------------------
// A column (block c of 16 rows) at a time, a 32-bit lane per row: each 64-byte load holds four
// quant bytes of every row; its low nibbles (sub-block 2h of chunk h) and its high nibbles, kept
// in place (x 16: one AND instead of a shift and an AND), go through vpdpbusd with the matching
// four activation bytes broadcast, into one int32 accumulator per sub-block and row. So a block's
// 64 products per row take 4 vpdpbusd per row-block, and everything else (scales, mins, d, dmin)
// is done once per 16 rows as whole vectors. Per sub-block the sums are exact in int32
// (|sum| <= 32 * 240 * 128 per high-nibble sub-block), times the 6-bit scale (vpmulld), the low
// sub-blocks' times 16 more: the block's sum_s sc_s * isum_s * 16, below 2^29 in magnitude. The
// mins' term sum_s mn_s * bsum_s by vpdpbusd too: each sub-block sum of the activations (|b| <=
// 32 * 128) split as 128 * hi + lo (lo in [0, 127], hi in [-32, 31], both fit a signed byte)
// against the four mins of a dword (bytes 4..7 of the scales: mn0..3, the file's own order).
// Measured (scratch prototype, in L2, one Zen 5 core, 224 x 2048): 49 GB/s in the file layout,
// 85 GB/s here.

// Activation offset of the four bytes that the low nibbles of word tp of chunk h meet, in the
// paired order (q8_K_reorder_paired: per 128, elements 0..31, 64..95, 32..63, 96..127); the high
// nibbles' are 64 bytes on.
constexpr int x16_act_offset(int h, int tp) { return 128 * (h >> 1) + 32 * (h & 1) + 4 * tp; }

inline __m512i bcast4(const int8_t* p) {
  int v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// One group of 16 weight rows (nb columns from g) against R activation rows, out[r * ldo + i].
// R <= 2 takes several chunks per pass so that at least 8 dot chains run at once; every output is
// the same operations in the same order whatever R is (integer sums are exact in any order).
// kHigh: Q5_K_X16 (quant.h), the same with each nibble's fifth bit added by a masked byte add (its
// mask loaded as is from the column) and the high nibbles shifted down, as 16 + 16 would not fit
// a byte at x16: |sum| <= 32 * 31 * 128 per sub-block, times the 6-bit scale, below 2^26.
template <bool kHigh, int R>
__attribute__((always_inline)) inline void k45_x16_group(int64_t nb, const uint8_t* g, const BlockQ8_K* y,
                                                          int64_t y_stride, float* out, int64_t ldo, bool prefetch) {
  constexpr int H = R == 1 ? 4 : R == 2 ? 2 : 1;  // chunks per pass
  const __m512i m0f = _mm512_set1_epi8(0x0f), mf0 = _mm512_set1_epi8(static_cast<char>(0xf0));
  const __m512i m3f = _mm512_set1_epi8(0x3f), m30 = _mm512_set1_epi8(0x30), mff = _mm512_set1_epi32(0xff);
  // after vpacksswb of (lo, hi) sub-block sums (words: lane 0 s0, s4, s1, s5; lane 1 s2, s6, s3,
  // s7): dwords (lo s0..s3), (lo s4..s7), (hi s0..s3), (hi s4..s7), lane 0's bytes and lane 1's
  // apart, ORed together after
  const __m256i mins_ctl = _mm256_setr_epi8(0, 2, -1, -1, 1, 3, -1, -1, 8, 10, -1, -1, 9, 11, -1, -1,  //
                                            -1, -1, 0, 2, -1, -1, 1, 3, -1, -1, 8, 10, -1, -1, 9, 11);
  __m512 accf[R], accm[R];
  for (int r = 0; r < R; ++r) accf[r] = accm[r] = _mm512_setzero_ps();
  constexpr size_t kColumn = kHigh ? kX16ColumnQ5K : kX16ColumnQ4K;
  const __m512i m10 = _mm512_set1_epi8(0x10);
  for (int64_t c = 0; c < nb; ++c, g += kColumn) {
    if (prefetch) decode_prefetch(g, static_cast<int64_t>(kColumn));  // decode streams rows from memory
    // the 6-bit scales and mins (layout in quant.h's Q4_K), a row per 32-bit lane: bytes s of
    // sc03 / mn03 the scale / min of sub-block s, of sc47 / mn47 those of sub-block 4 + s
    const __m512i D0 = _mm512_loadu_si512(g + 64), D1 = _mm512_loadu_si512(g + 128), D2 = _mm512_loadu_si512(g + 192);
    const __m512i sc03 = _mm512_and_si512(D0, m3f), mn03 = _mm512_and_si512(D1, m3f);
    // (a & c) | b: the low nibbles of bytes 8..11 and, at bits 4..5, the top bits of bytes 0..3 / 4..7
    const __m512i sc47 = _mm512_ternarylogic_epi32(D2, _mm512_and_si512(_mm512_srli_epi32(D0, 2), m30), m0f, 0xec);
    const __m512i mn47 = _mm512_ternarylogic_epi32(_mm512_srli_epi32(D2, 4), _mm512_and_si512(_mm512_srli_epi32(D1, 2), m30),
                                                   m0f, 0xec);
    const auto scale = [&](int s) __attribute__((always_inline)) {
      const __m512i v = s < 4 ? sc03 : sc47;
      const int sh = 8 * (s & 3);
      return sh == 24 ? _mm512_srli_epi32(v, 24) : _mm512_and_si512(sh ? _mm512_srli_epi32(v, sh) : v, mff);
    };
    __m512i T[R];  // per row: sum_s sc_s * isum_s (Q4_K: times 16)
    for (int r = 0; r < R; ++r) T[r] = _mm512_setzero_si512();
    for (int h0 = 0; h0 < 4; h0 += H) {
      __m512i S[R][2 * H];
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < 2 * H; ++k) S[r][k] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int tp = 0; tp < 8; ++tp)
#pragma GCC unroll 4
        for (int hh = 0; hh < H; ++hh) {
          const int h = h0 + hh;
          __m512i lo, hi;
          if (kHigh) {
            const uint8_t* slot = g + 256 + 320 * tp;  // the eight masks, then the four chunks' words
            const __m512i w = _mm512_loadu_si512(slot + 64 * (1 + h));
            uint64_t ml, mh;
            __builtin_memcpy(&ml, slot + 16 * h, 8);
            __builtin_memcpy(&mh, slot + 16 * h + 8, 8);
            lo = _mm512_and_si512(w, m0f), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), m0f);
            lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64(ml), lo, m10);
            hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64(mh), hi, m10);
          } else {
            const __m512i w = _mm512_loadu_si512(g + 256 + 64 * (4 * tp + h));
            lo = _mm512_and_si512(w, m0f), hi = _mm512_and_si512(w, mf0);
          }
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            const int8_t* a = y[c + r * y_stride].qs + x16_act_offset(h, tp);
            S[r][2 * hh] = _mm512_dpbusd_epi32(S[r][2 * hh], lo, bcast4(a));
            S[r][2 * hh + 1] = _mm512_dpbusd_epi32(S[r][2 * hh + 1], hi, bcast4(a + 64));
          }
        }
      for (int hh = 0; hh < H; ++hh) {
        const __m512i sl = scale(2 * (h0 + hh)), sh = scale(2 * (h0 + hh) + 1);
        for (int r = 0; r < R; ++r)
          T[r] = _mm512_add_epi32(T[r], _mm512_add_epi32(_mm512_slli_epi32(_mm512_mullo_epi32(S[r][2 * hh], sl), kHigh ? 0 : 4),
                                                         _mm512_mullo_epi32(S[r][2 * hh + 1], sh)));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 32)));
    for (int r = 0; r < R; ++r) {
      const BlockQ8_K& yb = y[c + r * y_stride];
      // sub-block sums of the paired bsums (bsums p and p + 4 of each 8 are one sub-block's)
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb.bsums));
      const __m256i sums = _mm256_add_epi16(bs, _mm256_srli_si256(bs, 8));
      const __m256i pk = _mm256_packs_epi16(_mm256_and_si256(sums, _mm256_set1_epi16(127)), _mm256_srai_epi16(sums, 7));
      const __m256i sh = _mm256_shuffle_epi8(pk, mins_ctl);
      const __m512i q = _mm512_broadcast_i32x4(_mm_or_si128(_mm256_castsi256_si128(sh), _mm256_extracti128_si256(sh, 1)));
      const __m512i ml = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), mn03, _mm512_shuffle_epi32(q, _MM_PERM_AAAA)),
                                             mn47, _mm512_shuffle_epi32(q, _MM_PERM_BBBB));
      const __m512i mh = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), mn03, _mm512_shuffle_epi32(q, _MM_PERM_CCCC)),
                                             mn47, _mm512_shuffle_epi32(q, _MM_PERM_DDDD));
      const __m512i M = _mm512_add_epi32(_mm512_slli_epi32(mh, 7), ml);
      // Q4_K: (d * yd / 16) * (16 isum), the product the reference forms, d * yd * isum (16 is exact)
      const __m512 yd = _mm512_set1_ps(yb.d);
      accf[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, kHigh ? yd : _mm512_mul_ps(yd, _mm512_set1_ps(1.0f / 16))), _mm512_cvtepi32_ps(T[r]), accf[r]);
      accm[r] = _mm512_fmadd_ps(_mm512_mul_ps(dmin, yd), _mm512_cvtepi32_ps(M), accm[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * ldo, _mm512_sub_ps(accf[r], accm[r]));
}

template <bool kHigh>
void vec_dot_rows_k45_x16_avx512(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                                 int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch) {
  const auto* xb = static_cast<const uint8_t*>(x);
  rows_dispatch(rows, [&]<int R>() {
    for (int64_t i = 0; i < nw; i += kX16Rows)
      k45_x16_group<kHigh, R>(n / kQK_K, xb + i * row_bytes, y, y_stride, out + i, ldo, prefetch);
  });
}

// ---- Q6_K_X16: 16 weight rows interleaved (quant.h) ---------------------------------------
// As Q4_K_X16: a 32-bit lane per row. Each slot triple (two ql words, one qh word of each row)
// gives four value vectors (elements + 0, 32, 64, 96 of four consecutive ones): the nibble and
// the two high bits joined by one ternary-logic op after a shift and an AND, then vpdpbusd with
// the activation bytes broadcast into an int32 accumulator per sub-block (16 elements) and row,
// exact (|sum| <= 16 * 63 * 128 per sub-block, times |sc| <= 128, 16 sub-blocks: below 2^29). The
// offset: sum_s sc_s (isum_s - 32 bsum_s), its sum_s sc_s bsum_s by vpdpbusd on the rows' signed
// scale bytes against each bsum + 2048 (in [16, 4080]) split into its two unsigned bytes, less
// 2048 sum_s sc_s. (In L2, one Zen 5 core: see bench_decode.)

// Activation offset of the four bytes that value vector v (elements 128h + 4i + 32v ..) meets, in
// the paired order (q8_K_reorder_paired).
constexpr int x16_q6_act_offset(int h, int i, int v) { return 128 * h + 4 * i + (v == 1 ? 64 : v == 2 ? 32 : 32 * v); }

// One group of 16 weight rows against R <= 4 activation rows, out[r * ldo + i]; the same
// operations per output whatever R is. R <= 2 takes both quarters of a half per pass (8 dot chains).
template <int R>
__attribute__((always_inline)) inline void q6_K_x16_group(int64_t nb, const uint8_t* g, const BlockQ8_K* y,
                                                          int64_t y_stride, float* out, int64_t ldo, bool prefetch) {
  static_assert(R >= 1 && R <= 4);
  constexpr int Q = R <= 2 ? 2 : 1;  // quarters (4 words of i) per pass
  const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30), ones = _mm512_set1_epi8(1);
  // group g's bsum is at paired position kGroupAt[g] (the inverse of kQ8KPairedBsums)
  const __m256i group_order = _mm256_setr_epi16(0, 4, 2, 6, 8, 12, 10, 14, 1, 5, 3, 7, 9, 13, 11, 15);
  __m512 accf[R];
  for (int r = 0; r < R; ++r) accf[r] = _mm512_setzero_ps();
  for (int64_t c = 0; c < nb; ++c, g += kX16ColumnQ6K) {
    if (prefetch) decode_prefetch(g, static_cast<int64_t>(kX16ColumnQ6K));  // decode streams rows from memory
    __m512i P[4];  // scale bytes 4k .. 4k + 3 of each row (signed)
    for (int k = 0; k < 4; ++k) P[k] = _mm512_loadu_si512(g + 32 + 64 * k);
    const auto scale = [&](int s) __attribute__((always_inline)) {
      const int j = s & 3;
      return _mm512_srai_epi32(j == 3 ? P[s >> 2] : _mm512_slli_epi32(P[s >> 2], 24 - 8 * j), 24);
    };
    __m512i T[R];
    for (int r = 0; r < R; ++r) T[r] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h)
      for (int q0 = 0; q0 < 2; q0 += Q) {
        __m512i S[R][4][Q];
        for (int r = 0; r < R; ++r)
          for (int v = 0; v < 4; ++v)
            for (int q = 0; q < Q; ++q) S[r][v][q] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int ii = 0; ii < 4 * Q; ++ii) {
          const int i = 4 * q0 + ii, q = ii / 4;
          const uint8_t* slot = g + 288 + 64 * 3 * (8 * h + i);
          const __m512i A = _mm512_loadu_si512(slot), B = _mm512_loadu_si512(slot + 64), H = _mm512_loadu_si512(slot + 128);
          // (x & 0x0f) | hb with the high bits at 4..5
          const __m512i val[4] = {
              _mm512_ternarylogic_epi32(A, _mm512_and_si512(_mm512_slli_epi16(H, 4), m30), m0f, 0xec),
              _mm512_ternarylogic_epi32(B, _mm512_and_si512(_mm512_slli_epi16(H, 2), m30), m0f, 0xec),
              _mm512_ternarylogic_epi32(_mm512_srli_epi16(A, 4), _mm512_and_si512(H, m30), m0f, 0xec),
              _mm512_ternarylogic_epi32(_mm512_srli_epi16(B, 4), _mm512_and_si512(_mm512_srli_epi16(H, 2), m30), m0f, 0xec)};
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r)
            for (int v = 0; v < 4; ++v)
              S[r][v][q] = _mm512_dpbusd_epi32(S[r][v][q], val[v], bcast4(y[c + r * y_stride].qs + x16_q6_act_offset(h, i, v)));
        }
        for (int v = 0; v < 4; ++v)
          for (int q = 0; q < Q; ++q) {
            const __m512i sc = scale(8 * h + 2 * v + q0 + q);
            for (int r = 0; r < R; ++r) T[r] = _mm512_add_epi32(T[r], _mm512_mullo_epi32(S[r][v][q], sc));
          }
      }
    const __m512i scale_sum = _mm512_dpbusd_epi32(
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, P[0]), ones, P[1]), ones, P[2]),
        ones, P[3]);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
    for (int r = 0; r < R; ++r) {
      const BlockQ8_K& yb = y[c + r * y_stride];
      const __m256i u = _mm256_add_epi16(_mm256_permutexvar_epi16(group_order, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb.bsums))),
                                         _mm256_set1_epi16(2048));
      // bytes: lane 0 low bytes of groups 0..7, then high bytes; lane 1 the same for groups 8..15
      const __m512i pk = _mm512_castsi256_si512(_mm256_packus_epi16(_mm256_and_si256(u, _mm256_set1_epi16(255)), _mm256_srli_epi16(u, 8)));
      const auto dw = [&](int i) __attribute__((always_inline)) { return _mm512_permutexvar_epi32(_mm512_set1_epi32(i), pk); };
      __m512i ml = _mm512_setzero_si512(), mh = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const int lo = (k >> 1) * 4 + (k & 1);  // dword of groups 4k..4k+3's low bytes; +2 their high bytes
        ml = _mm512_dpbusd_epi32(ml, dw(lo), P[k]);
        mh = _mm512_dpbusd_epi32(mh, dw(lo + 2), P[k]);
      }
      // sum_s sc_s bsum_s = ml + 256 mh - 2048 sum_s sc_s; the block's sum: T - 32 that
      const __m512i m = _mm512_sub_epi32(_mm512_add_epi32(ml, _mm512_slli_epi32(mh, 8)), _mm512_slli_epi32(scale_sum, 11));
      const __m512i t = _mm512_sub_epi32(T[r], _mm512_slli_epi32(m, 5));
      accf[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(yb.d)), _mm512_cvtepi32_ps(t), accf[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * ldo, accf[r]);
}

void vec_dot_rows_q6_K_x16_avx512(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                                  int64_t y_stride, int rows, float* out, int64_t ldo, bool prefetch) {
  const auto* xb = static_cast<const uint8_t*>(x);
  const int64_t nb = n / kQK_K;
  rows_dispatch(rows, [&]<int R>() {
    for (int64_t i = 0; i < nw; i += kX16Rows) {
      const uint8_t* g = xb + i * row_bytes;
      if constexpr (R <= 4) {
        q6_K_x16_group<R>(nb, g, y, y_stride, out + i, ldo, prefetch);
      } else {  // four activation rows, then the rest (the group is in cache by then)
        q6_K_x16_group<4>(nb, g, y, y_stride, out + i, ldo, prefetch);
        q6_K_x16_group<R - 4>(nb, g, y + 4 * y_stride, y_stride, out + 4 * ldo + i, ldo, false);
      }
    }
  });
}

// ---- decode kernels (DecodeRow layout, quant_dot.h) -------------------------------------------
// One weight row at a time, read front to back, dotted with 1 to 8 activation rows (decode steps,
// short prompts). (Interleaving 2 or 4 weight rows to share the activation
// loads ran ~10% faster in cache but 2-3x slower from memory: the hardware prefetchers lose the
// interleaved streams. The activation row stays in L1 anyway.) Q4_0: a group of 16 blocks is read
// as four 512-bit vectors of int32 partial sums, each 128-bit lane holding one block's four (a
// quad of blocks, one per lane); decode_reduce4 turns them into one vector of the 16 block sums,
// and the group then costs one bias subtraction, one int -> float conversion and one multiply-add
// with the 16 block scales (one core, 5632x2048 from memory: the former 256-bit kernel over groups
// of 8 read 20-21 GB/s, this one 22-25 without software prefetch, 26 with it).
// Q8_0 stays in 256 bits (below). Software prefetch: decode_prefetch (two distances, above).

// Position 4L + q of the result: the sum of the four int32 of 128-bit lane L of v[q].
inline __m512i decode_reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

// Word p of the result: word idx[p] of the 128 bytes (a, b) (idx >= 32: of b), for p < 16.
inline __m256i words_pick(__m512i a, __m512i b, const __m512i& idx) {
  return _mm512_castsi512_si256(_mm512_permutex2var_epi16(a, idx, b));
}


// Index vectors built once (constexpr arrays; loaded by the caller outside the row loop).
// Word-pick indices for the scales: quad q's block k has its f16 scale at word 9k of the quad's
// first 64 bytes; position 4k + q (kDecodeOrderQ4_0) takes it.
struct Q4_0DecodeIdx {
  __m512i sc01, sc23;  // quads (0, 1) and (2, 3)
  __m512i sc01b, sc23b;  // the same as byte indices (vpermt2b)
};

inline Q4_0DecodeIdx q4_0_decode_idx() {
  alignas(64) uint16_t s01[32] = {}, s23[32] = {};
  for (int k = 0; k < 4; ++k) {
    s01[4 * k + 0] = static_cast<uint16_t>(9 * k), s01[4 * k + 1] = static_cast<uint16_t>(32 + 9 * k);
    s23[4 * k + 2] = static_cast<uint16_t>(9 * k), s23[4 * k + 3] = static_cast<uint16_t>(32 + 9 * k);
  }
  alignas(64) uint8_t b01[64] = {}, b23[64] = {};
  for (int p = 0; p < 32; ++p) {
    b01[2 * p] = static_cast<uint8_t>(2 * s01[p]), b01[2 * p + 1] = static_cast<uint8_t>(2 * s01[p] + 1);
    b23[2 * p] = static_cast<uint8_t>(2 * s23[p]), b23[2 * p + 1] = static_cast<uint8_t>(2 * s23[p] + 1);
  }
  return {_mm512_load_si512(s01), _mm512_load_si512(s23), _mm512_load_si512(b01), _mm512_load_si512(b23)};
}

// The 16 qs bytes of the 4 blocks of a quad (18 bytes apart, after each 2-byte scale), one per
// 128-bit lane. (Four loads and inserts measured a little faster than two loads and a vpermt2w.)
inline __m512i q4_0_quad_load(const uint8_t* quad) {
  __m512i b = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(quad + 2)));
  b = _mm512_inserti32x4(b, _mm_loadu_si128(reinterpret_cast<const __m128i*>(quad + 20)), 1);
  b = _mm512_inserti32x4(b, _mm_loadu_si128(reinterpret_cast<const __m128i*>(quad + 38)), 2);
  return _mm512_inserti32x4(b, _mm_loadu_si128(reinterpret_cast<const __m128i*>(quad + 56)), 3);
}

// A block after the last full group (natural order): its unpacked quants wq (offset by the weight
// type's bias, as in the groups) dotted with activation row a, times both scales.
inline float decode_tail_block(const uint8_t* blk, __m256i wq, const DecodeRow& a, int64_t ib) {
  const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + ib * 32));
  const int32_t t = hsum_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, y)) - a.bias[ib];
  uint16_t d16;
  __builtin_memcpy(&d16, blk, 2);
  return f16_load(d16) * a.d[ib] * static_cast<float>(t);
}

// Rows [n0, n1) with R activation rows: y[r * ldy + n - n0] = out[r] of rows(n, out).
template <int R, typename Rows>
inline void decode_pass(int64_t n0, int64_t n1, float* y, int64_t ldy, Rows rows) {
  float out[R];
  for (int64_t n = n0; n < n1; ++n) {
    rows(n, out);
    for (int r = 0; r < R; ++r) y[r * ldy + n - n0] = out[r];
  }
}

// One weight row dotted with R activation rows (out[r]): the row's groups are unpacked once and
// dotted with every activation row while in registers (a prompt of a few tokens: the unpacking,
// not the memory, bounds the dots). Each out[r] comes out of the same operations in the same order
// whatever R is: bitwise the single-row result.
template <int R>
__attribute__((always_inline)) inline void gemv_q4_0_rows(const uint8_t* w, int64_t nb, const DecodeRow* a, const Q4_0DecodeIdx& ix, float* out, bool prefetch) {
  constexpr int64_t kBlock = 18, kQuadBytes = 4 * kBlock, kGroupBytes = kBlock * kDecodeGroup;
  const int64_t ng = nb / kDecodeGroup;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  // the dots of activation row r with the unpacked group
  auto dots = [&](int r, int64_t g, const __m512i* P, const __m512 sw) {
    const __m512i t = _mm512_sub_epi32(decode_reduce4(P[0], P[1], P[2], P[3]), _mm512_loadu_si512(a[r].bias + g * 16));
    acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(sw, _mm512_loadu_ps(a[r].d + g * 16)), _mm512_cvtepi32_ps(t), acc[r]);
  };
  auto quad_dot = [&](int r, int64_t g, int q, __m512i lo, __m512i hi) {
    const int8_t* qy = a[r].qs + g * kDecodeGroup * kQK4_0 + 128 * q;
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(qy)), hi,
                               _mm512_loadu_si512(qy + 64));
  };
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * kGroupBytes;
    if (prefetch) decode_prefetch(wg, kGroupBytes);
    __m512i lo[4], hi[4], P[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {  // unpacked and dotted with row 0 as it comes in
      const __m512i b = q4_0_quad_load(wg + q * kQuadBytes);
      lo[q] = _mm512_and_si512(b, m4), hi[q] = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
      P[q] = quad_dot(0, g, q, lo[q], hi[q]);
    }
    // the scales: each quad's first 64 bytes hold its 4 (the loads hit L1, just read above)
    const __m256i sc = _mm256_mask_blend_epi16(
        0xcccc, words_pick(_mm512_loadu_si512(wg), _mm512_loadu_si512(wg + kQuadBytes), ix.sc01),
        words_pick(_mm512_loadu_si512(wg + 2 * kQuadBytes), _mm512_loadu_si512(wg + 3 * kQuadBytes), ix.sc23));
    const __m512 sw = _mm512_cvtph_ps(sc);
    dots(0, g, P, sw);
#pragma GCC unroll 8
    for (int r = 1; r < R; ++r) {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) P[q] = quad_dot(r, g, q, lo[q], hi[q]);
      dots(r, g, P, sw);
    }
  }
  for (int r = 0; r < R; ++r) {
    float sum = _mm512_reduce_add_ps(acc[r]);
    for (int64_t ib = ng * kDecodeGroup; ib < nb; ++ib)  // the tail, natural order
      sum += decode_tail_block(w + ib * kBlock, q4_0_unpack(w + ib * kBlock + 2), a[r], ib);
    out[r] = sum;
  }
}

// Rows [n0, n1) of w with `rows` activation rows, y[m * ldy + n - n0], R activation rows a pass.
template <int R>
void gemv_q4_0_pass(const uint8_t* wb, int64_t row_bytes, int64_t nb, const DecodeRow* a, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, const Q4_0DecodeIdx& ix, bool prefetch) {
  decode_pass<R>(n0, n1, y, ldy, [&](int64_t n, float* out) __attribute__((always_inline)) { gemv_q4_0_rows<R>(wb + n * row_bytes, nb, a, ix, out, prefetch); });
}

// ---- the Q4_0 decode kernel with AVX-512 VBMI (byte permutes) --------------------------------
// The computation of gemv_q4_0_row, with a quad's four 16-byte quant runs gathered by two
// overlapping 64-byte loads and one vpermt2b instead of four 16-byte loads and three inserts, and
// the scales picked by vpermt2b instead of vpermt2w. The kernel is bound by shuffles (Zen 4 runs
// them on two of its four vector pipes): one core, in L2, it reads ~9% more GB/s than
// gemv_q4_0_row (interleaved runs, best of 5; bench/bench_decode.cpp); from memory, the same.
// A separate copy under the target pragma, so that no VBMI instruction reaches the kernel that
// CPUs without VBMI run (Cascade Lake has VNNI, not VBMI).
// GCC takes the target as a pragma, clang (the fuzz build) as an attribute on every function here.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vbmi"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vbmi")
#endif

// Byte permute indices: quant run l of a quad (quad bytes 18 l + 2 .. 18 l + 17) into 128-bit
// lane l, from (quad bytes [0, 64), quad bytes [8, 72)).
inline __m512i q4_0_quad_idx() {
  alignas(64) uint8_t b[64];
  for (int l = 0; l < 4; ++l)
    for (int j = 0; j < 16; ++j) {
      const int src = 18 * l + 2 + j;
      b[16 * l + j] = static_cast<uint8_t>(src < 64 ? src : 64 + src - 8);
    }
  return _mm512_load_si512(b);
}

inline __m512i q4_0_quad_load_vbmi(const uint8_t* quad, __m512i idx) {
  return _mm512_permutex2var_epi8(_mm512_loadu_si512(quad), idx, _mm512_loadu_si512(quad + 8));
}

float gemv_q4_0_row_vbmi(const uint8_t* w, int64_t nb, const DecodeRow& a, const Q4_0DecodeIdx& ix, __m512i qidx) {
  constexpr int64_t kBlock = 18, kQuadBytes = 4 * kBlock, kGroupBytes = kBlock * kDecodeGroup;
  const int64_t ng = nb / kDecodeGroup;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * kGroupBytes;
    const int8_t* qy = a.qs + g * kDecodeGroup * kQK4_0;
    decode_prefetch(wg, kGroupBytes);
    __m512i P[4];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const __m512i b = q4_0_quad_load_vbmi(wg + q * kQuadBytes, qidx);
      const __m512i lo = _mm512_and_si512(b, m4), hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
      P[q] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(qy + 128 * q)), hi,
                                 _mm512_loadu_si512(qy + 128 * q + 64));
    }
    const __m512i t = _mm512_sub_epi32(decode_reduce4(P[0], P[1], P[2], P[3]), _mm512_loadu_si512(a.bias + g * 16));
    // the scales: words of the quads' first 64 bytes (loaded above), picked as bytes
    const __m256i sc = _mm256_mask_blend_epi16(
          0xcccc,
          _mm512_castsi512_si256(_mm512_permutex2var_epi8(_mm512_loadu_si512(wg), ix.sc01b, _mm512_loadu_si512(wg + kQuadBytes))),
          _mm512_castsi512_si256(_mm512_permutex2var_epi8(_mm512_loadu_si512(wg + 2 * kQuadBytes), ix.sc23b,
                                                          _mm512_loadu_si512(wg + 3 * kQuadBytes))));
    const __m512 s = _mm512_mul_ps(_mm512_cvtph_ps(sc), _mm512_loadu_ps(a.d + g * 16));
    acc = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(t), acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  for (int64_t ib = ng * kDecodeGroup; ib < nb; ++ib)  // the tail, natural order
    sum += decode_tail_block(w + ib * kBlock, q4_0_unpack(w + ib * kBlock + 2), a, ib);
  return sum;
}


// The single-row passes of gemv_q4_0_any (below) with this kernel: decode.
void gemv_q4_0_vbmi_rows1(const uint8_t* wb, int64_t row_bytes, int64_t nb, const DecodeRow& a, int64_t n0,
                          int64_t n1, float* y, const Q4_0DecodeIdx& ix) {
  const __m512i qidx = q4_0_quad_idx();
  for (int64_t n = n0; n < n1; ++n) y[n - n0] = gemv_q4_0_row_vbmi(wb + n * row_bytes, nb, a, ix, qidx);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// decode_row_prepare with 4- to 32-byte moves and VNNI block sums (the reference goes element by
// element: 1.6% of a 2-thread Q4_0 token in perf, with the other thread waiting). The same bytes.
void decode_row_prepare_avx512(DType w, const BlockQ8_0* xq, int64_t K, int8_t* qs, float* d, int32_t* bias) {
  const int64_t nb = K / kQK8_0, ng = nb / kDecodeGroup;
  const DecodeRowLayout l = decode_row_layout(w, nb);
  // (the file layouts of Q4_1, Q5_0, Q5_1: the reference's)
  if (w != DType::Q4_0 && w != DType::Q8_0 && !l.r16) return decode_row_prepare(w, xq, K, qs, d, bias);
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t ib = 0; ib < nb; ++ib) {
    const int64_t g = ib / kDecodeGroup, j = ib % kDecodeGroup;
    const int64_t slot = ib < l.ordered ? g * kDecodeGroup + l.position[j] : ib;
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[ib].qs));
    d[slot] = f16_load(xq[ib].d);
    bias[slot] = l.offset * hsum_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, v));
    if (w == DType::Q4_0 && g < ng) {  // the quad layout (see decode_row_prepare)
      int8_t* dst = qs + g * kDecodeGroup * kQK8_0 + (j / 4) * 128 + (j % 4) * 16;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(v));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 64), _mm256_extracti128_si256(v, 1));
    } else if (l.r16) {  // 4 elements at a time (see decode_row_prepare)
      const int64_t c = nb - g * kDecodeGroup < kDecodeGroup ? nb - g * kDecodeGroup : kDecodeGroup;
      int8_t* dst = qs + g * kDecodeGroup * kQK8_0 + 4 * j;
      for (int q = 0; q < 4; ++q) {
        __builtin_memcpy(dst + 8 * c * q, xq[ib].qs + 4 * q, 4);
        __builtin_memcpy(dst + 8 * c * q + 4 * c, xq[ib].qs + 16 + 4 * q, 4);
      }
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + ib * kQK8_0), v);
    }
  }
}

// Q8_0 stays in 256 bits, 8 blocks at a time (two per 16-block group, and a row's last 8 after its
// full groups too, in the same order: kDecodeOrderQ8_0 is the
// 8-block order {0 2 4 6 1 3 5 7} twice): a 512-bit version (pairs of blocks per register, one
// reduction per 16) measured ~10% slower in cache and no faster from memory on Zen 4. Software
// prefetch (then prefetcht0 4 KiB ahead) lifted one row stream from memory 26 -> 29 GB/s (interleaved
// runs, one core; a pure read reaches 30-31).
inline __m256i decode_reduce(const __m256i* P) {
  const __m256i s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(P[0], P[1]), _mm256_unpackhi_epi32(P[0], P[1]));
  const __m256i s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(P[2], P[3]), _mm256_unpackhi_epi32(P[2], P[3]));
  // lane 0: blocks 0 2 4 6, lane 1: blocks 1 3 5 7
  return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

// Q8_0 (17 words a block): blocks 0..3 in bytes [0, 128), blocks 4..7 in [128, 256).
inline __m256 q8_0_group_scales(const uint8_t* g) {
  // positions of blocks 0 1 2 3 are 0 4 1 5; of blocks 4 5 6 7: 2 6 3 7
  const __m512i idx_a = _mm512_zextsi128_si512(_mm_setr_epi16(0, 34, 0, 0, 17, 51, 0, 0));
  const __m512i idx_b = _mm512_zextsi128_si512(_mm_setr_epi16(0, 0, 4, 38, 0, 0, 21, 55));
  const __m512i a = _mm512_permutex2var_epi16(_mm512_loadu_si512(g), idx_a, _mm512_loadu_si512(g + 64));
  const __m512i b = _mm512_permutex2var_epi16(_mm512_loadu_si512(g + 128), idx_b, _mm512_loadu_si512(g + 192));
  return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_mask_blend_epi16(0xcc, a, b)));
}

// One weight row with R activation rows (out[r]), as gemv_q4_0_rows: the weights are loaded once
// per half group, every out[r] by the same operations whatever R is.
template <int R>
__attribute__((always_inline)) inline void gemv_q8_0_rows(const uint8_t* w, int64_t nb, const DecodeRow* a, float* out, bool prefetch) {
  constexpr int64_t kBlock = 34, kGroupBytes = kBlock * 8;
  const int64_t ng = nb / 8;  // half groups of 8 (a row's last one too): blocks in kDecodeOrderQ8_0 per half
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * kGroupBytes;
    if (prefetch) decode_prefetch(wg, kGroupBytes);
    // blocks 2j and 2j + 1 dotted with activation row r: lane 0 block 2j's halves summed, lane 1 2j+1's
    auto pair_dot = [&](int r, int j, __m256i w0, __m256i w1) {
      const int8_t* qy = a[r].qs + g * 256 + 64 * j;
      const __m256i d0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy)));
      const __m256i d1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qy + 32)));
      return _mm256_add_epi32(_mm256_permute2x128_si256(d0, d1, 0x20), _mm256_permute2x128_si256(d0, d1, 0x31));
    };
    auto dots = [&](int r, const __m256i* P) {
      const __m256i t = _mm256_sub_epi32(decode_reduce(P), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r].bias + g * 8)));
      const __m256 s = _mm256_mul_ps(q8_0_group_scales(wg), _mm256_loadu_ps(a[r].d + g * 8));
      acc[r] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(t), acc[r]);
    };
    __m256i wq[8], P[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {  // loaded and dotted with row 0 as they come in
      const uint8_t* b = wg + j * 2 * kBlock;
      wq[2 * j] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)), flip);
      wq[2 * j + 1] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kBlock + 2)), flip);
      P[j] = pair_dot(0, j, wq[2 * j], wq[2 * j + 1]);
    }
    dots(0, P);
#pragma GCC unroll 8
    for (int r = 1; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) P[j] = pair_dot(r, j, wq[2 * j], wq[2 * j + 1]);
      dots(r, P);
    }
  }
  // the last blocks (fewer than 8): prefetched too, or a row of 28 blocks (896 wide) read a seventh
  // of its bytes unannounced
  if (prefetch && ng * 8 < nb) decode_prefetch(w + ng * 8 * kBlock, (nb - ng * 8) * kBlock);
  for (int r = 0; r < R; ++r) {
    float sum = hsum(acc[r]);
    for (int64_t ib = ng * 8; ib < nb; ++ib) {
      const uint8_t* blk = w + ib * kBlock;
      sum += decode_tail_block(blk, _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), flip), a[r], ib);
    }
    out[r] = sum;
  }
}

template <int R>
void gemv_q8_0_pass(const uint8_t* wb, int64_t row_bytes, int64_t nb, const DecodeRow* a, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, bool prefetch) {
  decode_pass<R>(n0, n1, y, ldy, [&](int64_t n, float* out) __attribute__((always_inline)) { gemv_q8_0_rows<R>(wb + n * row_bytes, nb, a, out, prefetch); });
}

// One pass of `rows` activation rows (DecodeGemv); a single row (decode) with `rows1`.
template <typename Rows1>
void gemv_q4_0_any(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                   float* y, int64_t ldy, bool prefetch, Rows1 rows1) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const int64_t nb = K / kQK4_0;
  const Q4_0DecodeIdx ix = q4_0_decode_idx();
  if (rows == 1) return rows1(wb, row_bytes, nb, a[0], n0, n1, y, ix);
  rows_dispatch(rows, [&]<int R>() { gemv_q4_0_pass<R>(wb, row_bytes, nb, a, n0, n1, y, ldy, ix, prefetch); });
}

void gemv_q4_0_avx512(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                      float* y, int64_t ldy, bool prefetch) {
  gemv_q4_0_any(w, row_bytes, K, a, rows, n0, n1, y, ldy, prefetch,
                [](const uint8_t* wb, int64_t rb, int64_t nb, const DecodeRow& a1, int64_t r0, int64_t r1, float* y1,
                   const Q4_0DecodeIdx& ix) { gemv_q4_0_pass<1>(wb, rb, nb, &a1, r0, r1, y1, 0, ix, true); });
}

void gemv_q4_0_vbmi_avx512(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0,
                           int64_t n1, float* y, int64_t ldy, bool prefetch) {
  gemv_q4_0_any(w, row_bytes, K, a, rows, n0, n1, y, ldy, prefetch, gemv_q4_0_vbmi_rows1);
}

void gemv_q8_0_avx512(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                      float* y, int64_t ldy, bool prefetch) {
  rows_dispatch(rows, [&]<int R>() {
    gemv_q8_0_pass<R>(static_cast<const uint8_t*>(w), row_bytes, K / kQK8_0, a, n0, n1, y, ldy, prefetch);
  });
}

// ---- R16 weights (quant.h) ----------------------------------------------------------------------
// A group of 16 blocks: 4 64-byte loads of nibbles, each 4 bytes of all 16 blocks (int32 lane L =
// block L), so every vpdpbusd adds to each block's sum in its own lane: 8 of them (low and high
// nibbles of the 4 vectors) leave the 16 block sums in block order with no reduction, and the
// scales (and mins) convert as one vector each. The file layouts spend as many instructions on
// gathering (4 16-byte inserts a quad, or byte permutes) and reducing (decode_reduce4) as on the
// dots. Fifth bits: one load of the 16 permuted words, then per vector a shift by a constant and a
// mask put them at bit 4 of each byte (quant.h). Two accumulators per activation row (low and high
// nibbles) halve the dependency chain. A row's last, partial group (c < 16 blocks) runs the same
// code with masked loads (before, its blocks went one at a time with a horizontal sum each: rows
// of 896 = 16 + 12 blocks, Qwen2.5-0.5B's, read at a third of the speed of 2048-wide ones). One
// template for 1..8 activation rows: each output's operations are the same for any R.

// 64 bytes as two 32-byte loads. Groups of 288 or 352 bytes (Q4_0, Q5_0) start at 32 mod 64 every
// other time, and then every 64-byte load would span two cache lines: from memory (1 thread) a
// Q5_0_R16 row read at 80-83% of a plain read that way, at 92-96% with the halves.
inline __m512i load_halves(const uint8_t* p) {
  return pair256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
}

template <typename Block, int R>
__attribute__((always_inline)) inline void gemv_r16_rows(const uint8_t* w, int64_t nb, const DecodeRow* a, float* out,
                                                         bool prefetch) {
  using L = R16Layout<Block>;
  constexpr bool kHigh = L::kHigh, kMin = L::kMin;
  const __m512i m4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  // Group g of c blocks at wg: a full one (c = 16), or a row's last, partial one (kPartial: every
  // load masked to lanes < c, so the other lanes add 0 x 0).
  auto group = [&]<bool kPartial>(const uint8_t* wg, int64_t g, int64_t c) __attribute__((always_inline)) {
    const __mmask16 m = kPartial ? static_cast<__mmask16>((1u << c) - 1) : static_cast<__mmask16>(0xffff);
    auto wload = [&](size_t at) {  // (a partial group in masked halves too: 69 -> 80% of a read, Q5_0 896 wide)
      if constexpr (!kPartial) return load_halves(wg + at);
      return pair256(_mm256_maskz_loadu_epi32(static_cast<__mmask8>(m), wg + at),
                     _mm256_maskz_loadu_epi32(static_cast<__mmask8>(m >> 8), wg + at + 32));
    };
    auto yload = [&](const int8_t* p) { return kPartial ? _mm512_maskz_loadu_epi32(m, p) : _mm512_loadu_si512(p); };
    auto scales = [&](size_t at) {
      const __m256i h = kPartial ? _mm256_maskz_loadu_epi16(m, wg + at)
                                 : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + at));
      return _mm512_cvtph_ps(h);
    };
    __m512i lo[4], hi[4];
    __m512i bits = _mm512_setzero_si512();
    if constexpr (kHigh) bits = wload(L::bits(c));
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const __m512i b = wload(L::qs(c) + 4 * c * v);
      lo[v] = _mm512_and_si512(b, m4), hi[v] = _mm512_and_si512(_mm512_srli_epi16(b, 4), m4);
      if constexpr (kHigh) {
        lo[v] = _mm512_or_si512(lo[v], _mm512_and_si512(_mm512_slli_epi32(bits, 4 - v), bit4));
        hi[v] = _mm512_or_si512(hi[v], _mm512_and_si512(_mm512_srli_epi32(bits, v), bit4));
      }
    }
    const __m512 sw = scales(0);
    __m512 sm = _mm512_setzero_ps();
    if constexpr (kMin) sm = scales(L::mins(c));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int8_t* y = a[r].qs + g * kDecodeGroup * 32;
      __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        s0 = _mm512_dpbusd_epi32(s0, lo[v], yload(y + 8 * c * v));
        s1 = _mm512_dpbusd_epi32(s1, hi[v], yload(y + 8 * c * v + 4 * c));
      }
      const __m512i s = _mm512_add_epi32(s0, s1);
      const __m512i bias = _mm512_maskz_loadu_epi32(m, a[r].bias + g * kDecodeGroup);
      const __m512 dy = _mm512_maskz_loadu_ps(m, a[r].d + g * kDecodeGroup);
      if constexpr (kMin) {
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(sw, dy), _mm512_cvtepi32_ps(s), acc[r]);
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(sm, dy), _mm512_cvtepi32_ps(bias), acc[r]);
      } else {
        acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(sw, dy), _mm512_cvtepi32_ps(_mm512_sub_epi32(s, bias)), acc[r]);
      }
    }
  };
  const int64_t ng = nb / kDecodeGroup;
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + g * L::kGroupBytes;
    if (prefetch) decode_prefetch(wg, L::kGroupBytes);
    group.template operator()<false>(wg, g, kDecodeGroup);
  }
  if (const int64_t c = nb - ng * kDecodeGroup; c > 0) {
    if (prefetch) decode_prefetch(w + ng * L::kGroupBytes, static_cast<int64_t>(c * sizeof(Block)));
    group.template operator()<true>(w + ng * L::kGroupBytes, ng, c);
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// DecodeGemv over rows [n0, n1) of R16 weights.
template <typename Block>
void gemv_r16_avx512(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                     float* y, int64_t ldy, bool prefetch) {
  const auto* wb = static_cast<const uint8_t*>(w);
  rows_dispatch(rows, [&]<int R>() {
    decode_pass<R>(n0, n1, y, ldy, [&](int64_t n, float* out) __attribute__((always_inline)) {
      gemv_r16_rows<Block, R>(wb + n * row_bytes, K / 32, a, out, prefetch);
    });
  });
}

const QuantKernels kQuantKernelsAvx512Vnni = {
    "avx512vnni",
    quantize_row_q8_0_avx512,
    dequantize_row_q8_0_avx512,
    dequantize_row_q4_0_avx512,
    vec_dot_q8_0_q8_0_avx512,
    vec_dot_q4_0_q8_0_avx512,
    quantize_row_q8_K_avx512,
    vec_dot_q4_1_q8_0_avx512,
    vec_dot_q5_0_q8_0_avx512,
    vec_dot_q5_1_q8_0_avx512,
    vec_dot_q4_K_q8_K_avx512,
    vec_dot_q5_K_q8_K_avx512,
    vec_dot_q6_K_q8_K_avx512,
    gemv_q4_0_avx512,
    gemv_q8_0_avx512,
    decode_row_prepare_avx512,
    vec_dot_rows_k45_avx512<false>,
    vec_dot_rows_k45_avx512<true>,
    vec_dot_rows_q6_K_avx512,
    gemv_r16_avx512<BlockQ4_0>,
    gemv_q4_1_avx2,  // AVX2's (quant_dot.h)
    gemv_q5_0_avx2,
    gemv_q5_1_avx2,
    gemv_r16_avx512<BlockQ4_1>,
    gemv_r16_avx512<BlockQ5_0>,
    gemv_r16_avx512<BlockQ5_1>,
    q8_K_reorder_paired,  // quant_dot.h: the order k45_rows, q6_K_rows and the X16 kernels read
    vec_dot_rows_k45_x16_avx512<false>,
    vec_dot_rows_k45_x16_avx512<true>,
    vec_dot_rows_q6_K_x16_avx512,
};

// The same set with the AVX-512 VBMI Q4_0 decode kernel (Zen 4, Ice Lake and later; not Cascade
// Lake, which has VNNI without VBMI).
const QuantKernels kQuantKernelsAvx512Vbmi = [] {
  QuantKernels k = kQuantKernelsAvx512Vnni;
  k.name = "avx512vbmi";
  k.gemv_q4_0 = gemv_q4_0_vbmi_avx512;
  return k;
}();

}  // namespace

const QuantKernels& quant_kernels_avx512vnni() { return kQuantKernelsAvx512Vnni; }
const QuantKernels& quant_kernels_avx512vbmi() { return kQuantKernelsAvx512Vbmi; }

}  // namespace aigc
