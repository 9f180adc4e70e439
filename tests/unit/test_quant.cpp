// Quantised kernels: Q8_0/Q4_0 reference quantisers against an independent numpy twin
// (tests/ref/twin_quant.py), the SIMD quantiser/dequantisers bit-exact against the references,
// the SIMD dot products against the scalar reference dots, and linear_quantized against torch
// (x · dequant(w)^T) and against the scalar reference composition.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant_dot.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

using namespace aigc;

namespace {

constexpr double kU = 1.0 / (1 << 24);  // f32 unit roundoff

// Every kernel set this CPU runs, the reference first.
std::vector<const QuantKernels*> kernel_sets() {
  std::vector<const QuantKernels*> v;
  for (QuantIsa isa : {QuantIsa::Ref, QuantIsa::Avx2, QuantIsa::Avx512Vnni, QuantIsa::Avx512Vbmi})
    if (const QuantKernels* k = quant_kernels_find(isa)) v.push_back(k);
  return v;
}

std::vector<const QuantKernels*> simd_sets() {
  std::vector<const QuantKernels*> v = kernel_sets();
  v.erase(v.begin());
  return v;
}

// Index of the first differing byte, or -1.
int64_t bytes_first_diff(const void* a, const void* b, size_t n) {
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i)
    if (pa[i] != pb[i]) return static_cast<int64_t>(i);
  return -1;
}

// Bitwise float equality (keeps -0 vs 0 apart).
int64_t floats_first_diff(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (f32_bits(a[i]) != f32_bits(b[i])) return i;
  return -1;
}

// A random finite f16 scale: any sign, exponent 0..30 (zero, subnormal, normal up to 65504).
uint16_t random_scale(std::mt19937& rng) {
  const uint32_t r = rng();
  const uint16_t exp = static_cast<uint16_t>((r >> 16) % 31);
  return static_cast<uint16_t>((r & 0x8000) | (exp << 10) | (r & 0x3ff));
}

// Random blocks; every 4th block holds extreme values (all min, all max, alternating).
// Weights (x) use the full int8 range; activations (y) [-127, 127] per the quant_dot.h contract
// unless `y_lo` is -128.
void random_q8_0(std::vector<BlockQ8_0>& b, std::mt19937& rng, int lo) {
  std::uniform_int_distribution<int> q(lo, 127);
  for (size_t ib = 0; ib < b.size(); ++ib) {
    b[ib].d = random_scale(rng);
    for (int j = 0; j < kQK8_0; ++j) {
      int v = q(rng);
      switch (ib % 8) {
        case 1: v = lo; break;
        case 3: v = 127; break;
        case 5: v = j % 2 ? lo : 127; break;
        default: break;
      }
      b[ib].qs[j] = static_cast<int8_t>(v);
    }
  }
}

void random_q4_0(std::vector<BlockQ4_0>& b, std::mt19937& rng) {
  for (size_t ib = 0; ib < b.size(); ++ib) {
    b[ib].d = random_scale(rng);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      uint8_t v = static_cast<uint8_t>(rng());
      if (ib % 4 == 1) v = 0x00;  // all -8
      if (ib % 4 == 3) v = 0xff;  // all +7
      b[ib].qs[j] = v;
    }
  }
}

int q4_value(const BlockQ4_0& b, int j) {
  return j < 16 ? (b.qs[j] & 0x0f) - 8 : (b.qs[j - 16] >> 4) - 8;
}

// S = sum_b |d_x d_y| * sum_j |qx_j qy_j|: the scale of the f32 rounding error of any order of
// summing the dot's terms. Two f32 sums of nb terms (plus a few horizontal adds) differ by at
// most (2 nb + 10) u S; this is the SIMD-vs-reference tolerance.
double dot_abs_sum(int64_t nb, const BlockQ8_0* x, const BlockQ8_0* y) {
  double s = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int64_t a = 0;
    for (int j = 0; j < kQK8_0; ++j) a += std::abs(x[ib].qs[j] * y[ib].qs[j]);
    s += std::fabs(static_cast<double>(f16_to_f32(x[ib].d)) * f16_to_f32(y[ib].d)) * a;
  }
  return s;
}

double dot_abs_sum(int64_t nb, const BlockQ4_0* x, const BlockQ8_0* y) {
  double s = 0;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int64_t a = 0;
    for (int j = 0; j < kQK4_0; ++j) a += std::abs(q4_value(x[ib], j) * y[ib].qs[j]);
    s += std::fabs(static_cast<double>(f16_to_f32(x[ib].d)) * f16_to_f32(y[ib].d)) * a;
  }
  return s;
}

