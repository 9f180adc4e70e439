// The bodies of the KernelsF32 row kernels. Included by exactly one .cpp per instruction set;
// everything here has internal linkage so each inclusion keeps its own, differently compiled copy.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/cpu/kernels_f32.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/quant.h"

namespace aigc::ops {
namespace {

// Loops here must stay free of float comparisons used as branches: under -ftrapping-math (the
// default) GCC will not if-convert them and the loop stays scalar. Clamps and selects therefore
// work on integers: f32_key maps a float's bits to an int32 with the same order (for non-NaN).
inline int32_t f32_key(float x) {
  const int32_t b = std::bit_cast<int32_t>(x);
  return b ^ ((b >> 31) & 0x7fffffff);
}
inline float f32_from_key(int32_t k) { return std::bit_cast<float>(k ^ ((k >> 31) & 0x7fffffff)); }

// e^x for f32: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its Taylor series to
// r^7 (truncation < 5e-9 relative), 2^n by building the exponent bits. Below -87 (and -inf)
// returns exactly 0; above 88.3 saturates near e^88.3 (~2e38). A NaN input gives an unspecified
// value (the ops are not fed NaN with meaning).
inline float exp_approx(float x) {
  const int32_t k_lo = f32_key(-87.0f), k_hi = f32_key(88.3f);
  const int32_t k = f32_key(x);
  const float xc = f32_from_key(k < k_lo ? k_lo : (k > k_hi ? k_hi : k));
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds to an integer
  const float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t ni = std::bit_cast<int32_t>(t) - 0x4B400000;
  const float scale = std::bit_cast<float>((ni + 127) << 23);
  const int32_t keep = -static_cast<int32_t>(k >= k_lo);  // all ones, or 0 below -87
  return std::bit_cast<float>(std::bit_cast<int32_t>(p * scale) & keep);
}

void silu_row(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + exp_approx(-x[i]));
}

void silu_backward_row(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float e = exp_approx(-x[i]), s = 1.0f / (1.0f + e);  // 1 - s = e s, without cancellation
    dx[i] += dy[i] * (s * (1.0f + x[i] * (e * s)));
  }
}

// x * Phi(x) with Phi(x) = 1 - erfc(z)/2 for x >= 0 and erfc(z)/2 for x < 0, z = |x|/sqrt(2), so
// the negative tail keeps relative accuracy instead of cancelling. erfc is the Chebyshev fit of
// Numerical Recipes (erfcc): relative error < 1.2e-7 for every z >= 0.
void gelu_row(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float z = std::fabs(v) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float half_erfc = 0.5f * t * exp_approx(p - z * z);
    const int32_t neg = std::bit_cast<int32_t>(v) >> 31;  // all ones when v < 0 (or -0)
    const float phi = std::bit_cast<float>((std::bit_cast<int32_t>(1.0f - half_erfc) & ~neg) |
                                           (std::bit_cast<int32_t>(half_erfc) & neg));
    y[i] = v * phi;
  }
}

// 0.5 x (1 + tanh(u)) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation near 0.
void gelu_tanh_row(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float u2 = 2.0f * 0.79788456080286536f * (v + 0.044715f * v * v * v);
    y[i] = v / (1.0f + exp_approx(-u2));
  }
}

// 16 running maxima, then their max: GCC 12 left `omp simd reduction(max)` over std::max scalar
// (a chain of dependent vmaxss, 18% of a long-context decode attention). Same result: a max is
// exact, and like std::max(m, x) the comparison keeps m when x is NaN.
float max_row(const float* x, int64_t n) {
  constexpr int64_t L = 16;
  float lanes[L];
  for (int64_t u = 0; u < L; ++u) lanes[u] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int64_t u = 0; u < L; ++u) lanes[u] = x[i + u] > lanes[u] ? x[i + u] : lanes[u];
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t u = 0; u < L; ++u) m = std::max(m, lanes[u]);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

void softmax_row(const float* x, float* y, int64_t n, int64_t n_valid) {
  const float m = max_row(x, n_valid);
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n_valid; ++i) {
    const float e = exp_approx(x[i] - m);
    y[i] = e;
    s += e;
  }
  const float inv = static_cast<float>(1.0 / s);
#pragma omp simd
  for (int64_t i = 0; i < n_valid; ++i) y[i] *= inv;
  for (int64_t i = n_valid; i < n; ++i) y[i] = 0.0f;
}

double sum_row(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

double sum_sq_dev_row(const float* x, int64_t n, float mean) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    s += d * d;
  }
  return s;
}

void normalize_row(const float* x, float* y, int64_t n, float mean, float rstd, const float* g,
                   const float* b) {
  if (g && b) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * g[i] + b[i];
  } else if (g) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd * g[i];
  } else if (b) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd + b[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - mean) * rstd;
  }
}

void scale_shift_row(const float* x, float* y, int64_t n, float a, float b) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a + b;
}

