// Backward kernels (see backward.h). The reference kernels are obvious loops accumulating in
// double; the fast ones split independent rows (or (sequence, kv head) pairs, or columns for the
// reductions over rows) across threads, accumulate in f32, and run the linear backward as two
// oneDNN matmuls through ops::matmul.
#include "train/backward.h"

#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/kernels_f32.h"
#include "core/thread_pool.h"

namespace aigc::train::grad {

namespace {

void check_f32_dense(const Tensor& t, const char* op, const char* name) {
  AIGC_CHECK(t.type() == DType::F32 && t.is_contiguous(), "{}: {} must be contiguous f32, got {}", op, name,
             t.shape_str());
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
  AIGC_CHECK(a.numel() == b.numel(), "{}: sizes differ: {} and {}", op, a.shape_str(), b.shape_str());
}

void linear_check(const Tensor& x, const Tensor& w, const Tensor& dy, const Tensor* dx, const Tensor* dw,
                  const Tensor& scratch) {
  for (const Tensor* t : {&x, &w, &dy, &scratch}) check_f32_dense(*t, "linear_backward", "tensor");
  AIGC_CHECK(x.ndim() == 2 && w.ndim() == 2 && dy.ndim() == 2 && x.size(1) == w.size(1) &&
                 dy.size(0) == x.size(0) && dy.size(1) == w.size(0),
             "linear_backward: x {}, w {}, dy {} do not match ([N, K], [O, K], [N, O])", x.shape_str(),
             w.shape_str(), dy.shape_str());
  if (dx) check_same(*dx, x, "linear_backward");
  if (dw) check_same(*dw, w, "linear_backward");
  AIGC_CHECK(scratch.numel() >= std::max(x.numel(), w.numel()), "linear_backward: scratch {} too small",
             scratch.shape_str());
}

void rms_check(const Tensor& x, const Tensor& g, const Tensor& dy, const Tensor& dx, const Tensor& dg) {
  for (const Tensor* t : {&x, &g, &dy, &dx, &dg}) check_f32_dense(*t, "rms_norm_backward", "tensor");
  check_same(x, dy, "rms_norm_backward");
  check_same(x, dx, "rms_norm_backward");
  AIGC_CHECK(g.numel() == x.size(-1) && dg.numel() == g.numel(), "rms_norm_backward: g {} for x {}",
             g.shape_str(), x.shape_str());
}

void attention_check(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                     const AttentionShape& s, const Tensor& out) {
  const int64_t N = s.B * s.T;
  AIGC_CHECK(s.B > 0 && s.T > 0 && s.G > 0 && s.D > 0 && s.H % s.G == 0,
             "attention: bad shape B {} T {} H {} G {} D {}", s.B, s.T, s.H, s.G, s.D);
  for (const Tensor* t : {&q, &k, &v, &probs, &out}) check_f32_dense(*t, "attention", "tensor");
  AIGC_CHECK(q.numel() == N * s.H * s.D && out.numel() == q.numel() && k.numel() == N * s.G * s.D &&
                 v.numel() == k.numel() && probs.numel() == s.B * s.H * s.T * s.T,
             "attention: q {}, k {}, v {}, out {}, probs {} do not match B {} T {} H {} G {} D {}", q.shape_str(),
             k.shape_str(), v.shape_str(), out.shape_str(), probs.shape_str(), s.B, s.T, s.H, s.G, s.D);
}

float attention_scale(const AttentionShape& s) {
  return s.scale != 0.0f ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.D));
}

void ce_check(const Tensor& logits, std::span<const int32_t> targets) {
  check_f32_dense(logits, "cross_entropy", "logits");
  AIGC_CHECK(logits.ndim() == 2 && static_cast<int64_t>(targets.size()) == logits.size(0),
             "cross_entropy: logits {} for {} targets", logits.shape_str(), targets.size());
  const int64_t V = logits.size(1);
  for (size_t i = 0; i < targets.size(); ++i)
    AIGC_CHECK(targets[i] >= 0 && targets[i] < V, "cross_entropy: target {} = {} is outside [0, {})", i,
               targets[i], V);
}

