// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K (and the Q8_K activation format): reference dequantisers
// against the independent numpy twin on random raw blocks (tests/ref/twin_kquants.py), the
// Q4_1/Q5_0/Q5_1 reference quantisers byte for byte against the twin's, the K-quant quantisers by
// their round-trip error, the dot kernels (scalar reference and SIMD) and linear_quantized
// against torch's x · dequant(w)^T.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/linear_panel.h"
#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant_dot.h"
#include "common/compare.h"
#include "common/random_blocks.h"
#include "common/refdump.h"
#include "core/half.h"
#include "core/quant.h"

using namespace aigc;

namespace {

constexpr double kU = 1.0 / (1 << 24);  // f32 unit roundoff

const DType kNewTypes[] = {DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::string tname(DType t) { return std::string(dtype_name(t)); }

// First index where a and b differ bitwise (two NaNs count as equal: inf scales produce them and
// their sign bit is not part of any layout); -1 when equal.
int64_t floats_first_diff(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (f32_bits(a[i]) != f32_bits(b[i])) return i;
  }
  return -1;
}

int64_t bytes_first_diff(const void* a, const void* b, size_t n) {
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i)
    if (pa[i] != pb[i]) return static_cast<int64_t>(i);
  return -1;
}

}  // namespace

// ---- layouts: the reference dequantisers against the twin, bit for bit ------------------------

TEST(KQuantTwin, DequantiseRandomBlocksMatchesTwinExactly) {
  const test::RefDump ref = test::RefDump::load("kquants");
  for (DType t : kNewTypes) {
    const Tensor& raw = ref.get(tname(t) + "_raw");  // [R, nb * block_bytes] u8
    const Tensor& deq = ref.get(tname(t) + "_deq");  // [R, n] f32
    const int64_t R = raw.size(0), n = deq.size(1);
    ASSERT_EQ(static_cast<size_t>(raw.size(1)), *dtype_row_bytes(t, n)) << tname(t);
    std::vector<float> y(n);
    for (int64_t r = 0; r < R; ++r) {
      row_to_f32(t, raw.row_ptr(r), y.data(), n);
      const int64_t i = floats_first_diff(y.data(), static_cast<const float*>(deq.row_ptr(r)), n);
      EXPECT_EQ(i, -1) << tname(t) << " row " << r << " element " << i << ": got " << (i >= 0 ? y[i] : 0)
                       << ", twin " << (i >= 0 ? static_cast<const float*>(deq.row_ptr(r))[i] : 0);
    }
  }
}

TEST(KQuantTwin, LegacyQuantisersMatchTwinBytes) {
  const test::RefDump ref = test::RefDump::load("kquants");
  const Tensor& rows = ref.get("rows");  // [R, 256] f32
  const int64_t R = rows.size(0), n = rows.size(1);
  for (DType t : {DType::Q4_1, DType::Q5_0, DType::Q5_1}) {
    const Tensor& bytes = ref.get("rows_" + tname(t));
    const Tensor& deq = ref.get("rows_" + tname(t) + "_deq");
    const size_t nbytes = *dtype_row_bytes(t, n);
    const size_t bb = dtype_traits(t).block_bytes;
    ASSERT_EQ(static_cast<size_t>(bytes.size(1)), nbytes);
    std::vector<uint8_t> q(nbytes);
    std::vector<float> y(n);
    for (int64_t r = 0; r < R; ++r) {
      row_from_f32(t, static_cast<const float*>(rows.row_ptr(r)), q.data(), n);
      const int64_t i = bytes_first_diff(q.data(), bytes.row_ptr(r), nbytes);
      EXPECT_EQ(i, -1) << tname(t) << " row " << r << " block " << i / static_cast<int64_t>(bb) << " byte "
                       << i % static_cast<int64_t>(bb);
      row_to_f32(t, q.data(), y.data(), n);
      EXPECT_EQ(floats_first_diff(y.data(), static_cast<const float*>(deq.row_ptr(r)), n), -1) << tname(t) << " row " << r;
    }
  }
}

TEST(KQuantLayout, ScaleMinPackingByHand) {
  // Bytes chosen so every field of every sub-block is distinct: sub-block j < 4 has scale
  // s[j] & 63 and min s[j+4] & 63; j >= 4 takes nibbles of s[j+4] and the top bits of s[j-4], s[j].
  const uint8_t s[12] = {0xC1, 0x42, 0x83, 0x04, 0x45, 0x86, 0xC7, 0x08, 0x9A, 0xBC, 0xDE, 0xF0};
  const int want_sc[8] = {0x01, 0x02, 0x03, 0x04, 0x0A | (3 << 4), 0x0C | (1 << 4), 0x0E | (2 << 4), 0x00};
  const int want_mn[8] = {0x05, 0x06, 0x07, 0x08, 0x09 | (1 << 4), 0x0B | (2 << 4), 0x0D | (3 << 4), 0x0F};
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    scale_min_k4_get(j, s, &sc, &mn);
    EXPECT_EQ(sc, want_sc[j]) << "sub-block " << j;
    EXPECT_EQ(mn, want_mn[j]) << "sub-block " << j;
  }
}

