// PackedConv2d on oneDNN (onednn::PackedConv): the weight is converted to f32 once (f16/bf16 widen
// exactly), then reordered into oneDNN's blocked layout in the compute type; the original weight is
// not kept. Activations may be NCHW contiguous or channels-last (an NHWC buffer seen as NCHW
// through strides, e.g. x.permute({0, 3, 1, 2}) of a [N, H, W, C] tensor): channels-last skips the
// per-call layout reorders. Other strides are copied to contiguous first.
#include "backend/cpu/conv2d_packed.h"

#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"
#include "core/error.h"

namespace aigc::ops {

struct PackedConv2d::Impl {
  std::unique_ptr<onednn::PackedConv> conv;  // null when C == 0 (the output is the bias alone)
  std::vector<float> bias;                   // f32 [O] or empty (kept for the C == 0 case)
};

PackedConv2d::PackedConv2d() = default;
PackedConv2d::~PackedConv2d() = default;
PackedConv2d::PackedConv2d(PackedConv2d&&) noexcept = default;
PackedConv2d& PackedConv2d::operator=(PackedConv2d&&) noexcept = default;

namespace {

// NCHW contiguous or channels-last: the layouts oneDNN reads without a generic strided reorder.
bool conv_layout_ok(const Tensor& t) {
  if (t.is_contiguous()) return true;
  const int64_t es = static_cast<int64_t>(sizeof(float));
  const int64_t c = t.size(1), h = t.size(2), w = t.size(3);
  return t.stride_bytes(1) == es && t.stride_bytes(3) == c * es && t.stride_bytes(2) == w * c * es &&
         t.stride_bytes(0) == h * w * c * es;
}

void strides_of(const Tensor& t, int64_t s[4]) {
  for (int d = 0; d < 4; ++d) s[d] = t.stride_bytes(d) / static_cast<int64_t>(sizeof(float));
  // Size-1 dims: any stride is meaningless; make them what a dense layout would have so oneDNN's
  // descriptors compare equal (and cache keys match) whatever the caller's view said.
  const bool channels_last = !t.is_contiguous();
  const int64_t c = t.size(1), h = t.size(2), w = t.size(3);
  if (channels_last) {
    s[0] = h * w * c, s[1] = 1, s[2] = w * c, s[3] = c;
  } else {
    s[0] = c * h * w, s[1] = h * w, s[2] = w, s[3] = 1;
  }
}

}  // namespace

PackedConv2d::PackedConv2d(const Tensor& w, const Tensor* bias, int stride, int pad, Precision precision)
    : stride_(stride), pad_(pad) {
  AIGC_CHECK(w.ndim() == 4 && w.size(2) == w.size(3) &&
                 (w.type() == DType::F32 || w.type() == DType::F16 || w.type() == DType::BF16),
             "PackedConv2d: weight must be f32/f16/bf16 [O, C, k, k], got {}", w.shape_str());
  AIGC_CHECK(stride >= 1 && pad >= 0, "PackedConv2d: stride {} pad {}", stride, pad);
  AIGC_CHECK(w.size(0) >= 1 && w.size(2) >= 1, "PackedConv2d: empty weight {}", w.shape_str());
  o_ = w.size(0), c_ = w.size(1), k_ = w.size(2);
  if (precision == Precision::Auto) precision = w.type() == DType::BF16 ? Precision::BF16 : Precision::F32;
  precision_ = precision;
  impl_ = std::make_unique<Impl>();
  if (bias) {
    AIGC_CHECK(bias->ndim() == 1 && bias->size(0) == o_ &&
                   (bias->type() == DType::F32 || bias->type() == DType::F16 || bias->type() == DType::BF16),
               "PackedConv2d: bias {} should be f32/f16/bf16 [{}]", bias->shape_str(), o_);
    impl_->bias.resize(o_);
    Tensor bv = Tensor::view_of(DType::F32, std::array<int64_t, 1>{o_}, impl_->bias.data());
    copy(*bias, bv);
  }
  if (c_ == 0) return;
  Tensor wf = Tensor::empty(DType::F32, w.shape());  // temporary: freed when packing is done
  copy(w, wf);
  impl_->conv = std::make_unique<onednn::PackedConv>(
      wf.ptr<float>(), bias ? impl_->bias.data() : nullptr,
      precision == Precision::BF16 ? onednn::Type::BF16 : onednn::Type::F32, o_, c_, k_, k_, stride, pad);
}

void PackedConv2d::output_size(int64_t h, int64_t w, int64_t& ho, int64_t& wo) const {
  ho = (h + 2 * pad_ - k_) / stride_ + 1;
  wo = (w + 2 * pad_ - k_) / stride_ + 1;
}

size_t PackedConv2d::weight_bytes() const {
  if (!impl_) return 0;
  return impl_->conv ? impl_->conv->bytes() : impl_->bias.size() * sizeof(float);
}

void PackedConv2d::run(const Tensor& x, Tensor& y) const {
  AIGC_CHECK(impl_ != nullptr, "PackedConv2d: run on an empty layer");
  AIGC_CHECK(x.type() == DType::F32 && x.ndim() == 4 && x.size(1) == c_,
             "PackedConv2d: x must be f32 [N, {}, H, W], got {}", c_, x.shape_str());
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  AIGC_CHECK(h + 2 * pad_ >= k_ && w + 2 * pad_ >= k_, "PackedConv2d: kernel {}x{} larger than the padded input {} (pad {})",
             k_, k_, x.shape_str(), pad_);
  int64_t ho = 0, wo = 0;
  output_size(h, w, ho, wo);
  AIGC_CHECK(y.type() == DType::F32 && y.ndim() == 4 && y.size(0) == n && y.size(1) == o_ && y.size(2) == ho &&
                 y.size(3) == wo,
             "PackedConv2d: y {} should be f32 [{}, {}, {}, {}] (x {}, kernel {}, stride {}, pad {})", y.shape_str(), n,
             o_, ho, wo, x.shape_str(), k_, stride_, pad_);
  if (n == 0 || ho == 0 || wo == 0) return;
  if (!impl_->conv) {  // C == 0: an empty sum, bias only
    for (int64_t b = 0; b < n; ++b)
      for (int64_t o = 0; o < o_; ++o)
        for (int64_t i = 0; i < ho; ++i)
          for (int64_t j = 0; j < wo; ++j) y.at<float>(b, o, i, j) = impl_->bias.empty() ? 0.0f : impl_->bias[o];
    return;
  }
  Tensor xk, yk;
  const Tensor* xp = &x;
  Tensor* yp = &y;
  if (!conv_layout_ok(x)) {
    xk = Tensor::empty(DType::F32, x.shape());
    copy(x, xk);
    xp = &xk;
  }
  if (!conv_layout_ok(y)) {
    yk = Tensor::empty(DType::F32, y.shape());
    yp = &yk;
  }
  int64_t xs[4], ys[4];
  strides_of(*xp, xs);
  strides_of(*yp, ys);
  impl_->conv->run(xp->ptr<float>(), xs, yp->ptr<float>(), ys, n, h, w);
  if (yp != &y) copy(yk, y);
}

}  // namespace aigc::ops
