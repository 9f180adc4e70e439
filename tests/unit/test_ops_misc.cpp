// The non-GEMM CPU ops (norms, softmax, attention, activations, rope, upsample, concat, add/mul,
// embedding, copy): each fast kernel against its reference kernel and both against the PyTorch
// twin (tests/ref/twin_ops_misc.py), plus error cases and thread-count independence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/kernels_f32.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "backend/cpu/ops.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "common/thread_guard.h"
#include "core/thread_pool.h"

using namespace aigc;
using test::RefDump;

namespace {

Tensor f32_like(const Tensor& t) { return Tensor::empty(DType::F32, t.shape()); }

float param(const RefDump& d, const std::string& c, int i) { return d.get(c + ".params").ptr<float>()[i]; }

std::span<const int32_t> ids_of(const Tensor& t) {
  return {t.ptr<int32_t>(), static_cast<size_t>(t.numel())};
}

// A non-contiguous view holding the same values as x: x's data stored transposed in a new buffer
// and viewed back through a transpose of the last two dims (last-dim stride != 4 bytes).
Tensor strided_copy(const Tensor& x) {
  std::vector<int64_t> s = x.shape_vec();
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  Tensor buf = Tensor::empty(DType::F32, s);
  Tensor v = buf.transpose(-1, -2);
  ops::ref::copy(x, v);
  return v;
}

}  // namespace

// ---- norms --------------------------------------------------------------------------------
// Tolerances: both our kernels keep the statistics in double; torch float32 computes them in float,
// so it is off by a few ulp of values of magnitude <= ~10: 1e-5 absolute + 1e-5 relative. Fast vs
// reference differ only by the float normalisation step: 2e-6.

TEST(OpsNorm, GroupNormMatchesTorch) {
  RefDump d = RefDump::load("ops_norm");
  for (std::string c : {"gn_a", "gn_b", "gn_c", "gn_d"}) {
    SCOPED_TRACE(c);
    const Tensor& x = d.get(c + ".x");
    const int groups = static_cast<int>(param(d, c, 0));
    const float eps = param(d, c, 1);
    Tensor yr = f32_like(x), yf = f32_like(x);
    ops::ref::group_norm(x, d.get(c + ".gamma"), d.get(c + ".beta"), groups, eps, yr);
    ops::group_norm(x, d.get(c + ".gamma"), d.get(c + ".beta"), groups, eps, yf);
    EXPECT_TENSORS_CLOSE(yr, d.get(c + ".y"), 1e-5f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, d.get(c + ".y"), 1e-5f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, yr, 2e-6f, 2e-6f);
  }
}

TEST(OpsNorm, LayerNormMatchesTorch) {
  RefDump d = RefDump::load("ops_norm");
  for (std::string c : {"ln_a", "ln_b", "ln_c", "ln_d"}) {
    SCOPED_TRACE(c);
    const Tensor& x = d.get(c + ".x");
    const Tensor* g = d.has(c + ".gamma") ? &d.get(c + ".gamma") : nullptr;
    const Tensor* b = d.has(c + ".beta") ? &d.get(c + ".beta") : nullptr;
    const float eps = param(d, c, 0);
    Tensor yr = f32_like(x), yf = f32_like(x), ys = f32_like(x);
    ops::ref::layer_norm(x, g, b, eps, yr);
    ops::layer_norm(x, g, b, eps, yf);
    EXPECT_TENSORS_CLOSE(yr, d.get(c + ".y"), 1e-5f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, d.get(c + ".y"), 1e-5f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, yr, 2e-6f, 2e-6f);
    if (x.ndim() >= 2 && x.size(-1) > 1) {  // strided input takes the reference path
      ops::layer_norm(strided_copy(x), g, b, eps, ys);
      EXPECT_TENSORS_CLOSE(ys, d.get(c + ".y"), 1e-5f, 1e-5f);
    }
  }
}

TEST(OpsNorm, RmsNormMatchesTorch) {
  RefDump d = RefDump::load("ops_norm");
  for (std::string c : {"rms_a", "rms_b", "rms_c", "rms_d"}) {
    SCOPED_TRACE(c);
    const Tensor& x = d.get(c + ".x");
    const Tensor* g = d.has(c + ".gamma") ? &d.get(c + ".gamma") : nullptr;
    const float eps = param(d, c, 0);
    Tensor yr = f32_like(x), yf = f32_like(x);
    ops::ref::rms_norm(x, g, eps, yr);
    ops::rms_norm(x, g, eps, yf);
    EXPECT_TENSORS_CLOSE(yr, d.get(c + ".y"), 1e-5f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, d.get(c + ".y"), 1e-5f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, yr, 2e-6f, 2e-6f);
  }
}

