// add, mul with PyTorch broadcasting: a and b are broadcast to y's shape (dims aligned from the
// right; each is equal to y's or 1; missing leading dims count as 1). y may alias a or b.
#include <algorithm>

#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

// A tensor seen through y's 4-d (left-padded) shape: element strides, 0 along broadcast dims.
struct Broadcast4 {
  const float* p;
  int64_t st[kMaxDims];
};

Broadcast4 broadcast_view(const Tensor& t, const Tensor& y, const char* op, const char* name) {
  check_f32(t, op, name);
  Broadcast4 v{t.ptr<float>(), {0, 0, 0, 0}};
  const int pad = kMaxDims - y.ndim();
  bool ok = t.ndim() <= y.ndim();
  for (int k = 0; ok && k < t.ndim(); ++k) {
    const int yd = y.ndim() - t.ndim() + k;  // y's dim this one aligns with
    const int64_t n = t.size(k);
    ok = n == y.size(yd) || n == 1;
    if (n != 1) v.st[pad + yd] = t.stride_bytes(k) / static_cast<int64_t>(sizeof(float));
  }
  if (!ok)
    error_throw(fmt::format("{}: {} {} does not broadcast to y {}", op, name, t.shape_str(), y.shape_str()), op);
  return v;
}

struct Shape4 {
  int64_t n[kMaxDims];
  int64_t st[kMaxDims];  // y's element strides
};

Shape4 shape4_of(const Tensor& y) {
  Shape4 s{{1, 1, 1, 1}, {0, 0, 0, 0}};
  const int pad = kMaxDims - y.ndim();
  for (int k = 0; k < y.ndim(); ++k) {
    s.n[pad + k] = y.size(k);
    s.st[pad + k] = y.stride_bytes(k) / static_cast<int64_t>(sizeof(float));
  }
  return s;
}

struct AddOp { static float apply(float a, float b) { return a + b; } };
struct MulOp { static float apply(float a, float b) { return a * b; } };

template <typename Op>
void binary_ref(const Tensor& a, const Tensor& b, Tensor& y, const char* op) {
  check_f32(y, op, "y");
  const Broadcast4 va = broadcast_view(a, y, op, "a"), vb = broadcast_view(b, y, op, "b");
  const Shape4 s = shape4_of(y);
  for (int64_t i0 = 0; i0 < s.n[0]; ++i0)
    for (int64_t i1 = 0; i1 < s.n[1]; ++i1)
      for (int64_t i2 = 0; i2 < s.n[2]; ++i2)
        for (int64_t i3 = 0; i3 < s.n[3]; ++i3) {
          const float x = va.p[i0 * va.st[0] + i1 * va.st[1] + i2 * va.st[2] + i3 * va.st[3]];
          const float z = vb.p[i0 * vb.st[0] + i1 * vb.st[1] + i2 * vb.st[2] + i3 * vb.st[3]];
          y.ptr<float>()[i0 * s.st[0] + i1 * s.st[1] + i2 * s.st[2] + i3 * s.st[3]] = Op::apply(x, z);
        }
}

// Inner loop over the last dim with the common stride patterns specialised so they vectorise.
template <typename Op>
void binary_row(const float* pa, int64_t sa, const float* pb, int64_t sb, float* py, int64_t sy, int64_t n) {
  if (sy == 1 && sa == 1 && sb == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) py[i] = Op::apply(pa[i], pb[i]);
  } else if (sy == 1 && sa == 1 && sb == 0) {
    const float z = pb[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) py[i] = Op::apply(pa[i], z);
  } else if (sy == 1 && sa == 0 && sb == 1) {
    const float x = pa[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) py[i] = Op::apply(x, pb[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) py[i * sy] = Op::apply(pa[i * sa], pb[i * sb]);
  }
}

// Reorders the four axes (of y, a and b alike) so y's strides descend: the inner loop then runs
// along y's densest dim, which is what vectorises (for a channels-last y, along C instead of W).
// Size-1 axes go first. Contiguous tensors keep their order.
void axes_to_memory_order(Shape4& s, Broadcast4& a, Broadcast4& b) {
  int perm[kMaxDims] = {0, 1, 2, 3};
  auto before = [&](int i, int j) {  // axis i goes before axis j
    const bool i1 = s.n[i] == 1, j1 = s.n[j] == 1;
    if (i1 != j1) return i1;
    return !i1 && s.st[i] > s.st[j];
  };
  for (int i = 1; i < kMaxDims; ++i)  // stable insertion sort
    for (int j = i; j > 0 && before(perm[j], perm[j - 1]); --j) std::swap(perm[j], perm[j - 1]);
  const Shape4 s0 = s;
  const Broadcast4 a0 = a, b0 = b;
  for (int k = 0; k < kMaxDims; ++k) {
    s.n[k] = s0.n[perm[k]], s.st[k] = s0.st[perm[k]];
    a.st[k] = a0.st[perm[k]], b.st[k] = b0.st[perm[k]];
  }
}

template <typename Op>
void binary_fast(const Tensor& a, const Tensor& b, Tensor& y, const char* op) {
  check_f32(y, op, "y");
  Broadcast4 va = broadcast_view(a, y, op, "a"), vb = broadcast_view(b, y, op, "b");
  Shape4 s = shape4_of(y);
  axes_to_memory_order(s, va, vb);
  const int64_t rows = s.n[0] * s.n[1] * s.n[2];
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i2 = r % s.n[2], i1 = (r / s.n[2]) % s.n[1], i0 = r / (s.n[2] * s.n[1]);
      binary_row<Op>(va.p + i0 * va.st[0] + i1 * va.st[1] + i2 * va.st[2], va.st[3],
                     vb.p + i0 * vb.st[0] + i1 * vb.st[1] + i2 * vb.st[2], vb.st[3],
                     y.ptr<float>() + i0 * s.st[0] + i1 * s.st[1] + i2 * s.st[2], s.st[3], s.n[3]);
    }
  }, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, s.n[3])));
}

}  // namespace

void ref::add(const Tensor& a, const Tensor& b, Tensor& y) { binary_ref<AddOp>(a, b, y, "add"); }
void ref::mul(const Tensor& a, const Tensor& b, Tensor& y) { binary_ref<MulOp>(a, b, y, "mul"); }
void add(const Tensor& a, const Tensor& b, Tensor& y) { binary_fast<AddOp>(a, b, y, "add"); }
void mul(const Tensor& a, const Tensor& b, Tensor& y) { binary_fast<MulOp>(a, b, y, "mul"); }

}  // namespace aigc::ops
