// oneDNN glue (see onednn.h for the primitive cache and threading rules).
#include "backend/cpu/onednn.h"

#include <omp.h>

#include <cstring>
#include <dnnl.hpp>
#include <algorithm>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace aigc::onednn {

// oneDNN 2.6 computes in bf16 only on CPUs with AVX-512 (avx512_core; natively with AVX512-BF16,
// emulated without). Elsewhere (AVX2 CPUs) a bf16 request runs in f32 on the bf16 values widened
// exactly: the same products, accumulated in f32 as oneDNN's bf16 kernels do, at the f32 rate and
// with f32-sized packed weights. Packed bf16 layers still round their weights (once) and their
// activations (per call) to bf16 values, so they compute the same products as with bf16.
bool bf16_supported() {
  static const bool yes = cpu_has_avx512();
  return yes;
}

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;

struct Context {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
};

Context& ctx() {
  static Context c;
  return c;
}

// Makes oneDNN (OpenMP) run on aigc's thread count in this thread; returns it for cache keys.
int threads_sync() {
  const int n = thread_count();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
  return n;
}

dt dt_of(Type t) { return t == Type::F32 ? dt::f32 : dt::bf16; }

// The type oneDNN runs a request of type t in (bf16_supported).
Type type_runs(Type t) { return t == Type::BF16 && !bf16_supported() ? Type::F32 : t; }
size_t type_size(Type t) { return t == Type::F32 ? 4 : 2; }

// Primitive cache: key -> entry. Entries are shared_ptr so a caller keeps its entry alive while
// it runs even if another thread clears the map. Bounded: prefill at many distinct lengths would
// otherwise grow it without end, so it is simply emptied when full (rebuilt on demand).
template <typename Entry>
class Cache {
 public:
  // The cached entry or null; unlike get(), never allocates (no std::function to build).
  std::shared_ptr<Entry> find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second;
  }
  std::shared_ptr<Entry> get(const std::string& key, const std::function<std::shared_ptr<Entry>()>& make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    std::shared_ptr<Entry> e;
    try {
      e = make();
    } catch (const dnnl::error& err) {
      error_throw(fmt::format("oneDNN could not create a primitive: {} (status {})", err.what(),
                              static_cast<int>(err.status)),
                  key, "this shape or type combination is not supported by oneDNN on this CPU");
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kCapacity) map_.clear();
    map_.emplace(key, e);
    return e;
  }

 private:
  static constexpr size_t kCapacity = 256;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> map_;
};

// Per-thread scratch memory, grown on demand and reused (no allocation per call once warm).
class Scratch {
 public:
  void* get(size_t bytes) {
    if (bytes > cap_) {
      buf_ = buffer_alloc(bytes);
      cap_ = bytes;
    }
    return buf_.get();
  }

 private:
  std::shared_ptr<void> buf_;
  size_t cap_ = 0;
};

// Runs a primitive and waits; oneDNN errors become aigc::Error.
void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args, const char* what) {
  try {
    p.execute(ctx().strm, args);
    ctx().strm.wait();
  } catch (const dnnl::error& err) {
    error_throw(fmt::format("oneDNN {} failed: {}", what, err.what()), "onednn");
  }
}

// ---- matmul -----------------------------------------------------------------------------------

// A matrix the gemm/brgemm kernels can read: row-major or column-major inside each matrix.
// Strides of size-1 dims are made canonical (they are meaningless but oneDNN checks them).
bool matrix_normalise(Matrix& m) {
  const bool row_major = (m.stride_col == 1 || m.cols == 1) && (m.rows == 1 || m.stride_row >= m.cols);
  const bool col_major = (m.stride_row == 1 || m.rows == 1) && (m.cols == 1 || m.stride_col >= m.rows);
  if (m.batch > 1 && m.stride_batch <= 0) return false;
  if (row_major) {
    m.stride_col = 1;
    if (m.rows == 1) m.stride_row = m.cols;
  } else if (col_major) {
    m.stride_row = 1;
    if (m.cols == 1) m.stride_col = m.rows;
  } else {
    return false;
  }
  if (m.batch == 1) m.stride_batch = m.rows * m.cols;
  return true;
}

// Copies m into row-major `dst` and points m at it.
void matrix_to_row_major(Matrix& m, void* dst) {
  const size_t es = type_size(m.type);
  const char* src = static_cast<const char*>(m.data);
  char* d = static_cast<char*>(dst);
  for (int64_t b = 0; b < m.batch; ++b)
    for (int64_t r = 0; r < m.rows; ++r)
      for (int64_t c = 0; c < m.cols; ++c)
        std::memcpy(d + ((b * m.rows + r) * m.cols + c) * es,
                    src + (b * m.stride_batch + r * m.stride_row + c * m.stride_col) * es, es);
  m.data = dst;
  m.stride_batch = m.rows * m.cols;
  m.stride_row = m.cols;
  m.stride_col = 1;
}

struct MatmulEntry {
  dnnl::memory::desc a_md, w_md, bias_md, c_md, scratch_md;
  dnnl::matmul prim;
};

Cache<MatmulEntry>& matmul_cache() {
  static Cache<MatmulEntry> c;
  return c;
}

}  // namespace

namespace {

// A bf16 matrix widened into dst as a dense row-major f32 one (exact).
Matrix matrix_widen(const Matrix& m, void* dst, bool serial) {
  auto* out = static_cast<float*>(dst);
  const auto* in = static_cast<const uint16_t*>(m.data);
  auto rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r: batch * rows + row
      const int64_t b = r / m.rows, i = r % m.rows;
      const uint16_t* src = in + b * m.stride_batch + i * m.stride_row;
      float* d = out + r * m.cols;
      for (int64_t j = 0; j < m.cols; ++j) d[j] = bf16_to_f32(src[j * m.stride_col]);
    }
  };
  if (serial)
    rows(0, m.batch * m.rows);
  else
    parallel_for(m.batch * m.rows, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, m.cols)));
  return Matrix{dst, Type::F32, m.batch, m.rows, m.cols, m.rows * m.cols, m.cols, 1};
}