TEST(OpsNorm, GroupNormSameAtOneAndTwoThreads) {
  test::ThreadCountGuard guard;
  RefDump d = RefDump::load("ops_norm");
  const Tensor& x = d.get("gn_b.x");
  Tensor y1 = f32_like(x), y2 = f32_like(x);
  thread_count_set(1);
  ops::group_norm(x, d.get("gn_b.gamma"), d.get("gn_b.beta"), 32, 1e-6f, y1);
  thread_count_set(2);
  ops::group_norm(x, d.get("gn_b.gamma"), d.get("gn_b.beta"), 32, 1e-6f, y2);
  // each (n, group) is computed by the same code whichever thread runs it: bitwise equal
  EXPECT_TENSORS_CLOSE(y2, y1, 0.0f, 0.0f);
  EXPECT_TENSORS_CLOSE(y2, d.get("gn_b.y"), 1e-5f, 1e-5f);
}

TEST(OpsNorm, BadShapesThrow) {
  Tensor x = test::random_f32({2, 6, 3, 3}, 1), y = f32_like(x);
  Tensor g6 = test::random_f32({6}, 2), g5 = test::random_f32({5}, 3);
  EXPECT_THROW(ops::group_norm(x, g6, g6, 4, 1e-5f, y), Error);  // 6 channels, 4 groups
  EXPECT_THROW(ops::group_norm(x, g5, g6, 3, 1e-5f, y), Error);
  EXPECT_THROW(ops::ref::group_norm(x, g6, g6, 0, 1e-5f, y), Error);
  Tensor r = test::random_f32({4, 6}, 4), ry = f32_like(r), bad = Tensor::empty(DType::F32, {4, 5});
  EXPECT_THROW(ops::layer_norm(r, &g5, nullptr, 1e-5f, ry), Error);
  EXPECT_THROW(ops::layer_norm(r, &g6, &g6, 1e-5f, bad), Error);
  EXPECT_THROW(ops::rms_norm(r, &g5, 1e-5f, ry), Error);
  Tensor h = Tensor::empty(DType::F16, {4, 6});
  EXPECT_THROW(ops::rms_norm(h, nullptr, 1e-5f, ry), Error);
}

// ---- softmax ------------------------------------------------------------------------------
// Probabilities <= 1; the fast exp is good to a few ulp: 1e-6 absolute + 1e-5 relative.

TEST(OpsSoftmax, MatchesTorchWithAndWithoutCausalMask) {
  RefDump d = RefDump::load("ops_softmax");
  for (std::string c : {"sm_a", "sm_b", "sm_c", "sm_d", "sm_e", "sm_f"}) {
    SCOPED_TRACE(c);
    const Tensor& x = d.get(c + ".x");
    const bool causal = param(d, c, 0) != 0.0f;
    const int64_t q_offset = static_cast<int64_t>(param(d, c, 1));
    Tensor yr = f32_like(x), yf = f32_like(x), ys = f32_like(x);
    ops::ref::softmax(x, yr, causal, q_offset);
    ops::softmax(x, yf, causal, q_offset);
    EXPECT_TENSORS_CLOSE(yr, d.get(c + ".y"), 1e-7f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, d.get(c + ".y"), 1e-6f, 1e-5f);
    EXPECT_TENSORS_CLOSE(yf, yr, 1e-6f, 1e-5f);
    if (x.size(-1) > 1) {
      ops::softmax(strided_copy(x), ys, causal, q_offset);
      EXPECT_TENSORS_CLOSE(ys, d.get(c + ".y"), 1e-7f, 1e-5f);
    }
  }
}

TEST(OpsSoftmax, InPlace) {
  RefDump d = RefDump::load("ops_softmax");
  Tensor x = test::to_f32(d.get("sm_b.x"));
  ops::softmax(x, x, true, 0);
  EXPECT_TENSORS_CLOSE(x, d.get("sm_b.y"), 1e-6f, 1e-5f);
}

TEST(OpsSoftmax, BadArgumentsThrow) {
  Tensor x = test::random_f32({3, 4}, 1), y = Tensor::empty(DType::F32, {3, 5});
  EXPECT_THROW(ops::softmax(x, y), Error);
  Tensor y2 = f32_like(x);
  EXPECT_THROW(ops::softmax(x, y2, true, -1), Error);
  Tensor v = test::random_f32({4}, 2), vy = f32_like(v);
  EXPECT_THROW(ops::softmax(v, vy, true, 0), Error);  // causal needs [..., Tq, Tk]
}

// ---- attention ----------------------------------------------------------------------------
// The twin computes in float64: the reference kernel (double) matches it to 1 ulp-ish (1e-6); the
// fast kernel accumulates dots and weighted sums in float over up to 130 keys of unit-variance
// values: 1e-5 absolute + 1e-4 relative.

namespace {

struct AttnCase {
  Tensor q, k, v;  // [B, H, T, D] views (permuted from [B, T, H, D] storage where the twin says so)
  ops::AttentionParams p;
};

AttnCase attn_case(const RefDump& d, const std::string& c) {
  AttnCase a{d.get(c + ".q"), d.get(c + ".k"), d.get(c + ".v"), {}};
  a.p.scale = param(d, c, 0);
  a.p.causal = param(d, c, 1) != 0.0f;
  a.p.q_offset = static_cast<int64_t>(param(d, c, 2));
  if (param(d, c, 3) != 0.0f) {
    a.q = a.q.permute({0, 2, 1, 3});
    a.k = a.k.permute({0, 2, 1, 3});
    a.v = a.v.permute({0, 2, 1, 3});
  }
  return a;
}

}  // namespace