// ---- quantisers: round trip ---------------------------------------------------------------

namespace {

// Rows like weights: Gaussian, with scale varying per 32-element stretch, some outliers, a zero
// stretch, and an all-positive stretch (the K-quant min clamps at 0).
std::vector<float> weight_like_row(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const float s = std::ldexp(1.0f, static_cast<int>((i / 32) % 7) - 6);
    x[i] = s * g(rng);
  }
  for (int64_t i = 0; i < n; i += 97) x[i] *= 8.0f;  // outliers
  if (n >= 512) {
    std::fill_n(x.begin() + 256, 32, 0.0f);
    for (int i = 288; i < 320; ++i) x[i] = std::fabs(x[i]) + 0.5f;
  }
  return x;
}

}  // namespace

namespace {

// A K-quant sub-block as stored: element value = step * L - min, L in [0, nmax] (Q6_K: min =
// 32 step, L in [0, 63]); unit = the super-block's scale quantum (d for the scales; dmin for mins).
struct SubBlock {
  double step, min;
  int nmax;
  double d, dmin;
};

SubBlock sub_block_get(DType t, const uint8_t* row, int64_t e) {
  const int64_t b = e / kQK_K, j = e % kQK_K;
  if (t == DType::Q6_K) {
    const auto* blk = reinterpret_cast<const BlockQ6_K*>(row) + b;
    const double d = f16_to_f32(blk->d);
    const double step = d * blk->scales[j / 16];
    return {step, 32 * step, 63, std::fabs(d), 0.0};
  }
  const uint8_t* scales;
  uint16_t d16, dmin16;
  if (t == DType::Q4_K) {
    const auto* blk = reinterpret_cast<const BlockQ4_K*>(row) + b;
    scales = blk->scales, d16 = blk->d, dmin16 = blk->dmin;
  } else {
    const auto* blk = reinterpret_cast<const BlockQ5_K*>(row) + b;
    scales = blk->scales, d16 = blk->d, dmin16 = blk->dmin;
  }
  uint8_t sc, mn;
  scale_min_k4_get(static_cast<int>(j / 32), scales, &sc, &mn);
  const double d = f16_to_f32(d16), dmin = f16_to_f32(dmin16);
  return {d * sc, dmin * mn, t == DType::Q4_K ? 15 : 31, d, dmin};
}

}  // namespace

