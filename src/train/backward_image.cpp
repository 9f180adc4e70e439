// Image backward kernels (see backward_image.h). Reference: loops accumulating in double. Fast:
// independent rows / channels / (sequence, head) pairs over threads, f32 accumulation, and conv2d
// (forward and backward) through oneDNN's convolution primitives over the whole batch.
#include "train/backward_image.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/onednn.h"
#include "backend/cpu/kernels_f32.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"

namespace aigc::train::grad {

namespace {

void dense(const Tensor& t, const char* op) {
  AIGC_CHECK(t.type() == DType::F32 && t.is_contiguous(), "{}: tensors must be contiguous f32, got {}", op,
             t.shape_str());
}

void same(const Tensor& a, const Tensor& b, const char* op) {
  AIGC_CHECK(a.numel() == b.numel(), "{}: sizes differ: {} and {}", op, a.shape_str(), b.shape_str());
}

void bias_check(const Tensor& dy, const Tensor& db) {
  dense(dy, "bias_backward");
  dense(db, "bias_backward");
  AIGC_CHECK(db.ndim() == 1 && dy.ndim() >= 1 && dy.size(-1) == db.numel(), "bias_backward: db {} does not match dy {}",
             db.shape_str(), dy.shape_str());
}

struct ConvDims {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo;
};

ConvDims conv_check(const Tensor& x, const Tensor& w, const Tensor& dy, int stride, int pad, const Tensor* dx,
                    const Tensor* dw, const Tensor* db) {
  for (const Tensor* t : {&x, &w, &dy}) dense(*t, "conv2d_backward");
  AIGC_CHECK(x.ndim() == 4 && w.ndim() == 4 && dy.ndim() == 4 && x.size(1) == w.size(1) && stride >= 1 && pad >= 0,
             "conv2d_backward: x {} [N, C, H, W] and w {} [O, C, kh, kw] do not match", x.shape_str(), w.shape_str());
  ConvDims d{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0};
  d.Ho = (d.H + 2 * pad - d.kh) / stride + 1;
  d.Wo = (d.W + 2 * pad - d.kw) / stride + 1;
  AIGC_CHECK(d.Ho > 0 && d.Wo > 0 && dy.size(0) == d.N && dy.size(1) == d.O && dy.size(2) == d.Ho && dy.size(3) == d.Wo,
             "conv2d_backward: dy {} is not [{}, {}, {}, {}]", dy.shape_str(), d.N, d.O, d.Ho, d.Wo);
  if (dx) dense(*dx, "conv2d_backward"), same(*dx, x, "conv2d_backward");
  if (dw) dense(*dw, "conv2d_backward"), same(*dw, w, "conv2d_backward");
  if (db) {
    dense(*db, "conv2d_backward");
    AIGC_CHECK(db->numel() == d.O, "conv2d_backward: db {} is not [{}]", db->shape_str(), d.O);
  }
  return d;
}

onednn::Conv2dShape conv_shape(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, int stride,
                               int pad) {
  for (const Tensor* t : {&x, &w, &y}) dense(*t, "conv2d_forward");
  AIGC_CHECK(x.ndim() == 4 && w.ndim() == 4 && y.ndim() == 4 && x.size(1) == w.size(1) && stride >= 1 && pad >= 0,
             "conv2d_forward: x {} [N, C, H, W] and w {} [O, C, kh, kw] do not match", x.shape_str(), w.shape_str());
  onednn::Conv2dShape s{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0, stride, pad};
  s.ho = (s.h + 2 * pad - s.kh) / stride + 1;
  s.wo = (s.w + 2 * pad - s.kw) / stride + 1;
  AIGC_CHECK(s.h + 2 * pad >= s.kh && s.w + 2 * pad >= s.kw && s.c > 0 && y.size(0) == s.n && y.size(1) == s.o &&
                 y.size(2) == s.ho && y.size(3) == s.wo,
             "conv2d_forward: y {} is not [{}, {}, {}, {}] (x {}, w {}, stride {}, pad {})", y.shape_str(), s.n, s.o,
             s.ho, s.wo, x.shape_str(), w.shape_str(), stride, pad);
  if (b) {
    dense(*b, "conv2d_forward");
    AIGC_CHECK(b->numel() == s.o, "conv2d_forward: bias {} is not [{}]", b->shape_str(), s.o);
  }
  return s;
}

void gn_check(const Tensor& x, const Tensor& gamma, int groups, const Tensor& dy, const Tensor& dx,
              const Tensor& dg, const Tensor& dbeta) {
  for (const Tensor* t : {&x, &gamma, &dy, &dx, &dg, &dbeta}) dense(*t, "group_norm_backward");
  AIGC_CHECK(x.ndim() >= 2 && groups > 0 && x.size(1) % groups == 0 && gamma.numel() == x.size(1) &&
                 dg.numel() == x.size(1) && dbeta.numel() == x.size(1),
             "group_norm_backward: x {} [N, C, ...] with C % {} groups and gamma [C] expected", x.shape_str(), groups);
  same(dy, x, "group_norm_backward");
  same(dx, x, "group_norm_backward");
}

void ln_check(const Tensor& x, const Tensor& gamma, const Tensor& dy, const Tensor& dx, const Tensor& dg,
              const Tensor& dbeta) {
  for (const Tensor* t : {&x, &gamma, &dy, &dx, &dg, &dbeta}) dense(*t, "layer_norm_backward");
  const int64_t C = x.size(-1);
  AIGC_CHECK(gamma.numel() == C && dg.numel() == C && dbeta.numel() == C,
             "layer_norm_backward: gamma must be [{}] for x {}", C, x.shape_str());
  same(dy, x, "layer_norm_backward");
  same(dx, x, "layer_norm_backward");
}

void up_check(const Tensor& dy, const Tensor& dx) {
  dense(dy, "upsample_nearest2_backward");
  dense(dx, "upsample_nearest2_backward");
  AIGC_CHECK(dy.ndim() == 4 && dx.ndim() == 4 && dy.size(0) == dx.size(0) && dy.size(1) == dx.size(1) &&
                 dy.size(2) == 2 * dx.size(2) && dy.size(3) == 2 * dx.size(3),
             "upsample_nearest2_backward: dy {} is not twice dx {}", dy.shape_str(), dx.shape_str());
}

void cat_check(const Tensor& dy, const Tensor& da, const Tensor& db) {
  for (const Tensor* t : {&dy, &da, &db}) dense(*t, "concat_channels_backward");
  AIGC_CHECK(dy.ndim() >= 2 && da.ndim() == dy.ndim() && db.ndim() == dy.ndim() && da.size(0) == dy.size(0) &&
                 db.size(0) == dy.size(0) && da.size(1) + db.size(1) == dy.size(1) &&
                 da.numel() / da.size(1) == dy.numel() / dy.size(1) && db.numel() / db.size(1) == dy.numel() / dy.size(1),
             "concat_channels_backward: dy {} is not cat(da {}, db {}, dim 1)", dy.shape_str(), da.shape_str(),
             db.shape_str());
}

void addc_check(const Tensor& dy, const Tensor& de) {
  dense(dy, "add_channel_backward");
  dense(de, "add_channel_backward");
  AIGC_CHECK(dy.ndim() >= 2 && de.ndim() == 2 && de.size(0) == dy.size(0) && de.size(1) == dy.size(1),
             "add_channel_backward: de {} must be [N, C] of dy {}", de.shape_str(), dy.shape_str());
}

void tr_check(const Tensor& x, const Tensor& y, const char* op) {
  dense(x, op);
  dense(y, op);
  AIGC_CHECK(x.ndim() == 3 && y.ndim() == 3 && x.size(0) == y.size(0) && x.size(1) == y.size(2) && x.size(2) == y.size(1),
             "{}: {} and {} are not [N, A, B] and [N, B, A]", op, x.shape_str(), y.shape_str());
}

float mha_scale(const MhaShape& s) { return s.scale != 0.0f ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.D)); }