TEST(OpsAttention, MatchesTorch) {
  RefDump d = RefDump::load("ops_attention");
  for (std::string c : {"att_self", "att_cross", "att_gqa", "att_decode", "att_chunk", "att_scale", "att_dv",
                        "att_decode_long", "att_decode_few", "att_decode_mqa"}) {
    SCOPED_TRACE(c);
    AttnCase a = attn_case(d, c);
    const Tensor& want = d.get(c + ".y");
    Tensor yr = f32_like(want), yf = f32_like(want);
    ops::ref::attention(a.q, a.k, a.v, yr, a.p);
    ops::attention(a.q, a.k, a.v, yf, a.p);
    EXPECT_TENSORS_CLOSE(yr, want, 1e-6f, 1e-6f);
    EXPECT_TENSORS_CLOSE(yf, want, 1e-5f, 1e-4f);
    EXPECT_TENSORS_CLOSE(yf, yr, 1e-5f, 1e-4f);
  }
}

TEST(OpsAttention, OutputMayBeAStridedView) {
  // out as a [B, H, T, D] view of [B, T, H, D] storage, as a model writes it before the output projection
  RefDump d = RefDump::load("ops_attention");
  AttnCase a = attn_case(d, "att_gqa");
  const Tensor& want = d.get("att_gqa.y");  // [1, 8, 17, 64]
  Tensor store = Tensor::empty(DType::F32, {1, 17, 8, 64});
  Tensor out = store.permute({0, 2, 1, 3});
  ops::attention(a.q, a.k, a.v, out, a.p);
  EXPECT_TENSORS_CLOSE(out, want, 1e-5f, 1e-4f);
}

TEST(OpsAttention, SameAtOneAndTwoThreads) {
  test::ThreadCountGuard guard;
  RefDump d = RefDump::load("ops_attention");
  // att_cross: per-head tasks; the decode cases: grouped tasks (kv head, query, slice of heads)
  for (std::string c : {"att_cross", "att_decode_long", "att_decode_mqa"}) {
    SCOPED_TRACE(c);
    AttnCase a = attn_case(d, c);
    const Tensor& want = d.get(c + ".y");
    Tensor y1 = f32_like(want), y2 = f32_like(want);
    thread_count_set(1);
    ops::attention(a.q, a.k, a.v, y1, a.p);
    thread_count_set(2);
    ops::attention(a.q, a.k, a.v, y2, a.p);
    // tasks are computed by the same code on any thread and cut by shape alone: bitwise equal
    EXPECT_TENSORS_CLOSE(y2, y1, 0.0f, 0.0f);
    EXPECT_TENSORS_CLOSE(y2, want, 1e-5f, 1e-4f);
  }
}

namespace {

// x (f32, any strides) as a contiguous f16 tensor, and those f16 values back in f32.
Tensor f16_copy(const Tensor& x) {
  Tensor y = Tensor::empty(DType::F16, x.shape());
  for (int64_t a = 0; a < x.size(0); ++a)
    for (int64_t b = 0; b < x.size(1); ++b)
      for (int64_t c = 0; c < x.size(2); ++c)
        for (int64_t d = 0; d < x.size(3); ++d) y.at<uint16_t>(a, b, c, d) = f16_from_f32(x.at<float>(a, b, c, d));
  return y;
}
Tensor f32_of_f16(const Tensor& x) {
  Tensor y = Tensor::empty(DType::F32, x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) y.ptr<float>()[i] = f16_to_f32(x.ptr<uint16_t>()[i]);
  return y;
}

}  // namespace

// Keys and values from an f16 KV cache, on every path (the twin's cases: GEMM paths for 16 or
// more queries, f32 and bf16, grouped decode, the flash kernel), and with only one of the two in
// f16: the same results as f32 inputs holding the f16 values (the conversion is exact), and within
// f16's rounding of the twin.
TEST(OpsAttention, F16KeysAndValuesMatchTheirF32Values) {
  RefDump d = RefDump::load("ops_attention");
  for (std::string c : {"att_self", "att_cross", "att_gqa", "att_decode", "att_chunk", "att_scale", "att_dv",
                        "att_decode_long", "att_decode_few", "att_decode_mqa"}) {
    for (ops::Precision prec : {ops::Precision::F32, ops::Precision::BF16}) {
      SCOPED_TRACE(c + (prec == ops::Precision::BF16 ? " bf16" : " f32"));
      AttnCase a = attn_case(d, c);
      a.p.precision = prec;
      const Tensor& want = d.get(c + ".y");
      const Tensor k16 = f16_copy(a.k), v16 = f16_copy(a.v);
      const Tensor kr = f32_of_f16(k16), vr = f32_of_f16(v16);
      Tensor y_ref = f32_like(want), y_ref16 = f32_like(want), y = f32_like(want), y_mixed = f32_like(want);
      ops::ref::attention(a.q, kr, vr, y_ref, a.p);
      ops::ref::attention(a.q, k16, v16, y_ref16, a.p);
      EXPECT_TENSORS_CLOSE(y_ref16, y_ref, 0.0f, 0.0f);  // the reference reads f16 exactly
      ops::attention(a.q, k16, v16, y, a.p);
      Tensor y_f32 = f32_like(want);
      ops::attention(a.q, kr, vr, y_f32, a.p);
      EXPECT_TENSORS_CLOSE(y, y_f32, 0.0f, 0.0f);  // same path, same values: same bits
      if (prec == ops::Precision::F32) {
        EXPECT_TENSORS_CLOSE(y, y_ref, 1e-5f, 1e-4f);
      }
      ops::attention(a.q, k16, vr, y_mixed, a.p);
      EXPECT_TENSORS_CLOSE(y_mixed, y_f32, 0.0f, 0.0f);
      // f16 keeps 11 bits: the outputs of unit-variance inputs move by a few 1e-3 at most
      EXPECT_TENSORS_CLOSE(y_ref, want, 1e-2f, 1e-2f);
    }
  }
}