void matmul_run(const Matrix& a_in, const Matrix& w_in, const float* bias, float* c, int64_t ldc_batch,
                int64_t ldc_row, bool serial) {
  Matrix a = a_in, w = w_in;
  AIGC_ASSERT(a.type == w.type, "matmul operands of different types");
  AIGC_ASSERT(a.cols == w.rows && (w.batch == 1 || w.batch == a.batch), "matmul shapes");
  const int64_t B = a.batch, M = a.rows, K = a.cols, N = w.cols;
  if (B == 0 || M == 0 || N == 0) return;
  thread_local Scratch scratch_a, scratch_w;
  if (type_runs(a.type) != a.type) {  // bf16 without oneDNN support: widened to f32 (bf16_supported)
    a = matrix_widen(a, scratch_a.get(static_cast<size_t>(B * M * K) * 4), serial);
    w = matrix_widen(w, scratch_w.get(static_cast<size_t>(w.batch * K * N) * 4), serial);
  }
  const size_t es = type_size(a.type);
  if (!matrix_normalise(a)) {
    matrix_to_row_major(a, scratch_a.get(B * M * K * es));
    matrix_normalise(a);
  }
  if (!matrix_normalise(w)) {
    matrix_to_row_major(w, scratch_w.get(w.batch * K * N * es));
    matrix_normalise(w);
  }
  if (B == 1) ldc_batch = M * ldc_row;
  const int nthr = serial ? 1 : threads_sync();
  const std::string key =
      fmt::format("matmul t{} n{} B{} M{} K{} N{} a{},{},{} w{},{},{},{} c{},{} bias{}{}", static_cast<int>(a.type), nthr, B, M,
                  K, N, a.stride_batch, a.stride_row, a.stride_col, w.batch, w.stride_batch, w.stride_row,
                  w.stride_col, ldc_batch, ldc_row, bias != nullptr, serial ? " serial" : "");
  auto e = matmul_cache().get(key, [&] {
    // oneDNN sizes its work split by omp_get_max_threads() of the creating thread: 1 for serial
    // (the setting is per thread, restored below; outside this call nothing reads it).
    const int saved = omp_get_max_threads();
    if (serial) omp_set_num_threads(1);
    struct Restore {
      bool on;
      int n;
      ~Restore() { if (on) omp_set_num_threads(n); }
    } restore{serial, saved};
    auto en = std::make_shared<MatmulEntry>();
    en->a_md = dnnl::memory::desc({B, M, K}, dt_of(a.type), dims{a.stride_batch, a.stride_row, a.stride_col});
    en->w_md = dnnl::memory::desc({w.batch, K, N}, dt_of(w.type), dims{w.stride_batch, w.stride_row, w.stride_col});
    en->c_md = dnnl::memory::desc({B, M, N}, dt::f32, dims{ldc_batch, ldc_row, 1});
    // Serial primitives run concurrently on several threads: each brings its own scratchpad (the
    // library's default one is shared between executions).
    dnnl::primitive_attr attr;
    if (serial) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (bias) en->bias_md = dnnl::memory::desc({1, 1, N}, dt::f32, tag::abc);
    const auto desc = bias ? dnnl::matmul::desc(en->a_md, en->w_md, en->bias_md, en->c_md)
                           : dnnl::matmul::desc(en->a_md, en->w_md, en->c_md);
    const dnnl::matmul::primitive_desc pd(desc, attr, ctx().eng);
    en->prim = dnnl::matmul(pd);
    if (serial) en->scratch_md = pd.scratchpad_desc();
    return en;
  });
  auto& eng = ctx().eng;
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(e->a_md, eng, const_cast<void*>(a.data))},
      {DNNL_ARG_WEIGHTS, dnnl::memory(e->w_md, eng, const_cast<void*>(w.data))},
      {DNNL_ARG_DST, dnnl::memory(e->c_md, eng, c)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias_md, eng, const_cast<float*>(bias)));
  if (!serial) return execute(e->prim, args, "matmul");
  // oneDNN streams are not to be shared between threads: one per calling thread, and a scratchpad.
  thread_local dnnl::stream strm(ctx().eng);
  thread_local Scratch scratch_pad;
  if (e->scratch_md.get_size() > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(e->scratch_md, eng, scratch_pad.get(e->scratch_md.get_size())));
  try {
    e->prim.execute(strm, args);
    strm.wait();
  } catch (const dnnl::error& err) {
    error_throw(fmt::format("oneDNN matmul failed: {}", err.what()), "onednn");
  }
}

}  // namespace

void matmul(const Matrix& a, const Matrix& w, const float* bias, float* c, int64_t ldc_batch, int64_t ldc_row) {
  matmul_run(a, w, bias, c, ldc_batch, ldc_row, false);
}

void matmul_serial(const Matrix& a, const Matrix& w, const float* bias, float* c, int64_t ldc_batch,
                   int64_t ldc_row) {
  matmul_run(a, w, bias, c, ldc_batch, ldc_row, true);
}

// ---- conv2d -----------------------------------------------------------------------------------

namespace {

struct ConvEntry {
  dnnl::memory::desc x_user, w_user, y_user, bias_md;          // plain NCHW / OIHW
  dnnl::memory::desc x_md, w_md, y_md;                         // what the primitive wants
  dnnl::convolution_forward prim;
  dnnl::reorder x_reorder, w_reorder, y_reorder;               // empty when layouts agree
  bool x_same = true, w_same = true, y_same = true;
};

Cache<ConvEntry>& conv_cache() {
  static Cache<ConvEntry> c;
  return c;
}

}  // namespace