// The same for a Q4_1, Q5_0 or Q5_1 row: sum_j (|d q_j| + |m|) |y_j| (Q5_0: |d (q_j - 16)| |y_j|),
// from the dequantiser run on a copy whose scales and mins are made positive.
double dot_abs_sum_legacy(DType t, const void* row, const BlockQ8_0* y, int64_t K) {
  const size_t bb = dtype_traits(t).block_bytes, nb = static_cast<size_t>(K / kQK8_0);
  std::vector<uint8_t> a(static_cast<const uint8_t*>(row), static_cast<const uint8_t*>(row) + nb * bb);
  for (size_t b = 0; b < nb; ++b) {
    a[b * bb + 1] &= 0x7f;                                  // d: f16 at byte 0
    if (t != DType::Q5_0) a[b * bb + 3] &= 0x7f;            // m: f16 at byte 2
  }
  std::vector<float> av(static_cast<size_t>(K));
  row_to_f32(t, a.data(), av.data(), K);
  double s = 0;
  for (int64_t j = 0; j < K; ++j)
    s += std::fabs(static_cast<double>(av[j])) * std::fabs(f16_to_f32(y[j / kQK8_0].d) * y[j / kQK8_0].qs[j % kQK8_0]);
  return s;
}

double dot_tolerance(int64_t nb, double abs_sum) { return (2.0 * nb + 10.0) * kU * abs_sum; }

// False for an R16 type the set has no kernel for (the model loader then never makes it).
bool r16_runs(const QuantKernels& k, DType type) { return !r16_file_type(type) || decode_gemv(k, type); }

}  // namespace

// ---- reference quantisers and dequantisers against the numpy twin --------------------------

TEST(QuantTwin, Q8_0BytesMatchTwinExactly) {
  const test::RefDump ref = test::RefDump::load("quant");
  const Tensor& rows = ref.get("rows");       // [R, n] f32
  const Tensor& bytes = ref.get("rows_q8_0");  // [R, n/32*34] u8
  const int64_t R = rows.size(0), n = rows.size(1), nb = n / kQK8_0;
  ASSERT_EQ(bytes.size(1), nb * static_cast<int64_t>(sizeof(BlockQ8_0)));
  std::vector<BlockQ8_0> q(nb);
  for (const QuantKernels* k : kernel_sets()) {
    for (int64_t r = 0; r < R; ++r) {
      k->quantize_row_q8_0(static_cast<const float*>(rows.row_ptr(r)), q.data(), n);
      const int64_t i = bytes_first_diff(q.data(), bytes.row_ptr(r), bytes.size(1));
      EXPECT_EQ(i, -1) << k->name << ": row " << r << " block " << i / 34 << " byte " << i % 34;
      for (const BlockQ8_0& b : q)
        for (int8_t v : b.qs) EXPECT_GE(v, -127) << "activations never hold -128 (quant_dot.h contract)";
    }
  }
}

TEST(QuantTwin, Q4_0BytesMatchTwinExactly) {
  const test::RefDump ref = test::RefDump::load("quant");
  const Tensor& rows = ref.get("rows");
  const Tensor& bytes = ref.get("rows_q4_0");
  const int64_t R = rows.size(0), n = rows.size(1), nb = n / kQK4_0;
  ASSERT_EQ(bytes.size(1), nb * static_cast<int64_t>(sizeof(BlockQ4_0)));
  std::vector<BlockQ4_0> q(nb);
  for (int64_t r = 0; r < R; ++r) {
    quantize_row_q4_0_ref(static_cast<const float*>(rows.row_ptr(r)), q.data(), n);
    const int64_t i = bytes_first_diff(q.data(), bytes.row_ptr(r), bytes.size(1));
    EXPECT_EQ(i, -1) << "row " << r << " block " << i / 18 << " byte " << i % 18;
  }
}

TEST(QuantTwin, DequantiseMatchesTwinExactly) {
  const test::RefDump ref = test::RefDump::load("quant");
  const Tensor& deq8 = ref.get("rows_q8_0_deq");
  const Tensor& deq4 = ref.get("rows_q4_0_deq");
  const Tensor& b8 = ref.get("rows_q8_0");
  const Tensor& b4 = ref.get("rows_q4_0");
  const int64_t R = deq8.size(0), n = deq8.size(1);
  std::vector<float> y(n);
  for (const QuantKernels* k : kernel_sets()) {
    for (int64_t r = 0; r < R; ++r) {
      k->dequantize_row_q8_0(static_cast<const BlockQ8_0*>(b8.row_ptr(r)), y.data(), n);
      EXPECT_EQ(floats_first_diff(y.data(), static_cast<const float*>(deq8.row_ptr(r)), n), -1)
          << k->name << " q8_0 row " << r;
      k->dequantize_row_q4_0(static_cast<const BlockQ4_0*>(b4.row_ptr(r)), y.data(), n);
      EXPECT_EQ(floats_first_diff(y.data(), static_cast<const float*>(deq4.row_ptr(r)), n), -1)
          << k->name << " q4_0 row " << r;
    }
  }
}

