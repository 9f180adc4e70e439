// Small shared helpers of the CPU ops: argument checks that throw aigc::Error naming the op, and
// strided element addressing for the reference kernels.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace aigc::ops {

inline void check_f32(const Tensor& t, const char* op, const char* name) {
  if (t.type() != DType::F32)
    error_throw(fmt::format("{}: {} must be f32, got {}", op, name, t.shape_str()), op);
  if (t.data() == nullptr && t.numel() != 0)
    error_throw(fmt::format("{}: {} has no data", op, name), op);
}

// f32 or f16 (attention's k and v: an f16 KV cache).
inline void check_f32_or_f16(const Tensor& t, const char* op, const char* name) {
  if (t.type() != DType::F32 && t.type() != DType::F16)
    error_throw(fmt::format("{}: {} must be f32 or f16, got {}", op, name, t.shape_str()), op);
  if (t.data() == nullptr && t.numel() != 0)
    error_throw(fmt::format("{}: {} has no data", op, name), op);
}

inline void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (!a.same_shape(b))
    error_throw(fmt::format("{}: shapes differ: {} and {}", op, a.shape_str(), b.shape_str()), op);
}

// The last dim is dense, so row r starts at row_ptr(r) and its elements are consecutive floats.
inline bool rows_dense_f32(const Tensor& t) {
  return t.ndim() == 0 || t.size(-1) <= 1 || t.stride_bytes(-1) == static_cast<int64_t>(sizeof(float));
}

// The same for a tensor of any unquantised type (elements of its own size).
inline bool rows_dense(const Tensor& t) {
  return t.ndim() == 0 || t.size(-1) <= 1 ||
         t.stride_bytes(-1) == static_cast<int64_t>(dtype_traits(t.type()).block_bytes);
}

// Row-major multi-index of flat index `flat` over `shape`.
inline void index_of(std::span<const int64_t> shape, int64_t flat, int64_t* idx) {
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
}

// Element `flat` (row-major over t's shape) of an f32 tensor with any strides.
inline float& f32_at_flat(Tensor& t, int64_t flat) {
  int64_t idx[kMaxDims];
  index_of(t.shape(), flat, idx);
  char* p = static_cast<char*>(t.data());
  for (int d = 0; d < t.ndim(); ++d) p += idx[d] * t.stride_bytes(d);
  return *reinterpret_cast<float*>(p);
}
inline float f32_at_flat(const Tensor& t, int64_t flat) { return f32_at_flat(const_cast<Tensor&>(t), flat); }

}  // namespace aigc::ops
