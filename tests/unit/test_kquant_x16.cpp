// Q4_K_X16, Q5_K_X16 and Q6_K_X16 (quant.h: K-quant weight rows interleaved 16 at a time for the decode
// kernels): the layouts by hand and their round trips; every kernel set's X16 kernels against the file layout's
// scalar reference (exactly where the result is an integer, within f32 rounding otherwise); and
// linear_quantized, linear_group, the bf16 panel path and ops::ref::linear on X16 weights against
// the same weights as the file has them. (A model loaded with Q4_K weights is repacked and keeps
// its logits: test_linear_repack.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/linear_panel.h"
#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant_dot.h"
#include "common/compare.h"
#include "common/random_blocks.h"
#include "common/thread_guard.h"
#include "core/error.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

using namespace aigc;

namespace {

constexpr double kU = 1.0 / (1 << 24);  // f32 unit roundoff

constexpr DType kX16Types[] = {DType::Q4_K_X16, DType::Q5_K_X16, DType::Q6_K_X16};

// The kernel sets this CPU runs that have a kernel for x16 (the scalar reference always).
std::vector<const QuantKernels*> x16_sets(DType x16) {
  std::vector<const QuantKernels*> v;
  for (QuantIsa isa : {QuantIsa::Ref, QuantIsa::Avx2, QuantIsa::Avx512Vnni, QuantIsa::Avx512Vbmi})
    if (const QuantKernels* k = quant_kernels_find(isa); k && vec_dot_rows_kernel(*k, x16)) v.push_back(k);
  return v;
}

size_t block_bytes(DType x16) { return dtype_traits(x16).block_bytes; }

// rows x nb random blocks of x16's file type: random bytes (every 4th block all 0x00 and every 4th
// + 2 all 0xff besides the f16 scales: extreme quants and scale codes); d (and Q4_K / Q5_K's dmin) 1
// (`unit`) or random f16 of either sign.
std::vector<uint8_t> file_blocks(DType x16, int64_t rows, int64_t nb, std::mt19937& rng, bool unit) {
  const size_t bb = block_bytes(x16);
  std::vector<uint8_t> w(static_cast<size_t>(rows * nb) * bb);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t i = 0; i < w.size() / bb; ++i) {
    uint8_t* p = w.data() + i * bb;
    for (size_t j = 0; j < bb; ++j) p[j] = static_cast<uint8_t>(i % 4 == 0 ? 0x00 : i % 4 == 2 ? 0xff : rng());
    const auto put = [&](size_t off) {
      const uint16_t h = unit ? f16_from_f32(1.0f) : f16_from_f32(u(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 12) - 8));
      std::memcpy(p + off, &h, 2);
    };
    if (x16 == DType::Q6_K_X16) {
      put(offsetof(BlockQ6_K, d));
    } else {  // Q4_K, Q5_K: the same offsets
      put(offsetof(BlockQ4_K, d));
      put(offsetof(BlockQ4_K, dmin));
    }
  }
  return w;
}

// The file type's scalar reference dot of one row (nb blocks at w) with y.
float file_dot_ref(DType x16, int64_t n, const uint8_t* w, const BlockQ8_K* y) {
  if (x16 == DType::Q6_K_X16) return vec_dot_q6_K_q8_K_ref(n, reinterpret_cast<const BlockQ6_K*>(w), y);
  if (x16 == DType::Q5_K_X16) return vec_dot_q5_K_q8_K_ref(n, reinterpret_cast<const BlockQ5_K*>(w), y);
  return vec_dot_q4_K_q8_K_ref(n, reinterpret_cast<const BlockQ4_K*>(w), y);
}

