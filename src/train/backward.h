// Backward kernels of the ops a Llama-style GPT uses, plus the two forward kernels the engine's
// ops do not provide in the form training needs (attention that keeps its probabilities, and the
// cross-entropy loss). Every kernel exists twice, as for the forward ops (backend/cpu/ops.h):
//   aigc::train::grad::ref::NAME  plain loops, one thread, double accumulation: the reference;
//   aigc::train::grad::NAME       the fast kernel (rows split over threads; linear via oneDNN
//                                 through ops::matmul).
// Conventions: every gradient output is ACCUMULATED (+=) so that a value used twice (the residual
// stream) sums its contributions; the caller zeroes gradients before a backward pass. Shapes are
// PyTorch order, all tensors f32 and contiguous unless stated. Letters: N rows (tokens, B*T),
// C features, K in-features, O out-features, V vocabulary, H query heads, G kv heads, D head dim.
#pragma once

#include <cstdint>
#include <span>

#include "backend/cpu/ops.h"
#include "core/tensor.h"

namespace aigc::train::grad {

// Causal self-attention over B sequences of T tokens with the scores materialised (not flash-style:
// fine at the small T of training here; probs costs H*B*T*T floats). The fast kernels run, per head,
// batched oneDNN matmuls over the B sequences (the masked upper triangle is computed and discarded:
// cheaper than small per-row products); the reference kernels are plain loops.
struct AttentionShape {
  int64_t B = 1, T = 1, H = 1, G = 1, D = 1;  // H % G == 0; query head h reads kv head h / (H / G)
  float scale = 0.0f;                          // 0: 1/sqrt(D)
};

// Up to this T the fast attention kernels loop over (sequence, kv head) pairs; above it they run
// oneDNN matmuls per head (whose call overhead the loops beat on tiny blocks).
constexpr int64_t kAttentionLoopMaxT = 16;
// Floats of scratch the attention kernels need: one [B, T, T] block and one [B, T, D] block.
inline int64_t attention_scratch_floats(const AttentionShape& s) { return s.B * s.T * (s.T + s.D); }

#define AIGC_GRAD_DECLARE                                                                            \
  /* y = x w^T: dx [N, K] += dy [N, O] w [O, K]; dw [O, K] += dy^T x. dx or dw may be null.          \
     scratch: f32, at least max(N*K, O*K) elements (the fast kernel computes there, then adds). */     \
  void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,    \
                       Tensor& scratch);                                                              \
  /* y = x * rstd * g, rstd = 1/sqrt(mean(x^2) + eps) per row: x, dy, dx [N, C]; g, dg [C] */          \
  void rms_norm_backward(const Tensor& x, const Tensor& g, float eps, const Tensor& dy, Tensor& dx,   \
                         Tensor& dg);                                                                 \
  /* rope is a rotation per pair: dx += R(-theta) dy. x, dy, dx [B, T, H, D], positions [T]. */      \
  void rope_backward(const Tensor& dy, std::span<const int32_t> positions, const ops::RopeParams& p, \
                     Tensor& dx);                                                                     \
  /* q [N, H*D], k/v [N, G*D] (N = B*T, token-major, as linear writes them); out [N, H*D];           \
     probs [H, B, T, T] (written; row i holds softmax over keys 0..i, zeros after). scratch: at      \
     least attention_scratch_floats(s) floats (the fast kernels' matmul outputs; ref ignores it). */ \
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s,  \
                         Tensor& out, Tensor& probs, Tensor& scratch);                                \
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,     \
                          const AttentionShape& s, const Tensor& dout, Tensor& dq, Tensor& dk,        \
                          Tensor& dv, Tensor& scratch);                                               \
  /* dx += dy * silu'(x) */                                                                           \
  void silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx);                                  \
  /* y = a * b (same shape): da += dy * b, db += dy * a. da or db may be null. */                     \
  void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);      \
  /* dx += dy (same shape) */                                                                         \
  void add_backward(const Tensor& dy, Tensor& dx);                                                    \
  /* dtable[ids[i]] += dy[i]: dtable [V, C], dy [N, C] */                                            \
  void embedding_backward(std::span<const int32_t> ids, const Tensor& dy, Tensor& dtable);            \
  /* mean over rows of -log softmax(logits)[target]: logits [N, V]; probs [N, V] written with        \
     softmax(logits) (the fast backward reads it; loss -log p[target], p clamped at FLT_MIN: exact     \
     to f32 rounding unless a target's logit trails the row's best by more than ~87). The reference  \
     computes log-sum-exp in double. A target outside [0, V) throws aigc::Error. */                   \
  float cross_entropy_forward(const Tensor& logits, std::span<const int32_t> targets, Tensor& probs);  \
  /* dlogits [N, V] += dloss * (softmax(logits) - onehot(target)) / N; the fast kernel takes the     \
     softmax from probs (the forward's), the reference recomputes it from logits */                  \
  void cross_entropy_backward(const Tensor& logits, const Tensor& probs, std::span<const int32_t> targets, \
                              float dloss, Tensor& dlogits);

AIGC_GRAD_DECLARE

namespace ref {
AIGC_GRAD_DECLARE
}  // namespace ref

#undef AIGC_GRAD_DECLARE

}  // namespace aigc::train::grad