void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y) {
  if (s.n == 0 || s.o == 0 || s.ho == 0 || s.wo == 0) return;
  const int nthr = threads_sync();
  const std::string key = fmt::format("conv2d n{} N{} C{} H{} W{} O{} k{}x{} s{} p{} bias{}", nthr, s.n, s.c, s.h,
                                      s.w, s.o, s.kh, s.kw, s.stride, s.pad, bias != nullptr);
  auto e = conv_cache().get(key, [&] {
    auto en = std::make_shared<ConvEntry>();
    const dims xd{s.n, s.c, s.h, s.w}, wd{s.o, s.c, s.kh, s.kw}, yd{s.n, s.o, s.ho, s.wo};
    en->x_user = dnnl::memory::desc(xd, dt::f32, tag::nchw);
    en->w_user = dnnl::memory::desc(wd, dt::f32, tag::oihw);
    en->y_user = dnnl::memory::desc(yd, dt::f32, tag::nchw);
    en->bias_md = dnnl::memory::desc({s.o}, dt::f32, tag::a);
    const dnnl::memory::desc xa(xd, dt::f32, tag::any), wa(wd, dt::f32, tag::any), ya(yd, dt::f32, tag::any);
    const dims strides{s.stride, s.stride}, pads{s.pad, s.pad};
    auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::convolution_direct, xa, wa, en->bias_md,
                                                       ya, strides, pads, pads)
                     : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::convolution_direct, xa, wa, ya, strides,
                                                       pads, pads);
    dnnl::convolution_forward::primitive_desc pd(desc, ctx().eng);
    en->prim = dnnl::convolution_forward(pd);
    en->x_md = pd.src_desc();
    en->w_md = pd.weights_desc();
    en->y_md = pd.dst_desc();
    auto& eng = ctx().eng;
    en->x_same = en->x_md == en->x_user;
    en->w_same = en->w_md == en->w_user;
    en->y_same = en->y_md == en->y_user;
    if (!en->x_same) en->x_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, en->x_user, eng, en->x_md));
    if (!en->w_same) en->w_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, en->w_user, eng, en->w_md));
    if (!en->y_same) en->y_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, en->y_md, eng, en->y_user));
    return en;
  });
  auto& eng = ctx().eng;
  thread_local Scratch sx, sw, sy;
  dnnl::memory xu(e->x_user, eng, const_cast<float*>(x)), wu(e->w_user, eng, const_cast<float*>(w)),
      yu(e->y_user, eng, y);
  dnnl::memory xm = xu, wm = wu, ym = yu;
  if (!e->x_same) {
    xm = dnnl::memory(e->x_md, eng, sx.get(e->x_md.get_size()));
    execute(e->x_reorder, {{DNNL_ARG_FROM, xu}, {DNNL_ARG_TO, xm}}, "conv2d input reorder");
  }
  if (!e->w_same) {
    wm = dnnl::memory(e->w_md, eng, sw.get(e->w_md.get_size()));
    execute(e->w_reorder, {{DNNL_ARG_FROM, wu}, {DNNL_ARG_TO, wm}}, "conv2d weight reorder");
  }
  if (!e->y_same) ym = dnnl::memory(e->y_md, eng, sy.get(e->y_md.get_size()));
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias_md, eng, const_cast<float*>(bias)));
  execute(e->prim, args, "conv2d");
  if (!e->y_same) execute(e->y_reorder, {{DNNL_ARG_FROM, ym}, {DNNL_ARG_TO, yu}}, "conv2d output reorder");
}

// ---- packed convolution -----------------------------------------------------------------------

namespace {

struct PackedConvEntry {
  dnnl::memory::desc x_user, y_user, x_md, y_md, w_md, bias_md;
  dnnl::convolution_forward prim;
  dnnl::reorder x_reorder, y_reorder;  // empty when the user's layout is the primitive's
  bool x_same = true, y_same = true;
  std::shared_ptr<void> w_alt;         // weights in this primitive's layout when it differs
};

dnnl::convolution_forward::primitive_desc conv_pd_make(Type type, int64_t n, int64_t c, int64_t h, int64_t w,
                                                       int64_t o, int64_t kh, int64_t kw, int64_t stride,
                                                       int64_t pad, bool bias) {
  const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
  const dnnl::memory::desc xa({n, c, h, w}, dt_of(type), tag::nhwc), wa({o, c, kh, kw}, dt_of(type), tag::any),
      ya({n, o, ho, wo}, dt::f32, tag::nhwc), ba({o}, dt::f32, tag::a);
  const dims strides{stride, stride}, pads{pad, pad};
  const auto prop = dnnl::prop_kind::forward_inference;
  const auto alg = dnnl::algorithm::convolution_direct;
  auto desc = bias ? dnnl::convolution_forward::desc(prop, alg, xa, wa, ba, ya, strides, pads, pads)
                   : dnnl::convolution_forward::desc(prop, alg, xa, wa, ya, strides, pads, pads);
  return dnnl::convolution_forward::primitive_desc(desc, ctx().eng);
}

}  // namespace

struct PackedConv::Impl {
  Type type;
  bool round_x = false;        // a bf16 layer run in f32 (bf16_supported): activations rounded to bf16
  int64_t o, c, kh, kw, stride, pad;
  dnnl::memory::desc w_md;     // the packed layout
  std::shared_ptr<void> w_buf;
  std::vector<float> bias;     // empty: no bias
  std::mutex mu;               // guards prims
  std::unordered_map<std::string, std::shared_ptr<PackedConvEntry>> prims;

