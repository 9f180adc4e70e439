// oneDNN glue: the one place that talks to oneDNN (dnnl.hpp stays out of every other file).
//
//   onednn::Matrix a{x_ptr, onednn::Type::F32, 1, M, K, 0, K, 1};   // [M, K] row-major
//   onednn::Matrix w{w_ptr, onednn::Type::F32, 1, K, N, 0, 1, K};   // w[N, K] seen as [K, N]
//   onednn::matmul(a, w, bias, y_ptr, 0, N);                        // y[M, N] = a · w + bias
//
// bf16: oneDNN 2.6 runs it only on AVX-512 CPUs; on others (AVX2) every bf16 operand or packed
// bf16 layer here is widened to f32 exactly and runs in f32 (PackedConv / PackedWeight::type() then
// say F32), so bf16 precision settings work everywhere, at the f32 rate.
//
// One CPU engine and one stream for the process. Creating a oneDNN primitive (choosing an
// implementation, JIT-compiling its kernels) costs far more than running a small one, so every
// primitive is cached here under a key made of everything it depends on: op, shapes, strides,
// types, attributes AND the thread count (oneDNN fixes its work split for the number of threads
// at creation). oneDNN also has a cache of its own, but looking it up still rebuilds the
// primitive descriptor each call; ours skips that.
//
// Threads: Debian's oneDNN uses the OpenMP runtime, the same one as aigc's thread pool, so it
// runs on omp_get_max_threads() threads. thread_count_set() sets that for the thread that calls
// it; before each execution we set it again for the calling thread so both agree everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace aigc::onednn {

enum class Type { F32, BF16 };

// Whether oneDNN computes in bf16 on this CPU (AVX-512); where not, bf16 runs in f32 (above).
bool bf16_supported();

// A batch of matrices [batch, rows, cols] with strides in elements (any order, >= 0).
struct Matrix {
  const void* data = nullptr;
  Type type = Type::F32;
  int64_t batch = 1, rows = 0, cols = 0;
  int64_t stride_batch = 0, stride_row = 0, stride_col = 1;
};

// c[b] = a[b] · w[b or 0] (+ bias[N]) in f32 accumulation. a [B, M, K], w [B or 1, K, N] (a batch
// of 1 is broadcast), c f32 [B, M, N] with strides (ldc_batch, ldc_row, 1). a and w must have the
// same type (f32 x f32 or bf16 x bf16). Operands whose strides the fast implementations cannot
// read (neither row- nor column-major inside a matrix) are first copied to row-major here.
void matmul(const Matrix& a, const Matrix& w, const float* bias, float* c, int64_t ldc_batch,
            int64_t ldc_row);

// The same product on the calling thread alone, for use inside a parallel region (a worker of
// parallel_for running many small products, as attention does per query block): the primitive is
// created for one thread and runs on a stream of the calling thread.
void matmul_serial(const Matrix& a, const Matrix& w, const float* bias, float* c, int64_t ldc_batch,
                   int64_t ldc_row);

struct Conv2dShape {
  int64_t n, c, h, w;      // input [N, C, H, W]
  int64_t o, kh, kw;       // weight [O, C, kh, kw]
  int64_t ho, wo;          // output [N, O, Ho, Wo]
  int64_t stride, pad;     // same on both axes, symmetric padding
};

// y = conv2d(x, w) + bias; all f32 and contiguous (NCHW / OIHW). oneDNN picks its preferred
// layouts (format "any"); x, w and y are reordered to and from them on every call.
void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y);

// Convolution weights prepared once for PackedConv2d: w [O, C, kh, kw] reordered into the layout
// oneDNN's convolution prefers, in f32 or bf16 (rounded once), bias kept in f32 and fused into the
// primitive. Activations: x [N, C, H, W] and y [N, O, Ho, Wo] f32 with element strides xs / ys,
// either NCHW contiguous or channels-last (NHWC memory seen as NCHW; zero-copy where the type
// allows). The primitive runs on NHWC (oneDNN's brgemm convolution, the fastest layout here);
// NCHW activations are reordered to and from it per call, bf16 activations converted on the way.
// Primitives are cached per (N, H, W, layouts, threads).
class PackedConv {
 public:
  // w: f32 contiguous OIHW; bias: f32 [o] or null. Throws aigc::Error when oneDNN has no kernel.
  // w null: nothing is packed or kept; the weights come with each run_nhwc call (pack_into
  // prepares them: PackedConv2d's Q8_0 layers dequantise into one reused buffer per call).
  PackedConv(const float* w, const float* bias, Type type, int64_t o, int64_t c, int64_t kh, int64_t kw,
             int64_t stride, int64_t pad);
  ~PackedConv();
  PackedConv(const PackedConv&) = delete;
  PackedConv& operator=(const PackedConv&) = delete;

  // x/y strides in elements, in NCHW dim order; ho/wo follow from the constructor's stride/pad.
  void run(const float* x, const int64_t xs[4], float* y, const int64_t ys[4], int64_t n, int64_t h,
           int64_t w) const;
  // The primitive alone: x dense NHWC already in the packed type (f32 or bf16), y dense NHWC f32.
  void run_nhwc(const void* x, float* y, int64_t n, int64_t h, int64_t w) const;
  // The same with weights given in the packed layout (packed_bytes() bytes, as pack_into writes).
  void run_nhwc(const void* x, float* y, int64_t n, int64_t h, int64_t w, const void* packed_w) const;
  // w: contiguous OIHW of `src` type (f32, or bf16 for a bf16 layer) -> dst in the packed layout.
  void pack_into(const void* w, Type src, void* dst) const;
  size_t packed_bytes() const;
  Type type() const;
  size_t bytes() const;  // packed weight (when kept) + bias

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Packed weights for PackedLinear: an opaque handle holding w[N, K] reordered once into the layout
// oneDNN's matmul prefers for up to max_m rows, and the primitives that use it.
class PackedWeight {
 public:
  // w: [N, K] with row stride ldw elements, of type `type`; max_m: the largest M it is tuned for.
  PackedWeight(const void* w, Type type, int64_t n, int64_t k, int64_t ldw, int64_t max_m);
  ~PackedWeight();
  PackedWeight(const PackedWeight&) = delete;
  PackedWeight& operator=(const PackedWeight&) = delete;

  // y[M, N] (row stride ldy) = x[M, K] (row stride ldx, f32) · w^T (+ bias). Activations are
  // converted to the packed type first (bf16 rounding for bf16 weights).
  void run(const float* x, int64_t m, int64_t ldx, const float* bias, float* y, int64_t ldy) const;
  Type type() const;
  size_t bytes() const;  // size of the packed copy

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace aigc::onednn

namespace aigc::onednn {

// Convolution for training: the forward (dropping nothing the backward needs) and both backward
// passes of y = conv2d(x, w) + bias, all f32 NCHW / OIHW contiguous. The backward passes
// ACCUMULATE into the caller's gradients (dx += ..., dw += ..., db += ...), as train/ kernels do.
// Each (pass, shape, threads) gets one cached entry holding its primitive, the reorders to and
// from oneDNN's preferred layouts, their buffers and the bound memory objects: once warm a call
// allocates nothing. Entries are locked while they run (the training loop calls from one thread).
void conv2d_train_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y);
// Gradients from dy [N, O, Ho, Wo]: dx [N, C, H, W] += from dy and w; dw [O, C, kh, kw] += from x
// and dy; db [O] += sum of dy. Any of dx, dw, db may be null (db needs dw).
void conv2d_train_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy, float* dx,
                           float* dw, float* db);

}  // namespace aigc::onednn