// ---- SIMD quantiser / dequantisers against the references, beyond the twin's rows ----------

// Every SIMD set's quantiser (the member q) gives the reference's bytes for the nb blocks of x; a
// failure names the set, the trial, the block and the byte.
template <typename Block>
void expect_quantisers_match(void (*ref)(const float*, Block*, int64_t),
                             void (*QuantKernels::*q)(const float*, Block*, int64_t), const std::vector<float>& x,
                             int64_t nb, int trial) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<Block> want(nb), got(nb);
  ref(x.data(), want.data(), n);
  for (const QuantKernels* k : simd_sets()) {
    (k->*q)(x.data(), got.data(), n);
    const int64_t i = bytes_first_diff(got.data(), want.data(), nb * sizeof(Block));
    const int64_t bs = static_cast<int64_t>(sizeof(Block));
    EXPECT_EQ(i, -1) << k->name << ": trial " << trial << " block " << i / bs << " byte " << i % bs;
  }
}

TEST(QuantSimd, QuantiserBitExactOnHardRows) {
  const int64_t nb = 129, n = nb * kQK8_0;
  std::mt19937 rng(7);
  std::vector<float> x(n);
  for (int trial = 0; trial < 20; ++trial) {
    for (int64_t ib = 0; ib < nb; ++ib) {
      // block magnitudes 2^-120 (d an f16 zero) to 2^29 (d overflows f16 to inf): still bit-equal.
      // Below amax ~ 2^-121, 1/d overflows to inf in every implementation (GGML too): the qs are
      // then meaningless (d16 = 0 makes them dequantise to 0) and not compared.
      const float scale = std::ldexp(1.0f, static_cast<int>(rng() % 150) - 120);
      std::uniform_real_distribution<float> u(-scale, scale);
      for (int j = 0; j < kQK8_0; ++j) x[ib * kQK8_0 + j] = u(rng);
      if (ib % 5 == 1) std::fill_n(&x[ib * kQK8_0], kQK8_0, 0.0f);
      if (ib % 5 == 2) {  // amax 127 -> d = 1: exact .5 ties must round away from zero
        x[ib * kQK8_0] = trial % 2 ? 127.0f : -127.0f;
        for (int j = 1; j < kQK8_0; ++j) x[ib * kQK8_0 + j] = static_cast<float>(static_cast<int>(rng() % 254) - 127) + 0.5f;
      }
    }
    expect_quantisers_match(quantize_row_q8_0_ref, &QuantKernels::quantize_row_q8_0, x, nb, trial);
  }
}

TEST(QuantSimd, Q8KQuantiserBitExactWithReference) {
  // Every set's quantize_row_q8_K gives the reference's bytes: random magnitudes, zero blocks, .5
  // ties (amax 127: iscale = -1, ties round to even as nearest_int does), the largest magnitude
  // twice with both signs (the first one is the scale), NaN and inf among the values.
  const int64_t nb = 12, n = nb * kQK_K;
  std::mt19937 rng(43);
  std::vector<float> x(n);
  for (int trial = 0; trial < 10; ++trial) {
    for (int64_t ib = 0; ib < nb; ++ib) {
      float* xb = &x[ib * kQK_K];
      const float scale = std::ldexp(1.0f, static_cast<int>(rng() % 100) - 50);
      std::uniform_real_distribution<float> u(-scale, scale);
      for (int j = 0; j < kQK_K; ++j) xb[j] = u(rng);
      const int j0 = static_cast<int>(rng() % kQK_K), j1 = static_cast<int>(rng() % kQK_K);
      switch (ib % 6) {
        case 1: std::fill_n(xb, kQK_K, 0.0f); break;
        case 2:
          for (int j = 0; j < kQK_K; ++j) xb[j] = static_cast<float>(static_cast<int>(rng() % 254) - 127) + 0.5f;
          xb[j0] = trial % 2 ? 127.0f : -127.0f;
          break;
        case 3: xb[j0] = 2 * scale, xb[j1] = -2 * scale; break;
        case 4: xb[j0] = std::nanf(""), xb[kQK_K - 1 - trial] = std::nanf(""); break;  // one in the last 16
        case 5: xb[j0] = trial % 2 ? INFINITY : -INFINITY; break;
        default: break;
      }
    }
    expect_quantisers_match(quantize_row_q8_K_ref, &QuantKernels::quantize_row_q8_K, x, nb, trial);
  }
}