// Attention for one (sequence b, kv head g): its H/G query heads. Acc is double (ref) or float.
template <typename Acc>
void attention_forward_group(const float* q, const float* k, const float* v, const AttentionShape& s, float scale,
                             int64_t b, int64_t g, float* out, float* probs) {
  const int64_t T = s.T, D = s.D, HD = s.H * D, GD = s.G * D, per = s.H / s.G;
  for (int64_t h = g * per; h < (g + 1) * per; ++h)
    for (int64_t i = 0; i < T; ++i) {
      const float* qi = q + (b * T + i) * HD + h * D;
      float* p = probs + ((h * s.B + b) * T + i) * T;
      Acc mx = -std::numeric_limits<Acc>::infinity();
      for (int64_t j = 0; j <= i; ++j) {
        const float* kj = k + (b * T + j) * GD + g * D;
        Acc dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += static_cast<Acc>(qi[d]) * kj[d];
        p[j] = static_cast<float>(dot * scale);
        mx = std::max<Acc>(mx, p[j]);
      }
      Acc sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        const Acc e = std::exp(static_cast<Acc>(p[j]) - mx);
        p[j] = static_cast<float>(e);
        sum += e;
      }
      for (int64_t j = 0; j <= i; ++j) p[j] = static_cast<float>(p[j] / sum);
      for (int64_t j = i + 1; j < T; ++j) p[j] = 0.0f;
      float* o = out + (b * T + i) * HD + h * D;
      for (int64_t d = 0; d < D; ++d) {
        Acc acc = 0;
        for (int64_t j = 0; j <= i; ++j) acc += static_cast<Acc>(p[j]) * v[(b * T + j) * GD + g * D + d];
        o[d] = static_cast<float>(acc);
      }
    }
}

// dS = P * (dP - rowsum(dP * P)), dP = dO V^T; dQ += scale dS K; dK += scale dS^T Q; dV += P^T dO.
template <typename Acc>
void attention_backward_group(const float* q, const float* k, const float* v, const float* probs,
                              const AttentionShape& s, float scale, const float* dout, int64_t b, int64_t g,
                              float* dq, float* dk, float* dv) {
  const int64_t T = s.T, D = s.D, HD = s.H * D, GD = s.G * D, per = s.H / s.G;
  for (int64_t h = g * per; h < (g + 1) * per; ++h)
    for (int64_t i = 0; i < T; ++i) {
      const float* p = probs + ((h * s.B + b) * T + i) * T;
      const float* doi = dout + (b * T + i) * HD + h * D;
      const float* qi = q + (b * T + i) * HD + h * D;
      float* dqi = dq + (b * T + i) * HD + h * D;
      Acc rowsum = 0;
      // First pass: dP_ij and the row sum; dP kept nowhere (recomputed in the second pass).
      for (int64_t j = 0; j <= i; ++j) {
        const float* vj = v + (b * T + j) * GD + g * D;
        Acc dp = 0;
        for (int64_t d = 0; d < D; ++d) dp += static_cast<Acc>(doi[d]) * vj[d];
        rowsum += dp * p[j];
      }
      for (int64_t j = 0; j <= i; ++j) {
        const float* vj = v + (b * T + j) * GD + g * D;
        const float* kj = k + (b * T + j) * GD + g * D;
        float* dkj = dk + (b * T + j) * GD + g * D;
        float* dvj = dv + (b * T + j) * GD + g * D;
        Acc dp = 0;
        for (int64_t d = 0; d < D; ++d) dp += static_cast<Acc>(doi[d]) * vj[d];
        const Acc ds = p[j] * (dp - rowsum) * scale;
        for (int64_t d = 0; d < D; ++d) {
          dqi[d] += static_cast<float>(ds * kj[d]);
          dkj[d] += static_cast<float>(ds * qi[d]);
          dvj[d] += static_cast<float>(static_cast<Acc>(p[j]) * doi[d]);
        }
      }
    }
}

