// What every aigc benchmark shares: the thread counts to run (--threads=1,2), the machine limits
// in the JSON context, counters as fractions of those limits, and GEMM cases that any library can
// plug into with one prepare function.
//
//   int main(int argc, char** argv) {
//     const std::vector<int> threads = harness_init(argc, argv);   // probes the machine
//     gemm_benchmarks_register({gemm_impl_onednn(Precision::f32, true)}, threads);
//     benchmark::RunSpecifiedBenchmarks();
//   }
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "machine_probe.h"

namespace aigc::bench {

// ---- command line and context ----------------------------------------------------------------

// Removes --threads=1,2,... from argv (default "1,2"), adds --benchmark_min_time=0.2 unless given
// (keeps each binary under two minutes), initialises Google Benchmark, probes the machine for
// every thread count and records info and limits in the JSON/console context.
inline std::vector<int> harness_init(int argc, char** argv) {
  static std::vector<std::string> args_store;
  static std::vector<char*> args;
  std::vector<int> threads;
  bool min_time_given = false;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--threads=", 0) == 0) {
      const char* p = a.c_str() + 10;
      while (*p) {
        char* end = nullptr;
        const long v = std::strtol(p, &end, 10);
        if (end == p) break;
        if (v > 0) threads.push_back(static_cast<int>(v));
        p = *end == ',' ? end + 1 : end;
      }
      continue;
    }
    if (a.rfind("--benchmark_min_time", 0) == 0) min_time_given = true;
    args_store.push_back(a);
  }
  if (!min_time_given) args_store.push_back("--benchmark_min_time=0.2");
  for (auto& s : args_store) args.push_back(s.data());
  args.push_back(nullptr);
  if (threads.empty()) threads = {1, 2};

  int bargc = static_cast<int>(args_store.size());
  benchmark::Initialize(&bargc, args.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, args.data())) std::exit(2);

  const MachineInfo& info = machine_info();
  benchmark::AddCustomContext("cpu_model", info.cpu_model);
  benchmark::AddCustomContext("physical_cores", std::to_string(info.physical_cores));
  benchmark::AddCustomContext("features", info.features);
  for (int t : threads) {
    const MachineLimits& lim = machine_probe(t);
    const std::string k = "probe_t" + std::to_string(t) + "_";
    benchmark::AddCustomContext(k + "read_gbs", std::to_string(lim.read_gbs));
    benchmark::AddCustomContext(k + "copy_gbs", std::to_string(lim.copy_gbs));
    benchmark::AddCustomContext(k + "triad_gbs", std::to_string(lim.triad_gbs));
    benchmark::AddCustomContext(k + "f32_gflops", std::to_string(lim.f32_gflops));
    benchmark::AddCustomContext(k + "bf16_gflops", std::to_string(lim.bf16_gflops));
    machine_limits_print(lim, stderr);
  }
  return threads;
}

// ---- counters --------------------------------------------------------------------------------

enum class Precision { f32, bf16 };
inline const char* precision_name(Precision p) { return p == Precision::f32 ? "f32" : "bf16"; }

enum class BandwidthRef { none, read, copy };  // which probe figure a memory-bound case is held to

struct Work {
  double flops = 0;                      // per iteration
  double bytes = 0;                      // per iteration (read + written)
  Precision peak = Precision::f32;       // which compute peak the flops are held to
  BandwidthRef bw = BandwidthRef::none;  // report GB/s and % of it when set
};

// Counters from our own wall clock (threads make CPU time meaningless).
inline void counters_set(benchmark::State& state, double seconds, const Work& w, const MachineLimits& lim) {
  const double iters = static_cast<double>(state.iterations());
  if (seconds <= 0 || iters <= 0) return;
  if (w.flops > 0) {
    const double gflops = w.flops * iters / seconds * 1e-9;
    const double peak = w.peak == Precision::bf16 ? lim.bf16_gflops : lim.f32_gflops;
    state.counters["GFLOP/s"] = gflops;
    if (peak > 0) state.counters["%peak"] = 100.0 * gflops / peak;
  }
  if (w.bw != BandwidthRef::none && w.bytes > 0) {
    const double gbs = w.bytes * iters / seconds * 1e-9;
    const double ref = w.bw == BandwidthRef::read ? lim.read_gbs : lim.copy_gbs;
    state.counters["GB/s"] = gbs;
    if (ref > 0) state.counters["%bw"] = 100.0 * gbs / ref;
  }
}

// Times `run` in the benchmark loop and sets the counters.
inline void loop_time(benchmark::State& state, const std::function<void()>& run, const Work& w,
                      const MachineLimits& lim) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) run();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  counters_set(state, s, w, lim);
}

// Google Benchmark calls a benchmark function several times (growing iteration counts). The
// expensive setup (allocation, weight packing) is kept here between calls of the same case, and
// dropped before the next case is prepared so only one case's buffers live at a time.
struct PreparedSlot {
  std::string key;
  std::shared_ptr<void> state;
};
inline PreparedSlot& prepared_slot() {
  static PreparedSlot slot;
  return slot;
}
// init(T&) fills a default-constructed T in place (so pointers into it stay valid).
template <typename T, typename Init>
T& prepared_get(const std::string& key, Init init) {
  PreparedSlot& slot = prepared_slot();
  if (slot.key != key || !slot.state) {
    slot.state.reset();  // free the previous case first
    slot.key.clear();
    auto fresh = std::make_shared<T>();
    init(*fresh);
    slot.state = fresh;
    slot.key = key;
  }
  return *static_cast<T*>(slot.state.get());
}