void mha_check(const Tensor& q, const Tensor& k, const Tensor& v, const MhaShape& s, const Tensor& out,
               const Tensor& probs) {
  for (const Tensor* t : {&q, &k, &v, &out, &probs}) dense(*t, "mha");
  const int64_t E = s.H * s.D;
  AIGC_CHECK(s.B > 0 && s.Tq > 0 && s.Tk > 0 && s.H > 0 && s.D > 0 && q.numel() == s.B * s.Tq * E &&
                 k.numel() == s.B * s.Tk * E && v.numel() == k.numel() && out.numel() == q.numel() &&
                 probs.numel() == s.B * s.H * s.Tq * s.Tk,
             "mha: q {}, k {}, v {}, out {}, probs {} do not match B={} Tq={} Tk={} H={} D={}", q.shape_str(),
             k.shape_str(), v.shape_str(), out.shape_str(), probs.shape_str(), s.B, s.Tq, s.Tk, s.H, s.D);
}

void mse_check(const Tensor& p, const Tensor& t) {
  dense(p, "mse");
  dense(t, "mse");
  same(p, t, "mse");
  AIGC_CHECK(p.numel() > 0, "mse: empty tensors");
}

// Per-thread scratch of the attention kernels, grown to the largest need and kept: once warm, no
// call allocates. The forward asks for what the backward needs, so one forward warms both.
float* mha_scratch(const MhaShape& s) {
  thread_local std::vector<float> buf;
  const size_t n = static_cast<size_t>(4 * s.D * s.Tk + s.Tk);
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// One (sequence, head)'s keys and values [Tk, D] (rows of stride E) as [D, Tk]: the loops over
// keys then run over contiguous floats.
void kv_transpose(const float* k, const float* v, int64_t Tk, int64_t D, int64_t E, float* kT, float* vT) {
  for (int64_t j = 0; j < Tk; ++j)
    for (int64_t e = 0; e < D; ++e) {
      kT[e * Tk + j] = k[j * E + e];
      vT[e * Tk + j] = v[j * E + e];
    }
}

float dot(const float* a, const float* b, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) acc += a[j] * b[j];
  return acc;
}

}  // namespace

int64_t conv2d_scratch_floats(const Tensor& x, const Tensor& w, int stride, int /*pad*/) {
  AIGC_CHECK(x.ndim() == 4 && w.ndim() == 4 && stride >= 1, "conv2d_scratch_floats: 4-d x and w expected");
  return 1;
}

// ---- reference kernels ---------------------------------------------------------------------------

namespace ref {

void bias_backward(const Tensor& dy, Tensor& db) {
  bias_check(dy, db);
  const int64_t O = db.numel(), N = dy.numel() / O;
  for (int64_t o = 0; o < O; ++o) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n) s += dy.ptr<float>()[n * O + o];
    db.ptr<float>()[o] += static_cast<float>(s);
  }
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, int stride, int pad) {
  ops::ref::conv2d(x, w, b, y, stride, pad);
}

