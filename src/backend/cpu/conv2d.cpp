// conv2d: y[N, O, Ho, Wo] = x[N, C, H, W] (*) w[O, C, kh, kw] + bias[O], stride and symmetric
// padding equal on both axes; Ho = (H + 2 pad - kh) / stride + 1.
// Fast kernel: oneDNN convolution (its preferred layouts, reordered to and from NCHW per call).
// f16 / bf16 weights are widened to f32 once per call (exact; costs O(weights) time and a temporary
// copy), so the convolution itself always runs in f32.
#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"

namespace aigc::ops {

namespace {

onednn::Conv2dShape conv2d_check(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y, int stride,
                                 int pad) {
  AIGC_CHECK(x.type() == DType::F32 && x.ndim() == 4, "conv2d: x must be f32 [N, C, H, W], got {}", x.shape_str());
  AIGC_CHECK((w.type() == DType::F32 || w.type() == DType::F16 || w.type() == DType::BF16) && w.ndim() == 4,
             "conv2d: weight must be f32/f16/bf16 [O, C, kh, kw], got {}", w.shape_str());
  AIGC_CHECK(w.size(1) == x.size(1), "conv2d: x {} has {} channels but weight {} expects {}", x.shape_str(),
             x.size(1), w.shape_str(), w.size(1));
  AIGC_CHECK(stride >= 1 && pad >= 0, "conv2d: stride {} must be >= 1 and pad {} >= 0", stride, pad);
  onednn::Conv2dShape s{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0, stride, pad};
  AIGC_CHECK(s.kh >= 1 && s.kw >= 1 && s.h + 2 * pad >= s.kh && s.w + 2 * pad >= s.kw,
             "conv2d: kernel {}x{} larger than the padded input {} (pad {})", s.kh, s.kw, x.shape_str(), pad);
  s.ho = (s.h + 2 * pad - s.kh) / stride + 1;
  s.wo = (s.w + 2 * pad - s.kw) / stride + 1;
  if (bias)
    AIGC_CHECK(bias->type() == DType::F32 && bias->ndim() == 1 && bias->size(0) == s.o,
               "conv2d: bias must be f32 [{}], got {}", s.o, bias->shape_str());
  AIGC_CHECK(y.type() == DType::F32 && y.ndim() == 4 && y.size(0) == s.n && y.size(1) == s.o && y.size(2) == s.ho &&
                 y.size(3) == s.wo,
             "conv2d: y {} should be f32 [{}, {}, {}, {}] (x {}, weight {}, stride {}, pad {})", y.shape_str(), s.n,
             s.o, s.ho, s.wo, x.shape_str(), w.shape_str(), stride, pad);
  return s;
}

// Contiguous f32 version of t: t itself when it already is one, else a converted copy in `keep`.
const float* f32_contiguous(const Tensor& t, Tensor& keep) {
  if (t.type() == DType::F32 && t.is_contiguous()) return t.ptr<float>();
  keep = Tensor::empty(DType::F32, t.shape());
  copy(t, keep);
  return keep.ptr<float>();
}

}  // namespace

void ref::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int stride, int pad) {
  const onednn::Conv2dShape s = conv2d_check(x, w, bias, y, stride, pad);
  Tensor wf = Tensor::empty(DType::F32, w.shape());  // widened once: f16/bf16 values are exact in f32
  ref::copy(w, wf);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t o = 0; o < s.o; ++o)
      for (int64_t oy = 0; oy < s.ho; ++oy)
        for (int64_t ox = 0; ox < s.wo; ++ox) {
          float acc = bias ? bias->at<float>(o) : 0.0f;
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              const int64_t iy = oy * stride - pad + ky;
              if (iy < 0 || iy >= s.h) continue;
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t ix = ox * stride - pad + kx;
                if (ix < 0 || ix >= s.w) continue;
                acc += x.at<float>(n, c, iy, ix) * wf.at<float>(o, c, ky, kx);
              }
            }
          y.at<float>(n, o, oy, ox) = acc;
        }
}

void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int stride, int pad) {
  const onednn::Conv2dShape s = conv2d_check(x, w, bias, y, stride, pad);
  if (s.c == 0) {  // empty sum: bias only
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t o = 0; o < s.o; ++o)
        for (int64_t i = 0; i < s.ho * s.wo; ++i) y.ptr<float>()[(n * s.o + o) * s.ho * s.wo + i] = bias ? bias->at<float>(o) : 0.0f;
    return;
  }
  Tensor xk, wk, bk, yk;
  const float* xp = f32_contiguous(x, xk);
  const float* wp = f32_contiguous(w, wk);
  const float* bp = bias ? f32_contiguous(*bias, bk) : nullptr;
  const bool y_direct = y.is_contiguous();
  if (!y_direct) yk = Tensor::empty(DType::F32, y.shape());
  onednn::conv2d(s, xp, wp, bp, y_direct ? y.ptr<float>() : yk.ptr<float>());
  if (!y_direct) copy(yk, y);
}

}  // namespace aigc::ops
