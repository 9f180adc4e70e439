// AVX2 + FMA + F16C GEMV (see gemv.h), for CPUs without AVX-512. The last k % 8 elements of a
// row are done in scalar code so no load reads past the row.
#include <immintrin.h>

#include "backend/cpu/gemv.h"
#include "core/half.h"

namespace aigc::ops::gemv {

namespace {

struct LoadF32 {
  static constexpr int64_t kBytes = 4;
  static __m256 full(const void* w, int64_t i) { return _mm256_loadu_ps(static_cast<const float*>(w) + i); }
  static float one(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
};
struct LoadF16 {
  static constexpr int64_t kBytes = 2;
  static __m256 full(const void* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static float one(const void* w, int64_t i) { return f16_to_f32(static_cast<const uint16_t*>(w)[i]); }
};
struct LoadBF16 {
  static constexpr int64_t kBytes = 2;
  static __m256 full(const void* w, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float one(const void* w, int64_t i) { return bf16_to_f32(static_cast<const uint16_t*>(w)[i]); }
};

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <typename Load, int R>
void gemv_rows(const float* x, int64_t ldx, const char* w, int64_t ldw_bytes, int64_t k, int64_t n0, int64_t n1,
               float* y, int64_t ldy) {
  for (int64_t n = n0; n < n1; ++n) {
    const void* wr = w + n * ldw_bytes;
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      // Software prefetch once per 64-byte line, into L2 16 KiB ahead and into L1 4 KiB ahead, as
      // the quantised decode kernels do: decode streams the rows from memory, and the hardware
      // prefetcher alone left the F16 model's tokens at 75% of a plain read (Zen 3, 2 threads).
      if ((i * Load::kBytes) % 64 == 0) {
        const char* p = static_cast<const char*>(wr) + i * Load::kBytes;
        _mm_prefetch(p + 16384, _MM_HINT_T1);
        _mm_prefetch(p + 4096, _MM_HINT_T0);
      }
      const __m256 w0 = Load::full(wr, i), w1 = Load::full(wr, i + 8);
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + i), w0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + i + 8), w1, acc1[r]);
      }
    }
    for (; i + 8 <= k; i += 8) {
      const __m256 w0 = Load::full(wr, i);
      for (int r = 0; r < R; ++r) acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + i), w0, acc0[r]);
    }
    float tail[R] = {};
    for (; i < k; ++i) {
      const float wv = Load::one(wr, i);
      for (int r = 0; r < R; ++r) tail[r] += x[r * ldx + i] * wv;
    }
    for (int r = 0; r < R; ++r) y[r * ldy + n] = hsum(_mm256_add_ps(acc0[r], acc1[r])) + tail[r];
  }
}

template <typename Load>
void gemv_dispatch(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw_bytes, int64_t k, int64_t n0,
                   int64_t n1, float* y, int64_t ldy) {
  const char* wc = static_cast<const char*>(w);
  switch (rows) {
    case 1: return gemv_rows<Load, 1>(x, ldx, wc, ldw_bytes, k, n0, n1, y, ldy);
    case 2: return gemv_rows<Load, 2>(x, ldx, wc, ldw_bytes, k, n0, n1, y, ldy);
    case 3: return gemv_rows<Load, 3>(x, ldx, wc, ldw_bytes, k, n0, n1, y, ldy);
    default: return gemv_rows<Load, 4>(x, ldx, wc, ldw_bytes, k, n0, n1, y, ldy);
  }
}

}  // namespace

void gemv_f32_avx2(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                   int64_t n1, float* y, int64_t ldy) {
  gemv_dispatch<LoadF32>(x, ldx, rows, w, ldw * 4, k, n0, n1, y, ldy);
}
void gemv_f16_avx2(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                   int64_t n1, float* y, int64_t ldy) {
  gemv_dispatch<LoadF16>(x, ldx, rows, w, ldw * 2, k, n0, n1, y, ldy);
}
void gemv_bf16_avx2(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                    int64_t n1, float* y, int64_t ldy) {
  gemv_dispatch<LoadBF16>(x, ldx, rows, w, ldw * 2, k, n0, n1, y, ldy);
}

}  // namespace aigc::ops::gemv
