// copy: any strides and any convertible type to any strides and type (permute/transpose copies,
// f32 <-> f16/bf16, quantise/dequantise rows). The last dim of a quantised tensor must be contiguous.
#include <cstring>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void copy_check(const Tensor& src, const Tensor& dst) {
  AIGC_CHECK(src.numel() == dst.numel() && src.same_shape(dst), "copy: shape {} to {}", src.shape_str(),
             dst.shape_str());
  AIGC_CHECK(dtype_can_convert(src.type()) && dtype_can_convert(dst.type()),
             "copy: conversion {} -> {} is not supported", dtype_name(src.type()), dtype_name(dst.type()));
}

bool last_dim_dense(const Tensor& t) {
  return t.ndim() == 0 || t.size(-1) <= 1 || dtype_traits(t.type()).quantized ||
         t.stride_bytes(-1) == static_cast<int64_t>(dtype_traits(t.type()).block_bytes);
}

// Copies rows [r0, r1) through an f32 row buffer.
void copy_rows(const Tensor& src, Tensor& dst, int64_t r0, int64_t r1) {
  const int64_t n = src.ndim() == 0 ? 1 : src.size(-1);
  std::vector<float> buf(n);
  const bool src_dense = last_dim_dense(src), dst_dense = last_dim_dense(dst);
  const size_t src_es = dtype_traits(src.type()).block_bytes, dst_es = dtype_traits(dst.type()).block_bytes;
  std::vector<char> tmp_in(src_dense ? 0 : n * src_es), tmp_out(dst_dense ? 0 : n * dst_es);
  for (int64_t r = r0; r < r1; ++r) {
    const char* s = static_cast<const char*>(src.row_ptr(r));
    if (!src_dense) {  // gather a strided row (plain types only)
      for (int64_t i = 0; i < n; ++i) std::memcpy(&tmp_in[i * src_es], s + i * src.stride_bytes(-1), src_es);
      s = tmp_in.data();
    }
    row_to_f32(src.type(), s, buf.data(), n);
    char* d = static_cast<char*>(dst.row_ptr(r));
    if (dst_dense) {
      row_from_f32(dst.type(), buf.data(), d, n);
    } else {
      row_from_f32(dst.type(), buf.data(), tmp_out.data(), n);
      for (int64_t i = 0; i < n; ++i) std::memcpy(d + i * dst.stride_bytes(-1), &tmp_out[i * dst_es], dst_es);
    }
  }
}

}  // namespace

void ref::copy(const Tensor& src, Tensor& dst) {
  copy_check(src, dst);
  copy_rows(src, dst, 0, src.rows());
}

void copy(const Tensor& src, Tensor& dst) {
  copy_check(src, dst);
  parallel_for(src.rows(), [&](int64_t r0, int64_t r1) { copy_rows(src, dst, r0, r1); }, 16);
}

}  // namespace aigc::ops