  std::shared_ptr<PackedConvEntry> entry_get(const int64_t xs[4], const int64_t ys[4], int64_t n, int64_t h,
                                             int64_t w, int nthr) {
    const std::string key = fmt::format("{} {} {} t{} x{},{},{},{} y{},{},{},{}", n, h, w, nthr, xs[0], xs[1], xs[2],
                                        xs[3], ys[0], ys[1], ys[2], ys[3]);
    std::lock_guard<std::mutex> lock(mu);
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    auto en = std::make_shared<PackedConvEntry>();
    auto& eng = ctx().eng;
    try {
      const auto pd = conv_pd_make(type, n, c, h, w, o, kh, kw, stride, pad, !bias.empty());
      en->prim = dnnl::convolution_forward(pd);
      en->x_md = pd.src_desc();
      en->y_md = pd.dst_desc();
      en->w_md = pd.weights_desc();
      en->bias_md = dnnl::memory::desc({o}, dt::f32, tag::a);
      const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
      en->x_user = dnnl::memory::desc({n, c, h, w}, dt::f32, dims{xs[0], xs[1], xs[2], xs[3]});
      en->y_user = dnnl::memory::desc({n, o, ho, wo}, dt::f32, dims{ys[0], ys[1], ys[2], ys[3]});
      en->x_same = en->x_user == en->x_md;
      en->y_same = en->y_user == en->y_md;
      if (!en->x_same) en->x_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, en->x_user, eng, en->x_md));
      if (!en->y_same) en->y_reorder = dnnl::reorder(dnnl::reorder::primitive_desc(eng, en->y_md, eng, en->y_user));
      if (en->w_md != w_md && w_buf) {  // another blocking for this shape: a copy of the weights for it
        en->w_alt = buffer_alloc(en->w_md.get_size());
        dnnl::memory src(w_md, eng, w_buf.get()), dst(en->w_md, eng, en->w_alt.get());
        execute(dnnl::reorder(src, dst), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}}, "conv weight re-layout");
      }
    } catch (const dnnl::error& err) {
      error_throw(fmt::format("oneDNN has no convolution for x [{}, {}, {}, {}], weight [{}, {}, {}, {}]: {}", n, c,
                              h, w, o, c, kh, kw, err.what()),
                  "PackedConv2d", "use ops::conv2d for this shape");
    }
    if (prims.size() >= 64) prims.clear();
    prims.emplace(key, en);
    return en;
  }
};

PackedConv::PackedConv(const float* w, const float* bias, Type type, int64_t o, int64_t c, int64_t kh, int64_t kw,
                       int64_t stride, int64_t pad)
    : impl_(new Impl) {
  Impl& m = *impl_;
  m.type = type_runs(type);  // bf16 -> f32 where oneDNN has no bf16 (bf16_supported)
  m.round_x = type != m.type;
  m.o = o, m.c = c, m.kh = kh, m.kw = kw, m.stride = stride, m.pad = pad;
  if (bias) m.bias.assign(bias, bias + o);
  try {
    // The weight layout oneDNN picks depends on the channels, not (so far) on the image size: pack
    // for a mid-size image; a shape that wants another layout gets its own copy (entry_get).
    const int64_t hw = std::max<int64_t>(32, std::max(kh, kw));
    const auto pd = conv_pd_make(m.type, 1, c, hw, hw, o, kh, kw, stride, pad, bias != nullptr);
    m.w_md = pd.weights_desc();
    if (!w) return;
    m.w_buf = buffer_alloc(m.w_md.get_size());
    std::vector<float> rounded;  // a bf16 layer run in f32: its weights rounded to bf16 all the same
    if (type != m.type) {
      rounded.resize(static_cast<size_t>(o * c * kh * kw));
      for (size_t i = 0; i < rounded.size(); ++i) rounded[i] = bf16_to_f32(bf16_from_f32(w[i]));
      w = rounded.data();
    }
    const dnnl::memory::desc w_user({o, c, kh, kw}, dt::f32, tag::oihw);
    dnnl::memory src(w_user, ctx().eng, const_cast<float*>(w)), dst(m.w_md, ctx().eng, m.w_buf.get());
    threads_sync();
    execute(dnnl::reorder(src, dst), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}}, "conv weight packing");
  } catch (const dnnl::error& err) {
    error_throw(fmt::format("oneDNN could not pack a [{}, {}, {}, {}] convolution weight: {}", o, c, kh, kw,
                            err.what()),
                "PackedConv2d");
  }
}

PackedConv::~PackedConv() = default;

Type PackedConv::type() const { return impl_->type; }
size_t PackedConv::bytes() const {
  return (impl_->w_buf ? impl_->w_md.get_size() : 0) + impl_->bias.size() * sizeof(float);
}
size_t PackedConv::packed_bytes() const { return impl_->w_md.get_size(); }

void PackedConv::pack_into(const void* w, Type src, void* dst) const {
  const Impl& m = *impl_;
  const dnnl::memory::desc w_user({m.o, m.c, m.kh, m.kw}, dt_of(src), tag::oihw);
  auto& eng = ctx().eng;
  dnnl::memory s(w_user, eng, const_cast<void*>(w)), d(m.w_md, eng, dst);
  threads_sync();
  // oneDNN's own primitive cache keeps the reorder: creating it again per call is a lookup.
  execute(dnnl::reorder(s, d), {{DNNL_ARG_FROM, s}, {DNNL_ARG_TO, d}}, "conv weight packing");
}

