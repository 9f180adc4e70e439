#include "text/kv_cache.h"

#include <cstring>

namespace aigc {

KvCache::KvCache(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, int64_t n_ctx) : n_ctx_(n_ctx) {
  AIGC_ASSERT(n_layer > 0 && n_head_kv > 0 && head_dim > 0 && n_ctx > 0);
  // Zeroed so that a view never exposes uninitialised memory (positions past n_past are masked).
  k_ = Tensor::zeros(DType::F32, {n_layer, n_head_kv, n_ctx, head_dim});
  v_ = Tensor::zeros(DType::F32, {n_layer, n_head_kv, n_ctx, head_dim});
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