template <typename Acc>
void rms_norm_backward_rows(const float* x, const float* g, float eps, const float* dy, float* dx, int64_t C,
                            int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * C;
    const float* dyr = dy + r * C;
    Acc sq = 0, dot = 0;
    for (int64_t i = 0; i < C; ++i) {
      sq += static_cast<Acc>(xr[i]) * xr[i];
      dot += static_cast<Acc>(dyr[i]) * g[i] * xr[i];
    }
    const Acc rstd = 1 / std::sqrt(sq / C + static_cast<Acc>(eps));
    const Acc k = rstd * rstd * rstd * dot / C;
    for (int64_t i = 0; i < C; ++i) dx[r * C + i] += static_cast<float>(rstd * dyr[i] * g[i] - k * xr[i]);
  }
}

template <typename Acc>
void rms_norm_backward_cols(const float* x, float eps, const float* dy, float* dg, int64_t N, int64_t C,
                            int64_t c0, int64_t c1, const float* rstd_rows) {
  for (int64_t c = c0; c < c1; ++c) {
    Acc acc = 0;
    for (int64_t r = 0; r < N; ++r) acc += static_cast<Acc>(dy[r * C + c]) * x[r * C + c] * rstd_rows[r];
    dg[c] += static_cast<float>(acc);
  }
}

template <typename Acc>
double ce_row(const float* l, int64_t V, int32_t target) {
  Acc mx = -std::numeric_limits<Acc>::infinity();
  for (int64_t j = 0; j < V; ++j) mx = std::max<Acc>(mx, l[j]);
  Acc sum = 0;
  for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<Acc>(l[j]) - mx);
  return static_cast<double>(mx + std::log(sum) - l[target]);
}

template <typename Acc>
void ce_backward_row(const float* l, int64_t V, int32_t target, Acc scale, float* d) {
  Acc mx = -std::numeric_limits<Acc>::infinity();
  for (int64_t j = 0; j < V; ++j) mx = std::max<Acc>(mx, l[j]);
  Acc sum = 0;
  for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<Acc>(l[j]) - mx);
  for (int64_t j = 0; j < V; ++j) {
    const Acc p = std::exp(static_cast<Acc>(l[j]) - mx) / sum;
    d[j] += static_cast<float>(scale * (p - (j == target ? 1 : 0)));
  }
}

template <typename Acc>
inline Acc silu_grad(Acc x) {
  const Acc s = 1 / (1 + std::exp(-x));
  return s * (1 + x * (1 - s));
}

}  // namespace

// ---- reference kernels ---------------------------------------------------------------------------

void ref::linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw,
                          Tensor& scratch) {
  linear_check(x, w, dy, dx, dw, scratch);
  const int64_t N = x.size(0), K = x.size(1), O = w.size(0);
  const float *xp = x.ptr<float>(), *wp = w.ptr<float>(), *dyp = dy.ptr<float>();
  if (dx)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t kk = 0; kk < K; ++kk) {
        double acc = 0;
        for (int64_t o = 0; o < O; ++o) acc += static_cast<double>(dyp[n * O + o]) * wp[o * K + kk];
        dx->ptr<float>()[n * K + kk] += static_cast<float>(acc);
      }
  if (dw)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t kk = 0; kk < K; ++kk) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) acc += static_cast<double>(dyp[n * O + o]) * xp[n * K + kk];
        dw->ptr<float>()[o * K + kk] += static_cast<float>(acc);
      }
}