TEST(OpsAttention, BadShapesThrow) {
  Tensor q = test::random_f32({1, 6, 3, 8}, 1), k = test::random_f32({1, 4, 5, 8}, 2);
  Tensor v = test::random_f32({1, 4, 5, 8}, 3), out = Tensor::empty(DType::F32, {1, 6, 3, 8});
  EXPECT_THROW(ops::attention(q, k, v, out), Error);  // 6 query heads over 4 kv heads
  Tensor q2 = test::random_f32({1, 4, 3, 7}, 4), out2 = Tensor::empty(DType::F32, {1, 4, 3, 8});
  EXPECT_THROW(ops::attention(q2, k, v, out2), Error);  // head dims differ
  Tensor q3 = test::random_f32({1, 4, 3, 8}, 5), out3 = Tensor::empty(DType::F32, {1, 4, 3, 7});
  EXPECT_THROW(ops::ref::attention(q3, k, v, out3), Error);
  Tensor v4 = test::random_f32({1, 4, 6, 8}, 6), out4 = Tensor::empty(DType::F32, {1, 4, 3, 8});
  EXPECT_THROW(ops::attention(q3, k, v4, out4), Error);  // k and v lengths differ
  Tensor k8 = Tensor::zeros(DType::Q8_0, {1, 4, 5, 32}), q8 = test::random_f32({1, 4, 3, 32}, 7);
  Tensor v8 = test::random_f32({1, 4, 5, 8}, 8);
  EXPECT_THROW(ops::attention(q8, k8, v8, out4), Error);  // k must be f32 or f16
  EXPECT_THROW(ops::attention(q3.reshape({4, 3, 8}), k, v, out4), Error);
  ops::AttentionParams p;
  p.causal = true;
  p.q_offset = -2;
  EXPECT_THROW(ops::attention(q3, k, v, out4, p), Error);
}

// ---- activations --------------------------------------------------------------------------

TEST(OpsActivation, MatchesTorch) {
  // torch float32 evaluates 0.5 x (1 + erf(.)) and 0.5 x (1 + tanh(.)) with cancellation in the
  // negative tail (1 + erf rounds in steps of 6e-8, times |x| / 2): up to ~5e-7 absolute there, so
  // atol 1e-6; elsewhere a few ulp (rtol 4e-6). Ours evaluate the tail without cancellation.
  RefDump d = RefDump::load("ops_activation");
  const Tensor& x = d.get("act.x");
  struct Case {
    const char* name;
    void (*ref)(const Tensor&, Tensor&);
    void (*fast)(const Tensor&, Tensor&);
  };
  for (const Case& c : {Case{"gelu", ops::ref::gelu, ops::gelu}, Case{"gelu_tanh", ops::ref::gelu_tanh, ops::gelu_tanh},
                        Case{"silu", ops::ref::silu, ops::silu}, Case{"relu", ops::ref::relu, ops::relu},
                        Case{"tanh", ops::ref::tanh, ops::tanh}}) {
    SCOPED_TRACE(c.name);
    const Tensor& want = d.get(std::string("act.") + c.name);
    Tensor yr = f32_like(x), yf = f32_like(x), ys = f32_like(x);
    c.ref(x, yr);
    c.fast(x, yf);
    EXPECT_TENSORS_CLOSE(yr, want, 1e-6f, 4e-6f);
    EXPECT_TENSORS_CLOSE(yf, want, 1e-6f, 1e-5f);
    // relative error grows in the far tail (see KernelsF32.EveryBuildMatchesReference): 5e-5 at |x| <= 20
    EXPECT_TENSORS_CLOSE(yf, yr, 1e-36f, 5e-5f);
    c.fast(strided_copy(x), ys);  // last dim strided: the reference path
    EXPECT_TENSORS_CLOSE(ys, want, 1e-6f, 4e-6f);
    Tensor xs = x.slice(-1, 3, 20), yv = Tensor::empty(DType::F32, {3, 17, 20});  // dense rows, not contiguous
    c.fast(xs, yv);
    EXPECT_TENSORS_CLOSE(yv, want.slice(-1, 3, 20), 1e-6f, 1e-5f);
  }
}

