#include "text/kv_cache.h"

#include "core/error.h"
#include "core/quant.h"

namespace aigc {

KvCache::KvCache(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, int64_t n_ctx, DType k_type, DType v_type)
    : n_ctx_(n_ctx) {
  AIGC_ASSERT(n_layer > 0 && n_head_kv > 0 && head_dim > 0 && n_ctx > 0);
  for (DType t : {k_type, v_type})
    if (t != DType::F32 && t != DType::F16)
      error_throw(fmt::format("KV cache type {} is not supported", dtype_name(t)), "KvCache", "use f32 or f16");
  // Zeroed so that a view never exposes uninitialised memory (positions past n_past are masked).
  k_ = Tensor::zeros(k_type, {n_layer, n_head_kv, n_ctx, head_dim});
  v_ = Tensor::zeros(v_type, {n_layer, n_head_kv, n_ctx, head_dim});
}

namespace {

// dst [T, H, D] (a cache view) = src, f32 rows of D with heads dense, `step` floats per position.
void rows_store(const float* src, int64_t step, Tensor dst) {
  const int64_t T = dst.size(0), H = dst.size(1), D = dst.size(2);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) row_from_f32(dst.type(), src + t * step + h * D, &dst.at<char>(t, h, 0), D);
}

}  // namespace

void KvCache::store(int64_t layer, int64_t pos, int64_t T, const float* k, int64_t k_step, const float* v,
                    int64_t v_step) {
  rows_store(k, k_step, rows(k_, layer, pos, T));
  rows_store(v, v_step, rows(v_, layer, pos, T));
}

Tensor KvCache::rows(const Tensor& t, int64_t layer, int64_t pos, int64_t T) const {
  AIGC_ASSERT(pos >= 0 && T >= 0 && pos + T <= n_ctx_);
  return t.select(0, layer).slice(1, pos, T).permute({1, 0, 2});
}

Tensor KvCache::view(const Tensor& t, int64_t layer, int64_t n) const {
  AIGC_ASSERT(n >= 0 && n <= n_ctx_);
  return t.slice(0, layer, 1).slice(2, 0, n);
}

}  // namespace aigc
