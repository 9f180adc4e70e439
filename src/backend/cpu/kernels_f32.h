// Row kernels of the f32 non-GEMM ops (activations, softmax, norms, attention), written once as
// plain loops that the compiler vectorises (kernels_f32_impl.h, `#pragma omp simd`) and compiled
// for three instruction sets: baseline x86-64 (kernels_f32.cpp), AVX2+FMA (avx2/) and AVX-512
// (avx512/). kernels_f32() picks the widest one this CPU runs, once.
//
// Accuracy, relative to the exact value, measured over x in [-20, 20] by
// tests/unit/test_ops_misc.cpp (KernelsF32.EveryBuildMatchesReference):
//   exp        2^n * Taylor-7 polynomial on |r| <= ln2/2 (truncation < 5e-9): ~2 ulp
//   silu       1.5e-7 everywhere
//   gelu       Numerical Recipes erfcc (fit error < 1.2e-7), tail without cancellation:
//              1e-6 for |x| < 3, growing as ~4e-8 x^2 in the negative tail (exp argument rounding)
//   gelu_tanh  x * sigmoid(2u): 7e-7 for |x| < 3, up to 1.1e-5 in the far negative tail
#pragma once

#include <cstdint>

namespace aigc::ops {

// One (batch, head) of attention: nq query rows against tk key/value rows, rows given by pointer
// and stride (in elements), elements within a row contiguous. Keys and values are f32 (k, v) or
// f16 (k16, v16 non-null: an f16 KV cache), each converted a key block at a time.
struct AttentionRows {
  const float* q; int64_t q_stride;      // [nq, d]
  const float* k; int64_t k_stride;      // [tk, d]
  const float* v; int64_t v_stride;      // [tk, dv]
  float* out; int64_t out_stride;        // [nq, dv]
  int64_t nq, tk, d, dv;
  float scale;
  int64_t causal_pos0;  // < 0: no mask; else query r sees keys j <= causal_pos0 + r
  const uint16_t* k16 = nullptr;  // f16 keys in place of k (k_stride elements apart)
  const uint16_t* v16 = nullptr;  // f16 values in place of v (v_stride elements apart)
};

// Attention processes kAttnQueryBlock queries at a time against kAttnKeyBlock keys: the largest
// score block held is [kAttnQueryBlock, kAttnKeyBlock]. With at least kAttnTransposeMin queries in
// a block, the key block is first transposed to [d, kAttnKeyBlock] so the scores of one query
// are vertical FMAs across keys; fewer queries (decode) take one dot product per key instead.
constexpr int64_t kAttnQueryBlock = 8;
constexpr int64_t kAttnKeyBlock = 64;
constexpr int64_t kAttnTransposeMin = 4;
// Floats of scratch the attention kernel needs for key width d and value width dv.
// (The last term: a key block and a value block converted from f16.)
inline int64_t attention_scratch_floats(int64_t d, int64_t dv) {
  return kAttnQueryBlock * kAttnKeyBlock + kAttnQueryBlock * (dv + 2) + d * kAttnKeyBlock + (d + dv) * kAttnKeyBlock;
}

struct KernelsF32 {
  const char* name;
  void (*silu)(const float* x, float* y, int64_t n);
  void (*gelu)(const float* x, float* y, int64_t n);
  void (*gelu_tanh)(const float* x, float* y, int64_t n);
  // y[0, n_valid) = softmax(x[0, n_valid)); y[n_valid, n) = 0 (masked). n_valid >= 1.
  void (*softmax)(const float* x, float* y, int64_t n, int64_t n_valid);
  double (*sum)(const float* x, int64_t n);
  double (*sum_sq_dev)(const float* x, int64_t n, float mean);  // sum of (x - mean)^2
  // y = (x - mean) * rstd * g + b; g, b may be null (1 and 0)
  void (*normalize)(const float* x, float* y, int64_t n, float mean, float rstd, const float* g,
                    const float* b);
  void (*scale_shift)(const float* x, float* y, int64_t n, float a, float b);  // y = x * a + b
  void (*attention)(const AttentionRows& a, float* scratch);  // scratch: attention_scratch_floats
  // dx += dy * silu'(x), silu'(x) = s (1 + x (1 - s)), s = sigmoid(x) (the trainer's backward)
  void (*silu_backward)(const float* x, const float* dy, float* dx, int64_t n);
};

KernelsF32 kernels_f32_generic();
KernelsF32 kernels_f32_avx2();    // call only when cpu_has_avx2()
KernelsF32 kernels_f32_avx512();  // call only when cpu_has_avx512()
const KernelsF32& kernels_f32();  // the widest this CPU runs

}  // namespace aigc::ops
