// CPU operators. Every op exists twice:
//   aigc::ops::ref::NAME  — the plain reference kernel: obvious loops, f32 accumulation, one
//                           thread. It stays forever; it is what the fast kernels are tested against.
//   aigc::ops::NAME       — the fast kernel (threads, SIMD chosen at run time, oneDNN for GEMM
//                           and convolution). Falls back to the reference where no fast path exists.
// Ops never allocate their output: the caller passes `out` with the right shape and type (from an
// Arena in hot loops). Shapes are PyTorch order. Activations are f32 unless stated; a wrong shape
// or type throws aigc::Error naming the op and the shapes.
#pragma once

#include <cstdint>
#include <span>

#include "backend/cpu/precision.h"
#include "core/tensor.h"

namespace aigc::ops {

struct AttentionParams {
  float scale = 0.0f;      // 0: 1/sqrt(head_dim)
  bool causal = false;     // query i (at absolute position q_offset + i) sees keys 0..q_offset+i
  int64_t q_offset = 0;    // absolute position of query 0 (decode with a KV cache: cache length)
  // BF16: q, k, v and the softmax weights rounded to bf16, products in oneDNN's bf16 matmul with
  // f32 accumulation (long sequences: the UNet and VAE). Needs AVX512-BF16, else runs as F32.
  // F32 and Auto: the f32 kernel.
  Precision precision = Precision::F32;
};

struct RopeParams {
  int64_t n_dims = 0;        // rotated leading dims of each head (0: all of head_dim)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;   // linear position scaling (positions multiplied by this)
  bool neox = false;         // false: pairs (2i, 2i+1) (GPT-J / llama.cpp "normal");
                             // true: pairs (i, i + n_dims/2) (GPT-NeoX, HF Llama "rotate_half")
  const float* freq_factors = nullptr;  // null, or [n_dims/2]: theta_i is divided by freq_factors[i]
                                        // (Llama 3.1 rope scaling: GGUF tensor rope_freqs.weight)
};

#define AIGC_OPS_DECLARE                                                                              \
  /* y[..., N] = x[..., K] · w[N, K]^T (+ bias[N]). x f32; w f32/f16/bf16/q4_0/q4_1/q5_0/q5_1/q8_0/  \
     q4_K/q5_K/q6_K; y f32. */                                                                         \
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);                       \
  /* out[b] = a[b] · bt[b] for 2-d or 3-d f32 a [B, M, K], b [B, K, N] (any strides), out [B, M, N] */ \
  void matmul(const Tensor& a, const Tensor& b, Tensor& out);                                         \
  /* x [N, C, H, W], w [O, C, kh, kw], bias [O] or null, y [N, O, Ho, Wo] */                \
  void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int stride, int pad);  \
  /* x [N, C, ...] normalised per (n, group); gamma/beta [C] */                                        \
  void group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps,    \
                  Tensor& y);                                                                         \
  /* over the last dim; gamma/beta [C] or null */                                                     \
  void layer_norm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps, Tensor& y);    \
  void rms_norm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y);                          \
  /* over the last dim; causal: x is [..., Tq, Tk] and key j > q_offset + i is masked */              \
  void softmax(const Tensor& x, Tensor& y, bool causal = false, int64_t q_offset = 0);                \
  /* q [B, Hq, Tq, D], k/v [B, Hkv, Tk, D(v)] f32 or f16, Hq % Hkv == 0; out [B, Hq, Tq, Dv] */     \
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,                      \
                 const AttentionParams& p = {});                                                      \
  void gelu(const Tensor& x, Tensor& y);      /* exact: x * Phi(x) */                                  \
  void gelu_tanh(const Tensor& x, Tensor& y); /* tanh approximation */                                \
  void silu(const Tensor& x, Tensor& y);                                                              \
  void relu(const Tensor& x, Tensor& y);      /* max(x, 0); NaN stays NaN as in PyTorch */             \
  void tanh(const Tensor& x, Tensor& y);                                                              \
  /* x [T, H, D] (or [B, T, H, D]), positions [T] int32 */                                            \
  void rope(const Tensor& x, std::span<const int32_t> positions, const RopeParams& p, Tensor& y);     \
  /* x [N, C, H, W] -> y [N, C, H*scale, W*scale] */                                                  \
  void upsample_nearest(const Tensor& x, int scale, Tensor& y);                                       \
  void concat(std::span<const Tensor> xs, int dim, Tensor& y);                                        \
  /* elementwise with PyTorch broadcasting of a and b to y's shape */                                 \
  void add(const Tensor& a, const Tensor& b, Tensor& y);                                              \
  void mul(const Tensor& a, const Tensor& b, Tensor& y);                                              \
  /* y[i, :] = table[ids[i], :]; table any convertible type; y f32 [n_ids, C] */                     \
  void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y);                       \
  /* copy with any strides (a permute/transpose view -> contiguous) and type conversion */            \
  void copy(const Tensor& src, Tensor& dst);

AIGC_OPS_DECLARE

namespace ref {
AIGC_OPS_DECLARE
}  // namespace ref

#undef AIGC_OPS_DECLARE

}  // namespace aigc::ops