// Legacy types, max error per element. Q4_1 / Q5_1: with step = range/nmax and q the rounded
// value, |x - x'| <= step/2 plus the f16 rounding of d (relative 2^-11, times q <= 31: < 0.016
// step) and of m (|m - m16| <= 2^-11 |m|): bounded by 0.52 step + 2^-11 |m|. Q5_0: x/d + 16.5
// truncated is rounding (<= d/2 + f16 rounding of d: 16 * 2^-12 d), except on the side opposite
// max, where x/d + 16.5 >= 32 is capped to 31: values beyond 15.5 d are off by up to one step.
// K-quants: every value is re-rounded with the stored sub-block scale and min and clamped to
// [0, nmax], so |x - x'| <= step/2 + (distance of x outside the sub-block's range) exactly: a wrong
// packing or nibble order breaks that at once. The range itself is chosen by a search and then
// coded in 6 bits (Q6_K: 8 bits), so it can miss x by the code's rounding: half a unit of the min
// code (dmin/2) plus nmax half-units of the scale code (nmax d / 2); and the least-squares fit
// may pull an end of the range inside the extreme values (it trades an outlier's error for the
// others'), allowed up to one step. Their sum bounds the distance.
// The root-mean-square error is also checked: below 1.3 times the uniform-rounding rms of the step
// the super-block's coarsest scale allows.
TEST(KQuantRoundTrip, ErrorWithinBitWidth) {
  std::mt19937 rng(42);
  const int64_t n = 1024;
  for (DType t : kNewTypes) {
    SCOPED_TRACE(tname(t));
    const bool kquant = dtype_traits(t).block_size == kQK_K;
    for (int trial = 0; trial < 4; ++trial) {
      const std::vector<float> x = weight_like_row(n, rng);
      std::vector<uint8_t> q(*dtype_row_bytes(t, n));
      std::vector<float> y(n);
      row_from_f32(t, x.data(), q.data(), n);
      row_to_f32(t, q.data(), y.data(), n);
      double sq_err = 0, sq_x = 0;
      if (!kquant) {
        for (int64_t b0 = 0; b0 < n; b0 += 32) {
          float mn = x[b0], mx = x[b0], amax = 0;
          for (int64_t i = b0; i < b0 + 32; ++i) {
            mn = std::min(mn, x[i]);
            mx = std::max(mx, x[i]);
            amax = std::max(amax, std::fabs(x[i]));
          }
          for (int64_t i = b0; i < b0 + 32; ++i) {
            const double e = std::fabs(static_cast<double>(y[i]) - x[i]);
            if (t == DType::Q5_0)
              ASSERT_LE(e, (std::fabs(x[i]) > 15.49f / 16 * amax ? 1.01 : 0.505) * amax / 16.0) << "element " << i;
            else
              ASSERT_LE(e, 0.52 * (mx - mn) / (t == DType::Q4_1 ? 15.0 : 31.0) + std::ldexp(std::fabs(mn), -11))
                  << "element " << i;
          }
        }
        continue;
      }
      for (int64_t i = 0; i < n; ++i) {
        const SubBlock s = sub_block_get(t, q.data(), i);
        const double lo = std::min(-s.min, s.nmax * s.step - s.min), hi = std::max(-s.min, s.nmax * s.step - s.min);
        const double out = std::max({0.0, lo - x[i], x[i] - hi});
        const double e = std::fabs(static_cast<double>(y[i]) - x[i]);
        ASSERT_LE(e, 0.5 * std::fabs(s.step) * (1 + 1e-5) + out + 1e-30) << "element " << i << " x " << x[i] << " y " << y[i];
        ASSERT_LE(out, std::fabs(s.step) + 0.5 * s.dmin + 0.5 * s.nmax * s.d + 1e-30) << "element " << i << " x " << x[i] << " range [" << lo << ", " << hi << "]";
        sq_err += e * e;
        sq_x += static_cast<double>(x[i]) * x[i];
      }
      // signal-to-noise: uniform rounding on nmax+1 levels over a range of about 6 sigma would
      // give rms error 6 sigma / nmax / sqrt(12); K-quants do better than that on Gaussian data
      const int nmax = t == DType::Q4_K ? 15 : t == DType::Q5_K ? 31 : 63;
      EXPECT_LE(std::sqrt(sq_err / n), 6.0 / nmax / std::sqrt(12.0) * std::sqrt(sq_x / n))
          << "rms error vs rms value " << std::sqrt(sq_x / n);
    }
  }
}

TEST(KQuantRoundTrip, ZeroAndConstantRows) {
  for (DType t : kNewTypes) {
    for (float v : {0.0f, 0.25f, -3.0f}) {
      std::vector<float> x(512, v), y(512);
      std::vector<uint8_t> q(*dtype_row_bytes(t, 512));
      row_from_f32(t, x.data(), q.data(), 512);
      row_to_f32(t, q.data(), y.data(), 512);
      for (int i = 0; i < 512; ++i) ASSERT_NEAR(y[i], v, std::fabs(v) * 2e-3) << tname(t) << " value " << v << " i " << i;
    }
  }
}

TEST(KQuantRoundTrip, Q8KActivations) {
  // Q8_K: per 256 block, d = max/127 in f32 (no f16 rounding): |x - d q| <= d/2 (+ f32 rounding).
  std::mt19937 rng(8);
  std::vector<float> x = weight_like_row(768, rng), y(768);
  std::vector<BlockQ8_K> q(3);
  quantize_row_q8_K_ref(x.data(), q.data(), 768);
  dequantize_row_q8_K_ref(q.data(), y.data(), 768);
  for (int b = 0; b < 3; ++b) {
    float amax = 0;
    for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[b * 256 + j]));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += q[b].qs[g * 16 + j];
      EXPECT_EQ(q[b].bsums[g], s);
    }
    for (int j = 0; j < 256; ++j) {
      EXPECT_GE(q[b].qs[j], -127);
      ASSERT_LE(std::fabs(y[b * 256 + j] - x[b * 256 + j]), 0.5 * amax / 127 * (1 + 1e-5)) << b << " " << j;
    }
  }
}

// ---- dot products ----------------------------------------------------------------------------