// Sum_j (|scale part_j| + |offset or min part_j|) |y_j| of one row: the size of the f32 rounding
// errors of any order of summing its dot (Q4_K, Q5_K: d sc q - dmin mn; Q6_K: d sc (q - 32)).
double dot_abs_sum(DType x16, int64_t nb, const uint8_t* w, const BlockQ8_K* y) {
  double s = 0;
  for (int64_t c = 0; c < nb; ++c) {
    const uint8_t* p = w + c * block_bytes(x16);
    float v[kQK_K];
    if (x16 == DType::Q6_K_X16) {
      const auto& b = *reinterpret_cast<const BlockQ6_K*>(p);
      dequantize_row_q6_K_ref(&b, v, kQK_K);
      for (int j = 0; j < kQK_K; ++j)
        s += (std::fabs(v[j]) + 32.0 * std::fabs(f16_to_f32(b.d) * b.scales[j / 16])) * std::fabs(y[c].d * y[c].qs[j]);
    } else {
      const bool q5 = x16 == DType::Q5_K_X16;
      const auto& b = *reinterpret_cast<const BlockQ4_K*>(p);  // Q5_K: d, dmin, scales alike; then qh, qs
      const uint8_t* qh = p + offsetof(BlockQ5_K, qh);
      const uint8_t* qs = q5 ? p + offsetof(BlockQ5_K, qs) : b.qs;
      for (int sb = 0; sb < 8; ++sb) {
        uint8_t sc, mn;
        scale_min_k4_get(sb, b.scales, &sc, &mn);
        for (int j = 32 * sb; j < 32 * sb + 32; ++j) {
          const int q = (j % 64 < 32 ? qs[32 * (j / 64) + j % 32] & 15 : qs[32 * (j / 64) + j % 32] >> 4) +
                        (q5 ? 16 * ((qh[j % 32] >> sb) & 1) : 0);
          s += (std::fabs(f16_to_f32(b.d)) * sc * q + std::fabs(f16_to_f32(b.dmin)) * mn) * std::fabs(y[c].d * y[c].qs[j]);
        }
      }
    }
  }
  return s;
}

// Packs rows x nb blocks (rows a multiple of 16) into the X16 layout.
std::vector<uint8_t> x16_packed(DType x16, const std::vector<uint8_t>& w, int64_t rows, int64_t nb) {
  const size_t group = kX16Rows * nb * block_bytes(x16);
  std::vector<uint8_t> p(w.size());
  for (int64_t g = 0; g < rows / kX16Rows; ++g) x16_pack(x16, w.data() + g * group, p.data() + g * group, nb * kQK_K);
  return p;
}

// out[r * nw + i] from set k's X16 kernel: the activations `rows` rows of nb blocks, laid out
// in the set's order (q8_K_reorder) as linear_quantized does.
std::vector<float> x16_run(const QuantKernels& k, DType x16, const std::vector<uint8_t>& p, int64_t nw, int64_t nb,
                           std::vector<BlockQ8_K> y, int rows, bool prefetch = false) {
  if (k.q8_K_reorder)
    for (int r = 0; r < rows; ++r) k.q8_K_reorder(y.data() + r * nb, nb);
  std::vector<float> out(static_cast<size_t>(rows * nw), NAN);
  vec_dot_rows_kernel(k, x16)(nb * kQK_K, p.data(), nb * static_cast<int64_t>(block_bytes(x16)), nw, y.data(), nb, rows, out.data(),
                     nw, prefetch);
  return out;
}

// Packs 16 rows of nb blocks w (row r's block c at w[r * nb + c]) and calls check(column, r, block)
// for every block; then the round trip, the type's name and ids, the file type's bytes per row,
// and a clear error (not a wrong row) for a row converted alone.
template <typename Block, typename Check>
void expect_layout(DType x16, const std::vector<Block>& w, int64_t nb, Check check) {
  std::vector<uint8_t> p(w.size() * sizeof(Block));
  x16_pack(x16, w.data(), p.data(), nb * kQK_K);
  for (int64_t c = 0; c < nb; ++c)
    for (int r = 0; r < kX16Rows; ++r) {
      SCOPED_TRACE(testing::Message() << dtype_name(x16) << " column " << c << " row " << r);
      check(p.data() + c * kX16Rows * sizeof(Block), r, w[r * nb + c]);
    }
  std::vector<Block> back(w.size());
  x16_unpack(x16, p.data(), back.data(), nb * kQK_K);
  EXPECT_EQ(std::memcmp(back.data(), w.data(), p.size()), 0) << "round trip";
  const DType file = *x16_file_type(x16);
  EXPECT_EQ(x16_of(file), x16);
  EXPECT_EQ(dtype_name(x16), std::string(dtype_name(file)) + "_x16");
  EXPECT_FALSE(dtype_traits_find(static_cast<uint32_t>(x16)).has_value()) << "no file type id";
  EXPECT_FALSE(dtype_from_name(dtype_name(x16)).has_value());
  EXPECT_EQ(*dtype_row_bytes(x16, 512), *dtype_row_bytes(file, 512));
  float f[256];
  EXPECT_THROW(row_to_f32(x16, p.data(), f, 256), Error);
}

