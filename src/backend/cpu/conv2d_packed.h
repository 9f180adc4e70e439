// PackedConv2d: a 2-d convolution layer whose weight is prepared ONCE (converted to the compute
// precision, reordered into the layout the fast kernel wants), for the UNet, the VAE and TAESD,
// which run the same convolutions at the same sizes every step.
//
//   PackedConv2d conv(w, &b, /*stride*/ 1, /*pad*/ 1, Precision::BF16);   // w [O, C, kh, kw]
//   conv.run(x, y);      // x [N, C, H, W] f32 -> y [N, O, Ho, Wo] f32, same as ops::conv2d
//
// Same contract and checks as ops::conv2d. The weight may be a view of a mapped file: the layer
// keeps only its own prepared copy, so the file can be unmapped.
// Precision: F32 (exact f32 products), BF16 (weights and activations rounded to bf16, f32
// accumulation: about twice as fast), Auto (BF16 for bf16 weights, else F32); precision() reports
// the resolved one. Fast layout: x and y NCHW contiguous work; channels-last views (an NHWC buffer
// seen as [N, C, H, W] through strides, e.g. t.permute({0, 3, 1, 2}) of a [N, H, W, C] tensor) are
// oneDNN's own layout and skip the per-call reorders (see bench/bench_image_ops.cpp for the cost).
// q8_0: the weight is kept as Q8_0 rows of C*k*k values (GGML's conv layout: one f16 scale per 32
// weights, 1.06 bytes per weight instead of 2 or 4) and dequantised before each call into one
// per-thread buffer, which is then packed for oneDNN: half the memory of a bf16 layer, one extra
// pass over the weight per call. Layers whose C*k*k is no multiple of 32 are packed as usual.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/cpu/precision.h"
#include "core/tensor.h"

namespace aigc::ops {

class PackedConv2d {
 public:
  // w: [O, C, kh, kw] f32/f16/bf16; bias: [O] f32/f16/bf16 or null (copied).
  PackedConv2d(const Tensor& w, const Tensor* bias, int stride, int pad, Precision precision = Precision::F32,
               bool q8_0 = false);
  PackedConv2d();
  ~PackedConv2d();
  PackedConv2d(PackedConv2d&&) noexcept;
  PackedConv2d& operator=(PackedConv2d&&) noexcept;

  void run(const Tensor& x, Tensor& y) const;

  int64_t in_channels() const { return c_; }
  int64_t out_channels() const { return o_; }
  int64_t kernel_size() const { return k_; }
  int stride() const { return stride_; }
  int pad() const { return pad_; }
  Precision precision() const { return precision_; }  // F32 or BF16 (Auto resolved)
  bool is_q8_0() const;  // the weight is kept in Q8_0
  // Output shape for an input [N, C, H, W].
  void output_size(int64_t h, int64_t w, int64_t& ho, int64_t& wo) const;
  size_t weight_bytes() const;  // memory the layer holds for its weight
  // Frees the calling thread's staging buffers (kept between calls, sized by the largest layer and
  // activation it ran: up to ~150 MB for SD 1.5's Q8_0 UNet), e.g. when a model is released.
  static void staging_release();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t o_ = 0, c_ = 0, k_ = 0;
  int stride_ = 1, pad_ = 0;
  Precision precision_ = Precision::F32;
};

}  // namespace aigc::ops