namespace {

std::vector<const QuantKernels*> kernel_sets() {
  std::vector<const QuantKernels*> v;
  for (QuantIsa isa : {QuantIsa::Ref, QuantIsa::Avx2, QuantIsa::Avx512Vnni})
    if (const QuantKernels* k = quant_kernels_find(isa)) v.push_back(k);
  return v;
}

bool is_kquant(DType t) { return dtype_traits(t).block_size == kQK_K; }

// Offsets of a block's f16 fields: scale d, and the min (dmin / m) or -1.
int d_offset(DType t) { return t == DType::Q6_K ? 208 : 0; }
int m_offset(DType t) { return t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K ? 2 : -1; }

void f16_put(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
uint16_t f16_at(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }

// nb random weight blocks: random bytes; scale fields random finite f16 of moderate size (any
// sign), or exactly `unit` (1.0) for every scale when unit is set. Every 4th block has all-0x00
// bytes and every 4th+2 all-0xff bytes besides the scales (extreme values and scale codes).
std::vector<uint8_t> weight_blocks(DType t, int64_t nb, std::mt19937& rng, bool unit) {
  const size_t bb = dtype_traits(t).block_bytes;
  std::vector<uint8_t> w(nb * bb);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* p = w.data() + b * bb;
    for (size_t i = 0; i < bb; ++i) p[i] = static_cast<uint8_t>(b % 4 == 0 ? 0x00 : b % 4 == 2 ? 0xff : rng());
    const auto scale = [&] { return unit ? f16_from_f32(1.0f) : f16_from_f32(u(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 12) - 8)); };
    f16_put(p + d_offset(t), scale());
    if (m_offset(t) >= 0) f16_put(p + m_offset(t), scale());
  }
  return w;
}

// Activations as the quantisers write them: qs in [-lim, lim], Q8_K's bsums their group sums.
std::vector<BlockQ8_0> act_q8_0(int64_t nb, std::mt19937& rng, int lim, bool unit) {
  std::vector<BlockQ8_0> y(nb);
  std::uniform_int_distribution<int> q(-lim, lim);
  for (auto& b : y) {
    b.d = unit ? f16_from_f32(1.0f) : f16_from_f32(std::ldexp(static_cast<float>(rng() % 1000 + 1), -10));
    for (auto& v : b.qs) v = static_cast<int8_t>(q(rng));
  }
  return y;
}

std::vector<BlockQ8_K> act_q8_K(int64_t nb, std::mt19937& rng, int lim, bool unit) {
  return test::q8_K_random(nb, rng, lim, unit);
}

float dot_run(const QuantKernels& k, DType t, int64_t n, const uint8_t* w, const void* y) {
  const auto* y0 = static_cast<const BlockQ8_0*>(y);
  const auto* yk = static_cast<const BlockQ8_K*>(y);
  std::vector<BlockQ8_K> reordered;  // the set's K-quant activation order, as linear_quantized lays it out
  if (is_kquant(t) && k.q8_K_reorder) {
    reordered.assign(yk, yk + n / kQK_K);
    k.q8_K_reorder(reordered.data(), n / kQK_K);
    yk = reordered.data();
  }
  switch (t) {
    case DType::Q4_1: return k.vec_dot_q4_1_q8_0(n, reinterpret_cast<const BlockQ4_1*>(w), y0);
    case DType::Q5_0: return k.vec_dot_q5_0_q8_0(n, reinterpret_cast<const BlockQ5_0*>(w), y0);
    case DType::Q5_1: return k.vec_dot_q5_1_q8_0(n, reinterpret_cast<const BlockQ5_1*>(w), y0);
    case DType::Q4_K: return k.vec_dot_q4_K_q8_K(n, reinterpret_cast<const BlockQ4_K*>(w), yk);
    case DType::Q5_K: return k.vec_dot_q5_K_q8_K(n, reinterpret_cast<const BlockQ5_K*>(w), yk);
    default: return k.vec_dot_q6_K_q8_K(n, reinterpret_cast<const BlockQ6_K*>(w), yk);
  }
}

// The activations as f32 (d * q), from our reference dequantisers.
std::vector<float> act_values(DType t, int64_t n, const void* y) {
  std::vector<float> v(n);
  if (is_kquant(t))
    dequantize_row_q8_K_ref(static_cast<const BlockQ8_K*>(y), v.data(), n);
  else
    dequantize_row_q8_0_ref(static_cast<const BlockQ8_0*>(y), v.data(), n);
  return v;
}

// Sum_j (|a_j| + |b_j|) |y_j| where a weight value is a_j - b_j (scale part, min part): the scale
// of the f32 rounding error of any order of evaluating the dot. Computed with the dequantiser on
// a copy whose scale is made positive and whose min makes the min term add (twin-checked above).
double dot_abs_sum(DType t, int64_t n, const std::vector<uint8_t>& w, const std::vector<float>& yv) {
  std::vector<uint8_t> a = w;
  const size_t bb = dtype_traits(t).block_bytes;
  for (size_t b = 0; b < a.size() / bb; ++b) {
    uint8_t* p = a.data() + b * bb;
    f16_put(p + d_offset(t), f16_at(p + d_offset(t)) & 0x7fff);
    if (m_offset(t) >= 0) {
      const uint16_t m = f16_at(p + m_offset(t));
      // Q4_1/Q5_1 add m: make it positive; Q4_K/Q5_K subtract dmin * mn: make it negative
      f16_put(p + m_offset(t), is_kquant(t) ? (m | 0x8000) : (m & 0x7fff));
    }
  }
  std::vector<float> av(n);
  row_to_f32(t, a.data(), av.data(), n);
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::fabs(static_cast<double>(av[j])) * std::fabs(yv[j]);
  return s;
}

}  // namespace