void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int stride, int pad, Tensor* dx, Tensor* dw,
                     Tensor* db, Tensor& /*scratch*/) {
  const ConvDims d = conv_check(x, w, dy, stride, pad, dx, dw, db);
  const float *xp = x.ptr<float>(), *wp = w.ptr<float>(), *g = dy.ptr<float>();
  auto X = [&](int64_t n, int64_t c, int64_t i, int64_t j) { return xp[((n * d.C + c) * d.H + i) * d.W + j]; };
  auto G = [&](int64_t n, int64_t o, int64_t i, int64_t j) { return g[((n * d.O + o) * d.Ho + i) * d.Wo + j]; };
  if (db)
    for (int64_t o = 0; o < d.O; ++o) {
      double s = 0;
      for (int64_t n = 0; n < d.N; ++n)
        for (int64_t i = 0; i < d.Ho; ++i)
          for (int64_t j = 0; j < d.Wo; ++j) s += G(n, o, i, j);
      db->ptr<float>()[o] += static_cast<float>(s);
    }
  if (dw)
    for (int64_t o = 0; o < d.O; ++o)
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t ky = 0; ky < d.kh; ++ky)
          for (int64_t kx = 0; kx < d.kw; ++kx) {
            double s = 0;
            for (int64_t n = 0; n < d.N; ++n)
              for (int64_t i = 0; i < d.Ho; ++i)
                for (int64_t j = 0; j < d.Wo; ++j) {
                  const int64_t iy = i * stride - pad + ky, ix = j * stride - pad + kx;
                  if (iy >= 0 && iy < d.H && ix >= 0 && ix < d.W) s += static_cast<double>(G(n, o, i, j)) * X(n, c, iy, ix);
                }
            dw->ptr<float>()[((o * d.C + c) * d.kh + ky) * d.kw + kx] += static_cast<float>(s);
          }
  if (dx)
    for (int64_t n = 0; n < d.N; ++n)
      for (int64_t c = 0; c < d.C; ++c)
        for (int64_t iy = 0; iy < d.H; ++iy)
          for (int64_t ix = 0; ix < d.W; ++ix) {
            double s = 0;
            for (int64_t o = 0; o < d.O; ++o)
              for (int64_t ky = 0; ky < d.kh; ++ky)
                for (int64_t kx = 0; kx < d.kw; ++kx) {
                  const int64_t ty = iy + pad - ky, tx = ix + pad - kx;  // = i * stride
                  if (ty < 0 || tx < 0 || ty % stride || tx % stride) continue;
                  const int64_t i = ty / stride, j = tx / stride;
                  if (i < d.Ho && j < d.Wo)
                    s += static_cast<double>(G(n, o, i, j)) * wp[((o * d.C + c) * d.kh + ky) * d.kw + kx];
                }
            dx->ptr<float>()[((n * d.C + c) * d.H + iy) * d.W + ix] += static_cast<float>(s);
          }
}

void group_norm_backward(const Tensor& x, const Tensor& gamma, int groups, float eps, const Tensor& dy, Tensor& dx,
                         Tensor& dgamma, Tensor& dbeta) {
  gn_check(x, gamma, groups, dy, dx, dgamma, dbeta);
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C), Cg = C / groups, M = Cg * S;
  const float *xp = x.ptr<float>(), *gp = gamma.ptr<float>(), *g = dy.ptr<float>();
  float* o = dx.ptr<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t gr = 0; gr < groups; ++gr) {
      const int64_t base = (n * C + gr * Cg) * S;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < M; ++i) mean += xp[base + i];
      mean /= static_cast<double>(M);
      for (int64_t i = 0; i < M; ++i) var += (xp[base + i] - mean) * (xp[base + i] - mean);
      const double rstd = 1.0 / std::sqrt(var / static_cast<double>(M) + eps);
      double m1 = 0, m2 = 0;  // mean(dxhat), mean(dxhat * xhat)
      for (int64_t i = 0; i < M; ++i) {
        const int64_t c = gr * Cg + i / S;
        const double xh = (xp[base + i] - mean) * rstd, dxh = static_cast<double>(g[base + i]) * gp[c];
        m1 += dxh;
        m2 += dxh * xh;
      }
      m1 /= static_cast<double>(M);
      m2 /= static_cast<double>(M);
      for (int64_t i = 0; i < M; ++i) {
        const int64_t c = gr * Cg + i / S;
        const double xh = (xp[base + i] - mean) * rstd, dxh = static_cast<double>(g[base + i]) * gp[c];
        o[base + i] += static_cast<float>(rstd * (dxh - m1 - xh * m2));
      }
    }
  // dgamma, dbeta: sums over samples and positions, per channel (stats recomputed per group)
  for (int64_t c = 0; c < C; ++c) {
    const int64_t gr = c / Cg;
    double sg = 0, sb = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t base = (n * C + gr * Cg) * S;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < M; ++i) mean += xp[base + i];
      mean /= static_cast<double>(M);
      for (int64_t i = 0; i < M; ++i) var += (xp[base + i] - mean) * (xp[base + i] - mean);
      const double rstd = 1.0 / std::sqrt(var / static_cast<double>(M) + eps);
      for (int64_t s = 0; s < S; ++s) {
        const int64_t idx = (n * C + c) * S + s;
        sg += static_cast<double>(g[idx]) * (xp[idx] - mean) * rstd;
        sb += g[idx];
      }
    }
    dgamma.ptr<float>()[c] += static_cast<float>(sg);
    dbeta.ptr<float>()[c] += static_cast<float>(sb);
  }
}

void layer_norm_backward(const Tensor& x, const Tensor& gamma, float eps, const Tensor& dy, Tensor& dx, Tensor& dgamma,
                         Tensor& dbeta) {
  ln_check(x, gamma, dy, dx, dgamma, dbeta);
  const int64_t C = x.size(-1), R = x.numel() / C;
  const float *xp = x.ptr<float>(), *gp = gamma.ptr<float>(), *g = dy.ptr<float>();
  for (int64_t r = 0; r < R; ++r) {
    const float *xr = xp + r * C, *gr = g + r * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += xr[c];
    mean /= static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(C) + eps);
    double m1 = 0, m2 = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (xr[c] - mean) * rstd, dxh = static_cast<double>(gr[c]) * gp[c];
      m1 += dxh;
      m2 += dxh * xh;
      dgamma.ptr<float>()[c] += static_cast<float>(gr[c] * xh);
      dbeta.ptr<float>()[c] += gr[c];
    }
    m1 /= static_cast<double>(C);
    m2 /= static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (xr[c] - mean) * rstd, dxh = static_cast<double>(gr[c]) * gp[c];
      dx.ptr<float>()[r * C + c] += static_cast<float>(rstd * (dxh - m1 - xh * m2));
    }
  }
}

