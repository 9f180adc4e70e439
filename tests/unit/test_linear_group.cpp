// ops::linear_group (linear_quantized.h): several linears over one input must give exactly what
// ops::linear gives on each (that path is checked against PyTorch and the reference kernels in
// test_quant.cpp / test_ops_gemm.cpp), whichever way it runs: fused (Q4_0 / Q8_0 decode, or
// K-quants of any mix, rows shared among the threads, any thread count) or one ops::linear at a
// time (bias, F16 weights, mixed types, M above what the integer kernels take).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "backend/cpu/gemv.h"
#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "common/compare.h"
#include "core/thread_pool.h"

namespace aigc {
namespace {

Tensor weight_make(DType type, int64_t N, int64_t K, uint32_t seed) {
  Tensor wf = test::random_f32({N, K}, seed);
  Tensor w = Tensor::empty(type, {N, K});
  ops::copy(wf, w);
  return w;
}

struct GroupCase {
  int64_t M, K;
  std::vector<int64_t> N;
  std::vector<DType> types;
  bool bias;
};

void group_check(const GroupCase& gc, uint32_t seed) {
  Tensor x = test::random_f32({gc.M, gc.K}, seed);
  std::vector<Tensor> w, b, y, y_ref;
  for (size_t i = 0; i < gc.N.size(); ++i) {
    w.push_back(weight_make(gc.types[i], gc.N[i], gc.K, seed + 1 + static_cast<uint32_t>(i)));
    b.push_back(test::random_f32({gc.N[i]}, seed + 50 + static_cast<uint32_t>(i)));
    y_ref.push_back(Tensor::empty(DType::F32, {gc.M, gc.N[i]}));
    ops::linear(x, w[i], gc.bias ? &b[i] : nullptr, y_ref[i]);
  }
  for (int nth : {1, 2, 3}) {
    thread_count_set(nth);
    y.clear();
    std::vector<ops::LinearGroupItem> items;
    for (size_t i = 0; i < gc.N.size(); ++i) {  // filled with a value no output has
      y.push_back(Tensor::empty(DType::F32, {gc.M, gc.N[i]}));
      std::fill_n(y.back().ptr<float>(), y.back().numel(), -7.0f);
    }
    for (size_t i = 0; i < gc.N.size(); ++i) items.push_back({&w[i], gc.bias ? &b[i] : nullptr, &y[i]});
    ops::linear_group(items, x);
    for (size_t i = 0; i < gc.N.size(); ++i)
      EXPECT_EQ(std::memcmp(y[i].data(), y_ref[i].data(), y[i].nbytes()), 0)
          << "weight " << i << " (" << dtype_name(gc.types[i]) << ", N " << gc.N[i] << "), " << nth << " threads";
  }
}

TEST(LinearGroup, SameBitsAsOneLinearEach) {
  const int threads_before = thread_count();
  const DType q4 = DType::Q4_0, q8 = DType::Q8_0, q4k = DType::Q4_K, q5k = DType::Q5_K, q6k = DType::Q6_K;
  const GroupCase cases[] = {
      // fused: one or several weights, odd N and K, M = 1..kMaxRows; K = 2048 makes the layers big
      // enough to run on several threads (tiles of >= 32 rows from the shared counter)
      {1, 2048, {300, 65, 64}, {q4, q4, q4}, false},
      {1, 2048, {17, 1, 333}, {q8, q8, q8}, false},
      {2, 2048, {129, 3}, {q4, q4}, false},
      {4, 2048, {200, 77}, {q8, q8}, false},
      {3, 96, {5, 33, 1}, {q4, q4, q4}, false},
      {1, 32, {1}, {q8}, false},
      {1, 736, {1500, 700}, {q4, q4}, false},
      // fused K-quants, mixed as Q4_K_M files mix them (one Q8_K activation format)
      {1, 2048, {300, 65, 64}, {q4k, q4k, q6k}, false},
      {3, 512, {40, 7}, {q5k, q6k}, false},
      {9, 256, {70, 1, 5}, {q4k, q5k, q6k}, false},
      // not fused: bias, F16, mixed types, M > kMaxRows
      {1, 288, {17, 9}, {q4, q4}, true},
      {2, 64, {33, 5}, {DType::F16, DType::F16}, false},
      {1, 256, {40, 24}, {q4, q8}, false},
      {1, 256, {40, 24}, {q4k, q4}, false},
      {ops::gemv::kMaxRows + 1, 128, {19, 7}, {q8, q8}, false},
  };
  uint32_t seed = 500;
  for (const GroupCase& gc : cases) {
    SCOPED_TRACE(fmt::format("M {} K {} weights {}", gc.M, gc.K, gc.N.size()));
    group_check(gc, seed);
    seed += 100;
  }
  thread_count_set(threads_before);
}

TEST(LinearGroup, EmptyGroupDoesNothing) {
  Tensor x = test::random_f32({1, 64}, 1);
  ops::linear_group({}, x);
}

}  // namespace
}  // namespace aigc