float dot_row(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// sr[0, KB) = q . kt[:, u] for the transposed key block kt [d, KB] (columns >= kb zeroed). The
// KB partial sums stay in registers across the d loop (4 zmm / 8 ymm), with no horizontal adds.
[[gnu::noinline]] void scores_transposed(const float* qr, const float* kt, float* sr, int64_t d) {
  constexpr int64_t KB = kAttnKeyBlock;
  float t[KB] = {};
  for (int64_t c = 0; c < d; ++c) {
    const float qc = qr[c];
    const float* ktc = kt + c * KB;
#pragma omp simd
    for (int64_t u = 0; u < KB; ++u) t[u] += qc * ktc[u];
  }
#pragma omp simd
  for (int64_t u = 0; u < KB; ++u) sr[u] = t[u];
}

// kt[c * KB + jj] = k[(j0 + jj) * ks + c] for jj < kb, c < d: the key block transposed for
// scores_transposed. Element by element it costs as much as the scores of 8 queries; the AVX-512
// build moves 16 x 16 tiles through registers (4 shuffle stages) and leaves only the edges.
#if defined(__AVX512F__)
// GCC 12's AVX-512 headers start some shuffles from an undefined vector: a false warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
inline void transpose_16x16(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; ++i) {  // lane L: (row 2i, 2i+1) x columns 4L, 4L+1 | 4L+2, 4L+3
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  auto pd = [](__m512 x) { return _mm512_castps_pd(x); };
  for (int i = 0; i < 4; ++i) {  // r[4i + k] lane L: rows 4i .. 4i+3 of column 4L + k
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[4 * i]), pd(t[4 * i + 2])));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[4 * i]), pd(t[4 * i + 2])));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[4 * i + 1]), pd(t[4 * i + 3])));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[4 * i + 1]), pd(t[4 * i + 3])));
  }
  for (int k = 0; k < 4; ++k) {  // column 4L + k: lane L of r[k], r[4 + k], r[8 + k], r[12 + k]
    const __m512 a0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), b0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
    const __m512 a1 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88), b1 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    _mm512_storeu_ps(dst + k * ds, _mm512_shuffle_f32x4(a0, a1, 0x88));
    _mm512_storeu_ps(dst + (4 + k) * ds, _mm512_shuffle_f32x4(b0, b1, 0x88));
    _mm512_storeu_ps(dst + (8 + k) * ds, _mm512_shuffle_f32x4(a0, a1, 0xdd));
    _mm512_storeu_ps(dst + (12 + k) * ds, _mm512_shuffle_f32x4(b0, b1, 0xdd));
  }
}
#pragma GCC diagnostic pop
#endif

void key_block_transpose(const float* k, int64_t ks, int64_t kb, int64_t d, float* kt) {
  constexpr int64_t KB = kAttnKeyBlock;
  int64_t j_done = 0, c_done = 0;
#if defined(__AVX512F__)
  j_done = kb / 16 * 16, c_done = d / 16 * 16;
  for (int64_t jj = 0; jj < j_done; jj += 16)
    for (int64_t c = 0; c < c_done; c += 16) transpose_16x16(k + jj * ks + c, ks, kt + c * KB + jj, KB);
#endif
  for (int64_t jj = 0; jj < kb; ++jj) {  // the edges: keys past the tiles, columns past them
    const float* kj = k + jj * ks;
    for (int64_t c = jj < j_done ? c_done : 0; c < d; ++c) kt[c * KB + jj] = kj[c];
  }
}

// acc[0, W) += sum_j p[j] v[j * vs + 0, W): W columns held in registers across the keys.
template <int64_t W>
[[gnu::noinline]] void pv_tile(const float* p, int64_t kb, const float* v, int64_t vs, float* acc) {
  float t[W];
  for (int64_t u = 0; u < W; ++u) t[u] = acc[u];
  for (int64_t j = 0; j < kb; ++j) {
    const float pj = p[j];
    const float* vj = v + j * vs;
#pragma omp simd
    for (int64_t u = 0; u < W; ++u) t[u] += pj * vj[u];
  }
  for (int64_t u = 0; u < W; ++u) acc[u] = t[u];
}

// acc[0, dv) += sum_j p[j] v_j[0, dv), in column tiles of 64, 16, 8, 4, 1.
void pv_accumulate(const float* p, int64_t kb, const float* v, int64_t vs, float* acc, int64_t dv) {
  int64_t c = 0;
  for (; c + 64 <= dv; c += 64) pv_tile<64>(p, kb, v + c, vs, acc + c);
  for (; c + 16 <= dv; c += 16) pv_tile<16>(p, kb, v + c, vs, acc + c);
  for (; c + 8 <= dv; c += 8) pv_tile<8>(p, kb, v + c, vs, acc + c);
  for (; c + 4 <= dv; c += 4) pv_tile<4>(p, kb, v + c, vs, acc + c);
  for (; c < dv; ++c) pv_tile<1>(p, kb, v + c, vs, acc + c);
}

// dst[jj * n + c] = src[jj * ss + c] as f32, for jj < rows, c < n: a block of f16 cache rows.
void f16_rows_to_f32(const uint16_t* src, int64_t ss, int64_t rows, int64_t n, float* dst) {
  for (int64_t jj = 0; jj < rows; ++jj) row_f16_to_f32(src + jj * ss, dst + jj * n, n);
}

