// PackedConv2d on oneDNN (onednn::PackedConv): the weight is converted to f32 once (f16/bf16 widen
// exactly), then reordered into oneDNN's blocked layout in the compute type; the original weight is
// not kept. Activations may be NCHW contiguous (transposed to and from NHWC per call, below) or
// channels-last (an NHWC buffer seen as NCHW through strides, e.g. x.permute({0, 3, 1, 2}) of a
// [N, H, W, C] tensor: no transposes). Other strides are copied to contiguous first. The NHWC
// staging buffers are per thread and kept (sized by the largest activation seen; Staging).
#include "backend/cpu/conv2d_packed.h"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <vector>

#include "backend/cpu/linear_panel.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

struct PackedConv2d::Impl {
  std::unique_ptr<onednn::PackedConv> conv;  // null when C == 0 (the output is the bias alone)
  std::vector<float> bias;                   // f32 [O] or empty (kept for the C == 0 case)
  std::vector<BlockQ8_0> q8;                 // Q8_0 weight: O rows of C*k*k / 32 blocks, or empty
};

PackedConv2d::PackedConv2d() = default;
PackedConv2d::~PackedConv2d() = default;
PackedConv2d::PackedConv2d(PackedConv2d&&) noexcept = default;
PackedConv2d& PackedConv2d::operator=(PackedConv2d&&) noexcept = default;

namespace {

// A per-thread staging buffer: anonymous memory of its own, replaced (not copied) when a larger
// one is asked for, so that growing leaves no hole in the heap (a std::vector below glibc's mmap
// threshold did: freed, its pages stayed resident) and is given back whole when the thread ends.
class Staging {
 public:
  Staging() = default;
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging() { release(); }
  void release() {
    if (p_) ::munmap(p_, cap_);
    p_ = nullptr, cap_ = 0;
  }
  void* get(size_t bytes) {
    if (bytes > cap_) {
      release();
      const size_t huge = size_t{2} << 20;
      const size_t cap = (bytes + huge - 1) / huge * huge;
      void* p = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED)
        error_throw(fmt::format("out of memory allocating {} bytes of convolution staging", bytes), "PackedConv2d");
      ::madvise(p, cap, MADV_HUGEPAGE);  // advice only
      p_ = p, cap_ = cap;
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

// The calling thread's: NHWC input in the packed type, NHWC f32 output, and for Q8_0 layers the
// dequantised OIHW weight and its packed copy.
struct ThreadStaging {
  Staging xs, ys, wd, wp;
};
ThreadStaging& thread_staging() {
  thread_local ThreadStaging s;
  return s;
}

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

// ---- NCHW <-> NHWC for contiguous activations ----------------------------------------------------
// The primitive runs on NHWC. For NCHW tensors our own 16x16 register transposes (with the bf16
// rounding fused) replace oneDNN's generic reorders: overhead vs channels-last at one thread went
// from 5.4 to 2.8 ms (UNet 320 x 64 x 64 3x3, 7% -> 4%) and 85 to ~50 ms (VAE 128 x 512 x 512,
// 20% -> ~14%); bench_image_ops packed_bf16 vs packed_bf16_cl shows what is left.

// GCC 12's AVX-512 headers trip -Wuninitialized in callers (_mm512_undefined_ps); not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define AIGC_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// r[i] holds row i of a 16x16 f32 tile; afterwards r[j] holds column j.
AIGC_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + k], 128-bit lane l: column 4l + k of rows 4i .. 4i + 3
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int k = 0; k < 4; ++k) {  // 4x4 transpose of 128-bit lanes
    const __m512 v0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44), v1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44),
                 v3 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xEE);
    r[k] = _mm512_shuffle_f32x4(v0, v2, 0x88);
    r[4 + k] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
    r[8 + k] = _mm512_shuffle_f32x4(v1, v3, 0x88);
    r[12 + k] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
  }
}

// dst [cols, rows] = src [rows, cols]^T for column tiles [tc0, tc1) of one image (row strides are
// the widths), f32 -> f32 or f32 -> bf16; whole 16x16 tiles in registers, edges element by element.
template <bool kBf16>
AIGC_AVX512 void transpose_tiles(const float* src, int64_t rows, int64_t cols, void* dst_v, int64_t tc0,
                                 int64_t tc1) {
  float* df = static_cast<float*>(dst_v);
  uint16_t* db = static_cast<uint16_t*>(dst_v);
  // Groups of kGroup column tiles per pass down the rows: each source row is then read in runs of
  // kGroup * 64 bytes (far-apart rows, as the channel planes of a 512x512 image, prefetch better).
  constexpr int64_t kGroup = 8;
  for (int64_t tg = tc0; tg < tc1; tg += kGroup)
    for (int64_t r0 = 0; r0 < rows; r0 += 16)
      for (int64_t tc = tg; tc < std::min(tc1, tg + kGroup); ++tc) {
      const int64_t c0 = tc * 16, cn = std::min<int64_t>(16, cols - c0);
      const int64_t rn = std::min<int64_t>(16, rows - r0);
      if (cn < 16 || rn < 16) {
        for (int64_t c = c0; c < c0 + cn; ++c)
          for (int64_t r = r0; r < r0 + rn; ++r) {
            if constexpr (kBf16) db[c * rows + r] = bf16_from_f32(src[r * cols + c]);
            else df[c * rows + r] = src[r * cols + c];
          }
        continue;
      }
      __m512 v[16];
      for (int i = 0; i < 16; ++i) v[i] = _mm512_loadu_ps(src + (r0 + i) * cols + c0);
      transpose16(v);
      for (int j = 0; j < 16; ++j) {
        if constexpr (kBf16) {
          const __m256bh h = _mm512_cvtneps_pbh(v[j]);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(db + (c0 + j) * rows + r0), reinterpret_cast<const __m256i&>(h));
        } else {
          _mm512_storeu_ps(df + (c0 + j) * rows + r0, v[j]);
        }
      }
      }
}