void upsample_nearest2_backward(const Tensor& dy, Tensor& dx) {
  up_check(dy, dx);
  const int64_t NC = dx.size(0) * dx.size(1), H = dx.size(2), W = dx.size(3);
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        double s = 0;
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t b = 0; b < 2; ++b) s += dy.ptr<float>()[(p * 2 * H + 2 * i + a) * 2 * W + 2 * j + b];
        dx.ptr<float>()[(p * H + i) * W + j] += static_cast<float>(s);
      }
}

void concat_channels_backward(const Tensor& dy, Tensor& da, Tensor& db) {
  cat_check(dy, da, db);
  const int64_t N = dy.size(0), S = dy.numel() / (N * dy.size(1)), Ca = da.size(1), Cb = db.size(1);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < Ca * S; ++i) da.ptr<float>()[n * Ca * S + i] += dy.ptr<float>()[n * (Ca + Cb) * S + i];
    for (int64_t i = 0; i < Cb * S; ++i)
      db.ptr<float>()[n * Cb * S + i] += dy.ptr<float>()[n * (Ca + Cb) * S + Ca * S + i];
  }
}

void add_channel_forward(const Tensor& x, const Tensor& e, Tensor& y) {
  addc_check(x, e);
  dense(y, "add_channel_forward");
  same(y, x, "add_channel_forward");
  const int64_t NC = e.numel(), S = x.numel() / NC;
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t i = 0; i < S; ++i) y.ptr<float>()[p * S + i] = x.ptr<float>()[p * S + i] + e.ptr<float>()[p];
}

void add_channel_backward(const Tensor& dy, Tensor& de) {
  addc_check(dy, de);
  const int64_t NC = de.numel(), S = dy.numel() / NC;
  for (int64_t p = 0; p < NC; ++p) {
    double s = 0;
    for (int64_t i = 0; i < S; ++i) s += dy.ptr<float>()[p * S + i];
    de.ptr<float>()[p] += static_cast<float>(s);
  }
}

void transpose12_forward(const Tensor& x, Tensor& y) {
  tr_check(x, y, "transpose12_forward");
  const int64_t N = x.size(0), A = x.size(1), B = x.size(2);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t b = 0; b < B; ++b) y.ptr<float>()[(n * B + b) * A + a] = x.ptr<float>()[(n * A + a) * B + b];
}

void transpose12_backward(const Tensor& dy, Tensor& dx) {
  tr_check(dx, dy, "transpose12_backward");
  const int64_t N = dx.size(0), A = dx.size(1), B = dx.size(2);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t b = 0; b < B; ++b) dx.ptr<float>()[(n * A + a) * B + b] += dy.ptr<float>()[(n * B + b) * A + a];
}

void mha_forward(const Tensor& q, const Tensor& k, const Tensor& v, const MhaShape& s, Tensor& out, Tensor& probs) {
  mha_check(q, k, v, s, out, probs);
  const int64_t E = s.H * s.D;
  const double scale = mha_scale(s);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < s.Tq; ++i) {
        const float* qi = q.ptr<float>() + (b * s.Tq + i) * E + h * s.D;
        float* p = probs.ptr<float>() + ((b * s.H + h) * s.Tq + i) * s.Tk;
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < s.Tk; ++j) {
          const float* kj = k.ptr<float>() + (b * s.Tk + j) * E + h * s.D;
          double d = 0;
          for (int64_t e = 0; e < s.D; ++e) d += static_cast<double>(qi[e]) * kj[e];
          p[j] = static_cast<float>(d * scale);
          mx = std::max(mx, d * scale);
        }
        for (int64_t j = 0; j < s.Tk; ++j) sum += std::exp(p[j] - mx);
        for (int64_t j = 0; j < s.Tk; ++j) p[j] = static_cast<float>(std::exp(p[j] - mx) / sum);
        float* oi = out.ptr<float>() + (b * s.Tq + i) * E + h * s.D;
        for (int64_t e = 0; e < s.D; ++e) {
          double a = 0;
          for (int64_t j = 0; j < s.Tk; ++j) a += static_cast<double>(p[j]) * v.ptr<float>()[(b * s.Tk + j) * E + h * s.D + e];
          oi[e] = static_cast<float>(a);
        }
      }
}

void mha_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs, const MhaShape& s,
                  const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) {
  mha_check(q, k, v, s, dout, probs);
  for (const Tensor* t : {&dq, &dk, &dv}) dense(*t, "mha_backward");
  same(dq, q, "mha_backward");
  same(dk, k, "mha_backward");
  same(dv, v, "mha_backward");
  const int64_t E = s.H * s.D;
  const double scale = mha_scale(s);
  auto at = [&](const Tensor& t, int64_t T, int64_t b, int64_t i, int64_t h) {
    return t.ptr<float>() + (b * T + i) * E + h * s.D;
  };
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < s.Tq; ++i) {
        const float* p = probs.ptr<float>() + ((b * s.H + h) * s.Tq + i) * s.Tk;
        const float* go = at(dout, s.Tq, b, i, h);
        auto dp = [&](int64_t j) {
          double d = 0;
          for (int64_t e = 0; e < s.D; ++e) d += static_cast<double>(go[e]) * at(v, s.Tk, b, j, h)[e];
          return d;
        };
        double pdp = 0;
        for (int64_t j = 0; j < s.Tk; ++j) pdp += p[j] * dp(j);
        for (int64_t j = 0; j < s.Tk; ++j) {
          const double ds = p[j] * (dp(j) - pdp) * scale;
          float* dvj = const_cast<float*>(at(dv, s.Tk, b, j, h));
          float* dkj = const_cast<float*>(at(dk, s.Tk, b, j, h));
          float* dqi = const_cast<float*>(at(dq, s.Tq, b, i, h));
          for (int64_t e = 0; e < s.D; ++e) {
            dvj[e] += static_cast<float>(static_cast<double>(p[j]) * go[e]);
            dkj[e] += static_cast<float>(ds * at(q, s.Tq, b, i, h)[e]);
            dqi[e] += static_cast<float>(ds * at(k, s.Tk, b, j, h)[e]);
          }
        }
      }
}