TEST(KQuantDot, IntegerResultExactInEveryKernel) {
  // All scales 1 and small activations: the dot is an integer below 2^24, so every kernel (the
  // scalar reference too) must return exactly sum_j dequant(w)_j * y_j, computed here in int64
  // from the twin-checked dequantiser: a wrong nibble, bit, scale or min lane cannot hide.
  std::mt19937 rng(17);
  for (DType t : kNewTypes) {
    const int64_t bs = dtype_traits(t).block_size;
    for (int64_t nb : is_kquant(t) ? std::vector<int64_t>{1, 3, 6} : std::vector<int64_t>{1, 3, 17, 33}) {
      const int64_t n = nb * bs;
      const std::vector<uint8_t> w = weight_blocks(t, nb, rng, true);
      const int lim = is_kquant(t) ? 7 : 127;
      std::vector<BlockQ8_0> y0;
      std::vector<BlockQ8_K> yk;
      const void* y;
      if (is_kquant(t)) { yk = act_q8_K(nb, rng, lim, true); y = yk.data(); }
      else { y0 = act_q8_0(nb, rng, lim, true); y = y0.data(); }
      std::vector<float> wv(n);
      row_to_f32(t, w.data(), wv.data(), n);
      const std::vector<float> yv = act_values(t, n, y);
      int64_t want = 0;
      for (int64_t j = 0; j < n; ++j) want += static_cast<int64_t>(wv[j]) * static_cast<int64_t>(yv[j]);
      ASSERT_LT(std::llabs(want), 1 << 24);
      for (const QuantKernels* k : kernel_sets())
        EXPECT_EQ(dot_run(*k, t, n, w.data(), y), static_cast<float>(want)) << k->name << " " << tname(t) << " nb " << nb;
    }
  }
}

TEST(KQuantDot, KernelsMatchReferenceAndDequantisedDot) {
  // Random scales: each kernel against the scalar reference within (2 nb + 10) u S, and both
  // against the double-precision dot of the dequantised operands within the same bound
  // (S = sum of |terms|, dot_abs_sum). Activations span the full [-127, 127].
  std::mt19937 rng(23);
  const double u = kU;
  for (DType t : kNewTypes) {
    const int64_t bs = dtype_traits(t).block_size;
    for (int64_t nb : is_kquant(t) ? std::vector<int64_t>{1, 3, 17} : std::vector<int64_t>{1, 3, 17, 129}) {
      for (int trial = 0; trial < 4; ++trial) {
        const int64_t n = nb * bs;
        const std::vector<uint8_t> w = weight_blocks(t, nb, rng, false);
        std::vector<BlockQ8_0> y0;
        std::vector<BlockQ8_K> yk;
        const void* y;
        if (is_kquant(t)) { yk = act_q8_K(nb, rng, 127, false); y = yk.data(); }
        else { y0 = act_q8_0(nb, rng, 127, false); y = y0.data(); }
        std::vector<float> wv(n);
        row_to_f32(t, w.data(), wv.data(), n);
        const std::vector<float> yv = act_values(t, n, y);
        double exact = 0;
        for (int64_t j = 0; j < n; ++j) exact += static_cast<double>(wv[j]) * yv[j];
        const double tol = (2.0 * nb + 10.0) * u * dot_abs_sum(t, n, w, yv);
        const float r = dot_run(*quant_kernels_find(QuantIsa::Ref), t, n, w.data(), y);
        EXPECT_NEAR(r, exact, tol) << tname(t) << " nb " << nb << " reference vs dequantised dot";
        for (const QuantKernels* k : kernel_sets())
          EXPECT_NEAR(dot_run(*k, t, n, w.data(), y), r, tol) << k->name << " " << tname(t) << " nb " << nb;
      }
    }
  }
}