TEST(QuantSimd, DequantisersBitExactOnRandomBlocks) {
  std::mt19937 rng(11);
  for (int64_t nb : {1, 3, 17, 129}) {
    std::vector<BlockQ8_0> b8(nb);
    std::vector<BlockQ4_0> b4(nb);
    random_q8_0(b8, rng, -128);
    random_q4_0(b4, rng);
    const int64_t n = nb * kQK8_0;
    std::vector<float> want(n), got(n);
    for (const QuantKernels* k : simd_sets()) {
      dequantize_row_q8_0_ref(b8.data(), want.data(), n);
      k->dequantize_row_q8_0(b8.data(), got.data(), n);
      EXPECT_EQ(floats_first_diff(got.data(), want.data(), n), -1) << k->name << " q8_0 nb " << nb;
      dequantize_row_q4_0_ref(b4.data(), want.data(), n);
      k->dequantize_row_q4_0(b4.data(), got.data(), n);
      EXPECT_EQ(floats_first_diff(got.data(), want.data(), n), -1) << k->name << " q4_0 nb " << nb;
    }
  }
}

// ---- dot products --------------------------------------------------------------------------

TEST(QuantDot, ReferenceIsTheObviousFormula) {
  // One block, d = 2 and 0.5: 1 * sum_j qx_j qy_j computed by hand.
  BlockQ8_0 x{}, y{};
  BlockQ4_0 w{};
  x.d = f16_from_f32(2.0f);
  y.d = w.d = f16_from_f32(0.5f);
  int64_t s8 = 0, s4 = 0;
  for (int j = 0; j < 32; ++j) {
    x.qs[j] = static_cast<int8_t>(j * 9 - 128);
    y.qs[j] = static_cast<int8_t>(127 - j * 7);
    s8 += x.qs[j] * y.qs[j];
  }
  for (int j = 0; j < 16; ++j) w.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  for (int j = 0; j < 32; ++j) s4 += (j < 16 ? j - 8 : (15 - (j - 16)) - 8) * y.qs[j];
  EXPECT_EQ(vec_dot_q8_0_q8_0_ref(32, &x, &y), static_cast<float>(s8));
  EXPECT_EQ(vec_dot_q4_0_q8_0_ref(32, &w, &y), static_cast<float>(s4) * 0.25f);
}

TEST(QuantDot, SimdMatchesReferenceOnRandomBlocks) {
  std::mt19937 rng(3);
  for (const QuantKernels* k : simd_sets()) {
    for (int64_t nb : {1, 3, 17, 129}) {
      for (int trial = 0; trial < 8; ++trial) {
        std::vector<BlockQ8_0> x8(nb), y(nb);
        std::vector<BlockQ4_0> x4(nb);
        random_q8_0(x8, rng, -128);
        random_q4_0(x4, rng);
        random_q8_0(y, rng, -127);
        const int64_t n = nb * kQK8_0;
        const float r8 = vec_dot_q8_0_q8_0_ref(n, x8.data(), y.data());
        const float r4 = vec_dot_q4_0_q8_0_ref(n, x4.data(), y.data());
        EXPECT_NEAR(k->vec_dot_q8_0_q8_0(n, x8.data(), y.data()), r8,
                    dot_tolerance(nb, dot_abs_sum(nb, x8.data(), y.data())))
            << k->name << " q8_0 nb " << nb << " trial " << trial;
        EXPECT_NEAR(k->vec_dot_q4_0_q8_0(n, x4.data(), y.data()), r4,
                    dot_tolerance(nb, dot_abs_sum(nb, x4.data(), y.data())))
            << k->name << " q4_0 nb " << nb << " trial " << trial;
      }
    }
  }
}

TEST(QuantDot, IntegerPartIsExact) {
  // With every scale 1 the dot is an integer below 2^24 (17 blocks of extremes at most
  // 17 * 32 * 128 * 127 < 2^24), so every kernel must return it exactly: no tolerance hides a
  // wrong lane, nibble order or saturation.
  std::mt19937 rng(5);
  const uint16_t one = f16_from_f32(1.0f);
  for (int64_t nb : {1, 3, 17}) {
    std::vector<BlockQ8_0> x8(nb), y(nb);
    std::vector<BlockQ4_0> x4(nb);
    random_q8_0(x8, rng, -128);
    random_q4_0(x4, rng);
    random_q8_0(y, rng, -127);
    int64_t s8 = 0, s4 = 0;
    for (int64_t ib = 0; ib < nb; ++ib) {
      x8[ib].d = x4[ib].d = y[ib].d = one;
      for (int j = 0; j < 32; ++j) {
        s8 += x8[ib].qs[j] * y[ib].qs[j];
        s4 += q4_value(x4[ib], j) * y[ib].qs[j];
      }
    }
    for (const QuantKernels* k : kernel_sets()) {
      EXPECT_EQ(k->vec_dot_q8_0_q8_0(nb * 32, x8.data(), y.data()), static_cast<float>(s8)) << k->name << " nb " << nb;
      EXPECT_EQ(k->vec_dot_q4_0_q8_0(nb * 32, x4.data(), y.data()), static_cast<float>(s4)) << k->name << " nb " << nb;
    }
  }
}

