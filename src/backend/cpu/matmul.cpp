// matmul: out[b] = a[b] · b[b] for f32 a [B, M, K] and b [B, K, N] (or both 2-d), any strides:
// a transposed view such as k.transpose(-1, -2) is read in place (oneDNN takes the strides).
// b may have a batch of 1, broadcast over a's batch (as torch.matmul does).
#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"

namespace aigc::ops {

namespace {

void matmul_check(const Tensor& a, const Tensor& b, const Tensor& out) {
  AIGC_CHECK(a.type() == DType::F32 && b.type() == DType::F32 && out.type() == DType::F32,
             "matmul: f32 tensors expected, got a {}, b {}, out {}", a.shape_str(), b.shape_str(), out.shape_str());
  AIGC_CHECK((a.ndim() == 2 || a.ndim() == 3) && b.ndim() == a.ndim() && out.ndim() == a.ndim(),
             "matmul: a, b and out must all be 2-d or all 3-d, got a {}, b {}, out {}", a.shape_str(), b.shape_str(),
             out.shape_str());
  const bool batched = a.ndim() == 3;
  const int64_t B = batched ? a.size(0) : 1, Bb = batched ? b.size(0) : 1;
  AIGC_CHECK(a.size(-1) == b.size(-2) && (Bb == B || Bb == 1),
             "matmul: a {} and b {} do not match ([B, M, K] x [B, K, N])", a.shape_str(), b.shape_str());
  bool shape_ok = out.size(-2) == a.size(-2) && out.size(-1) == b.size(-1) && (!batched || out.size(0) == B);
  AIGC_CHECK(shape_ok, "matmul: out {} should be [{}{}, {}] for a {}, b {}", out.shape_str(),
             batched ? std::to_string(B) + ", " : "", a.size(-2), b.size(-1), a.shape_str(), b.shape_str());
  AIGC_CHECK(out.is_contiguous(), "matmul: out {} must be contiguous", out.shape_str());
}

// A [batch, rows, cols] f32 view of a 2-d or 3-d tensor, strides in elements.
onednn::Matrix matrix_of(const Tensor& t) {
  const bool batched = t.ndim() == 3;
  onednn::Matrix m;
  m.data = t.data();
  m.batch = batched ? t.size(0) : 1;
  m.rows = t.size(-2);
  m.cols = t.size(-1);
  m.stride_batch = batched ? t.stride_bytes(0) / 4 : 0;
  m.stride_row = t.stride_bytes(-2) / 4;
  m.stride_col = t.stride_bytes(-1) / 4;
  return m;
}

}  // namespace

void ref::matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  matmul_check(a, b, out);
  const onednn::Matrix ma = matrix_of(a), mb = matrix_of(b);
  const float* ap = a.ptr<float>();
  const float* bp = b.ptr<float>();
  float* op = out.ptr<float>();
  const int64_t M = ma.rows, K = ma.cols, N = mb.cols;
  for (int64_t bi = 0; bi < ma.batch; ++bi) {
    const float* ab = ap + bi * ma.stride_batch;
    const float* bb = bp + (mb.batch == 1 ? 0 : bi * mb.stride_batch);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k)
          acc += ab[m * ma.stride_row + k * ma.stride_col] * bb[k * mb.stride_row + n * mb.stride_col];
        op[(bi * M + m) * N + n] = acc;
      }
  }
}

void matmul(const Tensor& a, const Tensor& b, Tensor& out) {
  matmul_check(a, b, out);
  const onednn::Matrix ma = matrix_of(a), mb = matrix_of(b);
  const int64_t M = ma.rows, N = mb.cols;
  if (ma.cols == 0) {  // empty sum
    for (int64_t i = 0; i < out.numel(); ++i) out.ptr<float>()[i] = 0.0f;
    return;
  }
  onednn::matmul(ma, mb, nullptr, out.ptr<float>(), M * N, N);
}

}  // namespace aigc::ops
