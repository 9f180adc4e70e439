// PackedLinear: a linear layer whose weight is reordered ONCE into the blocked layout oneDNN's
// matmul prefers, so repeated prefill-size calls pay no per-call weight reorder or conversion.
//
//   PackedLinear fc(w, &b);          // w [N, K] f32/f16/bf16 (e.g. a view of a mapped model file)
//   fc.run(x, y);                    // y[..., N] = x[..., K] · w^T + b, same as ops::linear
//
// Rows: M <= gemv::kMaxRows runs the GEMV on the original weight (decode streams it once); larger
// M runs oneDNN on the packed copy, in chunks of max_m rows. Non-contiguous x or y: ops::linear. Packed type: f32 for f32 and f16
// weights (f16 widened exactly; the packed copy is twice the file size), bf16 for bf16 weights
// (activations rounded to bf16, as ops::linear does at M > 4). Quantised weights are not packed:
// run() forwards to ops::linear. The original weight must stay alive; PackedLinear holds a view
// of it (sharing its owner).
#pragma once

#include <cstdint>
#include <memory>

#include "backend/cpu/precision.h"
#include "core/tensor.h"

namespace aigc::onednn {
class PackedWeight;
}

namespace aigc::ops {

class PackedLinear {
 public:
  // precision: Auto as described above; F32 packs f32 (bf16 widened); BF16 packs bf16 (f32 and f16
  // rounded) and rounds activations to bf16 (M > gemv::kMaxRows only; small M runs the GEMV on w).
  // keep_original false (f32/f16/bf16 weights only): the layer drops its view of w (and copies the
  // bias) once packed, so a mapped file can be released; every M then runs on the packed copy.
  PackedLinear(const Tensor& w, const Tensor* bias, int64_t max_m = 512, Precision precision = Precision::Auto,
               bool keep_original = true);
  ~PackedLinear();
  PackedLinear(PackedLinear&&) noexcept;
  PackedLinear& operator=(PackedLinear&&) noexcept;

  // Same contract and checks as ops::linear(x, w, bias, y).
  void run(const Tensor& x, Tensor& y) const;

  int64_t in_features() const { return k_; }
  int64_t out_features() const { return n_; }
  size_t packed_bytes() const;  // 0 when not packed (quantised weights)

 private:
  void pack(const Tensor& w, const Tensor* bias, int64_t max_m, Precision precision);
  void packed_run(const Tensor& x, Tensor& y) const;

  Tensor w_, bias_;  // w_ undefined when the original was dropped
  int64_t n_ = 0, k_ = 0;
  bool has_bias_ = false;
  std::unique_ptr<onednn::PackedWeight> packed_;
};

}  // namespace aigc::ops