TEST(QuantDot, ExactBeyondContractWhereDocumented) {
  // q4_0·q8_0 (every set) and the AVX-512 q8_0·q8_0 are exact for activations holding -128 too.
  std::mt19937 rng(9);
  const uint16_t one = f16_from_f32(1.0f);
  const int64_t nb = 17;
  std::vector<BlockQ8_0> x8(nb), y(nb);
  std::vector<BlockQ4_0> x4(nb);
  random_q8_0(x8, rng, -128);
  random_q4_0(x4, rng);
  random_q8_0(y, rng, -128);
  for (int64_t ib = 0; ib < nb; ++ib) x8[ib].d = x4[ib].d = y[ib].d = one;
  const float r8 = vec_dot_q8_0_q8_0_ref(nb * 32, x8.data(), y.data());
  const float r4 = vec_dot_q4_0_q8_0_ref(nb * 32, x4.data(), y.data());
  for (const QuantKernels* k : kernel_sets()) {
    EXPECT_EQ(k->vec_dot_q4_0_q8_0(nb * 32, x4.data(), y.data()), r4) << k->name;
    if (std::string(k->name) == "avx512vnni") {
      EXPECT_EQ(k->vec_dot_q8_0_q8_0(nb * 32, x8.data(), y.data()), r8);
    }
  }
}

// ---- linear_quantized ----------------------------------------------------------------------

namespace {

struct LinearCase {
  Tensor x, w, y_torch;
};

LinearCase linear_case_load(const test::RefDump& ref, int c, DType type) {
  const std::string tn = type == DType::Q8_0 ? "q8_0" : "q4_0";
  const Tensor& x = ref.get("lin" + std::to_string(c) + "_x");
  const Tensor& wb = ref.get("lin" + std::to_string(c) + "_w_" + tn);
  const int64_t N = wb.size(0), K = x.size(1);
  const int64_t shape[] = {N, K};
  // The u8 dump is the weight's raw blocks; view it as the quantised tensor (read only).
  Tensor w = Tensor::view_of(type, shape, const_cast<void*>(wb.data()), wb.owner());
  return {x, w, ref.get("lin" + std::to_string(c) + "_y_" + tn)};
}

// y[m, n] from the scalar reference kernels: quantize_row_q8_0_ref then vec_dot_*_ref; also the
// per-output tolerance (2 nb + 10) u S for a SIMD run (see dot_abs_sum).
void linear_reference(const Tensor& x, const Tensor& w, std::vector<float>& y, std::vector<double>& tol) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0), nb = K / 32;
  std::vector<BlockQ8_0> xq(nb);
  y.assign(M * N, 0.0f);
  tol.assign(M * N, 0.0);
  for (int64_t m = 0; m < M; ++m) {
    quantize_row_q8_0_ref(x.ptr<float>() + m * K, xq.data(), K);
    for (int64_t n = 0; n < N; ++n) {
      // an R16 row unpacked back to its file type's blocks (the layouts are checked by hand in
      // test_linear_repack.cpp)
      DType t = w.type();
      const void* wr = w.row_ptr(n);
      std::vector<uint8_t> unpacked;
      if (const std::optional<DType> ft = r16_file_type(t)) {
        unpacked.resize(*dtype_row_bytes(*ft, K));
        r16_unpack(t, static_cast<const uint8_t*>(wr), unpacked.data(), K);
        wr = unpacked.data();
        t = *ft;
      }
      float& out = y[m * N + n];
      double& out_tol = tol[m * N + n];
      if (t == DType::Q8_0) {
        out = vec_dot_q8_0_q8_0_ref(K, static_cast<const BlockQ8_0*>(wr), xq.data());
        out_tol = dot_tolerance(nb, dot_abs_sum(nb, static_cast<const BlockQ8_0*>(wr), xq.data()));
      } else if (t == DType::Q4_0) {
        out = vec_dot_q4_0_q8_0_ref(K, static_cast<const BlockQ4_0*>(wr), xq.data());
        out_tol = dot_tolerance(nb, dot_abs_sum(nb, static_cast<const BlockQ4_0*>(wr), xq.data()));
      } else {
        out = t == DType::Q4_1 ? vec_dot_q4_1_q8_0_ref(K, static_cast<const BlockQ4_1*>(wr), xq.data())
            : t == DType::Q5_0 ? vec_dot_q5_0_q8_0_ref(K, static_cast<const BlockQ5_0*>(wr), xq.data())
                               : vec_dot_q5_1_q8_0_ref(K, static_cast<const BlockQ5_1*>(wr), xq.data());
        out_tol = dot_tolerance(nb, dot_abs_sum_legacy(t, wr, xq.data(), K));
      }
    }
  }
}