void ref::rms_norm_backward(const Tensor& x, const Tensor& g, float eps, const Tensor& dy, Tensor& dx, Tensor& dg) {
  rms_check(x, g, dy, dx, dg);
  const int64_t C = x.size(-1), N = x.numel() / C;
  rms_norm_backward_rows<double>(x.ptr<float>(), g.ptr<float>(), eps, dy.ptr<float>(), dx.ptr<float>(), C, 0, N);
  for (int64_t c = 0; c < C; ++c) {
    double acc = 0;
    for (int64_t r = 0; r < N; ++r) {
      double sq = 0;
      for (int64_t i = 0; i < C; ++i) sq += static_cast<double>(x.ptr<float>()[r * C + i]) * x.ptr<float>()[r * C + i];
      acc += static_cast<double>(dy.ptr<float>()[r * C + c]) * x.ptr<float>()[r * C + c] / std::sqrt(sq / C + eps);
    }
    dg.ptr<float>()[c] += static_cast<float>(acc);
  }
}

void ref::rope_backward(const Tensor& dy, std::span<const int32_t> positions, const ops::RopeParams& p,
                        Tensor& dx) {
  check_f32_dense(dy, "rope_backward", "dy");
  check_f32_dense(dx, "rope_backward", "dx");
  check_same(dy, dx, "rope_backward");
  const int64_t D = dy.size(-1), H = dy.size(-2), T = dy.size(-3);
  const int64_t n_dims = p.n_dims == 0 ? D : p.n_dims, half = n_dims / 2;
  AIGC_CHECK(static_cast<int64_t>(positions.size()) == T, "rope_backward: {} positions for {}", positions.size(),
             dy.shape_str());
  for (int64_t r = 0; r < dy.rows(); ++r) {
    const int64_t t = (r / H) % T;
    const float* g = dy.ptr<float>() + r * D;
    float* o = dx.ptr<float>() + r * D;
    for (int64_t d = n_dims; d < D; ++d) o[d] += g[d];
    for (int64_t i = 0; i < half; ++i) {
      const double th = static_cast<double>(positions[t]) * p.freq_scale *
                         std::pow(static_cast<double>(p.freq_base), -2.0 * i / n_dims);
      const int64_t a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
      // Transpose of [[c, -s], [s, c]].
      o[a] += static_cast<float>(g[a] * std::cos(th) + g[b] * std::sin(th));
      o[b] += static_cast<float>(-g[a] * std::sin(th) + g[b] * std::cos(th));
    }
  }
}

void ref::attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s, Tensor& out,
                            Tensor& probs, Tensor& /*scratch*/) {
  attention_check(q, k, v, probs, s, out);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t g = 0; g < s.G; ++g)
      attention_forward_group<double>(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), s, attention_scale(s), b, g,
                                      out.ptr<float>(), probs.ptr<float>());
}

void ref::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                             const AttentionShape& s, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv,
                             Tensor& /*scratch*/) {
  attention_check(q, k, v, probs, s, dout);
  check_same(q, dq, "attention_backward");
  check_same(k, dk, "attention_backward");
  check_same(v, dv, "attention_backward");
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t g = 0; g < s.G; ++g)
      attention_backward_group<double>(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), probs.ptr<float>(), s,
                                       attention_scale(s), dout.ptr<float>(), b, g, dq.ptr<float>(), dk.ptr<float>(),
                                       dv.ptr<float>());
}

void ref::silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  check_same(x, dy, "silu_backward");
  check_same(x, dx, "silu_backward");
  for (int64_t i = 0; i < x.numel(); ++i)
    dx.ptr<float>()[i] += static_cast<float>(dy.ptr<float>()[i] * silu_grad<double>(x.ptr<float>()[i]));
}

void ref::mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  check_same(a, b, "mul_backward");
  check_same(a, dy, "mul_backward");
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (da) da->ptr<float>()[i] += dy.ptr<float>()[i] * b.ptr<float>()[i];
    if (db) db->ptr<float>()[i] += dy.ptr<float>()[i] * a.ptr<float>()[i];
  }
}

void ref::add_backward(const Tensor& dy, Tensor& dx) {
  check_same(dy, dx, "add_backward");
  for (int64_t i = 0; i < dy.numel(); ++i) dx.ptr<float>()[i] += dy.ptr<float>()[i];
}