void PackedConv::run(const float* x, const int64_t xs[4], float* y, const int64_t ys[4], int64_t n, int64_t h,
                     int64_t w) const {
  int64_t dense[4];  // outlives the block below: xs may point at it
  if (impl_->round_x) {  // x rounded to bf16 values, as dense NCHW
    const int64_t c = impl_->c;
    dense[0] = c * h * w, dense[1] = h * w, dense[2] = w, dense[3] = 1;
    thread_local std::vector<float> xr;
    if (xr.size() < static_cast<size_t>(n * c * h * w)) xr.resize(static_cast<size_t>(n * c * h * w));
    float* xd = xr.data();
    parallel_for(n * c, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const float* src = x + (p / c) * xs[0] + (p % c) * xs[1];
        for (int64_t i = 0; i < h; ++i)
          for (int64_t j = 0; j < w; ++j)
            xd[p * h * w + i * w + j] = bf16_to_f32(bf16_from_f32(src[i * xs[2] + j * xs[3]]));
      }
    });
    x = xd, xs = dense;
  }
  const int nthr = threads_sync();
  auto e = impl_->entry_get(xs, ys, n, h, w, nthr);
  auto& eng = ctx().eng;
  thread_local Scratch sx, sy;
  dnnl::memory xu(e->x_user, eng, const_cast<float*>(x)), yu(e->y_user, eng, y);
  dnnl::memory xm = xu, ym = yu;
  if (!e->x_same) {
    xm = dnnl::memory(e->x_md, eng, sx.get(e->x_md.get_size()));
    execute(e->x_reorder, {{DNNL_ARG_FROM, xu}, {DNNL_ARG_TO, xm}}, "conv input reorder");
  }
  if (!e->y_same) ym = dnnl::memory(e->y_md, eng, sy.get(e->y_md.get_size()));
  AIGC_ASSERT(impl_->w_buf != nullptr, "PackedConv without kept weights: use run_nhwc");
  void* wp = e->w_alt ? e->w_alt.get() : impl_->w_buf.get();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, dnnl::memory(e->w_md, eng, wp)}, {DNNL_ARG_DST, ym}};
  if (!impl_->bias.empty())
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias_md, eng, const_cast<float*>(impl_->bias.data())));
  execute(e->prim, args, "packed conv");
  if (!e->y_same) execute(e->y_reorder, {{DNNL_ARG_FROM, ym}, {DNNL_ARG_TO, yu}}, "conv output reorder");
}

void PackedConv::run_nhwc(const void* x, float* y, int64_t n, int64_t h, int64_t w) const {
  AIGC_ASSERT(impl_->w_buf != nullptr, "PackedConv without kept weights: pass them to run_nhwc");
  run_nhwc(x, y, n, h, w, impl_->w_buf.get());
}

void PackedConv::run_nhwc(const void* x, float* y, int64_t n, int64_t h, int64_t w, const void* packed_w) const {
  const Impl& m = *impl_;
  const int64_t ho = (h + 2 * m.pad - m.kh) / m.stride + 1, wo = (w + 2 * m.pad - m.kw) / m.stride + 1;
  const int64_t xs[4] = {h * w * m.c, 1, w * m.c, m.c}, ys[4] = {ho * wo * m.o, 1, wo * m.o, m.o};
  const int nthr = threads_sync();
  auto e = impl_->entry_get(xs, ys, n, h, w, nthr);
  auto& eng = ctx().eng;
  void* wp = const_cast<void*>(packed_w);
  if (e->w_md != m.w_md) {  // this shape wants another blocking
    if (packed_w == m.w_buf.get()) {
      wp = e->w_alt.get();
    } else {
      thread_local std::vector<uint8_t> alt;
      if (alt.size() < e->w_md.get_size()) alt.resize(e->w_md.get_size());
      dnnl::memory src(m.w_md, eng, wp), dst(e->w_md, eng, alt.data());
      execute(dnnl::reorder(src, dst), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}}, "conv weight re-layout");
      wp = alt.data();
    }
  }
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(e->x_md, eng, const_cast<void*>(x))},
                                             {DNNL_ARG_WEIGHTS, dnnl::memory(e->w_md, eng, wp)},
                                             {DNNL_ARG_DST, dnnl::memory(e->y_md, eng, y)}};
  if (!impl_->bias.empty())
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias_md, eng, const_cast<float*>(impl_->bias.data())));
  execute(e->prim, args, "packed conv");
}

// ---- packed weights ---------------------------------------------------------------------------

struct PackedWeight::Impl {
  Type type;
  bool round_x = false;     // a bf16 weight run in f32 (bf16_supported): activations rounded to bf16
  int64_t n, k, max_m;
  dnnl::memory::desc w_md;  // the packed layout, chosen for max_m rows
  std::shared_ptr<void> buf;
  std::mutex mu;            // guards prims
  std::unordered_map<std::string, std::shared_ptr<MatmulEntry>> prims;  // per (M, threads, bias)

  std::shared_ptr<MatmulEntry> prim_get(int64_t m, int64_t ldx_, int64_t ldy, bool bias, int nthr) {
    const std::string key = fmt::format("{} {} {} {} {}", m, ldx_, ldy, bias, nthr);
    std::lock_guard<std::mutex> lock(mu);
    auto it = prims.find(key);
    if (it != prims.end()) return it->second;
    auto en = std::make_shared<MatmulEntry>();
    en->a_md = dnnl::memory::desc({m, k}, dt_of(type), dims{ldx_, 1});
    en->w_md = w_md;
    en->c_md = dnnl::memory::desc({m, n}, dt::f32, dims{ldy, 1});
    try {
      if (bias) {
        en->bias_md = dnnl::memory::desc({1, n}, dt::f32, tag::ab);
        en->prim = dnnl::matmul(dnnl::matmul::primitive_desc(
            dnnl::matmul::desc(en->a_md, en->w_md, en->bias_md, en->c_md), ctx().eng));
      } else {
        en->prim = dnnl::matmul(
            dnnl::matmul::primitive_desc(dnnl::matmul::desc(en->a_md, en->w_md, en->c_md), ctx().eng));
      }
    } catch (const dnnl::error& err) {
      error_throw(fmt::format("oneDNN has no matmul for packed weights at M={}: {}", m, err.what()),
                  "PackedWeight", "use ops::linear for this size");
    }
    if (prims.size() >= 64) prims.clear();
    prims.emplace(key, en);
    return en;
  }
};

