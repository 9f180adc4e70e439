// Forward pass of the Llama family, for T tokens at positions p0 .. p0+T-1 (shape letters: T tokens,
// C = n_embd, H = n_head, Hkv = n_head_kv, D = head_dim, F = n_ff, V = n_vocab):
//   x = embedding(tokens)                                        // [T, C]
//   per layer:
//     h = rms_norm(x) * attn_norm
//     q = h Wq^T (+bq) -> rope -> [T, H, D];  k, v -> [T, Hkv, D] written into the cache at p0..
//     a = attention(q, cache k/v [0, p0+T), causal, q_offset p0)  // [T, H*D]
//     x += a Wo^T
//     h = rms_norm(x) * ffn_norm
//     x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T
//   logits = rms_norm(x) * output_norm · Wout^T                  // [T or 1, V]
// Every buffer is a view of the arena carved in the constructor: eval() allocates nothing
// (tests/unit/test_model_llama.cpp counts operator new calls to hold us to it).
#include "text/llama_context.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc {

namespace {

// Contiguous view of `data` with a shape given inline (Tensor::reshape builds a vector; this does not).
template <size_t N>
Tensor view(float* data, std::array<int64_t, N> shape) {
  return Tensor::view_of(DType::F32, std::span<const int64_t>(shape.data(), N), data);
}

size_t aligned(size_t bytes) { return (bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign; }

int64_t context_size(const LlamaHparams& hp, const LlamaContextParams& p) {
  const int64_t n = p.n_ctx > 0 ? p.n_ctx : hp.n_ctx_train;
  if (n <= 0 || n > LlamaModel::kMaxContext)
    error_throw(fmt::format("context size {} is out of range (1 to {})", n, LlamaModel::kMaxContext), "LlamaContext",
                p.n_ctx > 0 ? "use a smaller context (n_ctx, -c/--ctx-size)"
                            : "the file's context_length is unusable: pass a context size (n_ctx, -c/--ctx-size)");
  if (p.n_batch <= 0) error_throw(fmt::format("n_batch {} must be positive", p.n_batch), "LlamaContext");
  return n;
}

// Bytes of every activation buffer for B = n_batch rows, each rounded up to the arena's alignment.
size_t context_arena_bytes(const LlamaHparams& hp, int64_t B, bool logits_all) {
  const int64_t C = hp.n_embd, Q = hp.n_head * hp.head_dim, KV = hp.n_head_kv * hp.head_dim;
  const int64_t floats[] = {B * C, B * C, B * Q, B * KV, B * KV, B * Q, B * C, B * hp.n_ff, B * hp.n_ff,
                            (logits_all ? B : 1) * hp.n_vocab};
  size_t bytes = aligned(static_cast<size_t>(B) * sizeof(int32_t));
  for (int64_t n : floats) bytes += aligned(static_cast<size_t>(n) * sizeof(float));
  return bytes;
}

}  // namespace

LlamaContext::LlamaContext(const LlamaModel& model, LlamaContextParams params)
    : TextContext(params, model.hp.n_vocab, context_size(model.hp, params)),
      model_(model),
      cache_(model.hp.n_layer, model.hp.n_head_kv, model.hp.head_dim, n_ctx_, params.cache_type_k, params.cache_type_v),
      arena_(context_arena_bytes(model.hp, n_batch_, params.logits_all)) {
  const LlamaHparams& hp = model.hp;
  if (params.n_threads > 0) thread_count_set(params.n_threads);
  const int64_t B = n_batch_, C = hp.n_embd, Q = hp.n_head * hp.head_dim, KV = hp.n_head_kv * hp.head_dim;
  const int64_t F = hp.n_ff, V = hp.n_vocab;
  const int64_t logit_rows = params.logits_all ? B : 1;
  x_ = arena_.alloc(DType::F32, {B, C});
  h_ = arena_.alloc(DType::F32, {B, C});
  q_ = arena_.alloc(DType::F32, {B, Q});
  k_ = arena_.alloc(DType::F32, {B, KV});
  v_ = arena_.alloc(DType::F32, {B, KV});
  attn_ = arena_.alloc(DType::F32, {B, Q});
  o_ = arena_.alloc(DType::F32, {B, C});
  gate_ = arena_.alloc(DType::F32, {B, F});
  up_ = arena_.alloc(DType::F32, {B, F});
  logits_ = arena_.alloc(DType::F32, {logit_rows, V});
  pos_ = static_cast<int32_t*>(arena_.alloc_bytes(static_cast<size_t>(B) * sizeof(int32_t)));
}

std::unique_ptr<TextContext> LlamaModel::context_create(TextContextParams params) const {
  return std::make_unique<LlamaContext>(*this, params);
}

void LlamaContext::forward(std::span<const int32_t> tokens, bool want_logits) {
  const LlamaHparams& hp = model_.hp;
  const int64_t T = static_cast<int64_t>(tokens.size()), p0 = n_past_;
  const int64_t C = hp.n_embd, H = hp.n_head, Hkv = hp.n_head_kv, D = hp.head_dim, F = hp.n_ff;
  for (int64_t i = 0; i < T; ++i) pos_[i] = static_cast<int32_t>(p0 + i);
  const std::span<const int32_t> positions(pos_, static_cast<size_t>(T));

  Tensor x = view<2>(x_.ptr<float>(), {T, C});           // residual stream [T, C]
  Tensor h = view<2>(h_.ptr<float>(), {T, C});
  Tensor q = view<2>(q_.ptr<float>(), {T, H * D});
  Tensor q3 = view<3>(q_.ptr<float>(), {T, H, D});
  Tensor k = view<2>(k_.ptr<float>(), {T, Hkv * D});
  Tensor k3 = view<3>(k_.ptr<float>(), {T, Hkv, D});
  Tensor v = view<2>(v_.ptr<float>(), {T, Hkv * D});
  Tensor a = view<2>(attn_.ptr<float>(), {T, H * D});
  Tensor o = view<2>(o_.ptr<float>(), {T, C});
  Tensor g = view<2>(gate_.ptr<float>(), {T, F});
  Tensor u = view<2>(up_.ptr<float>(), {T, F});
  // Attention views: [T, H, D] buffers seen as [1, H, T, D].
  const Tensor q_bhtd = view<4>(q_.ptr<float>(), {1, T, H, D}).permute({0, 2, 1, 3});
  Tensor a_bhtd = view<4>(attn_.ptr<float>(), {1, T, H, D}).permute({0, 2, 1, 3});

  ops::RopeParams rp;
  rp.n_dims = hp.n_rot;
  rp.freq_base = hp.rope_freq_base;
  rp.freq_scale = hp.rope_freq_scale;
  rp.neox = hp.rope_neox;
  rp.freq_factors = model_.rope_freqs.defined() && model_.rope_freqs.numel() > 0 ? model_.rope_freqs.ptr<float>() : nullptr;
  ops::AttentionParams ap;
  ap.causal = true;
  ap.q_offset = p0;

  ops::embedding(model_.tok_embd, tokens, x);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const LlamaLayer& L = model_.layers[static_cast<size_t>(il)];
    ops::rms_norm(x, &L.attn_norm, hp.rms_eps, h);
    // Q, K, V (and below gate, up) share their input: one parallel region when the weights allow
    // (ops::linear_group; the same results as three ops::linear)
    const ops::LinearGroupItem qkv[] = {{&L.wq, hp.qkv_bias ? &L.bq : nullptr, &q},
                                        {&L.wk, hp.qkv_bias ? &L.bk : nullptr, &k},
                                        {&L.wv, hp.qkv_bias ? &L.bv : nullptr, &v}};
    ops::linear_group(qkv, h);
    ops::rope(q3, positions, rp, q3);
    ops::rope(k3, positions, rp, k3);
    cache_.store(il, p0, T, k.ptr<float>(), Hkv * D, v.ptr<float>(), Hkv * D);
    ops::attention(q_bhtd, cache_.k_view(il, p0 + T), cache_.v_view(il, p0 + T), a_bhtd, ap);
    ops::linear(a, L.wo, nullptr, o);
    ops::add(x, o, x);
    ops::rms_norm(x, &L.ffn_norm, hp.rms_eps, h);
    const ops::LinearGroupItem gate_up[] = {{&L.w_gate, nullptr, &g}, {&L.w_up, nullptr, &u}};
    ops::linear_group(gate_up, h);
    ops::silu(g, g);
    ops::mul(g, u, g);
    ops::linear(g, L.w_down, nullptr, o);
    ops::add(x, o, x);
  }
  n_past_ = p0 + T;
  if (!want_logits) return;
  const int64_t V = hp.n_vocab;
  if (params_.logits_all) {
    ops::rms_norm(x, &model_.output_norm, hp.rms_eps, h);
    out_ = view<2>(logits_.ptr<float>(), {T, V});
    ops::linear(h, model_.output, nullptr, out_);
  } else {
    const Tensor x_last = view<2>(x_.ptr<float>() + (T - 1) * C, {1, C});
    Tensor h_last = view<2>(h_.ptr<float>(), {1, C});
    ops::rms_norm(x_last, &model_.output_norm, hp.rms_eps, h_last);
    out_ = view<2>(logits_.ptr<float>(), {1, V});
    ops::linear(h_last, model_.output, nullptr, out_);
  }
}

}  // namespace aigc