void ref::embedding_backward(std::span<const int32_t> ids, const Tensor& dy, Tensor& dtable) {
  check_f32_dense(dy, "embedding_backward", "dy");
  check_f32_dense(dtable, "embedding_backward", "dtable");
  const int64_t C = dtable.size(-1), V = dtable.size(0);
  AIGC_CHECK(dy.numel() == static_cast<int64_t>(ids.size()) * C, "embedding_backward: dy {} for {} ids",
             dy.shape_str(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    AIGC_CHECK(ids[i] >= 0 && ids[i] < V, "embedding_backward: id {} outside [0, {})", ids[i], V);
    for (int64_t c = 0; c < C; ++c) dtable.ptr<float>()[ids[i] * C + c] += dy.ptr<float>()[i * C + c];
  }
}

float ref::cross_entropy_forward(const Tensor& logits, std::span<const int32_t> targets, Tensor& probs) {
  ce_check(logits, targets);
  check_same(logits, probs, "cross_entropy_forward");
  const int64_t N = logits.size(0), V = logits.size(1);
  double total = 0;
  for (int64_t r = 0; r < N; ++r) {
    const float* l = logits.ptr<float>() + r * V;
    total += ce_row<double>(l, V, targets[r]);
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max<double>(mx, l[j]);
    for (int64_t j = 0; j < V; ++j) sum += std::exp(l[j] - mx);
    for (int64_t j = 0; j < V; ++j) probs.ptr<float>()[r * V + j] = static_cast<float>(std::exp(l[j] - mx) / sum);
  }
  return static_cast<float>(total / N);
}

void ref::cross_entropy_backward(const Tensor& logits, const Tensor& /*probs*/, std::span<const int32_t> targets,
                                 float dloss, Tensor& dlogits) {
  ce_check(logits, targets);
  check_same(logits, dlogits, "cross_entropy_backward");
  const int64_t N = logits.size(0), V = logits.size(1);
  for (int64_t r = 0; r < N; ++r)
    ce_backward_row<double>(logits.ptr<float>() + r * V, V, targets[r], static_cast<double>(dloss) / N,
                            dlogits.ptr<float>() + r * V);
}

// ---- fast kernels --------------------------------------------------------------------------------

namespace {

// dst += src over n floats, split over threads.
void accumulate(float* dst, const float* src, int64_t n) {
  parallel_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
  }, 4096);
}

}  // namespace

void linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw, Tensor& scratch) {
  linear_check(x, w, dy, dx, dw, scratch);
  const int64_t N = x.size(0), K = x.size(1), O = w.size(0);
  if (dx) {
    Tensor s = Tensor::view_of(DType::F32, std::array<int64_t, 2>{N, K}, scratch.data());
    ops::matmul(dy, w, s);  // [N, O] x [O, K]
    accumulate(dx->ptr<float>(), s.ptr<float>(), N * K);
  }
  if (dw) {
    Tensor s = Tensor::view_of(DType::F32, std::array<int64_t, 2>{O, K}, scratch.data());
    ops::matmul(dy.transpose(0, 1), x, s);  // [O, N] x [N, K]; dy^T read in place
    accumulate(dw->ptr<float>(), s.ptr<float>(), O * K);
  }
}

void rms_norm_backward(const Tensor& x, const Tensor& g, float eps, const Tensor& dy, Tensor& dx, Tensor& dg) {
  rms_check(x, g, dy, dx, dg);
  const int64_t C = x.size(-1), N = x.numel() / C;
  const float *xp = x.ptr<float>(), *dyp = dy.ptr<float>();
  parallel_for(N, [&](int64_t r0, int64_t r1) {
    rms_norm_backward_rows<float>(xp, g.ptr<float>(), eps, dyp, dx.ptr<float>(), C, r0, r1);
  }, 4);
  // dg needs rstd per row; computed row by row into dx's scratch-free form: one pass per column
  // block, rstd recomputed per block of rows (cheap: C multiply-adds per row).
  parallel_for(C, [&](int64_t c0, int64_t c1) {
    float acc_block[64];
    for (int64_t cb = c0; cb < c1; cb += 64) {
      const int64_t ce = std::min(c1, cb + 64);
      for (int64_t c = cb; c < ce; ++c) acc_block[c - cb] = 0.0f;
      for (int64_t r = 0; r < N; ++r) {
        const float* xr = xp + r * C;
        float sq = 0.0f;
        for (int64_t i = 0; i < C; ++i) sq += xr[i] * xr[i];
        const float rstd = 1.0f / std::sqrt(sq / static_cast<float>(C) + eps);
        for (int64_t c = cb; c < ce; ++c) acc_block[c - cb] += dyp[r * C + c] * xr[c] * rstd;
      }
      for (int64_t c = cb; c < ce; ++c) dg.ptr<float>()[c] += acc_block[c - cb];
    }
  }, 64);
}