TEST(KQuantDot, ActivationsHolding128) {
  // -128 never comes out of the quantisers, but the K-quant and Q4_1/Q5_x kernels are exact for it
  // too (the unsigned operand is always the weight): checked with unit scales.
  std::mt19937 rng(29);
  for (DType t : kNewTypes) {
    const int64_t nb = 3, n = nb * dtype_traits(t).block_size;
    const std::vector<uint8_t> w = weight_blocks(t, nb, rng, true);
    std::vector<BlockQ8_0> y0;
    std::vector<BlockQ8_K> yk;
    const void* y;
    if (is_kquant(t)) {
      yk = act_q8_K(nb, rng, 3, true);
      for (auto& b : yk) { b.qs[5] = -128; b.bsums[0] = 0; for (int j = 0; j < 16; ++j) b.bsums[0] += b.qs[j]; }
      y = yk.data();
    } else {
      y0 = act_q8_0(nb, rng, 127, true);
      for (auto& b : y0) b.qs[7] = -128;
      y = y0.data();
    }
    std::vector<float> wv(n);
    row_to_f32(t, w.data(), wv.data(), n);
    const std::vector<float> yv = act_values(t, n, y);
    int64_t want = 0;
    for (int64_t j = 0; j < n; ++j) want += static_cast<int64_t>(wv[j]) * static_cast<int64_t>(yv[j]);
    for (const QuantKernels* k : kernel_sets())
      EXPECT_EQ(dot_run(*k, t, n, w.data(), y), static_cast<float>(want)) << k->name << " " << tname(t);
  }
}

// ---- linear_quantized and ops::linear against torch ------------------------------------------

namespace {

// Bound on |linear_quantized - x · dequant(w)^T| per output from quantising x: Q8_0 (32 blocks,
// f16 scale): |x_j - d16 q_j| <= 0.5621 a_b / 127 (derivation in test_quant.cpp). Q8_K (256
// blocks, f32 scale 1/iscale): |x_j - d q_j| = |iscale x_j - q_j| / |iscale| (+ rounding of iscale,
// of iscale * x_j and of d: a few u relative) <= 0.5001 a_b / 127. Plus f32 rounding of the sums,
// below (nb + 16) 2^-23 sum_j |w_j| (|x_j| + a_b / 127) with nb the blocks in a row.
std::vector<double> linear_error_bound(const Tensor& x, const Tensor& w) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const bool kq = is_kquant(w.type());
  const int64_t ab = kq ? kQK_K : 32, nb = K / ab;
  const double c = kq ? 0.5001 : 0.5621;
  std::vector<float> wd(K);
  std::vector<double> bound(M * N);
  for (int64_t n = 0; n < N; ++n) {
    row_to_f32(w.type(), w.row_ptr(n), wd.data(), K);
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.ptr<float>() + m * K;
      double b = 0, r = 0;
      for (int64_t ib = 0; ib < nb; ++ib) {
        double amax = 0, wsum = 0;
        for (int64_t j = 0; j < ab; ++j) amax = std::max(amax, std::fabs(static_cast<double>(xr[ib * ab + j])));
        for (int64_t j = 0; j < ab; ++j) {
          wsum += std::fabs(wd[ib * ab + j]);
          r += std::fabs(wd[ib * ab + j]) * (std::fabs(xr[ib * ab + j]) + amax / 127);
        }
        b += c * amax / 127 * wsum;
      }
      bound[m * N + n] = b + (nb + 16) * 2 * kU * r;
    }
  }
  return bound;
}

}  // namespace

TEST(KQuantLinear, MatchesTorchForEveryTypeAndKernelSet) {
  const test::RefDump ref = test::RefDump::load("kquants");
  for (int c = 0; ref.has("lin" + std::to_string(c) + "_x"); ++c) {
    const Tensor& x = ref.get("lin" + std::to_string(c) + "_x");
    for (DType t : kNewTypes) {
      const Tensor& wb = ref.get("lin" + std::to_string(c) + "_w_" + tname(t));
      const int64_t M = x.size(0), K = x.size(1), N = wb.size(0);
      SCOPED_TRACE(fmt::format("case {}: M {} K {} N {} {}", c, M, K, N, tname(t)));
      const int64_t shape[] = {N, K};
      Tensor w = Tensor::view_of(t, shape, const_cast<void*>(wb.data()), wb.owner());
      const Tensor& yt = ref.get("lin" + std::to_string(c) + "_y_" + tname(t));
      const std::vector<double> bound = linear_error_bound(x, w);
      double err_sum = 0, bound_sum = 0;
      for (const QuantKernels* k : kernel_sets()) {
        SCOPED_TRACE(k->name);
        Tensor y = Tensor::empty(DType::F32, {M, N});
        ops::linear_quantized_with(*k, x, w, y);
        for (int64_t i = 0; i < M * N; ++i) {
          const double err = std::fabs(static_cast<double>(y.ptr<float>()[i]) - yt.ptr<float>()[i]);
          ASSERT_LE(err, bound[i]) << "output " << i << ": got " << y.ptr<float>()[i] << ", torch " << yt.ptr<float>()[i];
          err_sum += err;
          bound_sum += bound[i];
        }
      }
      // The bound adds worst cases; real rounding errors add like a random walk (see test_quant.cpp):
      // measured mean error / mean bound = 0.42 .. 0.79 / sqrt(K) over these cases and types.
      EXPECT_LT(err_sum, 1.5 / std::sqrt(static_cast<double>(K)) * bound_sum);

      // ops::linear (the public op) takes the same path, with a bias added after (unless it sends
      // the rows to the bf16 panel GEMM: test_linear_panel.cpp)
      Tensor bias = test::random_f32({N}, 5);
      Tensor y_op = Tensor::empty(DType::F32, {M, N}), y_q = Tensor::empty(DType::F32, {M, N});
      ops::linear(x, w, &bias, y_op);
      ops::linear_quantized(x, w, y_q);
      if (!ops::linear_takes_panel(t, M)) {
        for (int64_t i = 0; i < M * N; ++i)
          ASSERT_EQ(y_op.ptr<float>()[i], y_q.ptr<float>()[i] + bias.ptr<float>()[i % N]) << "output " << i;
      }
      // and ops::ref::linear (dequantise, f32 dot) agrees with torch to f32 rounding
      Tensor y_ref = Tensor::empty(DType::F32, {M, N});
      ops::ref::linear(x, w, nullptr, y_ref);
      EXPECT_TENSORS_CLOSE(y_ref, yt, 1e-5, 1e-4);
    }
  }
}

