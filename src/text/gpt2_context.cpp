// Forward pass of GPT-2 for T tokens at positions p0 .. p0+T-1 (T tokens, C = n_embd, H = n_head,
// D = head_dim, F = n_ff, V = n_vocab):
//   x = token_embd[tokens] + position_embd[p0 .. p0+T)                // [T, C]
//   per layer:
//     h = layer_norm(x) * attn_norm + attn_norm_b
//     [q | k | v] = h Wqkv^T + bqkv                                    // [T, 3C]; k, v into the cache
//     a = attention(q, cache k/v [0, p0+T), causal, q_offset p0)      // [T, C]
//     x += a Wo^T + bo
//     h = layer_norm(x) * ffn_norm + ffn_norm_b
//     x += gelu_tanh(h Wup^T + bup) Wdown^T + bdown
//   logits = layer_norm(x) * output_norm + output_norm_b · Wout^T     // [T or 1, V]
// Every buffer is a view of the arena carved in the constructor: eval() allocates nothing.
#include "text/gpt2_context.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc {

namespace {

template <size_t N>
Tensor view(float* data, std::array<int64_t, N> shape) {
  return Tensor::view_of(DType::F32, std::span<const int64_t>(shape.data(), N), data);
}

size_t aligned(size_t bytes) { return (bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign; }

int64_t context_size(const Gpt2Hparams& hp, const TextContextParams& p) {
  const int64_t n = p.n_ctx > 0 ? p.n_ctx : hp.n_ctx_train;
  if (n > hp.n_ctx_train)
    error_throw(fmt::format("context size {} exceeds the model's {} learned positions (position_embd.weight rows)", n,
                            hp.n_ctx_train),
                "Gpt2Context", fmt::format("GPT-2 cannot go past its context_length: use -c {} or less", hp.n_ctx_train));
  if (n <= 0) error_throw(fmt::format("context size {} is out of range", n), "Gpt2Context");
  if (p.n_batch <= 0) error_throw(fmt::format("n_batch {} must be positive", p.n_batch), "Gpt2Context");
  return n;
}

size_t context_arena_bytes(const Gpt2Hparams& hp, int64_t B, bool logits_all) {
  const int64_t C = hp.n_embd;
  const int64_t floats[] = {B * C, B * C, B * 3 * C, B * C, B * C, B * C, B * hp.n_ff, (logits_all ? B : 1) * hp.n_vocab};
  size_t bytes = aligned(static_cast<size_t>(B) * sizeof(int32_t));
  for (int64_t n : floats) bytes += aligned(static_cast<size_t>(n) * sizeof(float));
  return bytes;
}

}  // namespace

std::unique_ptr<TextContext> Gpt2Model::context_create(TextContextParams params) const {
  return std::make_unique<Gpt2Context>(*this, params);
}

Gpt2Context::Gpt2Context(const Gpt2Model& model, TextContextParams params)
    : TextContext(params, model.hp.n_vocab, context_size(model.hp, params)),
      model_(model),
      cache_(model.hp.n_layer, model.hp.n_head, model.hp.head_dim, n_ctx_, params.cache_type_k, params.cache_type_v),
      arena_(context_arena_bytes(model.hp, n_batch_, params.logits_all)) {
  const Gpt2Hparams& hp = model.hp;
  if (params.n_threads > 0) thread_count_set(params.n_threads);
  const int64_t B = n_batch_, C = hp.n_embd;
  x_ = arena_.alloc(DType::F32, {B, C});
  h_ = arena_.alloc(DType::F32, {B, C});
  qkv_ = arena_.alloc(DType::F32, {B, 3 * C});
  q_ = arena_.alloc(DType::F32, {B, C});
  attn_ = arena_.alloc(DType::F32, {B, C});
  o_ = arena_.alloc(DType::F32, {B, C});
  up_ = arena_.alloc(DType::F32, {B, hp.n_ff});
  logits_ = arena_.alloc(DType::F32, {params.logits_all ? B : 1, hp.n_vocab});
  pos_ = static_cast<int32_t*>(arena_.alloc_bytes(static_cast<size_t>(B) * sizeof(int32_t)));
}

void Gpt2Context::forward(std::span<const int32_t> tokens, bool want_logits) {
  const Gpt2Hparams& hp = model_.hp;
  const int64_t T = static_cast<int64_t>(tokens.size()), p0 = n_past_;
  const int64_t C = hp.n_embd, H = hp.n_head, D = hp.head_dim, F = hp.n_ff;
  const float eps = hp.norm_eps;
  for (int64_t i = 0; i < T; ++i) pos_[i] = static_cast<int32_t>(p0 + i);
  const std::span<const int32_t> positions(pos_, static_cast<size_t>(T));

  Tensor x = view<2>(x_.ptr<float>(), {T, C});  // residual stream [T, C]
  Tensor h = view<2>(h_.ptr<float>(), {T, C});
  Tensor qkv = view<2>(qkv_.ptr<float>(), {T, 3 * C});
  Tensor a = view<2>(attn_.ptr<float>(), {T, C});
  Tensor o = view<2>(o_.ptr<float>(), {T, C});
  Tensor u = view<2>(up_.ptr<float>(), {T, F});
  // Attention views: [T, H, D] buffers seen as [1, H, T, D].
  const Tensor q_bhtd = view<4>(q_.ptr<float>(), {1, T, H, D}).permute({0, 2, 1, 3});
  Tensor a_bhtd = view<4>(attn_.ptr<float>(), {1, T, H, D}).permute({0, 2, 1, 3});
  ops::AttentionParams ap;
  ap.causal = true;
  ap.q_offset = p0;

  ops::embedding(model_.tok_embd, tokens, x);
  ops::embedding(model_.pos_embd, positions, h);
  ops::add(x, h, x);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const Gpt2Layer& L = model_.layers[static_cast<size_t>(il)];
    ops::layer_norm(x, &L.attn_norm, &L.attn_norm_b, eps, h);
    ops::linear(h, L.wqkv, &L.bqkv, qkv);
    // Split the fused rows [q | k | v]: q to its own buffer, k and v straight into the cache.
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(q_.ptr<float>() + t * C, qkv.ptr<float>() + t * 3 * C, static_cast<size_t>(C) * sizeof(float));
    cache_.store(il, p0, T, qkv.ptr<float>() + C, 3 * C, qkv.ptr<float>() + 2 * C, 3 * C);
    ops::attention(q_bhtd, cache_.k_view(il, p0 + T), cache_.v_view(il, p0 + T), a_bhtd, ap);
    ops::linear(a, L.wo, &L.bo, o);
    ops::add(x, o, x);
    ops::layer_norm(x, &L.ffn_norm, &L.ffn_norm_b, eps, h);
    ops::linear(h, L.w_up, &L.b_up, u);
    ops::gelu_tanh(u, u);
    ops::linear(u, L.w_down, &L.b_down, o);
    ops::add(x, o, x);
  }
  n_past_ = p0 + T;
  if (!want_logits) return;
  const int64_t V = hp.n_vocab;
  if (params_.logits_all) {
    ops::layer_norm(x, &model_.output_norm, &model_.output_norm_b, eps, h);
    out_ = view<2>(logits_.ptr<float>(), {T, V});
    ops::linear(h, model_.output, nullptr, out_);
  } else {
    const Tensor x_last = view<2>(x_.ptr<float>() + (T - 1) * C, {1, C});
    Tensor h_last = view<2>(h_.ptr<float>(), {1, C});
    ops::layer_norm(x_last, &model_.output_norm, &model_.output_norm_b, eps, h_last);
    out_ = view<2>(logits_.ptr<float>(), {1, V});
    ops::linear(h_last, model_.output, nullptr, out_);
  }
}

}  // namespace aigc