TEST(OpsActivation, BadShapesThrow) {
  Tensor x = test::random_f32({3, 4}, 1), y = Tensor::empty(DType::F32, {4, 3});
  EXPECT_THROW(ops::silu(x, y), Error);
  EXPECT_THROW(ops::gelu(x, y), Error);
  Tensor h = Tensor::empty(DType::F16, {3, 4});
  EXPECT_THROW(ops::gelu_tanh(x, h), Error);
  EXPECT_THROW(ops::relu(x, y), Error);
  EXPECT_THROW(ops::tanh(x, h), Error);
}

// Every instruction-set build of the row kernels this CPU runs (not only the one dispatch picks),
// against the double-precision formulas, over a dense sweep of [-20, 20]. Bound, per element:
// |err| <= 1e-36 + |y| (1e-6 + 2e-7 x^2). The x^2 term is the rounding of the exp argument (z^2 in
// gelu, the cubic in gelu_tanh), which grows in the far negative tail; 1e-36 covers outputs
// saturated below 1e-37. Measured (generic/AVX2/AVX-512 alike), relative: silu 1.5e-7 everywhere;
// gelu 1.0e-6 and gelu_tanh 7e-7 for |x| < 3, 1.5e-5 and 1.1e-5 at worst (x near -20).
TEST(KernelsF32, EveryBuildMatchesReference) {
  std::vector<ops::KernelsF32> builds{ops::kernels_f32_generic()};
  if (cpu_has_avx2()) builds.push_back(ops::kernels_f32_avx2());
  if (cpu_has_avx512()) builds.push_back(ops::kernels_f32_avx512());
  const int64_t n = 40001;  // x in [-20, 20] step 1e-3
  std::vector<float> x(n), y(n);
  for (int64_t i = 0; i < n; ++i) x[i] = -20.0f + 1e-3f * static_cast<float>(i);
  for (const ops::KernelsF32& k : builds) {
    SCOPED_TRACE(k.name);
    struct Fn {
      const char* name;
      void (*row)(const float*, float*, int64_t);
      double (*exact)(double);
    };
    const Fn fns[] = {
        {"silu", k.silu, [](double v) { return v / (1.0 + std::exp(-v)); }},
        {"gelu", k.gelu, [](double v) { return 0.5 * v * std::erfc(-v * M_SQRT1_2); }},
        {"gelu_tanh", k.gelu_tanh,
         [](double v) { return v / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))); }},
    };
    for (const Fn& f : fns) {
      f.row(x.data(), y.data(), n);
        double worst_abs = 0, worst_rel = 0, worst_rel_core = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double e = f.exact(x[i]), err = std::fabs(y[i] - e);
        worst_abs = std::max(worst_abs, err);
        if (std::fabs(e) > 1e-30) worst_rel = std::max(worst_rel, err / std::fabs(e));
        if (std::fabs(e) > 1e-30 && std::fabs(x[i]) < 3.0f) worst_rel_core = std::max(worst_rel_core, err / std::fabs(e));
        const double xx = static_cast<double>(x[i]) * x[i];
        ASSERT_LE(err, 1e-36 + std::fabs(e) * (1e-6 + 2e-7 * xx)) << f.name << " x=" << x[i] << " got " << y[i];
      }
      std::printf("[ %s %s ] max abs error %.3g; max rel error %.3g (|y| > 1e-30), %.3g (|x| < 3)\n", k.name,
                  f.name, worst_abs, worst_rel, worst_rel_core);
    }
    // silu_backward accumulates dy * silu'(x) into dx; silu'(x) = s (1 + x (1 - s)) lies in
    // [-0.1, 1.1], so an absolute bound of 1e-6 covers the exp error and the f32 accumulation.
    {
      std::vector<float> dy(n), dx(n, 0.5f);
      for (int64_t i = 0; i < n; ++i) dy[i] = std::cos(0.37f * static_cast<float>(i));
      k.silu_backward(x.data(), dy.data(), dx.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double sg = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
        const double want = 0.5 + dy[i] * sg * (1.0 + x[i] * (1.0 - sg));
        ASSERT_NEAR(dx[i], want, 1e-6) << "silu_backward x=" << x[i];
      }
    }
    // softmax of one row with masked tail, against the double formula
    std::vector<float> s(77), p(77);
    for (int i = 0; i < 77; ++i) s[i] = 8.0f * std::sin(0.37f * i);
    k.softmax(s.data(), p.data(), 77, 50);
    double m = -1e30, sum = 0;
    for (int i = 0; i < 50; ++i) m = std::max(m, static_cast<double>(s[i]));
    for (int i = 0; i < 50; ++i) sum += std::exp(s[i] - m);
    for (int i = 0; i < 77; ++i) {
      const double e = i < 50 ? std::exp(s[i] - m) / sum : 0.0;
      ASSERT_NEAR(p[i], e, 1e-7 + 1e-6 * e) << "softmax i=" << i;
    }
    // attention rows: one head, causal, against the reference op. 9 queries take both score paths
    // (a transposed block of 8, then 1 by dot products); Dv = 93 = 64 + 16 + 8 + 4 + 1 takes every
    // P.V column tile; 70 keys make a full and a partial key block.
    Tensor q = test::random_f32({1, 1, 9, 40}, 11), kk = test::random_f32({1, 1, 70, 40}, 12);
    Tensor v = test::random_f32({1, 1, 70, 93}, 13), want = Tensor::empty(DType::F32, {1, 1, 9, 93});
    ops::AttentionParams ap;
    ap.causal = true;
    ap.q_offset = 61;
    ops::ref::attention(q, kk, v, want, ap);
    Tensor got = f32_like(want);
    std::vector<float> scratch(ops::attention_scratch_floats(40, 93));
    ops::AttentionRows a{q.ptr<float>(), 40, kk.ptr<float>(), 40, v.ptr<float>(), 93, got.ptr<float>(), 93,
                         9, 70, 40, 93, 1.0f / std::sqrt(40.0f), 61};
    k.attention(a, scratch.data());
    EXPECT_TENSORS_CLOSE(got, want, 1e-5f, 1e-4f);
    // The same rows from an f16 cache (k16, v16, with a row stride past the row: a cache view),
    // against the reference on the f16 values.
    constexpr int64_t kKs = 48, kVs = 100;
    std::vector<uint16_t> k16(70 * kKs), v16(70 * kVs);
    Tensor kr = f32_like(kk), vr = f32_like(v);
    for (int64_t j = 0; j < 70; ++j) {
      for (int64_t c = 0; c < 40; ++c)
        kr.ptr<float>()[j * 40 + c] = f16_to_f32(k16[j * kKs + c] = f16_from_f32(kk.ptr<float>()[j * 40 + c]));
      for (int64_t c = 0; c < 93; ++c)
        vr.ptr<float>()[j * 93 + c] = f16_to_f32(v16[j * kVs + c] = f16_from_f32(v.ptr<float>()[j * 93 + c]));
    }
    ops::ref::attention(q, kr, vr, want, ap);
    ops::AttentionRows a16 = a;
    a16.k = a16.v = nullptr;
    a16.k16 = k16.data(), a16.v16 = v16.data();
    a16.k_stride = kKs, a16.v_stride = kVs;
    k.attention(a16, scratch.data());
    EXPECT_TENSORS_CLOSE(got, want, 1e-5f, 1e-4f);
  }
}

