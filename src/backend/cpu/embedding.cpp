// embedding: y[i, :] = table[ids[i], :] converted to f32; table [V, C] of any type row_to_f32
// converts (f32, f16, bf16, Q8_0, Q4_0, ...), rows contiguous. An id outside [0, V) throws.
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void embedding_check(const Tensor& table, std::span<const int32_t> ids, const Tensor& y) {
  check_f32(y, "embedding", "y");
  if (table.ndim() != 2 || !dtype_can_convert(table.type()))
    error_throw(fmt::format("embedding: table must be a 2-d tensor of a convertible type, got {}", table.shape_str()),
                "embedding");
  if (!dtype_traits(table.type()).quantized && table.size(1) > 1 &&
      table.stride_bytes(1) != static_cast<int64_t>(dtype_traits(table.type()).block_bytes))
    error_throw(fmt::format("embedding: table rows must be contiguous ({})", table.shape_str()), "embedding");
  if (y.ndim() != 2 || y.size(0) != static_cast<int64_t>(ids.size()) || y.size(1) != table.size(1) ||
      !rows_dense_f32(y))
    error_throw(fmt::format("embedding: y must be [{}, {}] f32 with contiguous rows, got {}", ids.size(),
                            table.size(1), y.shape_str()),
                "embedding");
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= table.size(0))
      error_throw(fmt::format("embedding: id {} at position {} is outside the table of {} rows", ids[i], i,
                              table.size(0)),
                  "embedding", "the token ids do not match this model's vocabulary");
}

void embedding_rows(const Tensor& table, std::span<const int32_t> ids, Tensor& y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i)
    row_to_f32(table.type(), table.row_ptr(ids[i]), static_cast<float*>(y.row_ptr(i)), table.size(1));
}

}  // namespace

void ref::embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y) {
  embedding_check(table, ids, y);
  embedding_rows(table, ids, y, 0, static_cast<int64_t>(ids.size()));
}

void embedding(const Tensor& table, std::span<const int32_t> ids, Tensor& y) {
  embedding_check(table, ids, y);
  parallel_for(static_cast<int64_t>(ids.size()),
               [&](int64_t i0, int64_t i1) { embedding_rows(table, ids, y, i0, i1); }, 16);
}

}  // namespace aigc::ops
