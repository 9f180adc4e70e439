// GEMM at the shapes aigc lives on (LLM prefill and decode, UNet conv-as-GEMM, attention scores),
// 1 and 2 threads, as GFLOP/s and % of the probed FMA peak (bf16: of the VDPBF16PS peak), and for
// decode as GB/s and % of the probed read bandwidth.
//
//   build/bench_gemm                              # threads 1 and 2, ~1 minute
//   build/bench_gemm --threads=1,8 --benchmark_filter=prefill --benchmark_format=json
//
// Every case checks 32 entries of C against a double-precision dot product before it is timed.
// To add an implementation: write a GemmImpl (harness.h; gemm_onednn.h is the example) and list it
// in main().
#include "core/tensor.h"
#include "gemm_onednn.h"
#include "harness.h"

#include <cstring>

#include "backend/cpu/ops.h"

namespace aigc::bench {

// ops::linear: y [M, N] = x [M, K] · w [N, K]^T with w stored as `w_type` (f32, f16, bf16; the
// conversion happens here, outside the timed loop, as a model file would store it).
GemmImpl gemm_impl_aigc_linear(DType w_type) {
  GemmImpl impl;
  impl.name = "aigc_linear_w" + std::string(dtype_name(w_type));
  impl.precision = w_type == DType::F32 ? Precision::f32 : Precision::bf16;  // check tolerance, peak
  impl.prepare = [w_type](const GemmInput& in) {
    const GemmShape& s = in.shape;
    struct Bufs { Tensor x, w, y; };
    auto b = std::make_shared<Bufs>();
    b->x = Tensor::empty(DType::F32, {s.m, s.k});  // [M, K]
    std::memcpy(b->x.data(), in.a.data(), in.a.size() * sizeof(float));
    Tensor w32 = Tensor::view_of(DType::F32, std::vector<int64_t>{s.n, s.k}, const_cast<float*>(in.b.data()));
    b->w = Tensor::empty(w_type, {s.n, s.k});      // [N, K]
    ops::copy(w32, b->w);
    b->y = Tensor::empty(DType::F32, {s.m, s.n});  // [M, N]
    GemmPrepared p;
    p.run = [b] { ops::linear(b->x, b->w, nullptr, b->y); };
    p.c = [b] { return b->y.ptr<float>(); };
    p.keep = b;
    return p;
  };
  return impl;
}

// ops::matmul: out [M, N] = a [M, K] · bt where bt is the transposed view of B [N, K] (as Q·K^T).
GemmImpl gemm_impl_aigc_matmul() {
  GemmImpl impl;
  impl.name = "aigc_matmul_f32";
  impl.precision = Precision::f32;
  impl.prepare = [](const GemmInput& in) {
    const GemmShape& s = in.shape;
    struct Bufs { Tensor a, bt, out; };
    auto b = std::make_shared<Bufs>();
    b->a = Tensor::view_of(DType::F32, std::vector<int64_t>{s.m, s.k}, const_cast<float*>(in.a.data()));
    b->bt = Tensor::view_of(DType::F32, std::vector<int64_t>{s.n, s.k}, const_cast<float*>(in.b.data()))
                .transpose(0, 1);                    // [K, N] view
    b->out = Tensor::empty(DType::F32, {s.m, s.n});  // [M, N]
    GemmPrepared p;
    p.run = [b] { ops::matmul(b->a, b->bt, b->out); };
    p.c = [b] { return b->out.ptr<float>(); };
    p.keep = b;
    return p;
  };
  return impl;
}

// ops::conv2d on the UNet case that unet_conv models as a GEMM: x [1, 320, 64, 64],
// w [320, 320, 3, 3], pad 1 (flops 2 * 4096 * 320 * 2880). Correctness is the op tests' job.
void conv_benchmarks_register(const std::vector<int>& threads) {
  for (int t : threads) {
    const std::string name = "aigc_conv2d_f32/unet_320x64x64_k3/threads:" + std::to_string(t);
    benchmark::RegisterBenchmark(name.c_str(), [t, name](benchmark::State& state) {
      aigc::thread_count_set(t);
      struct Bufs { Tensor x, w, bias, y; };
      Bufs& b = prepared_get<Bufs>(name, [](Bufs& f) {
        std::vector<float> v(320 * 64 * 64);
        values_fill(v, 3);
        f.x = Tensor::empty(DType::F32, {1, 320, 64, 64});
        std::memcpy(f.x.data(), v.data(), v.size() * sizeof(float));
        v.assign(320 * 320 * 9, 0.0f);
        values_fill(v, 4);
        f.w = Tensor::empty(DType::F32, {320, 320, 3, 3});
        std::memcpy(f.w.data(), v.data(), v.size() * sizeof(float));
        f.bias = Tensor::zeros(DType::F32, {320});
        f.y = Tensor::empty(DType::F32, {1, 320, 64, 64});
        ops::conv2d(f.x, f.w, &f.bias, f.y, 1, 1);  // warm-up
      });
      Work w;
      w.flops = 2.0 * 4096 * 320 * 2880;
      loop_time(state, [&] { ops::conv2d(b.x, b.w, &b.bias, b.y, 1, 1); }, w, machine_probe(t));
    })->UseRealTime()->Unit(benchmark::kMillisecond);
  }
}

}  // namespace aigc::bench

int main(int argc, char** argv) {
  using namespace aigc::bench;
  const std::vector<int> threads = harness_init(argc, argv);
  std::vector<GemmImpl> impls = {
      gemm_impl_onednn(Precision::f32, /*packed=*/true),
      gemm_impl_onednn(Precision::f32, /*packed=*/false),
      gemm_impl_onednn(Precision::bf16, /*packed=*/true),
  };
  impls.push_back(gemm_impl_aigc_linear(aigc::DType::F32));
  impls.push_back(gemm_impl_aigc_linear(aigc::DType::BF16));
  impls.push_back(gemm_impl_aigc_matmul());
  conv_benchmarks_register(threads);
  gemm_benchmarks_register(impls, threads);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
