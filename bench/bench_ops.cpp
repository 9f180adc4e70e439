// Memory-bound CPU ops as GB/s next to the probe's bandwidth (%bw: of the probe's copy figure,
// which counts bytes the same way: read + written, no write-allocate).
//   build/bench_ops                                  # threads 1 and 2
//   build/bench_ops --threads=1,8 --benchmark_filter=copy
// To add an op: one OpCase in op_cases() (shapes, the bytes it moves, a prepare that allocates and
// returns the call to time).
#include <cstring>

#include "backend/cpu/ops.h"
#include "core/tensor.h"
#include "harness.h"

namespace aigc::bench {
namespace {

struct OpCase {
  std::string name;                               // "<op>/<what>"
  double bytes;                                   // moved per call (read + written)
  double flops;                                   // per call; 0 for pure data movement
  std::function<GemmPrepared()> prepare;          // run + keep (c unused)
};

Tensor tensor_random(DType type, std::initializer_list<int64_t> shape, uint32_t seed) {
  Tensor t = Tensor::empty(type, shape);
  std::vector<float> v(t.numel());
  values_fill(v, seed);
  Tensor src = Tensor::view_of(DType::F32, t.shape(), v.data());
  ops::copy(src, t);
  return t;
}

std::vector<OpCase> op_cases() {
  constexpr int64_t n = 4096;
  std::vector<OpCase> cases;
  // [4096, 4096] f32 transposed view -> contiguous (as attention's permutes do).
  cases.push_back({"copy/transpose_f32_4096x4096", 2.0 * n * n * 4, 0, [] {
                     struct B { Tensor x, y; };
                     auto b = std::make_shared<B>();
                     b->x = tensor_random(DType::F32, {n, n}, 1);
                     b->y = Tensor::empty(DType::F32, {n, n});
                     const Tensor xt = b->x.transpose(0, 1);
                     GemmPrepared p;
                     p.run = [b, xt] { ops::copy(xt, b->y); };
                     p.keep = b;
                     return p;
                   }});
  // f32 -> f16, contiguous (weights conversion, KV cache in f16).
  cases.push_back({"copy/f32_to_f16_4096x4096", n * n * (4.0 + 2.0), 0, [] {
                     struct B { Tensor x, y; };
                     auto b = std::make_shared<B>();
                     b->x = tensor_random(DType::F32, {n, n}, 2);
                     b->y = Tensor::empty(DType::F16, {n, n});
                     GemmPrepared p;
                     p.run = [b] { ops::copy(b->x, b->y); };
                     p.keep = b;
                     return p;
                   }});
  // ---- more ops go here as they land in src/backend/cpu (same pattern) ----------------------
  // e.g. softmax [32, 4096, 4096] f32: bytes 2 * numel * 4; layer_norm / rms_norm [512, 4096];
  // silu / gelu [512, 11008]; add [512, 4096] (3 streams); rope [512, 32, 128]; embedding rows;
  // group_norm [1, 320, 64, 64]; upsample_nearest [1, 320, 64, 64] x2; attention (flops too).
  return cases;
}

void op_benchmarks_register(const std::vector<OpCase>& cases, const std::vector<int>& threads) {
  for (const OpCase& oc : cases) {
    for (int t : threads) {
      const std::string name = oc.name + "/threads:" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), [oc, t, name](benchmark::State& state) {
        aigc::thread_count_set(t);
        GemmPrepared& p = prepared_get<GemmPrepared>(name, [&](GemmPrepared& fresh) {
          fresh = oc.prepare();
          fresh.run();  // warm-up: page faults
        });
        Work w;
        w.bytes = oc.bytes;
        w.flops = oc.flops;
        w.bw = BandwidthRef::copy;
        loop_time(state, p.run, w, machine_probe(t));
      })->UseRealTime()->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace
}  // namespace aigc::bench

int main(int argc, char** argv) {
  using namespace aigc::bench;
  const std::vector<int> threads = harness_init(argc, argv);
  op_benchmarks_register(op_cases(), threads);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