float mse_forward(const Tensor& pred, const Tensor& target) {
  mse_check(pred, target);
  double s = 0;
  for (int64_t i = 0; i < pred.numel(); ++i) {
    const double d = static_cast<double>(pred.ptr<float>()[i]) - target.ptr<float>()[i];
    s += d * d;
  }
  return static_cast<float>(s / static_cast<double>(pred.numel()));
}

void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor& dpred) {
  mse_check(pred, target);
  dense(dpred, "mse_backward");
  same(dpred, pred, "mse_backward");
  const double f = 2.0 * dloss / static_cast<double>(pred.numel());
  for (int64_t i = 0; i < pred.numel(); ++i)
    dpred.ptr<float>()[i] += static_cast<float>(f * (static_cast<double>(pred.ptr<float>()[i]) - target.ptr<float>()[i]));
}

}  // namespace ref

namespace {

// The per-(group, sample) bodies of the fast kernels, compiled for AVX-512 and AVX2+FMA besides the
// baseline and picked at load time by the CPU (GCC function multiversioning): src/train is built
// for baseline x86-64, where these loops would run 4 floats wide.
#define AIGC_TRAIN_SIMD __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

// One group of one sample: x, dy, dx [Cg, S]; gamma, dgamma, dbeta [Cg].
AIGC_TRAIN_SIMD void group_norm_backward_unit(const float* x, const float* dy, const float* gamma, int64_t Cg,
                                              int64_t S, float mu, float rstd, float* dx, float* dgamma,
                                              float* dbeta) {
  float m1 = 0, m2 = 0;  // sums of dxhat and of dxhat * xhat
  for (int64_t c = 0; c < Cg; ++c) {
    const float *xc = x + c * S, *gc = dy + c * S;
    float sg = 0, sb = 0;
#pragma omp simd reduction(+ : sg, sb)
    for (int64_t s = 0; s < S; ++s) {
      sg += gc[s] * ((xc[s] - mu) * rstd);
      sb += gc[s];
    }
    dgamma[c] += sg;
    dbeta[c] += sb;
    m1 += gamma[c] * sb;
    m2 += gamma[c] * sg;
  }
  const float M = static_cast<float>(Cg * S);
  m1 /= M;
  m2 /= M;
  for (int64_t c = 0; c < Cg; ++c) {
    const float *xc = x + c * S, *gc = dy + c * S;
    const float gm = gamma[c];
    float* o = dx + c * S;
#pragma omp simd
    for (int64_t s = 0; s < S; ++s) o[s] += rstd * (gc[s] * gm - m1 - (xc[s] - mu) * rstd * m2);
  }
}

}  // namespace

// ---- fast kernels --------------------------------------------------------------------------------

void bias_backward(const Tensor& dy, Tensor& db) {
  bias_check(dy, db);
  const int64_t O = db.numel(), N = dy.numel() / O;
  parallel_for(O, [&](int64_t o0, int64_t o1) {  // columns over threads; rows read in order
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = o0; o < o1; ++o) db.ptr<float>()[o] += dy.ptr<float>()[n * O + o];
  }, 16);
}

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y, int stride, int pad) {
  const onednn::Conv2dShape s = conv_shape(x, w, b, y, stride, pad);
  onednn::conv2d_train_forward(s, x.ptr<float>(), w.ptr<float>(), b ? b->ptr<float>() : nullptr, y.ptr<float>());
}

// The whole batch in one oneDNN backward-data and one backward-weights primitive (cached per shape,
// see onednn.h); they accumulate into dx, dw, db. The bias gradient without dw is a plain sum.
void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int stride, int pad, Tensor* dx, Tensor* dw,
                     Tensor* db, Tensor& /*scratch*/) {
  const ConvDims d = conv_check(x, w, dy, stride, pad, dx, dw, db);
  const onednn::Conv2dShape s{d.N, d.C, d.H, d.W, d.O, d.kh, d.kw, d.Ho, d.Wo, stride, pad};
  if (db && !dw) {
    const int64_t So = d.Ho * d.Wo;
    parallel_for(d.O, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        float sum = 0;
        for (int64_t n = 0; n < d.N; ++n) {
          const float* g = dy.ptr<float>() + (n * d.O + o) * So;
          for (int64_t i = 0; i < So; ++i) sum += g[i];
        }
        db->ptr<float>()[o] += sum;
      }
    });
  }
  if (d.C == 0) return;
  onednn::conv2d_train_backward(s, x.ptr<float>(), w.ptr<float>(), dy.ptr<float>(), dx ? dx->ptr<float>() : nullptr,
                                dw ? dw->ptr<float>() : nullptr, dw && db ? db->ptr<float>() : nullptr);
}

void group_norm_backward(const Tensor& x, const Tensor& gamma, int groups, float eps, const Tensor& dy, Tensor& dx,
                         Tensor& dgamma, Tensor& dbeta) {
  gn_check(x, gamma, groups, dy, dx, dgamma, dbeta);
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C), Cg = C / groups, M = Cg * S;
  const float *xp = x.ptr<float>(), *gp = gamma.ptr<float>(), *g = dy.ptr<float>();
  float *o = dx.ptr<float>(), *dgp = dgamma.ptr<float>(), *dbp = dbeta.ptr<float>();
  const ops::KernelsF32& kf = ops::kernels_f32();
  // A group's channels belong to one thread, so dgamma/dbeta need no reduction across threads.
  parallel_for(groups, [&](int64_t g0, int64_t g1) {
    for (int64_t gr = g0; gr < g1; ++gr)
      for (int64_t n = 0; n < N; ++n) {
        const int64_t base = (n * C + gr * Cg) * S;
        const double mean = kf.sum(xp + base, M) / static_cast<double>(M);
        const double var = kf.sum_sq_dev(xp + base, M, static_cast<float>(mean)) / static_cast<double>(M);
        group_norm_backward_unit(xp + base, g + base, gp + gr * Cg, Cg, S, static_cast<float>(mean),
                                 static_cast<float>(1.0 / std::sqrt(var + eps)), o + base, dgp + gr * Cg,
                                 dbp + gr * Cg);
      }
  });
}