PackedWeight::PackedWeight(const void* w, Type type, int64_t n, int64_t k, int64_t ldw, int64_t max_m)
    : impl_(new Impl) {
  impl_->type = type_runs(type);  // bf16 -> f32 where oneDNN has no bf16 (bf16_supported)
  impl_->round_x = type != impl_->type;
  impl_->n = n;
  impl_->k = k;
  impl_->max_m = max_m;
  try {
    // Let oneDNN choose the weight layout for a [max_m, K] x [K, N] product.
    const dnnl::memory::desc a({max_m, k}, dt_of(impl_->type), tag::ab), c({max_m, n}, dt::f32, tag::ab);
    const dnnl::memory::desc wa({k, n}, dt_of(impl_->type), tag::any);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, wa, c), ctx().eng);
    impl_->w_md = pd.weights_desc();
    impl_->buf = buffer_alloc(impl_->w_md.get_size());
    std::vector<float> widened;  // bf16 run in f32: widened here (oneDNN reorders no bf16 there either)
    if (type != impl_->type) {
      widened.resize(static_cast<size_t>(n * k));
      const auto* wb = static_cast<const uint16_t*>(w);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < k; ++i) widened[static_cast<size_t>(r * k + i)] = bf16_to_f32(wb[r * ldw + i]);
      w = widened.data(), ldw = k;
    }
    // The user's w[N, K] (row stride ldw) is the [K, N] matrix with strides (1, ldw).
    const dnnl::memory::desc w_user({k, n}, dt_of(impl_->type), dims{1, ldw});
    dnnl::memory src(w_user, ctx().eng, const_cast<void*>(w)), dst(impl_->w_md, ctx().eng, impl_->buf.get());
    threads_sync();
    execute(dnnl::reorder(src, dst), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}}, "weight packing");
  } catch (const dnnl::error& err) {
    error_throw(fmt::format("oneDNN could not pack a [{}, {}] weight: {}", n, k, err.what()), "PackedWeight");
  }
}

PackedWeight::~PackedWeight() = default;

Type PackedWeight::type() const { return impl_->type; }
size_t PackedWeight::bytes() const { return impl_->w_md.get_size(); }

void PackedWeight::run(const float* x, int64_t m, int64_t ldx, const float* bias, float* y, int64_t ldy) const {
  const int64_t k = impl_->k;
  auto& eng = ctx().eng;
  thread_local Scratch sx;
  // Rows beyond max_m run in chunks of max_m so every call uses primitives tuned for the layout.
  for (int64_t m0 = 0; m0 < m; m0 += impl_->max_m) {
    const int64_t mc = std::min(impl_->max_m, m - m0);
    const void* a = x + m0 * ldx;
    int64_t lda = ldx;
    if (impl_->type == Type::BF16) {
      auto* xb = static_cast<uint16_t*>(sx.get(static_cast<size_t>(mc * k) * 2));
      parallel_for(mc, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t i = 0; i < k; ++i) xb[r * k + i] = bf16_from_f32(x[(m0 + r) * ldx + i]);
      });
      a = xb;
      lda = k;
    } else if (impl_->round_x) {
      auto* xr = static_cast<float*>(sx.get(static_cast<size_t>(mc * k) * 4));
      parallel_for(mc, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t i = 0; i < k; ++i) xr[r * k + i] = bf16_to_f32(bf16_from_f32(x[(m0 + r) * ldx + i]));
      });
      a = xr;
      lda = k;
    }
    const int nthr = threads_sync();
    auto e = impl_->prim_get(mc, lda, ldy, bias != nullptr, nthr);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(e->a_md, eng, const_cast<void*>(a))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(e->w_md, eng, impl_->buf.get())},
        {DNNL_ARG_DST, dnnl::memory(e->c_md, eng, y + m0 * ldy)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e->bias_md, eng, const_cast<float*>(bias)));
    execute(e->prim, args, "packed matmul");
  }
}

}  // namespace aigc::onednn

// ---- convolution for training -------------------------------------------------------------------

namespace aigc::onednn {

namespace {

// One operand of a training convolution: the caller's plain NCHW/OIHW memory and, when oneDNN
// prefers another layout, memory in that layout (its buffer a shared per-role scratch, bound per
// call) and the reorder between them. Gradients always land in the primitive's memory first and
// are reordered WITH SUM into the caller's (oneDNN's backward passes overwrite; ours accumulate).
struct ConvPort {
  dnnl::memory user, prim;
  dnnl::reorder reorder;
  std::unordered_map<int, dnnl::memory> reorder_args;
  bool same = true;
  size_t bytes = 0;

  void make(const dnnl::memory::desc& user_md, const dnnl::memory::desc& prim_md, bool input, bool accumulate) {
    auto& eng = ctx().eng;
    user = dnnl::memory(user_md, eng, DNNL_MEMORY_NONE);
    same = user_md == prim_md && !accumulate;
    if (same) {
      prim = user;
      return;
    }
    bytes = prim_md.get_size();
    prim = dnnl::memory(prim_md, eng, DNNL_MEMORY_NONE);
    dnnl::primitive_attr attr;
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    reorder = input ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, user_md, eng, prim_md, attr))
                    : dnnl::reorder(dnnl::reorder::primitive_desc(eng, prim_md, eng, user_md, attr));
    reorder_args = input ? std::unordered_map<int, dnnl::memory>{{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, prim}}
                         : std::unordered_map<int, dnnl::memory>{{DNNL_ARG_FROM, prim}, {DNNL_ARG_TO, user}};
  }
  // Points the port at the caller's data and (when it has one) its layout buffer.
  void bind(const void* data, Scratch& buf) {
    user.set_data_handle(const_cast<void*>(data));
    if (!same) prim.set_data_handle(buf.get(bytes));
  }
  void load(const char* what) {
    if (!same) execute(reorder, reorder_args, what);
  }
  void store(const char* what) {
    if (!same) execute(reorder, reorder_args, what);
  }
};

