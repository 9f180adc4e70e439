// First version: keeps an f32 copy of the weight and runs ops::conv2d (exact for every precision;
// the bf16 fast path comes with the oneDNN packed implementation).
#include "backend/cpu/conv2d_packed.h"

#include "backend/cpu/ops.h"
#include "core/error.h"

namespace aigc::ops {

struct PackedConv2d::Impl {
  Tensor w;     // f32 [O, C, kh, kw]
  Tensor b;     // f32 [O] or undefined
  bool has_bias = false;
};

PackedConv2d::PackedConv2d() = default;
PackedConv2d::~PackedConv2d() = default;
PackedConv2d::PackedConv2d(PackedConv2d&&) noexcept = default;
PackedConv2d& PackedConv2d::operator=(PackedConv2d&&) noexcept = default;

PackedConv2d::PackedConv2d(const Tensor& w, const Tensor* bias, int stride, int pad, Precision precision)
    : stride_(stride), pad_(pad), precision_(precision) {
  AIGC_CHECK(w.ndim() == 4 && w.size(2) == w.size(3) &&
                 (w.type() == DType::F32 || w.type() == DType::F16 || w.type() == DType::BF16),
             "PackedConv2d: weight must be f32/f16/bf16 [O, C, k, k], got {}", w.shape_str());
  AIGC_CHECK(stride >= 1 && pad >= 0, "PackedConv2d: stride {} pad {}", stride, pad);
  o_ = w.size(0), c_ = w.size(1), k_ = w.size(2);
  impl_ = std::make_unique<Impl>();
  impl_->w = Tensor::empty(DType::F32, w.shape());
  copy(w, impl_->w);
  if (bias) {
    AIGC_CHECK(bias->ndim() == 1 && bias->size(0) == o_, "PackedConv2d: bias {} should be [{}]", bias->shape_str(), o_);
    impl_->b = Tensor::empty(DType::F32, {o_});
    copy(*bias, impl_->b);
    impl_->has_bias = true;
  }
}

void PackedConv2d::output_size(int64_t h, int64_t w, int64_t& ho, int64_t& wo) const {
  ho = (h + 2 * pad_ - k_) / stride_ + 1;
  wo = (w + 2 * pad_ - k_) / stride_ + 1;
}

size_t PackedConv2d::weight_bytes() const { return impl_ ? impl_->w.nbytes() + (impl_->has_bias ? impl_->b.nbytes() : 0) : 0; }

void PackedConv2d::run(const Tensor& x, Tensor& y) const {
  AIGC_CHECK(impl_ != nullptr, "PackedConv2d: run on an empty layer");
  conv2d(x, impl_->w, impl_->has_bias ? &impl_->b : nullptr, y, stride_, pad_);
}

}  // namespace aigc::ops