// ---- rope ---------------------------------------------------------------------------------
// Angles in double in the twin and in both kernels; the fast kernel rotates in float with f32
// cos/sin: a few ulp of |x| <= ~4, so 2e-6 absolute + 1e-5 relative. Reference: 1e-6.

TEST(OpsRope, MatchesTorchNormalAndNeox) {
  RefDump d = RefDump::load("ops_rope");
  for (std::string c : {"rope_a", "rope_b", "rope_c", "rope_d", "rope_e"}) {
    SCOPED_TRACE(c);
    const Tensor& x = d.get(c + ".x");
    ops::RopeParams p;
    p.n_dims = static_cast<int64_t>(param(d, c, 0));
    p.freq_base = param(d, c, 1);
    p.freq_scale = param(d, c, 2);
    p.neox = param(d, c, 3) != 0.0f;
    auto pos = ids_of(d.get(c + ".pos"));
    Tensor yr = f32_like(x), yf = f32_like(x);
    ops::ref::rope(x, pos, p, yr);
    ops::rope(x, pos, p, yf);
    EXPECT_TENSORS_CLOSE(yr, d.get(c + ".y"), 1e-6f, 1e-6f);
    EXPECT_TENSORS_CLOSE(yf, d.get(c + ".y"), 2e-6f, 1e-5f);
    Tensor xi = test::to_f32(x);  // in place
    ops::rope(xi, pos, p, xi);
    EXPECT_TENSORS_CLOSE(xi, d.get(c + ".y"), 2e-6f, 1e-5f);
  }
}

TEST(OpsRope, BadArgumentsThrow) {
  Tensor x = test::random_f32({3, 2, 8}, 1), y = f32_like(x);
  std::vector<int32_t> pos{0, 1, 2}, pos2{0, 1};
  ops::RopeParams p;
  EXPECT_THROW(ops::rope(x, pos2, p, y), Error);
  p.n_dims = 5;
  EXPECT_THROW(ops::rope(x, pos, p, y), Error);
  p.n_dims = 10;
  EXPECT_THROW(ops::ref::rope(x, pos, p, y), Error);
  p.n_dims = 0;
  Tensor x2 = test::random_f32({3, 8}, 2), y2 = f32_like(x2);
  EXPECT_THROW(ops::rope(x2, pos, p, y2), Error);
}

// ---- upsample, concat, add/mul: pure data movement or one IEEE operation per element: exact --