// 16 rows of nb blocks whose bytes name them: byte j of row r's block c is r * 16 + c * 5 + j (mod 256).
template <typename Block>
std::vector<Block> named_blocks(int64_t nb) {
  std::vector<Block> w(kX16Rows * nb);
  for (int64_t r = 0; r < kX16Rows; ++r)
    for (int64_t c = 0; c < nb; ++c) {
      auto* p = reinterpret_cast<uint8_t*>(&w[r * nb + c]);
      for (size_t j = 0; j < sizeof(Block); ++j) p[j] = static_cast<uint8_t>(r * 16 + c * 5 + j);
    }
  return w;
}

}  // namespace

TEST(KQuantX16, PackLayoutByHand) {
  // each field looked for where quant.h puts it
  expect_layout(DType::Q4_K_X16, named_blocks<BlockQ4_K>(3), 3, [](const uint8_t* col, int r, const BlockQ4_K& blk) {
    const auto* b = reinterpret_cast<const uint8_t*>(&blk);
    EXPECT_EQ(std::memcmp(col + 2 * r, b + 0, 2), 0) << "d";
    EXPECT_EQ(std::memcmp(col + 32 + 2 * r, b + 2, 2), 0) << "dmin";
    EXPECT_EQ(std::memcmp(col + 64 + 4 * r, b + 4, 4), 0) << "scales 0..3";
    EXPECT_EQ(std::memcmp(col + 128 + 4 * r, b + 8, 4), 0) << "scales 4..7";
    EXPECT_EQ(std::memcmp(col + 192 + 4 * r, b + 12, 4), 0) << "scales 8..11";
    // qs words chunk by chunk in turn: slot 4 i + h holds word i of chunk h (32-byte chunks)
    for (int i = 0; i < 8; ++i)
      for (int h = 0; h < 4; ++h)
        ASSERT_EQ(std::memcmp(col + 256 + 64 * (4 * i + h) + 4 * r, b + 16 + 32 * h + 4 * i, 4), 0) << "qs word " << i << " of chunk " << h;
  });
  EXPECT_FALSE(x16_of(DType::Q8_0).has_value());
  EXPECT_FALSE(x16_of(DType::Q4_0).has_value());
}

TEST(KQuantX16, Q6KPackLayoutByHand) {
  expect_layout(DType::Q6_K_X16, named_blocks<BlockQ6_K>(2), 2, [](const uint8_t* col, int r, const BlockQ6_K& b) {
    EXPECT_EQ(std::memcmp(col + 2 * r, &b.d, 2), 0) << "d";
    for (int k = 0; k < 4; ++k) EXPECT_EQ(std::memcmp(col + 32 + 64 * k + 4 * r, b.scales + 4 * k, 4), 0) << "scales " << k;
    // half h, word i: slots 3 (8h + i) + 0, 1, 2 hold ql[64h + 4i], ql[64h + 32 + 4i], qh[32h + 4i]
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 8; ++i) {
        const uint8_t* slot = col + 288 + 64 * 3 * (8 * h + i) + 4 * r;
        ASSERT_EQ(std::memcmp(slot, b.ql + 64 * h + 4 * i, 4), 0) << "ql low half " << h << " word " << i;
        ASSERT_EQ(std::memcmp(slot + 64, b.ql + 64 * h + 32 + 4 * i, 4), 0) << "ql high half " << h << " word " << i;
        ASSERT_EQ(std::memcmp(slot + 128, b.qh + 32 * h + 4 * i, 4), 0) << "qh half " << h << " word " << i;
      }
  });
}