// Bound on |linear_quantized - x · dequant(w)^T| per output, from quantising x to Q8_0:
// in block b (amax a_b, d = a_b / 127) each x_j becomes d16 * q_j with |x_j/d - q_j| <= 1/2 and
// |d16 - d| <= 2^-11 d (f16 rounding; d is a normal f16 for these inputs), |q_j| <= 127, so
// |x_j - d16 q_j| <= d (0.5 + 127/2048) < 0.5621 a_b / 127. Hence
//   |err_mn| <= sum_b 0.5621 a_b / 127 * sum_{j in b} |w_nj|   (about K max|w| max|x| / 254 at worst)
// plus f32 rounding of the sums, below (nb + 16) 2^-23 sum_j |w_nj| (|x_j| + d_b).
std::vector<double> linear_error_bound(const Tensor& x, const Tensor& w) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0), nb = K / 32;
  std::vector<float> wd(K);
  std::vector<double> bound(M * N);
  for (int64_t n = 0; n < N; ++n) {
    row_to_f32(w.type(), w.row_ptr(n), wd.data(), K);
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.ptr<float>() + m * K;
      double b = 0, r = 0;
      for (int64_t ib = 0; ib < nb; ++ib) {
        double amax = 0, wsum = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<double>(xr[ib * 32 + j])));
        for (int j = 0; j < 32; ++j) {
          wsum += std::fabs(wd[ib * 32 + j]);
          r += std::fabs(wd[ib * 32 + j]) * (std::fabs(xr[ib * 32 + j]) + amax / 127);
        }
        b += 0.5621 * amax / 127 * wsum;
      }
      bound[m * N + n] = b + (nb + 16) * 2 * kU * r;
    }
  }
  return bound;
}

}  // namespace

TEST(LinearQuantized, MatchesTorchAndReferenceKernels) {
  const test::RefDump ref = test::RefDump::load("quant");
  for (int c = 0; ref.has("lin" + std::to_string(c) + "_x"); ++c) {
    for (DType type : {DType::Q8_0, DType::Q4_0}) {
      const LinearCase lc = linear_case_load(ref, c, type);
      const int64_t M = lc.x.size(0), N = lc.w.size(0), K = lc.x.size(1);
      SCOPED_TRACE(fmt::format("case {}: M {} K {} N {} {}", c, M, K, N, dtype_name(type)));
      std::vector<float> y_ref;
      std::vector<double> tol_ref;
      linear_reference(lc.x, lc.w, y_ref, tol_ref);
      const std::vector<double> bound = linear_error_bound(lc.x, lc.w);
      const float* yt = lc.y_torch.ptr<float>();

      for (const QuantKernels* k : kernel_sets()) {
        SCOPED_TRACE(k->name);
        Tensor y = Tensor::empty(DType::F32, {M, N});
        ops::linear_quantized_with(*k, lc.x, lc.w, y);
        const float* yg = y.ptr<float>();
        double err_sum = 0, bound_sum = 0;
        for (int64_t i = 0; i < M * N; ++i) {
          // the scalar composition, up to f32 summation order (the ref set: identical)
          if (std::string(k->name) == "ref")
            ASSERT_EQ(f32_bits(yg[i]), f32_bits(y_ref[i])) << "output " << i;
          else
            ASSERT_NEAR(yg[i], y_ref[i], tol_ref[i]) << "output " << i;
          // torch's x · dequant(w)^T, within the activation-quantisation bound
          const double err = std::fabs(static_cast<double>(yg[i]) - yt[i]);
          ASSERT_LE(err, bound[i]) << "output " << i << ": got " << yg[i] << ", torch " << yt[i];
          err_sum += err;
          bound_sum += bound[i];
        }
        // The bound adds K worst cases; the real rounding errors are random, so they add like a
        // random walk: the mean error is about 1.7 sqrt(K) times below the bound (measured:
        // 0.07 of it at K = 32, 0.009 at K = 4096). Checked with a factor ~3 of margin.
        EXPECT_LT(err_sum, 1.5 / std::sqrt(static_cast<double>(K)) * bound_sum)
            << "mean error " << err_sum / (M * N) << " vs mean bound " << bound_sum / (M * N);
      }
      // The public entry point uses the best set: the same as its table entry.
      Tensor y = Tensor::empty(DType::F32, {M, N}), y_best = Tensor::empty(DType::F32, {M, N});
      ops::linear_quantized(lc.x, lc.w, y);
      ops::linear_quantized_with(quant_kernels(), lc.x, lc.w, y_best);
      EXPECT_EQ(std::memcmp(y.data(), y_best.data(), y.nbytes()), 0);
    }
  }
}

