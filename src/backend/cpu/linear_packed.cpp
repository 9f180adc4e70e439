#include "backend/cpu/linear_packed.h"

#include "backend/cpu/gemv.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"

namespace aigc::ops {

PackedLinear::PackedLinear(const Tensor& w, const Tensor* bias, int64_t max_m, Precision precision, bool keep_original)
    : w_(w) {
  pack(w, bias, max_m, precision);
  if (!keep_original && packed_) {
    w_ = Tensor();
    if (has_bias_) {  // the bias may be a view of the same file
      Tensor b = Tensor::empty(DType::F32, {n_});
      copy(bias_, b);
      bias_ = b;
    }
  }
}

void PackedLinear::pack(const Tensor& w, const Tensor* bias, int64_t max_m, Precision precision) {
  AIGC_CHECK(w.ndim() == 2 && w.is_contiguous(), "PackedLinear: weight must be a contiguous [N, K] tensor, got {}",
             w.shape_str());
  AIGC_CHECK(max_m > gemv::kMaxRows, "PackedLinear: max_m {} must exceed {}", max_m, gemv::kMaxRows);
  if (bias) {
    AIGC_CHECK(bias->type() == DType::F32 && bias->ndim() == 1 && bias->size(0) == w.size(0) && bias->is_contiguous(),
               "PackedLinear: bias must be contiguous f32 [{}], got {}", w.size(0), bias->shape_str());
    bias_ = *bias;
    has_bias_ = true;
  }
  const int64_t N = w.size(0), K = w.size(1);
  n_ = N, k_ = K;
  if (N == 0 || K == 0) return;
  const bool floating = w.type() == DType::F32 || w.type() == DType::F16 || w.type() == DType::BF16;
  if (floating && precision == Precision::BF16 && w.type() != DType::BF16) {
    Tensor wb = Tensor::empty(DType::BF16, {N, K});  // rounded to nearest even
    copy(w, wb);
    packed_ = std::make_unique<onednn::PackedWeight>(wb.data(), onednn::Type::BF16, N, K, K, max_m);
    return;
  }
  if (w.type() == DType::BF16 && precision == Precision::F32) {
    Tensor wf = Tensor::empty(DType::F32, {N, K});
    copy(w, wf);
    packed_ = std::make_unique<onednn::PackedWeight>(wf.data(), onednn::Type::F32, N, K, K, max_m);
    return;
  }
  switch (w.type()) {
    case DType::F32:
      packed_ = std::make_unique<onednn::PackedWeight>(w.data(), onednn::Type::F32, N, K, K, max_m);
      break;
    case DType::BF16:
      packed_ = std::make_unique<onednn::PackedWeight>(w.data(), onednn::Type::BF16, N, K, K, max_m);
      break;
    case DType::F16: {  // oneDNN 2.6 has no f16 matmul here: widen (exactly) to f32, then pack
      Tensor wf = Tensor::empty(DType::F32, {N, K});
      copy(w, wf);
      packed_ = std::make_unique<onednn::PackedWeight>(wf.data(), onednn::Type::F32, N, K, K, max_m);
      break;
    }
    default: break;  // quantised: ops::linear's own kernels
  }
}

PackedLinear::~PackedLinear() = default;
PackedLinear::PackedLinear(PackedLinear&&) noexcept = default;
PackedLinear& PackedLinear::operator=(PackedLinear&&) noexcept = default;

size_t PackedLinear::packed_bytes() const { return packed_ ? packed_->bytes() : 0; }

void PackedLinear::run(const Tensor& x, Tensor& y) const {
  const Tensor* b = has_bias_ ? &bias_ : nullptr;
  const int64_t M = x.ndim() >= 1 ? x.rows() : 0;
  const bool original = w_.ndim() == 2;
  if (original && (!packed_ || M <= gemv::kMaxRows || !x.is_contiguous() || !y.is_contiguous())) {
    linear(x, w_, b, y);  // checks shapes too
    return;
  }
  if (!x.is_contiguous() || !y.is_contiguous()) {  // packed only: make both contiguous
    AIGC_CHECK(x.ndim() >= 1 && y.ndim() == x.ndim(), "PackedLinear: x {} / y {} do not match", x.shape_str(),
               y.shape_str());
    Tensor xc = Tensor::empty(DType::F32, x.shape());
    copy(x, xc);
    Tensor yc = Tensor::empty(DType::F32, y.shape());
    packed_run(xc, yc);
    copy(yc, y);
    return;
  }
  packed_run(x, y);
}

void PackedLinear::packed_run(const Tensor& x, Tensor& y) const {
  const Tensor* b = has_bias_ ? &bias_ : nullptr;
  const int64_t M = x.ndim() >= 1 ? x.rows() : 0;
  const int64_t N = n_, K = k_;
  AIGC_CHECK(x.type() == DType::F32 && x.ndim() >= 1 && x.size(-1) == K,
             "PackedLinear: x {} does not match weight [{}, {}]", x.shape_str(), N, K);
  bool shape_ok = y.type() == DType::F32 && y.ndim() == x.ndim() && y.size(-1) == N;
  for (int d = 0; shape_ok && d + 1 < x.ndim(); ++d) shape_ok = y.size(d) == x.size(d);
  AIGC_CHECK(shape_ok, "PackedLinear: y {} should be f32 {} with last dim {}", y.shape_str(), x.shape_str(), N);
  if (M == 0) return;
  packed_->run(x.ptr<float>(), M, K, b ? b->ptr<float>() : nullptr, y.ptr<float>(), N);
}

}  // namespace aigc::ops