void layer_norm_backward(const Tensor& x, const Tensor& gamma, float eps, const Tensor& dy, Tensor& dx, Tensor& dgamma,
                         Tensor& dbeta) {
  ln_check(x, gamma, dy, dx, dgamma, dbeta);
  const int64_t C = x.size(-1), R = x.numel() / C;
  const float *xp = x.ptr<float>(), *gp = gamma.ptr<float>(), *g = dy.ptr<float>();
  auto stats = [&](int64_t r, float& mu, float& rstd) {
    const float* xr = xp + r * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += xr[c];
    mean /= static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    mu = static_cast<float>(mean);
    rstd = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(C) + eps));
  };
  parallel_for(R, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float mu, rstd;
      stats(r, mu, rstd);
      const float *xr = xp + r * C, *gr = g + r * C;
      float m1 = 0, m2 = 0;
      for (int64_t c = 0; c < C; ++c) {
        const float dxh = gr[c] * gp[c];
        m1 += dxh;
        m2 += dxh * (xr[c] - mu) * rstd;
      }
      m1 /= static_cast<float>(C);
      m2 /= static_cast<float>(C);
      float* o = dx.ptr<float>() + r * C;
      for (int64_t c = 0; c < C; ++c) o[c] += rstd * (gr[c] * gp[c] - m1 - (xr[c] - mu) * rstd * m2);
    }
  });
  // dgamma, dbeta: columns over threads (each thread recomputes the row statistics it needs).
  parallel_for(C, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < R; ++r) {
      float mu, rstd;
      stats(r, mu, rstd);
      for (int64_t c = c0; c < c1; ++c) {
        dgamma.ptr<float>()[c] += g[r * C + c] * (xp[r * C + c] - mu) * rstd;
        dbeta.ptr<float>()[c] += g[r * C + c];
      }
    }
  }, 16);
}

void upsample_nearest2_backward(const Tensor& dy, Tensor& dx) {
  up_check(dy, dx);
  const int64_t NC = dx.size(0) * dx.size(1), H = dx.size(2), W = dx.size(3);
  parallel_for(NC, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t i = 0; i < H; ++i) {
        const float* a = dy.ptr<float>() + (p * 2 * H + 2 * i) * 2 * W;
        const float* b = a + 2 * W;
        float* o = dx.ptr<float>() + (p * H + i) * W;
        for (int64_t j = 0; j < W; ++j) o[j] += (a[2 * j] + a[2 * j + 1]) + (b[2 * j] + b[2 * j + 1]);
      }
  });
}

void concat_channels_backward(const Tensor& dy, Tensor& da, Tensor& db) {
  cat_check(dy, da, db);
  const int64_t N = dy.size(0), S = dy.numel() / (N * dy.size(1)), Ca = da.size(1), Cb = db.size(1);
  parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* g = dy.ptr<float>() + n * (Ca + Cb) * S;
      float *a = da.ptr<float>() + n * Ca * S, *b = db.ptr<float>() + n * Cb * S;
      for (int64_t i = 0; i < Ca * S; ++i) a[i] += g[i];
      for (int64_t i = 0; i < Cb * S; ++i) b[i] += g[Ca * S + i];
    }
  });
}

void add_channel_forward(const Tensor& x, const Tensor& e, Tensor& y) {
  addc_check(x, e);
  dense(y, "add_channel_forward");
  same(y, x, "add_channel_forward");
  const int64_t NC = e.numel(), S = x.numel() / NC;
  parallel_for(NC, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float b = e.ptr<float>()[p];
      for (int64_t i = 0; i < S; ++i) y.ptr<float>()[p * S + i] = x.ptr<float>()[p * S + i] + b;
    }
  });
}

void add_channel_backward(const Tensor& dy, Tensor& de) {
  addc_check(dy, de);
  const int64_t NC = de.numel(), S = dy.numel() / NC;
  parallel_for(NC, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float s = 0;
      for (int64_t i = 0; i < S; ++i) s += dy.ptr<float>()[p * S + i];
      de.ptr<float>()[p] += s;
    }
  });
}

void transpose12_forward(const Tensor& x, Tensor& y) {
  tr_check(x, y, "transpose12_forward");
  const int64_t N = x.size(0), A = x.size(1), B = x.size(2);
  parallel_for(N * B, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / B, b = r % B;
      float* o = y.ptr<float>() + r * A;
      for (int64_t a = 0; a < A; ++a) o[a] = x.ptr<float>()[(n * A + a) * B + b];
    }
  });
}

void transpose12_backward(const Tensor& dy, Tensor& dx) {
  tr_check(dx, dy, "transpose12_backward");
  const int64_t N = dx.size(0), A = dx.size(1), B = dx.size(2);
  parallel_for(N * A, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / A, a = r % A;
      float* o = dx.ptr<float>() + r * B;
      for (int64_t b = 0; b < B; ++b) o[b] += dy.ptr<float>()[(n * B + b) * A + a];
    }
  });
}

