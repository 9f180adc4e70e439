// AVX-512 GEMV (see gemv.h). Compiled with AVX-512 flags; called only where the CPU has them.
// GCC 12 reports a false "may be used uninitialized" inside its own _mm512_reduce_add_ps.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "backend/cpu/gemv.h"
#include "core/cpu_features.h"

namespace aigc::ops::gemv {

namespace {

// Weight loaders: 16 elements starting at i widened to f32; the masked form reads only `m` lanes.
struct LoadF32 {
  static constexpr int kBytes = 4;
  static __m512 full(const void* w, int64_t i) { return _mm512_loadu_ps(static_cast<const float*>(w) + i); }
  static __m512 part(const void* w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + i);
  }
};
struct LoadF16 {
  static constexpr int kBytes = 2;
  static __m512 full(const void* w, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static __m512 part(const void* w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + i));
  }
};
struct LoadBF16 {  // bf16 is the top half of an f32: widen and shift
  static constexpr int kBytes = 2;
  static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 full(const void* w, int64_t i) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
  }
  static __m512 part(const void* w, int64_t i, __mmask16 m) {
    return widen(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + i));
  }
};

// Each 64 bytes of the weights prefetched as the quantised decode kernels prefetch theirs: into L1
// 4 KiB ahead where cpu_decode_prefetch_l1() (not on Zen 4), and into L2 16 KiB ahead where
// cpu_gemv_prefetch_l2() (not on Zen 5 or Zen 4). Without it one Zen 5 core's F16 token read at
// 82-90% of a plain read, with it at 95-100% (TinyLlama F16 tg, 1 thread, alternated: 15.4-16.5 ->
// 17.3-18.1 t/s). On Zen 4 any software prefetch slows it: 5632x2048 F16 rows from memory, 1 thread
// (bench_ops), both 23.5-24.5 GB/s, L2 alone 24.2-25.1, L1 alone 26.4-26.6, none 32.1-33.9.
constexpr int64_t kPrefetchL1 = 4096, kPrefetchL2 = 16384;
const bool kPrefetchToL2 = cpu_gemv_prefetch_l2(), kPrefetchToL1 = cpu_decode_prefetch_l1();

template <typename Load, int R>
void gemv_rows(const float* x, int64_t ldx, const char* w, int64_t ldw_bytes, int64_t k, int64_t n0, int64_t n1,
               float* y, int64_t ldy) {
  const bool l2 = kPrefetchToL2, l1 = kPrefetchToL1;
  for (int64_t n = n0; n < n1; ++n) {
    const void* wr = w + n * ldw_bytes;
    __m512 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {  // two independent FMA chains per row
      const char* p = static_cast<const char*>(wr) + i * Load::kBytes;
      for (int o = 0; o < 32 * Load::kBytes; o += 64) {
        if (l2) _mm_prefetch(p + kPrefetchL2 + o, _MM_HINT_T1);
        if (l1) _mm_prefetch(p + kPrefetchL1 + o, _MM_HINT_T0);
      }
      const __m512 w0 = Load::full(wr, i), w1 = Load::full(wr, i + 16);
      for (int r = 0; r < R; ++r) {
        acc0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + i), w0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + i + 16), w1, acc1[r]);
      }
    }
    for (; i < k; i += 16) {  // tail: masked loads never touch memory past the row
      const int64_t left = k - i;
      const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      const __m512 w0 = Load::part(wr, i, m);
      for (int r = 0; r < R; ++r) acc0[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + r * ldx + i), w0, acc0[r]);
    }
    for (int r = 0; r < R; ++r) y[r * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r]));
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

void gemv_f32_avx512(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                     int64_t n1, float* y, int64_t ldy) {
  gemv_dispatch<LoadF32>(x, ldx, rows, w, ldw * 4, k, n0, n1, y, ldy);
}
void gemv_f16_avx512(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                     int64_t n1, float* y, int64_t ldy) {
  gemv_dispatch<LoadF16>(x, ldx, rows, w, ldw * 2, k, n0, n1, y, ldy);
}
void gemv_bf16_avx512(const float* x, int64_t ldx, int rows, const void* w, int64_t ldw, int64_t k, int64_t n0,
                      int64_t n1, float* y, int64_t ldy) {
  gemv_dispatch<LoadBF16>(x, ldx, rows, w, ldw * 2, k, n0, n1, y, ldy);
}

}  // namespace aigc::ops::gemv
