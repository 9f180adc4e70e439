// KvCache: keys and values of every layer for positions 0..n_ctx-1, f32 or f16 (half the memory,
// as llama.cpp's default cache; keys and values each their own type), allocated once.
//
// Layout per layer: [n_head_kv, n_ctx, head_dim] (one contiguous block for K, one for V), so the
// first `n` positions of a layer are the strided view [1, n_head_kv, n, head_dim] that
// ops::attention reads directly (rows dense, head stride n_ctx * head_dim).
//
//   KvCache cache(n_layer, n_head_kv, head_dim, n_ctx);             // f32 (or k_type, v_type)
//   cache.store(layer, pos, T, k, k_step, v, v_step);  // f32 [T, n_head_kv, head_dim], rounded if f16
//   Tensor k_all = cache.k_view(layer, pos + T);  // [1, n_head_kv, pos + T, head_dim] for attention
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace aigc {

class KvCache {
 public:
  KvCache() = default;
  // k_type, v_type: DType::F32 or DType::F16.
  KvCache(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, int64_t n_ctx, DType k_type = DType::F32,
          DType v_type = DType::F32);

  int64_t n_ctx() const { return n_ctx_; }
  size_t nbytes() const { return k_.nbytes() + v_.nbytes(); }

  // Writes positions [pos, pos + T) of one layer from f32 keys and values laid out [T, n_head_kv,
  // head_dim] with heads dense and k_step / v_step floats from one position to the next,
  // converting to the cache's types.
  void store(int64_t layer, int64_t pos, int64_t T, const float* k, int64_t k_step, const float* v, int64_t v_step);

  // Positions [0, n) of one layer as [1, n_head_kv, n, head_dim].
  Tensor k_view(int64_t layer, int64_t n) const { return view(k_, layer, n); }
  Tensor v_view(int64_t layer, int64_t n) const { return view(v_, layer, n); }

 private:
  // Positions [pos, pos + T) of one layer as [T, n_head_kv, head_dim] (strided; rows dense).
  Tensor rows(const Tensor& t, int64_t layer, int64_t pos, int64_t T) const;
  Tensor view(const Tensor& t, int64_t layer, int64_t n) const;

  int64_t n_ctx_ = 0;
  Tensor k_, v_;  // [n_layer, n_head_kv, n_ctx, head_dim]
};

}  // namespace aigc