TEST(KQuantX16, Q5KPackLayoutByHand) {
  // As Q4_K's, and the fifth bits (random bytes: the named ones repeat bit patterns): bit 4r + i
  // of mask j of slot tp must be bit j of qh[4tp + i] of row r.
  std::vector<BlockQ5_K> w(kX16Rows * 2);
  std::mt19937 rng(13);
  for (auto& b : w)
    for (size_t j = 0; j < sizeof(BlockQ5_K); ++j) reinterpret_cast<uint8_t*>(&b)[j] = static_cast<uint8_t>(rng());
  expect_layout(DType::Q5_K_X16, w, 2, [](const uint8_t* col, int r, const BlockQ5_K& b) {
    EXPECT_EQ(std::memcmp(col + 2 * r, &b.d, 2), 0) << "d";
    EXPECT_EQ(std::memcmp(col + 32 + 2 * r, &b.dmin, 2), 0) << "dmin";
    for (int k = 0; k < 3; ++k) EXPECT_EQ(std::memcmp(col + 64 + 64 * k + 4 * r, b.scales + 4 * k, 4), 0) << "scales " << k;
    for (int tp = 0; tp < 8; ++tp) {
      const uint8_t* slot = col + 256 + 320 * tp;
      for (int h = 0; h < 4; ++h)
        ASSERT_EQ(std::memcmp(slot + 64 * (1 + h) + 4 * r, b.qs + 32 * h + 4 * tp, 4), 0) << "qs word " << tp << " of chunk " << h;
      for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 4; ++i) {
          const int bit = 4 * r + i;
          ASSERT_EQ((slot[8 * j + bit / 8] >> (bit % 8)) & 1, (b.qh[4 * tp + i] >> j) & 1) << "mask " << j << " of slot " << tp << " byte " << i;
        }
    }
  });
}

TEST(KQuantX16, IntegerResultExactInEveryKernel) {
  // d = dmin = 1, random scales (and mins), small activations: each output is an integer below
  // 2^24, so every set must return exactly sum_j dequant(w)_j * y_j (int64, from the twin-checked
  // dequantiser): a wrong nibble, high bit, row lane, scale, min or sub-block sum cannot hide.
  std::mt19937 rng(5);
  const int64_t N = 32;
  for (DType x16 : kX16Types)
  for (int64_t nb : {1, 3, 6}) {
    const int64_t n = nb * kQK_K;
    const std::vector<uint8_t> w = file_blocks(x16, N, nb, rng, true);
    const std::vector<uint8_t> p = x16_packed(x16, w, N, nb);
    const size_t row_bytes = nb * block_bytes(x16);
    for (int rows : {1, 2, 3, 5, 8}) {
      // Q6_K: |sc| up to 128 and |q - 32| up to 32, so activations in [-1, 1] keep it below 2^24
      const std::vector<BlockQ8_K> y = test::q8_K_random(rows * nb, rng, x16 == DType::Q6_K_X16 ? 1 : 7, true);
      std::vector<float> want(static_cast<size_t>(rows * N)), wv(n), yv(n);
      for (int r = 0; r < rows; ++r) {
        dequantize_row_q8_K_ref(y.data() + r * nb, yv.data(), n);
        for (int64_t i = 0; i < N; ++i) {
          row_to_f32(*x16_file_type(x16), w.data() + i * row_bytes, wv.data(), n);
          int64_t s = 0;
          for (int64_t j = 0; j < n; ++j) s += static_cast<int64_t>(wv[j]) * static_cast<int64_t>(yv[j]);
          ASSERT_LT(std::llabs(s), 1 << 24);
          want[r * N + i] = static_cast<float>(s);
        }
      }
      for (const QuantKernels* k : x16_sets(x16)) {
        const std::vector<float> got = x16_run(*k, x16, p, N, nb, y, rows);
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << k->name << " " << dtype_name(x16) << " nb " << nb << " rows " << rows << " output " << i;
      }
    }
  }
}