void rope_backward(const Tensor& dy, std::span<const int32_t> positions, const ops::RopeParams& p, Tensor& dx) {
  // Threads over rows; the rotation of each (position, pair) is computed once per call.
  check_f32_dense(dy, "rope_backward", "dy");
  check_f32_dense(dx, "rope_backward", "dx");
  check_same(dy, dx, "rope_backward");
  const int64_t D = dy.size(-1), H = dy.size(-2), T = dy.size(-3);
  const int64_t n_dims = p.n_dims == 0 ? D : p.n_dims, half = n_dims / 2;
  AIGC_CHECK(static_cast<int64_t>(positions.size()) == T, "rope_backward: {} positions for {}", positions.size(),
             dy.shape_str());
  // cos/sin per (t, i) once per call (as ops::rope does), shared by every head and sequence; the
  // calling thread's buffer grows to the largest call and is then reused (no allocation per step).
  thread_local std::vector<float> table;
  if (table.size() < static_cast<size_t>(T * half * 2)) table.resize(static_cast<size_t>(T * half * 2));
  float* cs = table.data();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double th = static_cast<double>(positions[t]) * p.freq_scale *
                        std::pow(static_cast<double>(p.freq_base), -2.0 * i / n_dims);
      cs[(t * half + i) * 2] = static_cast<float>(std::cos(th));
      cs[(t * half + i) * 2 + 1] = static_cast<float>(std::sin(th));
    }
  parallel_for(dy.rows(), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* c = cs + ((r / H) % T) * half * 2;
      const float* g = dy.ptr<float>() + r * D;
      float* o = dx.ptr<float>() + r * D;
      for (int64_t d = n_dims; d < D; ++d) o[d] += g[d];
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
        o[a] += g[a] * c[2 * i] + g[b] * c[2 * i + 1];
        o[b] += -g[a] * c[2 * i + 1] + g[b] * c[2 * i];
      }
    }
  }, 16);
}

// Per-head [B, T, D] views of a token-major [B*T, heads*D] tensor (no allocation: view_of, select).
Tensor head_view(const Tensor& t, int64_t B, int64_t T, int64_t heads, int64_t D, int64_t h) {
  const std::array<int64_t, 4> s4{B, T, heads, D};
  return Tensor::view_of(DType::F32, s4, const_cast<void*>(t.data())).select(2, h);
}