// The whole image, column tiles split over threads (a task writes whole stretches of dst rows).
template <bool kBf16>
void transpose_image(const float* src, int64_t rows, int64_t cols, void* dst) {
  parallel_for((cols + 15) / 16, [&](int64_t t0, int64_t t1) { transpose_tiles<kBf16>(src, rows, cols, dst, t0, t1); });
}

}  // namespace

PackedConv2d::PackedConv2d(const Tensor& w, const Tensor* bias, int stride, int pad, Precision precision,
                           bool q8_0)
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
  const int64_t row = c_ * k_ * k_;
  const bool q8 = q8_0 && row % kQK8_0 == 0;
  if (q8) {  // Q8_0 rows (the reference quantiser: what GGML and the tests' twin compute)
    const int64_t nb = row / kQK8_0;
    impl_->q8.resize(static_cast<size_t>(o_ * nb));
    parallel_for(o_, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) quantize_row_q8_0_ref(wf.ptr<float>() + o * row, impl_->q8.data() + o * nb, row);
    });
  }
  impl_->conv = std::make_unique<onednn::PackedConv>(
      q8 ? nullptr : wf.ptr<float>(), bias ? impl_->bias.data() : nullptr,
      precision == Precision::BF16 ? onednn::Type::BF16 : onednn::Type::F32, o_, c_, k_, k_, stride, pad);
}

bool PackedConv2d::is_q8_0() const { return impl_ && !impl_->q8.empty(); }

void PackedConv2d::staging_release() {
  ThreadStaging& s = thread_staging();
  for (Staging* b : {&s.xs, &s.ys, &s.wd, &s.wp}) b->release();
}

void PackedConv2d::output_size(int64_t h, int64_t w, int64_t& ho, int64_t& wo) const {
  ho = (h + 2 * pad_ - k_) / stride_ + 1;
  wo = (w + 2 * pad_ - k_) / stride_ + 1;
}

size_t PackedConv2d::weight_bytes() const {
  if (!impl_) return 0;
  return (impl_->conv ? impl_->conv->bytes() : impl_->bias.size() * sizeof(float)) +
         impl_->q8.size() * sizeof(BlockQ8_0);
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
  const bool q8 = !impl_->q8.empty();
  // Q8_0: the weight dequantised (OIHW, the compute type) into a per-thread buffer.
  Staging& wd_buf = thread_staging().wd;  // OIHW in the compute type
  const int64_t row = c_ * k_ * k_, nb = row / kQK8_0;
  auto dequantize = [&](bool bf16) -> void* {
    void* wd = wd_buf.get(static_cast<size_t>(o_ * row) * (bf16 ? 2 : 4));
    const BlockQ8_0* q = impl_->q8.data();
    uint16_t* wb = static_cast<uint16_t*>(wd);
    float* wf = static_cast<float*>(wd);
    parallel_for(o_, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        if (bf16) row_to_bf16(DType::Q8_0, q + o * nb, wb + o * row, row);
        else dequantize_row_q8_0_ref(q + o * nb, wf + o * row, row);
      }
    });
    return wd;
  };
  // NCHW in and out on AVX-512: our transposes around the NHWC primitive (see above).
  if (x.is_contiguous() && y.is_contiguous() && cpu_has_avx512_bf16()) {
    const bool bf16 = precision_ == Precision::BF16;
    const void* wp = nullptr;  // the packed weight of a Q8_0 layer
    if (q8) {
      Staging& wp_buf = thread_staging().wp;
      wp = wp_buf.get(impl_->conv->packed_bytes());
      impl_->conv->pack_into(dequantize(bf16), bf16 ? onednn::Type::BF16 : onednn::Type::F32, const_cast<void*>(wp));
    }
    const int64_t px = h * w, py = ho * wo;
    Staging& xs_buf = thread_staging().xs;
    Staging& ys_buf = thread_staging().ys;
    uint16_t* xs = static_cast<uint16_t*>(xs_buf.get(static_cast<size_t>(n * px * c_) * (bf16 ? 2 : 4)));
    float* ys = static_cast<float*>(ys_buf.get(static_cast<size_t>(n * py * o_) * sizeof(float)));
    for (int64_t b = 0; b < n; ++b) {
      const float* xb = x.ptr<float>() + b * c_ * px;  // [C, HW] -> [HW, C]
      if (bf16) transpose_image<true>(xb, c_, px, xs + b * px * c_);
      else transpose_image<false>(xb, c_, px, xs + 2 * b * px * c_);
    }
    if (q8) impl_->conv->run_nhwc(xs, ys, n, h, w, wp);
    else impl_->conv->run_nhwc(xs, ys, n, h, w);
    for (int64_t b = 0; b < n; ++b)  // [HoWo, O] -> [O, HoWo]
      transpose_image<false>(ys + b * py * o_, py, o_, y.ptr<float>() + b * o_ * py);
    return;
  }
  if (q8) {  // other layouts or CPUs: the f32 weight and the plain convolution
    const std::array<int64_t, 4> shape{o_, c_, k_, k_};
    const Tensor wt = Tensor::view_of(DType::F32, shape, dequantize(false));
    const std::array<int64_t, 1> bshape{o_};
    const Tensor bt = impl_->bias.empty() ? Tensor() : Tensor::view_of(DType::F32, bshape, impl_->bias.data());
    conv2d(x, wt, impl_->bias.empty() ? nullptr : &bt, y, stride_, pad_);
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