TEST(LinearQuantized, SameResultForAnyThreadCountAndBatchShape) {
  const int threads_before = thread_count();
  const int64_t K = 96, N = 65;
  Tensor x = test::random_f32({2, 3, K}, 21);  // [B, T, K]: rows are flattened
  Tensor wf = test::random_f32({N, K}, 22);
  for (DType type : {DType::Q8_0, DType::Q4_0}) {
    Tensor w = Tensor::empty(type, {N, K});
    for (int64_t n = 0; n < N; ++n) row_from_f32(type, wf.ptr<float>() + n * K, w.row_ptr(n), K);
    Tensor y1 = Tensor::empty(DType::F32, {2, 3, N});
    thread_count_set(1);
    ops::linear_quantized(x, w, y1);
    for (int nth : {2, 3, 5}) {
      thread_count_set(nth);
      Tensor y = Tensor::empty(DType::F32, {2, 3, N});
      ops::linear_quantized(x, w, y);
      // each output is one dot kernel call whatever the split: bitwise identical
      EXPECT_EQ(std::memcmp(y.data(), y1.data(), y.nbytes()), 0) << nth << " threads";
    }
    // row m of a [6, K] input gives the same numbers
    Tensor y2 = Tensor::empty(DType::F32, {6, N});
    ops::linear_quantized(x.reshape({6, K}), w, y2);
    EXPECT_EQ(std::memcmp(y2.data(), y1.data(), y2.nbytes()), 0);
  }
  thread_count_set(threads_before);
}

// The decode path (M <= kDecodeMaxRows; the AVX2 and AVX-512 sets have GEMV kernels with their own
// activation layout, groups of 16 blocks (Q8_0: two halves of 8) plus a natural-order tail) on odd
// shapes: K with 0 to 15 tail blocks (8 of them: a whole Q8_0 half group that must stay in the
// tail), no full group at all, N not a multiple of 4, M = 1..4 and short prompts (several
// activation rows per pass over a weight row: 8 a pass up to K = 3072, 4 above, and the rest).
TEST(LinearQuantized, DecodeKernelsMatchReferenceOnOddShapes) {
  const int threads_before = thread_count();
  struct Shape { int64_t M, K, N; };
  const Shape shapes[] = {{1, 32, 1}, {1, 96, 3}, {2, 256, 5}, {1, 288, 17}, {3, 736, 33}, {4, 512, 7},
                          {1, 2048, 65}, {1, 4096 + 7 * 32, 13}, {1, 24 * 32, 9}, {2, 31 * 32, 11},
                          {1, 33 * 32, 5},   {5, 512, 9},  {9, 288, 7},  {16, 2048 + 32, 5},
                          {13, 4096 + 7 * 32, 6}, {ops::kDecodeMaxRows, 96, 3}};
  uint32_t seed = 100;
  for (const Shape& sh : shapes) {
    Tensor x = test::random_f32({sh.M, sh.K}, seed++);
    Tensor wf = test::random_f32({sh.N, sh.K}, seed++);
    for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_0_R16, DType::Q4_1_R16,
                       DType::Q5_0_R16, DType::Q5_1_R16}) {
      SCOPED_TRACE(fmt::format("M {} K {} N {} {}", sh.M, sh.K, sh.N, dtype_name(type)));
      Tensor w = Tensor::empty(type, {sh.N, sh.K});
      for (int64_t n = 0; n < sh.N; ++n) row_from_f32(type, wf.ptr<float>() + n * sh.K, w.row_ptr(n), sh.K);
      std::vector<float> y_ref;
      std::vector<double> tol_ref;
      linear_reference(x, w, y_ref, tol_ref);
      const std::vector<double> bound = linear_error_bound(x, w);
      Tensor y_f32 = Tensor::empty(DType::F32, {sh.M, sh.N});
      ops::ref::linear(x, w, nullptr, y_f32);  // f32 x dequant(w), no activation quantisation
      for (const QuantKernels* k : kernel_sets()) {
        SCOPED_TRACE(k->name);
        if (!r16_runs(*k, type)) continue;  // the loader never repacks for it
        thread_count_set(1);
        Tensor y1 = Tensor::empty(DType::F32, {sh.M, sh.N});
        ops::linear_quantized_with(*k, x, w, y1);
        for (int64_t i = 0; i < sh.M * sh.N; ++i) {
          // the scalar composition (quantize_row_q8_0_ref + vec_dot_*_ref) up to f32 summation order
          ASSERT_NEAR(y1.ptr<float>()[i], y_ref[i], tol_ref[i]) << "output " << i;
          // ops::ref::linear: within the activation-quantisation bound; its own f32 rounding
          // (<= K u sum|w x|, below 2^-11 max|x| sum|w| for K <= 8192) is under a quarter of the
          // bound's 0.56 max|x| sum|w| / 127 term, hence the 1.25
          ASSERT_LE(std::fabs(y1.ptr<float>()[i] - y_f32.ptr<float>()[i]), 1.25 * bound[i]) << "output " << i;
        }
        for (int nth : {2, 3}) {  // another split of the rows: the same bits (per-row arithmetic is fixed)
          thread_count_set(nth);
          Tensor y = Tensor::empty(DType::F32, {sh.M, sh.N});
          ops::linear_quantized_with(*k, x, w, y);
          EXPECT_EQ(std::memcmp(y.data(), y1.data(), y.nbytes()), 0) << nth << " threads";
        }
        // each row alone (a decode step): the same bits as in the batch (the kernels' contract)
        for (int64_t m = 0; m < sh.M; ++m) {
          Tensor x1 = Tensor::empty(DType::F32, {1, sh.K}), y_row = Tensor::empty(DType::F32, {1, sh.N});
          std::memcpy(x1.data(), x.ptr<float>() + m * sh.K, static_cast<size_t>(sh.K) * sizeof(float));
          ops::linear_quantized_with(*k, x1, w, y_row);
          ASSERT_EQ(std::memcmp(y_row.data(), y1.ptr<float>() + m * sh.N, y_row.nbytes()), 0) << "row " << m;
        }
      }
    }
  }
  thread_count_set(threads_before);
}