// dst (strided [B, T, D] view) += src (contiguous [B, T, D]); or = when assign.
void head_store(Tensor dst, const float* src, bool assign) {
  const int64_t B = dst.size(0), T = dst.size(1), D = dst.size(2);
  const int64_t sb = dst.stride_bytes(0) / 4, st = dst.stride_bytes(1) / 4;
  float* d = dst.ptr<float>();
  parallel_for(B * T, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = d + (r / T) * sb + (r % T) * st;
      const float* i = src + r * D;
      if (assign)
        for (int64_t x = 0; x < D; ++x) o[x] = i[x];
      else
        for (int64_t x = 0; x < D; ++x) o[x] += i[x];
    }
  }, 16);
}

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionShape& s, Tensor& out,
                       Tensor& probs, Tensor& scratch) {
  attention_check(q, k, v, probs, s, out);
  AIGC_CHECK(scratch.numel() >= attention_scratch_floats(s), "attention: scratch {} too small", scratch.shape_str());
  const float scale = attention_scale(s);
  if (s.T <= kAttentionLoopMaxT) {  // tiny blocks: loops over (sequence, kv head) pairs
    parallel_for(s.B * s.G, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        attention_forward_group<float>(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), s, scale, i / s.G, i % s.G,
                                       out.ptr<float>(), probs.ptr<float>());
    });
    return;
  }
  const int64_t B = s.B, T = s.T, D = s.D, per = s.H / s.G;
  float* o_buf = scratch.ptr<float>();  // [B, T, D]
  for (int64_t h = 0; h < s.H; ++h) {
    const int64_t g = h / per;
    const Tensor qh = head_view(q, B, T, s.H, D, h), kg = head_view(k, B, T, s.G, D, g), vg = head_view(v, B, T, s.G, D, g);
    Tensor p = probs.select(0, h);  // [B, T, T] contiguous
    ops::matmul(qh, kg.transpose(1, 2), p);
    float* pp = p.ptr<float>();
    parallel_for(B * T, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = pp + r * T;
        const int64_t n = r % T + 1;  // causal: keys 0..i
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j] * scale);
        float sum = 0.0f;
        for (int64_t j = 0; j < n; ++j) sum += row[j] = std::exp(row[j] * scale - mx);
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; ++j) row[j] *= inv;
        for (int64_t j = n; j < T; ++j) row[j] = 0.0f;
      }
    }, 8);
    Tensor ob = Tensor::view_of(DType::F32, std::array<int64_t, 3>{B, T, D}, o_buf);
    ops::matmul(p, vg, ob);
    head_store(head_view(out, B, T, s.H, D, h), o_buf, true);
  }
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                        const AttentionShape& s, const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv,
                        Tensor& scratch) {
  attention_check(q, k, v, probs, s, dout);
  check_same(q, dq, "attention_backward");
  check_same(k, dk, "attention_backward");
  check_same(v, dv, "attention_backward");
  AIGC_CHECK(scratch.numel() >= attention_scratch_floats(s), "attention: scratch {} too small", scratch.shape_str());
  const float scale = attention_scale(s);
  if (s.T <= kAttentionLoopMaxT) {  // (sequence, kv head) pairs write disjoint rows: no races
    parallel_for(s.B * s.G, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        attention_backward_group<float>(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), probs.ptr<float>(), s, scale,
                                        dout.ptr<float>(), i / s.G, i % s.G, dq.ptr<float>(), dk.ptr<float>(),
                                        dv.ptr<float>());
    });
    return;
  }
  const int64_t B = s.B, T = s.T, D = s.D, per = s.H / s.G;
  float* ds_buf = scratch.ptr<float>();           // [B, T, T]: dP, then dS
  float* x_buf = scratch.ptr<float>() + B * T * T;  // [B, T, D]
  Tensor ds = Tensor::view_of(DType::F32, std::array<int64_t, 3>{B, T, T}, ds_buf);
  Tensor xb = Tensor::view_of(DType::F32, std::array<int64_t, 3>{B, T, D}, x_buf);
  for (int64_t h = 0; h < s.H; ++h) {
    const int64_t g = h / per;
    const Tensor qh = head_view(q, B, T, s.H, D, h), kg = head_view(k, B, T, s.G, D, g), vg = head_view(v, B, T, s.G, D, g);
    const Tensor doh = head_view(dout, B, T, s.H, D, h);
    const Tensor p = probs.select(0, h);
    ops::matmul(doh, vg.transpose(1, 2), ds);  // dP = dO V^T
    const float* pp = p.ptr<float>();
    parallel_for(B * T, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* d = ds_buf + r * T;
        const float* pr = pp + r * T;
        const int64_t n = r % T + 1;
        float dot = 0.0f;
        for (int64_t j = 0; j < n; ++j) dot += d[j] * pr[j];
        for (int64_t j = 0; j < n; ++j) d[j] = pr[j] * (d[j] - dot) * scale;
        for (int64_t j = n; j < T; ++j) d[j] = 0.0f;
      }
    }, 8);
    ops::matmul(ds, kg, xb);  // dQ = dS K
    head_store(head_view(dq, B, T, s.H, D, h), x_buf, false);
    ops::matmul(ds.transpose(1, 2), qh, xb);  // dK = dS^T Q
    head_store(head_view(dk, B, T, s.G, D, g), x_buf, false);
    ops::matmul(p.transpose(1, 2), doh, xb);  // dV = P^T dO
    head_store(head_view(dv, B, T, s.G, D, g), x_buf, false);
  }
}