TEST(KQuantX16, KernelsMatchTheFileLayoutsReference) {
  // Random scales and activations over [-127, 127]: each set's X16 kernel against the file
  // type's scalar vec_dot on the file's rows within (2 nb + 10) u S (dot_abs_sum: the size of the
  // rounding errors of any summation order). Several activation rows (up to 8: Q6_K_X16 runs
  // them four at a time) give each row's single-row bits, and prefetching changes nothing.
  std::mt19937 rng(9);
  const int64_t N = 48;
  for (DType x16 : kX16Types)
  for (int64_t nb : {1, 2, 8, 22}) {
    const int64_t n = nb * kQK_K;
    const size_t row_bytes = nb * block_bytes(x16);
    const std::vector<uint8_t> w = file_blocks(x16, N, nb, rng, false);
    const std::vector<uint8_t> p = x16_packed(x16, w, N, nb);
    const int rows = nb == 22 ? 7 : 5;
    const std::vector<BlockQ8_K> y = test::q8_K_random(rows * nb, rng, 127, false);
    for (const QuantKernels* k : x16_sets(x16)) {
      SCOPED_TRACE(testing::Message() << k->name << " " << dtype_name(x16) << " nb " << nb);
      const std::vector<float> got = x16_run(*k, x16, p, N, nb, y, rows);
      for (int r = 0; r < rows; ++r) {
        const std::vector<BlockQ8_K> yr(y.begin() + r * nb, y.begin() + (r + 1) * nb);
        const std::vector<float> one = x16_run(*k, x16, p, N, nb, yr, 1, true);
        for (int64_t i = 0; i < N; ++i) {
          ASSERT_EQ(f32_bits(got[r * N + i]), f32_bits(one[i])) << "row " << r << " output " << i << ": rows change the bits";
          const float want = file_dot_ref(x16, n, w.data() + i * row_bytes, yr.data());
          const double s = dot_abs_sum(x16, nb, w.data() + i * row_bytes, yr.data());
          ASSERT_NEAR(got[r * N + i], want, (2.0 * nb + 10.0) * kU * s) << "row " << r << " output " << i;
        }
      }
    }
  }
}

namespace {

// A random [N, K] weight of x16's file type (`file`), and its X16 repacking (linear_repack).
struct Weights {
  Tensor file, x16;
};
Weights weights_make(DType x16, int64_t N, int64_t K, uint32_t seed) {
  const Tensor f = test::random_f32({N, K}, seed);
  Weights w{Tensor::empty(*x16_file_type(x16), {N, K}), Tensor::empty(x16, {N, K})};
  ops::copy(f, w.file);
  ops::linear_repack(w.file, w.x16);
  return w;
}

}  // namespace

TEST(KQuantX16, LinearMatchesTheFileLayout) {
  // linear_quantized on the X16 weight against the same set on the file's weight (another
  // summation order: within 2e-5 of max|y|), decode, short and long prompts (the several-rows
  // path past kDecodeMaxRows); and the outputs do not depend on how many threads split the rows
  // (each thread a multiple of 16 rows).
  const test::ThreadCountGuard guard;
  for (DType x16 : kX16Types)
  for (int64_t M : {int64_t{1}, int64_t{6}, int64_t{17}, ops::kDecodeMaxRows + 9}) {
    const Weights w = weights_make(x16, 80, 768, 3);
    const Tensor x = test::random_f32({M, 768}, 30 + static_cast<uint32_t>(M));
    for (const QuantKernels* k : x16_sets(x16)) {
      SCOPED_TRACE(testing::Message() << k->name << " " << dtype_name(x16) << " M " << M);
      Tensor y_file = Tensor::empty(DType::F32, {M, 80}), y1 = Tensor::empty(DType::F32, {M, 80}),
             y2 = Tensor::empty(DType::F32, {M, 80});
      // the file layout on the same set (the ref set: its own file-layout kernels)
      ops::linear_quantized_with(*k, x, w.file, y_file);
      thread_count_set(1);
      ops::linear_quantized_with(*k, x, w.x16, y1);
      thread_count_set(2);
      ops::linear_quantized_with(*k, x, w.x16, y2);
      EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.nbytes()), 0) << "1 thread vs 2";
      EXPECT_TENSORS_CLOSE(y1, y_file, 2e-5, 0.0);
    }
  }
}

