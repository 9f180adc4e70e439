// Backward kernels (and the few forward kernels training needs in another form than the engine's
// ops) of the ops a small text-conditioned UNet uses: conv2d, group_norm, layer_norm, nearest x2
// upsampling, concatenation along channels, a per-(sample, channel) embedding added to feature
// maps, NCHW <-> token transposes, non-causal self-/cross-attention with heads, and the MSE loss.
// Same conventions as train/backward.h: every gradient is ACCUMULATED (+=); f32 contiguous
// tensors; PyTorch shape order; grad::ref:: plain loops in double, grad:: the fast kernels (rows or
// channels over threads; conv2d through oneDNN's convolution primitives over the whole batch).
// Letters: N samples, C/O in/out channels, H W height width, S = H*W, Tq Tk query/key tokens,
// E = heads * D features per token.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace aigc::train::grad {

// Floats of scratch conv2d_backward needs: none now (the fast kernel runs oneDNN's batch-level
// backward primitives, whose layout buffers live with them; the reference needs none). Kept so
// callers size the argument the same way; returns 1.
int64_t conv2d_scratch_floats(const Tensor& x, const Tensor& w, int stride, int pad);

struct MhaShape {
  int64_t B = 1, Tq = 1, Tk = 1, H = 1, D = 1;  // q [B, Tq, H*D], k/v [B, Tk, H*D]
  float scale = 0.0f;                           // 0: 1/sqrt(D)
};

#define AIGC_GRAD_IMAGE_DECLARE                                                                      \
  /* y = x w^T + b: db [O] += sum over rows of dy [N, O] */                                           \
  void bias_backward(const Tensor& dy, Tensor& db);                                                   \
  /* y [N, O, Ho, Wo] = conv2d(x, w, b or null, stride, pad): the fast one through oneDNN's         \
     training convolution (layouts and buffers cached per shape), the reference ops::ref::conv2d */  \
  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, int stride, int pad); \
  /* y = conv2d(x, w, b, stride, pad): x [N, C, H, W], w [O, C, kh, kw], dy [N, O, Ho, Wo];          \
     dx, dw, db ([O]) each may be null. scratch: conv2d_scratch_floats() floats. */                  \
  void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int stride, int pad,       \
                       Tensor* dx, Tensor* dw, Tensor* db, Tensor& scratch);                          \
  /* y = group_norm(x, gamma, beta, groups, eps): x, dy, dx [N, C, ...]; dgamma, dbeta [C] */          \
  void group_norm_backward(const Tensor& x, const Tensor& gamma, int groups, float eps,               \
                           const Tensor& dy, Tensor& dx, Tensor& dgamma, Tensor& dbeta);              \
  /* y = layer_norm(x, gamma, beta, eps) over the last dim: x, dy, dx [..., C]; dgamma, dbeta [C] */ \
  void layer_norm_backward(const Tensor& x, const Tensor& gamma, float eps, const Tensor& dy,        \
                           Tensor& dx, Tensor& dgamma, Tensor& dbeta);                                \
  /* y = upsample_nearest(x, 2): dy [N, C, 2H, 2W] -> dx [N, C, H, W] */                               \
  void upsample_nearest2_backward(const Tensor& dy, Tensor& dx);                                      \
  /* y = cat([a, b], dim 1): dy [N, Ca+Cb, ...] -> da [N, Ca, ...], db [N, Cb, ...] */                  \
  void concat_channels_backward(const Tensor& dy, Tensor& da, Tensor& db);                           \
  /* y = x + e[:, :, None, None]: x [N, C, H, W], e [N, C]; de [N, C] += sum over H, W of dy          \
     (dx += dy is add_backward) */                                                                    \
  void add_channel_forward(const Tensor& x, const Tensor& e, Tensor& y);                             \
  void add_channel_backward(const Tensor& dy, Tensor& de);                                           \
  /* y [N, B, A] = x [N, A, B] transposed (NCHW [N, C, S] <-> tokens [N, S, C]); forward writes y,     \
     backward accumulates dx [N, A, B] from dy [N, B, A] */                                           \
  void transpose12_forward(const Tensor& x, Tensor& y);                                              \
  void transpose12_backward(const Tensor& dy, Tensor& dx);                                           \
  /* non-causal multi-head attention, scores materialised: q [B, Tq, H*D], k, v [B, Tk, H*D],          \
     out [B, Tq, H*D], probs [B, H, Tq, Tk] (written by the forward, read by the backward). Fast:     \
     a (sequence, head) per task; >= 32 keys through oneDNN GEMMs, fewer through loops. */            \
  void mha_forward(const Tensor& q, const Tensor& k, const Tensor& v, const MhaShape& s, Tensor& out, \
                   Tensor& probs);                                                                    \
  void mha_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,          \
                    const MhaShape& s, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv);       \
  /* mean((pred - target)^2) over all elements; backward: dpred += dloss * 2 (pred - target) / n */   \
  float mse_forward(const Tensor& pred, const Tensor& target);                                       \
  void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor& dpred);

AIGC_GRAD_IMAGE_DECLARE

namespace ref {
AIGC_GRAD_IMAGE_DECLARE
}  // namespace ref

#undef AIGC_GRAD_IMAGE_DECLARE

}  // namespace aigc::train::grad