// ---- GEMM cases ------------------------------------------------------------------------------
// C[M, N] = A[M, K] · B[N, K]^T, B in PyTorch's linear-weight layout ([out, in]).

struct GemmShape {
  const char* name = "";
  int64_t m = 0, n = 0, k = 0;
  bool memory_bound = false;  // report GB/s against the read bandwidth
};

inline const std::vector<GemmShape>& gemm_shapes() {
  static const std::vector<GemmShape> shapes = {
      {"llm_prefill", 512, 4096, 4096, false},  // 512 prompt tokens through a 4096x4096 linear
      {"llm_decode", 1, 4096, 4096, true},      // one token: a matrix-vector product, memory-bound
      {"unet_conv", 4096, 320, 2880, false},    // 3x3 conv as GEMM: 64x64 pixels, 320 -> 320 ch, K=320*9
      {"attn_qk", 4096, 4096, 40, false},       // scores Q·K^T: 4096 tokens, head dim 40
  };
  return shapes;
}

inline std::string gemm_shape_label(const GemmShape& s) {
  return std::string(s.name) + "_" + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}

// The f32 inputs every implementation starts from (values in [-1, 1), fixed seed).
struct GemmInput {
  GemmShape shape;
  std::vector<float> a;  // [M, K]
  std::vector<float> b;  // [N, K]
};

inline void values_fill(std::vector<float>& v, uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = static_cast<float>(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

inline GemmInput gemm_input_make(const GemmShape& s) {
  GemmInput in{s, std::vector<float>(s.m * s.k), std::vector<float>(s.n * s.k)};
  values_fill(in.a, 1);
  values_fill(in.b, 2);
  return in;
}

// What an implementation hands back: the call to time (no allocation inside) and where C lands.
struct GemmPrepared {
  std::function<void()> run;
  std::function<const float*()> c;  // valid after run(); row-major [M, N]
  std::shared_ptr<void> keep;       // anything run() needs alive
};

struct GemmImpl {
  std::string name;                                      // "onednn_f32_packed"
  Precision precision;                                   // input precision (C is always f32)
  std::function<void(int threads)> threads_set;          // the library's own thread setting
  std::function<GemmPrepared(const GemmInput&)> prepare; // pack / convert outside the timed loop
};

// Checks 32 entries of C against a double-precision dot product: a wrong layout or a transposed
// operand fails loudly instead of producing a fast wrong number. Bound: each product of inputs
// rounded to bf16 is off by at most ~2^-8 relatively (2^-22 for f32 with accumulation order), so
// |err| <= tol * sum_k |a||b| with tol = 2^-7 (bf16) or K * 2^-22 (f32), both generous.
inline std::string gemm_result_check(const GemmInput& in, Precision p, const float* c) {
  const GemmShape& s = in.shape;
  const double tol = p == Precision::bf16 ? 1.0 / 128 : std::max(1e-6, s.k * 2.4e-7);
  for (int t = 0; t < 32; ++t) {
    const int64_t i = (t * 7919) % s.m, j = (t * 104729 + t * t) % s.n;
    double dot = 0, mag = 0;
    for (int64_t k = 0; k < s.k; ++k) {
      const double v = double(in.a[i * s.k + k]) * in.b[j * s.k + k];
      dot += v;
      mag += std::fabs(v);
    }
    const double got = c[i * s.n + j];
    if (!(std::fabs(got - dot) <= tol * mag + 1e-6)) {
      char msg[200];
      std::snprintf(msg, sizeof msg, "wrong result: C[%lld, %lld] = %g, expected %g", static_cast<long long>(i),
                    static_cast<long long>(j), got, dot);
      return msg;
    }
  }
  return {};
}

// Registers impl x shape x threads as "<impl>/<shape>/threads:<t>".
inline void gemm_benchmarks_register(const std::vector<GemmImpl>& impls, const std::vector<int>& threads) {
  for (const GemmImpl& impl : impls) {
    for (const GemmShape& shape : gemm_shapes()) {
      for (int t : threads) {
        const std::string name = impl.name + "/" + gemm_shape_label(shape) + "/threads:" + std::to_string(t);
        benchmark::RegisterBenchmark(name.c_str(), [impl, shape, t, name](benchmark::State& state) {
          aigc::thread_count_set(t);
          if (impl.threads_set) impl.threads_set(t);
          struct Case {
            GemmInput in;
            GemmPrepared prep;
            std::string error;
          };
          Case& c = prepared_get<Case>(name, [&](Case& fresh) {
            fresh.in = gemm_input_make(shape);
            fresh.prep = impl.prepare(fresh.in);
            fresh.prep.run();  // warm-up: JIT, page faults
            fresh.error = gemm_result_check(fresh.in, impl.precision, fresh.prep.c());
          });
          if (!c.error.empty()) {
            state.SkipWithError(c.error.c_str());
            return;
          }
          const double in_bytes = impl.precision == Precision::bf16 ? 2 : 4;
          Work w;
          w.flops = 2.0 * shape.m * shape.n * shape.k;
          w.bytes = (shape.m * shape.k + shape.n * shape.k) * in_bytes + shape.m * shape.n * 4.0;
          w.peak = impl.precision;
          w.bw = shape.memory_bound ? BandwidthRef::read : BandwidthRef::none;
          loop_time(state, c.prep.run, w, machine_probe(t));
        })->UseRealTime()->Unit(benchmark::kMillisecond);
      }
    }
  }
}

}  // namespace aigc::bench