TEST(KQuantX16, LinearGroupWithOtherKQuantsGivesEachLinearsBits) {
  // A Q4_K_M / Q5_K_M layer's Q / K / V: Q4_K_X16, Q5_K_X16 and Q6_K_X16 beside the file's Q4_K and
  // Q6_K (a weight whose rows were not a multiple of 16 stays so) share one parallel region; each
  // output is ops::linear's, bit for bit.
  const test::ThreadCountGuard guard;
  thread_count_set(2);
  const int64_t K = 512;
  const Weights a = weights_make(DType::Q4_K_X16, 96, K, 41);
  const Weights b = weights_make(DType::Q6_K_X16, 32, K, 42);
  const Weights c = weights_make(DType::Q4_K_X16, 48, K, 43);
  const Weights e = weights_make(DType::Q6_K_X16, 48, K, 44);
  const Weights f = weights_make(DType::Q5_K_X16, 64, K, 45);
  for (int64_t M : {1, 5}) {
    SCOPED_TRACE(testing::Message() << "M " << M);
    const Tensor x = test::random_f32({M, K}, 44);
    Tensor ya = Tensor::empty(DType::F32, {M, 96}), yb = Tensor::empty(DType::F32, {M, 32}), yc = Tensor::empty(DType::F32, {M, 48}),
           ye = Tensor::empty(DType::F32, {M, 48}), yf = Tensor::empty(DType::F32, {M, 64});
    const ops::LinearGroupItem items[] = {{&a.x16, nullptr, &ya}, {&b.x16, nullptr, &yb}, {&c.file, nullptr, &yc},
                                          {&e.file, nullptr, &ye}, {&f.x16, nullptr, &yf}};
    ops::linear_group(items, x);
    for (const auto& it : items) {
      Tensor want = Tensor::empty(DType::F32, it.y->shape());
      ops::linear(x, *it.w, nullptr, want);
      EXPECT_EQ(std::memcmp(want.data(), it.y->data(), want.nbytes()), 0) << dtype_name(it.w->type());
    }
  }
}

TEST(KQuantX16, PanelAndReferenceLinearConvertGroups) {
  // ops::ref::linear and the bf16 panel GEMM (long prompts on AVX512-BF16 CPUs) convert an X16
  // weight a group at a time back to the file's rows: the same bits as on the file's weight.
  for (DType x16 : kX16Types) {
    SCOPED_TRACE(dtype_name(x16));
    const Weights w = weights_make(x16, 64, 512, 51);
    const Tensor x = test::random_f32({ops::kPanelMinRows + 3, 512}, 52);
    const int64_t M = x.size(0);
    Tensor a = Tensor::empty(DType::F32, {M, 64}), b = Tensor::empty(DType::F32, {M, 64});
    ops::ref::linear(x, w.file, nullptr, a);
    ops::ref::linear(x, w.x16, nullptr, b);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << "ref::linear";
    if (!ops::linear_panel_supports(x16)) continue;  // no AVX512-BF16: no panel path
    ops::linear_panel(x.ptr<float>(), 512, M, w.file, nullptr, a.ptr<float>(), 64);
    ops::linear_panel(x.ptr<float>(), 512, M, w.x16, nullptr, b.ptr<float>(), 64);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0) << "linear_panel";
  }
}