// Attention kernels: a (sequence, head) pair per task, its keys and values transposed to [D, Tk]
// first so that every inner loop runs over the Tk keys, contiguous (vectorised).
namespace {

// The per-(sequence, head) bodies (multiversioned: see AIGC_TRAIN_SIMD).

AIGC_TRAIN_SIMD void mha_forward_unit(const float* q, const float* k, const float* v, const MhaShape& s, float scale,
                                      int64_t u, float* out, float* probs, float* kT, float* vT) {
  const int64_t E = s.H * s.D, Tk = s.Tk, D = s.D;
  const int64_t b = u / s.H, off = u % s.H * D;
  kv_transpose(k + b * Tk * E + off, v + b * Tk * E + off, Tk, D, E, kT, vT);
  const ops::KernelsF32& kf = ops::kernels_f32();
  for (int64_t i = 0; i < s.Tq; ++i) {
    const float* qi = q + (b * s.Tq + i) * E + off;
    float* p = probs + (u * s.Tq + i) * Tk;
    std::fill(p, p + Tk, 0.0f);
    for (int64_t e = 0; e < D; ++e) {
      const float qe = qi[e] * scale;
      const float* kr = kT + e * Tk;
#pragma omp simd
      for (int64_t j = 0; j < Tk; ++j) p[j] += qe * kr[j];
    }
    kf.softmax(p, p, Tk, Tk);
    float* oi = out + (b * s.Tq + i) * E + off;
    for (int64_t e = 0; e < D; ++e) oi[e] = dot(p, vT + e * Tk, Tk);
  }
}

AIGC_TRAIN_SIMD void mha_backward_unit(const float* q, const float* k, const float* v, const float* probs,
                                       const float* dout, const MhaShape& s, float scale, int64_t u, float* dq,
                                       float* dk, float* dv, float* kT) {
  const int64_t E = s.H * s.D, Tk = s.Tk, D = s.D;
  float *vT = kT + D * Tk, *dkT = vT + D * Tk, *dvT = dkT + D * Tk, *ds = dvT + D * Tk;  // [D, Tk] x4, [Tk]
  const int64_t b = u / s.H, off = u % s.H * D;
  kv_transpose(k + b * Tk * E + off, v + b * Tk * E + off, Tk, D, E, kT, vT);
  std::fill(dkT, dkT + 2 * D * Tk, 0.0f);
  for (int64_t i = 0; i < s.Tq; ++i) {
    const float* p = probs + (u * s.Tq + i) * Tk;
    const float* go = dout + (b * s.Tq + i) * E + off;
    const float* qi = q + (b * s.Tq + i) * E + off;
    float* dqi = dq + (b * s.Tq + i) * E + off;
    std::fill(ds, ds + Tk, 0.0f);  // first dp[j] = go . v_j
    for (int64_t e = 0; e < D; ++e) {
      const float ge = go[e];
      const float* vr = vT + e * Tk;
#pragma omp simd
      for (int64_t j = 0; j < Tk; ++j) ds[j] += ge * vr[j];
    }
    const float pdp = dot(p, ds, Tk);
#pragma omp simd
    for (int64_t j = 0; j < Tk; ++j) ds[j] = p[j] * (ds[j] - pdp) * scale;
    for (int64_t e = 0; e < D; ++e) {
      dqi[e] += dot(ds, kT + e * Tk, Tk);
      const float qe = qi[e], ge = go[e];
      float *dkr = dkT + e * Tk, *dvr = dvT + e * Tk;
#pragma omp simd
      for (int64_t j = 0; j < Tk; ++j) {
        dkr[j] += ds[j] * qe;
        dvr[j] += p[j] * ge;
      }
    }
  }
  for (int64_t j = 0; j < Tk; ++j) {
    float* dkj = dk + (b * Tk + j) * E + off;
    float* dvj = dv + (b * Tk + j) * E + off;
    for (int64_t e = 0; e < D; ++e) {
      dkj[e] += dkT[e * Tk + j];
      dvj[e] += dvT[e * Tk + j];
    }
  }
}

// Long sequences (the UNet's self-attention: 256 tokens) go through GEMMs, oneDNN on the calling
// worker thread (matmul_serial): scores, probabilities x values, and the four products of the
// backward. Short key sets (cross-attention on a caption) stay on the loops above.
constexpr int64_t kMhaGemmMinKeys = 32;

// [rows, cols] with row stride ld, f32 (a row-major view) and its transpose (column-major view).
onednn::Matrix mat(const float* p, int64_t rows, int64_t cols, int64_t ld) {
  return onednn::Matrix{p, onednn::Type::F32, 1, rows, cols, 0, ld, 1};
}
onednn::Matrix mat_t(const float* p, int64_t rows, int64_t cols, int64_t ld) {  // p is [cols, rows]
  return onednn::Matrix{p, onednn::Type::F32, 1, rows, cols, 0, 1, ld};
}

// Per-thread scratch of the GEMM path: dS [Tq, Tk] and one [max(Tq, Tk), D] product; kept.
float* mha_gemm_scratch(const MhaShape& s) {
  thread_local std::vector<float> buf;
  const size_t n = static_cast<size_t>(s.Tq * s.Tk + std::max(s.Tq, s.Tk) * s.D);
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

AIGC_TRAIN_SIMD void rows_scale_softmax(float* p, int64_t rows, int64_t n, float scale) {
  const ops::KernelsF32& kf = ops::kernels_f32();
  for (int64_t i = 0; i < rows; ++i) {
    float* r = p + i * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) r[j] *= scale;
    kf.softmax(r, r, n, n);
  }
}

// ds = p * (dp - sum(p * dp)) * scale, row by row, in place over dp.
AIGC_TRAIN_SIMD void rows_softmax_backward(const float* p, float* dp, int64_t rows, int64_t n, float scale) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* pr = p + i * n;
    float* d = dp + i * n;
    const float pdp = dot(pr, d, n);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) d[j] = pr[j] * (d[j] - pdp) * scale;
  }
}