dnnl::convolution_forward::primitive_desc conv_train_fwd_pd(const Conv2dShape& s, bool bias,
                                                            const dnnl::primitive_attr& attr) {
  const dims xd{s.n, s.c, s.h, s.w}, wd{s.o, s.c, s.kh, s.kw}, yd{s.n, s.o, s.ho, s.wo};
  const dnnl::memory::desc xa(xd, dt::f32, tag::any), wa(wd, dt::f32, tag::any), ya(yd, dt::f32, tag::any),
      ba({s.o}, dt::f32, tag::a);
  const dims strides{s.stride, s.stride}, pads{s.pad, s.pad};
  const auto prop = dnnl::prop_kind::forward_training;
  const auto alg = dnnl::algorithm::convolution_direct;
  auto desc = bias ? dnnl::convolution_forward::desc(prop, alg, xa, wa, ba, ya, strides, pads, pads)
                   : dnnl::convolution_forward::desc(prop, alg, xa, wa, ya, strides, pads, pads);
  return dnnl::convolution_forward::primitive_desc(desc, attr, ctx().eng);
}

dnnl::primitive_attr attr_user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

struct ConvTrainFwd {
  std::mutex mu;
  dnnl::convolution_forward prim;
  ConvPort x, w, y;
  dnnl::memory bias, pad;
  size_t pad_bytes = 0;
  std::unordered_map<int, dnnl::memory> args;
};

struct ConvTrainBwd {
  std::mutex mu;
  bool data = false, weights = false;
  dnnl::convolution_backward_data prim_data;
  dnnl::convolution_backward_weights prim_weights;
  ConvPort dy_d, w, dx;       // backward data: diff_dst, weights -> diff_src
  ConvPort dy_w, x, dw;       // backward weights: diff_dst, src -> diff_weights (+ diff_bias)
  dnnl::memory db, pad_d, pad_w;
  size_t pad_d_bytes = 0, pad_w_bytes = 0;
  std::vector<float> db_buf;  // [O], made once
  std::unordered_map<int, dnnl::memory> args_d, args_w;
};

// Layout buffers shared by all entries (one call runs at a time per thread): grown once, kept.
struct ConvTrainScratch {
  Scratch a, b, c, pad;
};
ConvTrainScratch& conv_train_scratch() {
  thread_local ConvTrainScratch s;
  return s;
}

// The cache key, written into a per-thread string whose capacity stays: no allocation once warm.
const std::string& conv_train_key(const char* pass, const Conv2dShape& s, int nthr, int flags) {
  thread_local std::string key;
  key.clear();
  fmt::format_to(std::back_inserter(key), "{} t{} N{} C{} H{} W{} O{} k{}x{} s{} p{} f{}", pass, nthr, s.n, s.c, s.h,
                 s.w, s.o, s.kh, s.kw, s.stride, s.pad, flags);
  return key;
}

Cache<ConvTrainFwd>& conv_train_fwd_cache() {
  static Cache<ConvTrainFwd> c;
  return c;
}
Cache<ConvTrainBwd>& conv_train_bwd_cache() {
  static Cache<ConvTrainBwd> c;
  return c;
}

}  // namespace

void conv2d_train_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y) {
  if (s.n == 0 || s.o == 0 || s.ho == 0 || s.wo == 0) return;
  const int nthr = threads_sync();
  const std::string& key = conv_train_key("fwd", s, nthr, bias != nullptr);
  std::shared_ptr<ConvTrainFwd> e = conv_train_fwd_cache().find(key);
  if (!e) e = conv_train_fwd_cache().get(key, [&] {
    auto en = std::make_shared<ConvTrainFwd>();
    const auto pd = conv_train_fwd_pd(s, bias != nullptr, attr_user_scratchpad());
    en->prim = dnnl::convolution_forward(pd);
    en->x.make(dnnl::memory::desc({s.n, s.c, s.h, s.w}, dt::f32, tag::nchw), pd.src_desc(), true, false);
    en->w.make(dnnl::memory::desc({s.o, s.c, s.kh, s.kw}, dt::f32, tag::oihw), pd.weights_desc(), true, false);
    en->y.make(dnnl::memory::desc({s.n, s.o, s.ho, s.wo}, dt::f32, tag::nchw), pd.dst_desc(), false, false);
    auto& eng = ctx().eng;
    en->pad_bytes = pd.scratchpad_desc().get_size();
    en->pad = dnnl::memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
    en->args = {{DNNL_ARG_SRC, en->x.prim}, {DNNL_ARG_WEIGHTS, en->w.prim}, {DNNL_ARG_DST, en->y.prim},
                {DNNL_ARG_SCRATCHPAD, en->pad}};
    if (bias) {
      en->bias = dnnl::memory(dnnl::memory::desc({s.o}, dt::f32, tag::a), eng, DNNL_MEMORY_NONE);
      en->args.emplace(DNNL_ARG_BIAS, en->bias);
    }
    return en;
  });
  std::lock_guard<std::mutex> lock(e->mu);
  ConvTrainScratch& sc = conv_train_scratch();
  e->x.bind(x, sc.a);
  e->w.bind(w, sc.b);
  e->y.bind(y, sc.c);
  if (bias) e->bias.set_data_handle(const_cast<float*>(bias));
  e->pad.set_data_handle(sc.pad.get(std::max<size_t>(e->pad_bytes, 1)));
  e->x.load("conv2d_train_forward input reorder");
  e->w.load("conv2d_train_forward weight reorder");
  execute(e->prim, e->args, "conv2d_train_forward");
  e->y.store("conv2d_train_forward output reorder");
}