// Flash-attention style: for each block of queries, one pass over the keys in blocks, keeping per
// query the running max m, the running sum l of exp(score - m) and the unnormalised output acc;
// when m grows, l and acc are rescaled by exp(m_old - m_new).
void attention_rows(const AttentionRows& a, float* scratch) {
  constexpr int64_t QB = kAttnQueryBlock, KB = kAttnKeyBlock;
  float* s = scratch;                 // [QB, KB] scores, then probabilities
  float* acc = s + QB * KB;           // [QB, dv]
  float* m = acc + QB * a.dv;         // [QB]
  float* l = m + QB;                  // [QB]
  float* kt = l + QB;                 // [d, KB] the key block transposed
  float* kf = kt + a.d * KB;          // [KB, d] an f16 key block in f32
  float* vf = kf + a.d * KB;          // [KB, dv] an f16 value block in f32
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t i0 = 0; i0 < a.nq; i0 += QB) {
    const int64_t qb = std::min(QB, a.nq - i0);
    // keys any query of this block may see
    const int64_t k_end = a.causal_pos0 < 0 ? a.tk : std::min(a.tk, a.causal_pos0 + i0 + qb);
    for (int64_t r = 0; r < qb; ++r) {
      m[r] = neg_inf;
      l[r] = 0.0f;
      float* ar = acc + r * a.dv;
      for (int64_t c = 0; c < a.dv; ++c) ar[c] = 0.0f;
    }
    const bool transposed = qb >= kAttnTransposeMin;
    for (int64_t j0 = 0; j0 < k_end; j0 += KB) {
      const int64_t kb = std::min(KB, k_end - j0);
      // this block's keys and values as f32 rows: in place, or converted from f16 once for all
      // the block's queries
      const float* kj = a.k16 ? kf : a.k + j0 * a.k_stride;
      const float* vj = a.v16 ? vf : a.v + j0 * a.v_stride;
      const int64_t ks = a.k16 ? a.d : a.k_stride, vs = a.v16 ? a.dv : a.v_stride;
      if (a.k16) f16_rows_to_f32(a.k16 + j0 * a.k_stride, a.k_stride, kb, a.d, kf);
      if (a.v16) f16_rows_to_f32(a.v16 + j0 * a.v_stride, a.v_stride, kb, a.dv, vf);
      if (transposed) {
        key_block_transpose(kj, ks, kb, a.d, kt);
        for (int64_t c = 0; c < a.d; ++c)  // a partial last block: zero columns, never read garbage
          for (int64_t jj = kb; jj < KB; ++jj) kt[c * KB + jj] = 0.0f;
      }
      for (int64_t r = 0; r < qb; ++r) {
        const float* qr = a.q + (i0 + r) * a.q_stride;
        float* sr = s + r * KB;
        // keys j0 + jj with jj < visible are unmasked for this query
        const int64_t visible = a.causal_pos0 < 0 ? kb : std::clamp<int64_t>(a.causal_pos0 + i0 + r + 1 - j0, 0, kb);
        if (transposed) {
          scores_transposed(qr, kt, sr, a.d);
#pragma omp simd
          for (int64_t jj = 0; jj < kb; ++jj) sr[jj] *= a.scale;
        } else {
          for (int64_t jj = 0; jj < visible; ++jj) sr[jj] = dot_row(qr, kj + jj * ks, a.d) * a.scale;
        }
        for (int64_t jj = visible; jj < kb; ++jj) sr[jj] = neg_inf;
        const float m_new = std::max(m[r], max_row(sr, kb));
        // m_new is finite: key 0 is visible to every query, and block 0 comes first
        const float corr = exp_approx(m[r] - m_new);  // m[r] = -inf gives 0
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t jj = 0; jj < kb; ++jj) {
          const float p = exp_approx(sr[jj] - m_new);
          sr[jj] = p;
          sum += p;
        }
        l[r] = l[r] * corr + sum;
        m[r] = m_new;
        float* ar = acc + r * a.dv;
        if (corr != 1.0f) {
#pragma omp simd
          for (int64_t c = 0; c < a.dv; ++c) ar[c] *= corr;
        }
        pv_accumulate(sr, kb, vj, vs, ar, a.dv);
      }
    }
    for (int64_t r = 0; r < qb; ++r) {
      const float inv = 1.0f / l[r];
      const float* ar = acc + r * a.dv;
      float* o = a.out + (i0 + r) * a.out_stride;
#pragma omp simd
      for (int64_t c = 0; c < a.dv; ++c) o[c] = ar[c] * inv;
    }
  }
}

KernelsF32 kernels_f32_make(const char* name) {
  return KernelsF32{name,          silu_row,       gelu_row,      gelu_tanh_row,   softmax_row,
                    sum_row,       sum_sq_dev_row, normalize_row, scale_shift_row, attention_rows,
                    silu_backward_row};
}

}  // namespace
}  // namespace aigc::ops