// dst [rows, D] (row stride E) += src [rows, D] (dense)
AIGC_TRAIN_SIMD void rows_accumulate(float* dst, const float* src, int64_t rows, int64_t D, int64_t E) {
  for (int64_t i = 0; i < rows; ++i) {
    float* d = dst + i * E;
    const float* r = src + i * D;
#pragma omp simd
    for (int64_t e = 0; e < D; ++e) d[e] += r[e];
  }
}

void mha_forward_gemm_unit(const float* q, const float* k, const float* v, const MhaShape& s, float scale, int64_t u,
                           float* out, float* probs) {
  const int64_t E = s.H * s.D, Tq = s.Tq, Tk = s.Tk, D = s.D;
  const int64_t b = u / s.H, off = u % s.H * D;
  const float *qb = q + b * Tq * E + off, *kb = k + b * Tk * E + off, *vb = v + b * Tk * E + off;
  float* p = probs + u * Tq * Tk;  // [Tq, Tk]
  onednn::matmul_serial(mat(qb, Tq, D, E), mat_t(kb, D, Tk, E), nullptr, p, 0, Tk);  // q k^T
  rows_scale_softmax(p, Tq, Tk, scale);
  onednn::matmul_serial(mat(p, Tq, Tk, Tk), mat(vb, Tk, D, E), nullptr, out + b * Tq * E + off, 0, E);  // p v
}

void mha_backward_gemm_unit(const float* q, const float* k, const float* v, const float* probs, const float* dout,
                            const MhaShape& s, float scale, int64_t u, float* dq, float* dk, float* dv) {
  const int64_t E = s.H * s.D, Tq = s.Tq, Tk = s.Tk, D = s.D;
  const int64_t b = u / s.H, off = u % s.H * D;
  const float *qb = q + b * Tq * E + off, *kb = k + b * Tk * E + off, *vb = v + b * Tk * E + off;
  const float* gb = dout + b * Tq * E + off;
  const float* p = probs + u * Tq * Tk;
  float* ds = mha_gemm_scratch(s);  // [Tq, Tk]
  float* tmp = ds + Tq * Tk;        // [Tq or Tk, D]
  onednn::matmul_serial(mat(gb, Tq, D, E), mat_t(vb, D, Tk, E), nullptr, ds, 0, Tk);  // dp = dout v^T
  rows_softmax_backward(p, ds, Tq, Tk, scale);
  onednn::matmul_serial(mat(ds, Tq, Tk, Tk), mat(kb, Tk, D, E), nullptr, tmp, 0, D);  // dq = ds k
  rows_accumulate(dq + b * Tq * E + off, tmp, Tq, D, E);
  onednn::matmul_serial(mat_t(ds, Tk, Tq, Tk), mat(qb, Tq, D, E), nullptr, tmp, 0, D);  // dk = ds^T q
  rows_accumulate(dk + b * Tk * E + off, tmp, Tk, D, E);
  onednn::matmul_serial(mat_t(p, Tk, Tq, Tk), mat(gb, Tq, D, E), nullptr, tmp, 0, D);  // dv = p^T dout
  rows_accumulate(dv + b * Tk * E + off, tmp, Tk, D, E);
}

}  // namespace

void mha_forward(const Tensor& q, const Tensor& k, const Tensor& v, const MhaShape& s, Tensor& out, Tensor& probs) {
  mha_check(q, k, v, s, out, probs);
  const float scale = mha_scale(s);
  parallel_for(s.B * s.H, [&](int64_t u0, int64_t u1) {
    if (s.Tk >= kMhaGemmMinKeys) {
      for (int64_t u = u0; u < u1; ++u)
        mha_forward_gemm_unit(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), s, scale, u, out.ptr<float>(),
                              probs.ptr<float>());
      return;
    }
    float* kT = mha_scratch(s);  // [D, Tk], then vT [D, Tk]
    for (int64_t u = u0; u < u1; ++u)
      mha_forward_unit(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), s, scale, u, out.ptr<float>(),
                       probs.ptr<float>(), kT, kT + s.D * s.Tk);
  });
}

void mha_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs, const MhaShape& s,
                  const Tensor& dout, Tensor& dq, Tensor& dk, Tensor& dv) {
  mha_check(q, k, v, s, dout, probs);
  for (const Tensor* t : {&dq, &dk, &dv}) dense(*t, "mha_backward");
  same(dq, q, "mha_backward");
  same(dk, k, "mha_backward");
  same(dv, v, "mha_backward");
  const float scale = mha_scale(s);
  // A (sequence, head) pair owns its slices of dq, dk and dv.
  parallel_for(s.B * s.H, [&](int64_t u0, int64_t u1) {
    if (s.Tk >= kMhaGemmMinKeys) {
      for (int64_t u = u0; u < u1; ++u)
        mha_backward_gemm_unit(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), probs.ptr<float>(), dout.ptr<float>(),
                               s, scale, u, dq.ptr<float>(), dk.ptr<float>(), dv.ptr<float>());
      return;
    }
    float* kT = mha_scratch(s);
    for (int64_t u = u0; u < u1; ++u)
      mha_backward_unit(q.ptr<float>(), k.ptr<float>(), v.ptr<float>(), probs.ptr<float>(), dout.ptr<float>(), s,
                        scale, u, dq.ptr<float>(), dk.ptr<float>(), dv.ptr<float>(), kT);
  });
}

// One pass over a few thousand floats per step: the double-accumulating loop is fast enough.
float mse_forward(const Tensor& pred, const Tensor& target) { return ref::mse_forward(pred, target); }

void mse_backward(const Tensor& pred, const Tensor& target, float dloss, Tensor& dpred) {
  mse_check(pred, target);
  dense(dpred, "mse_backward");
  same(dpred, pred, "mse_backward");
  const float f = 2.0f * dloss / static_cast<float>(pred.numel());
  parallel_for(pred.numel(), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dpred.ptr<float>()[i] += f * (pred.ptr<float>()[i] - target.ptr<float>()[i]);
  }, 4096);
}

}  // namespace aigc::train::grad