TEST(OpsUpsample, MatchesTorchExactly) {
  RefDump d = RefDump::load("ops_misc");
  for (std::string c : {"up_a", "up_b"}) {
    SCOPED_TRACE(c);
    const Tensor& want = d.get(c + ".y");
    Tensor yr = f32_like(want), yf = f32_like(want);
    ops::ref::upsample_nearest(d.get(c + ".x"), 2, yr);
    ops::upsample_nearest(d.get(c + ".x"), 2, yf);
    EXPECT_TENSORS_CLOSE(yr, want, 0.0f, 0.0f);
    EXPECT_TENSORS_CLOSE(yf, want, 0.0f, 0.0f);
  }
  Tensor x = test::random_f32({1, 2, 3, 3}, 1), bad = Tensor::empty(DType::F32, {1, 2, 6, 5});
  EXPECT_THROW(ops::upsample_nearest(x, 2, bad), Error);
  EXPECT_THROW(ops::upsample_nearest(x, 0, bad), Error);
}

TEST(OpsConcat, MatchesTorchExactly) {
  RefDump d = RefDump::load("ops_misc");
  for (std::string c : {"cat_a", "cat_b", "cat_c", "cat_d"}) {
    SCOPED_TRACE(c);
    const int dim = static_cast<int>(param(d, c, 0));
    std::vector<Tensor> xs;
    for (int i = 0; i < static_cast<int>(param(d, c, 1)); ++i) xs.push_back(d.get(c + ".x" + std::to_string(i)));
    const Tensor& want = d.get(c + ".y");
    Tensor yr = f32_like(want), yf = f32_like(want), ys = f32_like(want);
    ops::ref::concat(xs, dim, yr);
    ops::concat(xs, dim, yf);
    EXPECT_TENSORS_CLOSE(yr, want, 0.0f, 0.0f);
    EXPECT_TENSORS_CLOSE(yf, want, 0.0f, 0.0f);
    for (Tensor& x : xs) x = strided_copy(x);  // non-contiguous inputs
    ops::concat(xs, dim, ys);
    EXPECT_TENSORS_CLOSE(ys, want, 0.0f, 0.0f);
  }
  Tensor a = test::random_f32({2, 3}, 1), b = test::random_f32({3, 3}, 2), y = Tensor::empty(DType::F32, {2, 6});
  std::vector<Tensor> ab{a, b};
  EXPECT_THROW(ops::concat(ab, 1, y), Error);  // dim 0 differs
  Tensor y5 = Tensor::empty(DType::F32, {5, 3});
  EXPECT_THROW(ops::concat(ab, 2, y5), Error);
  EXPECT_THROW(ops::concat(std::span<const Tensor>{}, 0, y5), Error);
  Tensor y4 = Tensor::empty(DType::F32, {4, 3});
  EXPECT_THROW(ops::concat(ab, 0, y4), Error);  // sizes add up to 5
}

TEST(OpsElementwise, BroadcastingMatchesTorchExactly) {
  RefDump d = RefDump::load("ops_misc");
  for (std::string c : {"bc_a", "bc_b", "bc_c", "bc_d", "bc_e", "bc_f"}) {
    SCOPED_TRACE(c);
    const Tensor &a = d.get(c + ".a"), &b = d.get(c + ".b"), &want = d.get(c + ".y");
    const bool is_mul = param(d, c, 0) != 0.0f;
    Tensor yr = f32_like(want), yf = f32_like(want), ys = f32_like(want);
    (is_mul ? ops::ref::mul : ops::ref::add)(a, b, yr);
    (is_mul ? ops::mul : ops::add)(a, b, yf);
    EXPECT_TENSORS_CLOSE(yr, want, 0.0f, 0.0f);
    EXPECT_TENSORS_CLOSE(yf, want, 0.0f, 0.0f);
    if (a.ndim() >= 2 && a.size(-1) > 1) {
      (is_mul ? ops::mul : ops::add)(strided_copy(a), b, ys);
      EXPECT_TENSORS_CLOSE(ys, want, 0.0f, 0.0f);
    }
  }
  // in place: y aliases a
  Tensor a = test::to_f32(d.get("bc_b.a"));
  ops::mul(a, d.get("bc_b.b"), a);
  EXPECT_TENSORS_CLOSE(a, d.get("bc_b.y"), 0.0f, 0.0f);
  Tensor x = test::random_f32({3, 4}, 1), z = test::random_f32({3}, 2), y = f32_like(x);
  EXPECT_THROW(ops::add(x, z, y), Error);  // [3] does not broadcast to [3, 4]
  Tensor big = test::random_f32({2, 3, 4}, 3);
  EXPECT_THROW(ops::mul(big, x, y), Error);  // a has more dims than y
  Tensor h = Tensor::empty(DType::F16, {3, 4});
  EXPECT_THROW(ops::ref::add(x, h, y), Error);
}

// ---- embedding, copy: exact ----------------------------------------------------------------