// Each set's decode_row_prepare lays out the same bytes as the reference (quant_dot.cpp), with and
// without full groups and tails.
TEST(LinearQuantized, DecodeRowPrepareOfEverySetMatchesTheReference) {
  for (int64_t K : {32, 15 * 32, 16 * 32, 2048, 4096 + 7 * 32, 33 * 32}) {
    const int64_t nb = K / kQK8_0;
    Tensor x = test::random_f32({K}, static_cast<uint32_t>(K));
    std::vector<BlockQ8_0> xq(static_cast<size_t>(nb));
    quantize_row_q8_0_ref(x.ptr<float>(), xq.data(), K);
    for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_0_R16, DType::Q4_1_R16,
                       DType::Q5_0_R16, DType::Q5_1_R16}) {
      std::vector<int8_t> qs_ref(static_cast<size_t>(K));
      std::vector<float> d_ref(static_cast<size_t>(nb));
      std::vector<int32_t> bias_ref(static_cast<size_t>(nb));
      decode_row_prepare(type, xq.data(), K, qs_ref.data(), d_ref.data(), bias_ref.data());
      for (const QuantKernels* k : kernel_sets()) {
        SCOPED_TRACE(fmt::format("K {} {} {}", K, dtype_name(type), k->name));
        if (!r16_runs(*k, type)) continue;
        std::vector<int8_t> qs(static_cast<size_t>(K), 99);
        std::vector<float> d(static_cast<size_t>(nb), -1.0f);
        std::vector<int32_t> bias(static_cast<size_t>(nb), -1);
        k->decode_row_prepare(type, xq.data(), K, qs.data(), d.data(), bias.data());
        EXPECT_EQ(qs, qs_ref);
        EXPECT_EQ(std::memcmp(d.data(), d_ref.data(), d.size() * sizeof(float)), 0);
        EXPECT_EQ(bias, bias_ref);
      }
    }
  }
}

TEST(LinearQuantized, RejectsBadShapesAndTypes) {
  Tensor x = Tensor::zeros(DType::F32, {2, 64});
  Tensor w = Tensor::zeros(DType::Q8_0, {5, 64});
  Tensor y = Tensor::zeros(DType::F32, {2, 5});
  EXPECT_NO_THROW(ops::linear_quantized(x, w, y));
  Tensor w_k = Tensor::zeros(DType::Q8_0, {5, 96});
  EXPECT_THROW(ops::linear_quantized(x, w_k, y), Error);  // K mismatch
  Tensor y_n = Tensor::zeros(DType::F32, {2, 4});
  EXPECT_THROW(ops::linear_quantized(x, w, y_n), Error);  // N mismatch
  Tensor y_m = Tensor::zeros(DType::F32, {3, 5});
  EXPECT_THROW(ops::linear_quantized(x, w, y_m), Error);  // M mismatch
  Tensor w_f = Tensor::zeros(DType::F32, {5, 64});
  EXPECT_THROW(ops::linear_quantized(x, w_f, y), Error);  // not quantised
  Tensor x_h = Tensor::zeros(DType::F16, {2, 64});
  EXPECT_THROW(ops::linear_quantized(x_h, w, y), Error);  // activations not f32
  EXPECT_THROW(ops::linear_quantized(x.transpose(0, 1), w, y), Error);  // not contiguous
}