// Each activation row alone (a decode step) gives the bits it has in a batch, in every set: the
// kernels that dot several rows per pass run each row's operations in the single-row order.
TEST(KQuantLinear, RowAloneGivesItsBatchBits) {
  struct Shape { int64_t M, K, N; };
  for (const Shape& sh : {Shape{13, 512, 70}, Shape{6, 3328, 9}, Shape{2, 256, 5}}) {
    const Tensor x = test::random_f32({sh.M, sh.K}, 40 + sh.M);
    for (DType t : kNewTypes) {
      SCOPED_TRACE(fmt::format("M {} K {} N {} {}", sh.M, sh.K, sh.N, tname(t)));
      const Tensor wf = test::random_f32({sh.N, sh.K}, 50 + sh.M);
      Tensor w = Tensor::empty(t, {sh.N, sh.K});
      for (int64_t n = 0; n < sh.N; ++n) row_from_f32(t, wf.ptr<float>() + n * sh.K, w.row_ptr(n), sh.K);
      for (const QuantKernels* k : kernel_sets()) {
        SCOPED_TRACE(k->name);
        Tensor y = Tensor::empty(DType::F32, {sh.M, sh.N});
        ops::linear_quantized_with(*k, x, w, y);
        for (int64_t m = 0; m < sh.M; ++m) {
          Tensor x1 = Tensor::empty(DType::F32, {1, sh.K}), y1 = Tensor::empty(DType::F32, {1, sh.N});
          std::memcpy(x1.data(), x.ptr<float>() + m * sh.K, static_cast<size_t>(sh.K) * sizeof(float));
          ops::linear_quantized_with(*k, x1, w, y1);
          ASSERT_EQ(std::memcmp(y1.data(), y.ptr<float>() + m * sh.N, y1.nbytes()), 0) << "row " << m;
        }
      }
    }
  }
}

TEST(KQuantLinear, EmbeddingAndCopyConvertEveryType) {
  // embedding and copy go through row_to_f32 / row_from_f32: a table of each type gives back its
  // dequantised rows, and copy f32 -> type -> f32 equals quantise + dequantise.
  for (DType t : kNewTypes) {
    const int64_t V = 5, C = 512;
    Tensor wf = test::random_f32({V, C}, 77);
    Tensor wq = Tensor::empty(t, {V, C});
    ops::copy(wf, wq);
    std::vector<uint8_t> want_bytes(*dtype_row_bytes(t, C));
    for (int64_t v = 0; v < V; ++v) {
      row_from_f32(t, wf.ptr<float>() + v * C, want_bytes.data(), C);
      ASSERT_EQ(std::memcmp(want_bytes.data(), wq.row_ptr(v), want_bytes.size()), 0) << tname(t) << " row " << v;
    }
    const int32_t ids[] = {4, 0, 4};
    Tensor e = Tensor::empty(DType::F32, {3, C});
    ops::embedding(wq, ids, e);
    std::vector<float> row(C);
    for (int i = 0; i < 3; ++i) {
      row_to_f32(t, wq.row_ptr(ids[i]), row.data(), C);
      ASSERT_EQ(std::memcmp(row.data(), e.row_ptr(i), C * 4), 0) << tname(t) << " id " << i;
    }
  }
}