void conv2d_train_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy, float* dx,
                           float* dw, float* db) {
  AIGC_ASSERT(!db || dw, "conv2d_train_backward: db needs dw");
  if (s.n == 0 || s.o == 0 || s.ho == 0 || s.wo == 0 || (!dx && !dw)) return;
  const int nthr = threads_sync();
  const int flags = (dx ? 1 : 0) | (dw ? 2 : 0) | (db ? 4 : 0);
  const std::string& key = conv_train_key("bwd", s, nthr, flags);
  std::shared_ptr<ConvTrainBwd> e = conv_train_bwd_cache().find(key);
  if (!e) e = conv_train_bwd_cache().get(key, [&] {
    auto en = std::make_shared<ConvTrainBwd>();
    auto& eng = ctx().eng;
    const dims xd{s.n, s.c, s.h, s.w}, wd{s.o, s.c, s.kh, s.kw}, yd{s.n, s.o, s.ho, s.wo};
    const dnnl::memory::desc x_user(xd, dt::f32, tag::nchw), w_user(wd, dt::f32, tag::oihw),
        y_user(yd, dt::f32, tag::nchw), b_md({s.o}, dt::f32, tag::a);
    const dnnl::memory::desc xa(xd, dt::f32, tag::any), wa(wd, dt::f32, tag::any), ya(yd, dt::f32, tag::any);
    const dims strides{s.stride, s.stride}, pads{s.pad, s.pad};
    const auto alg = dnnl::algorithm::convolution_direct;
    const auto hint = conv_train_fwd_pd(s, db != nullptr, dnnl::primitive_attr());
    const auto attr = attr_user_scratchpad();
    if (dx) {
      en->data = true;
      const dnnl::convolution_backward_data::primitive_desc pd(
          dnnl::convolution_backward_data::desc(alg, xa, wa, ya, strides, pads, pads), attr, eng, hint);
      en->prim_data = dnnl::convolution_backward_data(pd);
      en->dy_d.make(y_user, pd.diff_dst_desc(), true, false);
      en->w.make(w_user, pd.weights_desc(), true, false);
      en->dx.make(x_user, pd.diff_src_desc(), false, true);
      en->pad_d_bytes = pd.scratchpad_desc().get_size();
      en->pad_d = dnnl::memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
      en->args_d = {{DNNL_ARG_DIFF_DST, en->dy_d.prim}, {DNNL_ARG_WEIGHTS, en->w.prim},
                    {DNNL_ARG_DIFF_SRC, en->dx.prim}, {DNNL_ARG_SCRATCHPAD, en->pad_d}};
    }
    if (dw) {
      en->weights = true;
      auto desc = db ? dnnl::convolution_backward_weights::desc(alg, xa, wa, b_md, ya, strides, pads, pads)
                     : dnnl::convolution_backward_weights::desc(alg, xa, wa, ya, strides, pads, pads);
      const dnnl::convolution_backward_weights::primitive_desc pd(desc, attr, eng, hint);
      en->prim_weights = dnnl::convolution_backward_weights(pd);
      en->dy_w.make(y_user, pd.diff_dst_desc(), true, false);
      en->x.make(x_user, pd.src_desc(), true, false);
      en->dw.make(w_user, pd.diff_weights_desc(), false, true);
      en->pad_w_bytes = pd.scratchpad_desc().get_size();
      en->pad_w = dnnl::memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
      en->args_w = {{DNNL_ARG_DIFF_DST, en->dy_w.prim}, {DNNL_ARG_SRC, en->x.prim},
                    {DNNL_ARG_DIFF_WEIGHTS, en->dw.prim}, {DNNL_ARG_SCRATCHPAD, en->pad_w}};
      if (db) {
        en->db_buf.assign(static_cast<size_t>(s.o), 0.0f);
        en->db = dnnl::memory(b_md, eng, en->db_buf.data());
        en->args_w.emplace(DNNL_ARG_DIFF_BIAS, en->db);
      }
    }
    return en;
  });
  std::lock_guard<std::mutex> lock(e->mu);
  ConvTrainScratch& sc = conv_train_scratch();
  // dy in the layout each pass wants: reordered once when both passes want the same one.
  if (e->data) {
    e->dy_d.bind(dy, sc.a);
    e->w.bind(w, sc.b);
    e->dx.bind(dx, sc.c);
    e->pad_d.set_data_handle(sc.pad.get(std::max<size_t>(e->pad_d_bytes, 1)));
    e->dy_d.load("conv2d_train_backward dy reorder");
    e->w.load("conv2d_train_backward weight reorder");
    execute(e->prim_data, e->args_d, "conv2d_train_backward data");
    e->dx.store("conv2d_train_backward dx reorder");
  }
  if (e->weights) {
    const bool dy_shared = e->data && !e->dy_d.same && !e->dy_w.same &&
                           e->dy_d.prim.get_desc() == e->dy_w.prim.get_desc();
    if (dy_shared) {
      e->dy_w.user.set_data_handle(const_cast<float*>(dy));
      e->dy_w.prim.set_data_handle(e->dy_d.prim.get_data_handle());  // sc.a, still holding dy
    } else {
      e->dy_w.bind(dy, sc.a);
    }
    e->x.bind(x, sc.b);
    e->dw.bind(dw, sc.c);
    e->pad_w.set_data_handle(sc.pad.get(std::max<size_t>(e->pad_w_bytes, 1)));
    if (!dy_shared) e->dy_w.load("conv2d_train_backward dy reorder");
    e->x.load("conv2d_train_backward input reorder");
    execute(e->prim_weights, e->args_w, "conv2d_train_backward weights");
    e->dw.store("conv2d_train_backward dw reorder");
    if (db)
      for (int64_t o = 0; o < s.o; ++o) db[o] += e->db_buf[static_cast<size_t>(o)];
  }
}

}  // namespace aigc::onednn