void silu_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  check_same(x, dy, "silu_backward");
  check_same(x, dx, "silu_backward");
  const ops::KernelsF32& k = ops::kernels_f32();
  parallel_for(x.numel(), [&](int64_t i0, int64_t i1) {
    k.silu_backward(x.ptr<float>() + i0, dy.ptr<float>() + i0, dx.ptr<float>() + i0, i1 - i0);
  }, 4096);
}

void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db) {
  check_same(a, b, "mul_backward");
  check_same(a, dy, "mul_backward");
  parallel_for(a.numel(), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (da) da->ptr<float>()[i] += dy.ptr<float>()[i] * b.ptr<float>()[i];
      if (db) db->ptr<float>()[i] += dy.ptr<float>()[i] * a.ptr<float>()[i];
    }
  }, 4096);
}

void add_backward(const Tensor& dy, Tensor& dx) {
  check_same(dy, dx, "add_backward");
  accumulate(dx.ptr<float>(), dy.ptr<float>(), dy.numel());
}

void embedding_backward(std::span<const int32_t> ids, const Tensor& dy, Tensor& dtable) {
  check_f32_dense(dy, "embedding_backward", "dy");
  check_f32_dense(dtable, "embedding_backward", "dtable");
  const int64_t C = dtable.size(-1), V = dtable.size(0);
  AIGC_CHECK(dy.numel() == static_cast<int64_t>(ids.size()) * C, "embedding_backward: dy {} for {} ids",
             dy.shape_str(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    AIGC_CHECK(ids[i] >= 0 && ids[i] < V, "embedding_backward: id {} outside [0, {})", ids[i], V);
  // Split by columns: repeated ids then never race.
  parallel_for(C, [&](int64_t c0, int64_t c1) {
    for (size_t i = 0; i < ids.size(); ++i)
      for (int64_t c = c0; c < c1; ++c) dtable.ptr<float>()[ids[i] * C + c] += dy.ptr<float>()[i * C + c];
  }, 16);
}

float cross_entropy_forward(const Tensor& logits, std::span<const int32_t> targets, Tensor& probs) {
  ce_check(logits, targets);
  check_same(logits, probs, "cross_entropy_forward");
  const int64_t N = logits.size(0), V = logits.size(1);
  ops::softmax(logits, probs);  // the engine's vectorised softmax (rows over threads)
  double total = 0;
  for (int64_t r = 0; r < N; ++r)
    total -= std::log(std::max(probs.ptr<float>()[r * V + targets[r]], std::numeric_limits<float>::min()));
  return static_cast<float>(total / N);
}

void cross_entropy_backward(const Tensor& logits, const Tensor& probs, std::span<const int32_t> targets, float dloss,
                            Tensor& dlogits) {
  ce_check(logits, targets);
  check_same(logits, dlogits, "cross_entropy_backward");
  check_same(logits, probs, "cross_entropy_backward");
  const int64_t N = logits.size(0), V = logits.size(1);
  const float scale = dloss / static_cast<float>(N);
  parallel_for(N, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* p = probs.ptr<float>() + r * V;
      float* d = dlogits.ptr<float>() + r * V;
      for (int64_t j = 0; j < V; ++j) d[j] += scale * p[j];
      d[targets[r]] -= scale;
    }
  });
}

}  // namespace aigc::train::grad