TEST(KQuantDot, PairedActivationOrderByHand) {
  // q8_K_reorder_paired (the AVX-512 sets' K-quant activation order), written out from its
  // documented rule: per 128 activations 0..31, 64..95, 32..63, 96..127; bsums[i] the sum of group
  // {0, 8, 2, 10, 1, 9, 3, 11, 4, 12, 6, 14, 5, 13, 7, 15}[i]; d unchanged.
  std::mt19937 rng(41);
  std::vector<BlockQ8_K> y = act_q8_K(2, rng, 127, false), r = y;
  q8_K_reorder_paired(r.data(), 2);
  const int group_at[16] = {0, 8, 2, 10, 1, 9, 3, 11, 4, 12, 6, 14, 5, 13, 7, 15};
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(r[b].d, y[b].d);
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, k = e % 128;
      const int pos = 128 * h + (k < 32 || k >= 96 ? k : k < 64 ? k + 32 : k - 32);
      ASSERT_EQ(r[b].qs[pos], y[b].qs[e]) << "block " << b << " element " << e;
    }
    for (int i = 0; i < 16; ++i) EXPECT_EQ(r[b].bsums[i], y[b].bsums[group_at[i]]) << "block " << b << " bsum " << i;
  }
}

TEST(KQuantDot, Q6KOffsetDoesNotCancelInFloat) {
  // Q6_K values are q - 32. With every q = 32 but a few, the products q*y and the offset 32*y are
  // both large and cancel: a kernel that subtracts them in f32 loses the small result, one that
  // subtracts in integers (as the reference) keeps it within the usual (2 nb + 10) u S.
  std::mt19937 rng(37);
  const int64_t nb = 3, n = nb * kQK_K;
  std::vector<uint8_t> w = weight_blocks(DType::Q6_K, nb, rng, false);
  for (int64_t b = 0; b < nb; ++b) {
    auto* blk = reinterpret_cast<BlockQ6_K*>(w.data()) + b;
    std::memset(blk->ql, 0x00, sizeof blk->ql);
    std::memset(blk->qh, 0xAA, sizeof blk->qh);  // high bits 2 everywhere: q = 32
    blk->ql[b * 7] = 0x05;                         // one element q = 37
    for (auto& s : blk->scales) s = 127;
  }
  std::vector<BlockQ8_K> y = act_q8_K(nb, rng, 127, false);
  // Each group of 16 activations one random value, so the groups' offset terms differ widely: a
  // kernel that takes a group's offset off in a lane holding another group's products (cancelling
  // only in f32, after the lanes are summed) fails as one that subtracts in f32 does.
  std::uniform_int_distribution<int> gv(-127, 127);
  for (auto& b : y)
    for (int g = 0; g < 16; ++g) {
      const int v = gv(rng);
      for (int j = 0; j < 16; ++j) b.qs[16 * g + j] = static_cast<int8_t>(v);
      b.bsums[g] = static_cast<int16_t>(16 * v);
    }
  std::vector<float> wv(n);
  row_to_f32(DType::Q6_K, w.data(), wv.data(), n);
  const std::vector<float> yv = act_values(DType::Q6_K, n, y.data());
  double exact = 0;
  for (int64_t j = 0; j < n; ++j) exact += static_cast<double>(wv[j]) * yv[j];
  const double tol = (2.0 * nb + 10.0) * kU * dot_abs_sum(DType::Q6_K, n, w, yv);
  for (const QuantKernels* k : kernel_sets())
    EXPECT_NEAR(dot_run(*k, DType::Q6_K, n, w.data(), y.data()), exact, tol) << k->name;
}

TEST(KQuantRoundTrip, NonFiniteInputsDoNotCrash) {
  // A checkpoint with a NaN or inf weight must not crash the quantisers (their float -> int casts
  // are guarded: out-of-range casts would be undefined behaviour); other blocks are unaffected.
  const float specials[] = {std::nanf(""), INFINITY, -INFINITY, 3e38f, -3e38f, 1e-45f};
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const int64_t n = 512;
    for (float v : specials) {
      std::vector<float> x(n), y(n), y_finite(n);
      for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.37f * i);
      std::vector<uint8_t> q(*dtype_row_bytes(t, n)), q_finite(*dtype_row_bytes(t, n));
      row_from_f32(t, x.data(), q_finite.data(), n);
      x[3] = v;  // in the first block (of 32 or 256)
      row_from_f32(t, x.data(), q.data(), n);
      row_to_f32(t, q.data(), y.data(), n);
      row_to_f32(t, q_finite.data(), y_finite.data(), n);
      const int64_t bs = dtype_traits(t).block_size;
      for (int64_t i = bs; i < n; ++i)
        ASSERT_EQ(f32_bits(y[i]), f32_bits(y_finite[i])) << tname(t) << " value " << v << " element " << i;
    }
  }
}
