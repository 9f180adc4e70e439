// Scaled dot-product attention: out = softmax(q k^T * scale [+ causal mask]) v per (batch, head).
//   q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], out [B, Hq, Tq, Dv]; any strides (e.g. a
//   [B, T, H, D] projection permuted to [B, H, T, D]). Query head h reads kv head h / (Hq / Hkv).
//   Causal: query i is at absolute position q_offset + i and sees keys j <= q_offset + i.
// The fast kernel never forms the [Tq, Tk] score matrix: it streams over key blocks with a running
// max and sum (kernels_f32_impl.h attention_rows).
#include <cmath>
#include <vector>

#include "backend/cpu/kernels_f32.h"
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

void attention_check(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const AttentionParams& p) {
  const char* op = "attention";
  check_f32(q, op, "q");
  check_f32(k, op, "k");
  check_f32(v, op, "v");
  check_f32(out, op, "out");
  auto fail = [&](const std::string& why) {
    error_throw(fmt::format("attention: {} (q {}, k {}, v {}, out {})", why, q.shape_str(), k.shape_str(),
                            v.shape_str(), out.shape_str()),
                op, "expected q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], out [B, Hq, Tq, Dv]");
  };
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 || out.ndim() != 4) fail("all tensors must be 4-d");
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0)) fail("batch sizes differ");
  if (k.size(1) != v.size(1) || k.size(1) == 0 || q.size(1) % k.size(1) != 0)
    fail("query heads must be a multiple of the key/value heads");
  if (k.size(2) != v.size(2)) fail("k and v have different lengths");
  if (k.size(3) != q.size(3)) fail("q and k head dims differ");
  if (out.size(0) != q.size(0) || out.size(1) != q.size(1) || out.size(2) != q.size(2) || out.size(3) != v.size(3))
    fail("out shape");
  if (k.size(2) == 0 && q.size(2) > 0) fail("no keys");
  if (p.q_offset < 0) fail(fmt::format("q_offset {} is negative", p.q_offset));
}

float attention_scale(const Tensor& q, const AttentionParams& p) {
  return p.scale != 0.0f ? p.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(3))));
}

}  // namespace

void ref::attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) {
  attention_check(q, k, v, out, p);
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const int64_t group = Hq / Hkv;
  const double scale = attention_scale(q, p);
  std::vector<double> s(Tk), o(Dv);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t valid = p.causal ? std::min(Tk, p.q_offset + i + 1) : Tk;
        double m = -INFINITY;
        for (int64_t j = 0; j < valid; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q.at<float>(b, h, i, d)) * k.at<float>(b, hk, j, d);
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < valid; ++j) sum += s[j] = std::exp(s[j] - m);
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < valid; ++j)
          for (int64_t c = 0; c < Dv; ++c) o[c] += s[j] * v.at<float>(b, hk, j, c);
        for (int64_t c = 0; c < Dv; ++c) out.at<float>(b, h, i, c) = static_cast<float>(o[c] / sum);
      }
    }
}

void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) {
  attention_check(q, k, v, out, p);
  if (!rows_dense_f32(q) || !rows_dense_f32(k) || !rows_dense_f32(v) || !rows_dense_f32(out))
    return ref::attention(q, k, v, out, p);
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const int64_t group = Hq / Hkv;
  const float scale = attention_scale(q, p);
  const KernelsF32& kern = kernels_f32();
  // Tasks: (b, h, block of queries). Blocks of 32 queries keep a head's K/V warm in cache while
  // still giving threads enough tasks at small batch sizes.
  constexpr int64_t kTaskQueries = 32;
  const int64_t q_blocks = (Tq + kTaskQueries - 1) / kTaskQueries;
  auto row_stride = [](const Tensor& t) { return t.stride_bytes(2) / static_cast<int64_t>(sizeof(float)); };
  const int64_t scratch_floats = attention_scratch_floats(D, Dv);
  parallel_for(B * Hq * q_blocks, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scratch;  // grows once per thread, reused across calls
    if (static_cast<int64_t>(scratch.size()) < scratch_floats) scratch.resize(scratch_floats);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t qblk = t % q_blocks, h = (t / q_blocks) % Hq, b = t / (q_blocks * Hq);
      const int64_t hk = h / group, i0 = qblk * kTaskQueries;
      AttentionRows a;
      a.q = &q.at<float>(b, h, i0, 0);
      a.q_stride = row_stride(q);
      a.k = &k.at<float>(b, hk, 0, 0);
      a.k_stride = row_stride(k);
      a.v = &v.at<float>(b, hk, 0, 0);
      a.v_stride = row_stride(v);
      a.out = &out.at<float>(b, h, i0, 0);
      a.out_stride = row_stride(out);
      a.nq = std::min(kTaskQueries, Tq - i0);
      a.tk = Tk;
      a.d = D;
      a.dv = Dv;
      a.scale = scale;
      a.causal_pos0 = p.causal ? p.q_offset + i0 : -1;
      kern.attention(a, scratch.data());
    }
  });
}

}  // namespace aigc::ops