TEST(OpsEmbedding, EveryTableTypeMatchesTorchExactly) {
  RefDump d = RefDump::load("ops_misc");
  auto ids = ids_of(d.get("emb.ids"));
  auto quant_view = [](const Tensor& bytes, DType type, int64_t cols) {
    return Tensor::view_of(type, std::vector<int64_t>{bytes.size(0), cols}, const_cast<void*>(bytes.data()),
                           bytes.owner());
  };
  const Tensor& q8 = d.get("emb.q8_0_table");
  const Tensor& q4 = d.get("emb.q4_0_table");
  struct Case {
    const char* name;
    Tensor table;
  };
  for (const Case& c : {Case{"f32", d.get("emb.f32_table")}, Case{"f16", d.get("emb.f16_table")},
                        Case{"bf16", d.get("emb.bf16_table")}, Case{"q8_0", quant_view(q8, DType::Q8_0, 64)},
                        Case{"q4_0", quant_view(q4, DType::Q4_0, 64)}}) {
    SCOPED_TRACE(c.name);
    const Tensor& want = d.get(std::string("emb.") + c.name + "_y");
    Tensor yr = f32_like(want), yf = f32_like(want);
    ops::ref::embedding(c.table, ids, yr);
    ops::embedding(c.table, ids, yf);
    EXPECT_TENSORS_CLOSE(yr, want, 0.0f, 0.0f);
    EXPECT_TENSORS_CLOSE(yf, want, 0.0f, 0.0f);
  }
  const Tensor& t = d.get("emb.f32_table");  // [50, 17]
  Tensor y = Tensor::empty(DType::F32, {1, 17});
  std::vector<int32_t> bad{50}, neg{-1}, ok{3};
  EXPECT_THROW(ops::embedding(t, bad, y), Error);
  EXPECT_THROW(ops::ref::embedding(t, neg, y), Error);
  Tensor y2 = Tensor::empty(DType::F32, {2, 17});
  EXPECT_THROW(ops::embedding(t, ok, y2), Error);
  Tensor y3 = Tensor::empty(DType::F16, {1, 17});
  EXPECT_THROW(ops::embedding(t, ok, y3), Error);
}

namespace {

// Exact bit equality of two 16-bit tensors (f16/bf16), reporting the first difference.
void expect_same_bits(const Tensor& got, const Tensor& want) {
  ASSERT_TRUE(got.same_shape(want)) << got.shape_str() << " vs " << want.shape_str();
  ASSERT_EQ(got.type(), want.type());
  const uint16_t* g = got.ptr<uint16_t>();
  const uint16_t* w = want.ptr<uint16_t>();
  for (int64_t i = 0; i < got.numel(); ++i) ASSERT_EQ(g[i], w[i]) << "element " << i;
}

}  // namespace

TEST(OpsCopy, PermutedViewsMatchTorchExactly) {
  RefDump d = RefDump::load("ops_misc");
  const Tensor& x = d.get("copy.x");  // [3, 5, 7, 9]
  struct Case {
    const char* name;
    Tensor view;
  };
  for (const Case& c : {Case{"p0213", x.permute({0, 2, 1, 3})}, Case{"p3102", x.permute({3, 1, 0, 2})},
                        Case{"t01", x.select(0, 0).transpose(0, 1)}}) {
    SCOPED_TRACE(c.name);
    const Tensor& want = d.get(std::string("copy.") + c.name);
    Tensor yr = f32_like(want), yf = f32_like(want);
    ops::ref::copy(c.view, yr);
    ops::copy(c.view, yf);
    EXPECT_TENSORS_CLOSE(yr, want, 0.0f, 0.0f);
    EXPECT_TENSORS_CLOSE(yf, want, 0.0f, 0.0f);
  }
}

TEST(OpsCopy, ConversionsRoundLikeTorch) {
  // torch's .half() / .bfloat16() round to nearest even, as ours: bitwise equality
  RefDump d = RefDump::load("ops_misc");
  const Tensor& x = d.get("copy.wide");  // [33, 17] with ties, subnormals, overflow, -0
  Tensor h = Tensor::empty(DType::F16, {33, 17}), hr = Tensor::empty(DType::F16, {33, 17});
  Tensor b = Tensor::empty(DType::BF16, {33, 17}), br = Tensor::empty(DType::BF16, {33, 17});
  ops::copy(x, h);
  ops::ref::copy(x, hr);
  ops::copy(x, b);
  ops::ref::copy(x, br);
  expect_same_bits(h, d.get("copy.wide_f16"));
  expect_same_bits(hr, d.get("copy.wide_f16"));
  expect_same_bits(b, d.get("copy.wide_bf16"));
  expect_same_bits(br, d.get("copy.wide_bf16"));
  Tensor ht = Tensor::empty(DType::F16, {17, 33});
  ops::copy(x.transpose(0, 1), ht);  // transpose and convert in one copy
  expect_same_bits(ht, d.get("copy.wide_t_f16"));
  // and back: widening is exact, compared bit for bit (the values include inf and -0)
  for (const char* c : {"f16", "bf16"}) {
    SCOPED_TRACE(c);
    const Tensor& want = d.get(std::string("copy.wide_") + c + "_f32");
    Tensor back = f32_like(want);
    ops::copy(d.get(std::string("copy.wide_") + c), back);
    for (int64_t i = 0; i < back.numel(); ++i)
      ASSERT_EQ(std::memcmp(&back.ptr<float>()[i], &want.ptr<float>()[i], 4), 0) << "element " << i;
  }
  Tensor bad = Tensor::empty(DType::F16, {17, 33});
  EXPECT_THROW(ops::copy(x, bad), Error);
}
