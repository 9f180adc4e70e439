// The image models' hot ops at Stable Diffusion 1.5 sizes (512x512: 64x64 latents, UNet batch 2
// for classifier-free guidance; VAE decoder up to 128 ch x 512x512): PackedConv2d (f32 / bf16,
// NCHW / channels-last), attention (f32 kernel / bf16 path), group_norm, silu, add.
//
//   build/bench_image_ops                            # Google Benchmark, every case
//   build/bench_image_ops --benchmark_filter=conv    # a subset
//   build/bench_image_ops --table [--rounds=3] [--only=vae] [--threads=1] [--cpu_time]   # A/B table
//
// The machine this was written on is shared, so absolute figures drift; --table runs the variants
// of each case interleaved, round after round, keeps each variant's best time and prints ratios
// between variants measured side by side, plus each as % of a bf16 GEMM (oneDNN matmul,
// 2048x2048x2048) timed in the same rounds.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/conv2d_packed.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/ops.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace aigc::bench {
namespace {

using ops::Precision;

Tensor random_tensor(std::span<const int64_t> shape, uint32_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(DType::F32, shape);
  uint32_t s = seed * 2654435761u + 12345u;
  float* p = t.ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = scale * (static_cast<float>(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
  return t;
}

// One timed call with everything it needs kept alive.
struct Prepared {
  std::function<void()> run;
  std::shared_ptr<void> keep;
};

struct Variant {
  std::string name;
  std::function<Prepared()> prepare;
};

struct Case {
  std::string group;  // "conv", "attn", "norm"
  std::string name;
  double flops;       // per call (0: memory-bound)
  double bytes;       // per call, read + written (for the memory-bound ops)
  std::vector<Variant> variants;
};

// ---- conv --------------------------------------------------------------------------------------

struct ConvShape { const char* name; int64_t n, c, h, o, k; int stride; };

Variant conv_variant(const ConvShape& s, const std::string& vname, Precision prec, bool channels_last, bool unpacked) {
  return {vname, [=] {
    struct B { Tensor x_store, y_store, x, y, w, b; ops::PackedConv2d conv; };
    auto b = std::make_shared<B>();
    const int pad = s.k / 2;
    const int64_t ho = (s.h + 2 * pad - s.k) / s.stride + 1;
    b->w = random_tensor(std::vector<int64_t>{s.o, s.c, s.k, s.k}, 1, 0.05f);
    b->b = random_tensor(std::vector<int64_t>{s.o}, 2);
    if (channels_last) {
      b->x_store = random_tensor(std::vector<int64_t>{s.n, s.h, s.h, s.c}, 3);
      b->y_store = Tensor::empty(DType::F32, {s.n, ho, ho, s.o});
      b->x = b->x_store.permute({0, 3, 1, 2});
      b->y = b->y_store.permute({0, 3, 1, 2});
    } else {
      b->x = random_tensor(std::vector<int64_t>{s.n, s.c, s.h, s.h}, 3);
      b->y = Tensor::empty(DType::F32, {s.n, s.o, ho, ho});
    }
    Prepared p;
    if (unpacked) {
      p.run = [b, s, pad] { ops::conv2d(b->x, b->w, &b->b, b->y, s.stride, pad); };
    } else {
      b->conv = ops::PackedConv2d(b->w, &b->b, s.stride, pad, prec);
      p.run = [b] { b->conv.run(b->x, b->y); };
    }
    p.keep = b;
    return p;
  }};
}

std::vector<Case> conv_cases() {
  const ConvShape shapes[] = {
      {"unet_320x64x64_k3", 2, 320, 64, 320, 3, 1},   {"unet_320x64x64_k1", 2, 320, 64, 320, 1, 1},
      {"unet_320x64x64_k3s2", 2, 320, 64, 320, 3, 2}, {"unet_640x32x32_k3", 2, 640, 32, 640, 3, 1},
      {"unet_1280x16x16_k3", 2, 1280, 16, 1280, 3, 1}, {"unet_1280x8x8_k3", 2, 1280, 8, 1280, 3, 1},
      {"unet_4x64x64_conv_in", 2, 4, 64, 320, 3, 1},  {"vae_512x64x64_k3", 1, 512, 64, 512, 3, 1},
      {"vae_512x128x128_k3", 1, 512, 128, 512, 3, 1}, {"vae_256x256x256_k3", 1, 256, 256, 256, 3, 1},
      {"vae_128x512x512_k3", 1, 128, 512, 128, 3, 1}, {"vae_128x512x512_conv_out", 1, 128, 512, 3, 3, 1},
  };
  std::vector<Case> cases;
  for (const ConvShape& s : shapes) {
    const int64_t ho = (s.h + 2 * (s.k / 2) - s.k) / s.stride + 1;
    Case c{"conv", s.name, 2.0 * s.n * s.o * ho * ho * s.c * s.k * s.k, 0, {}};
    c.variants.push_back(conv_variant(s, "ops_conv2d_f32", Precision::F32, false, true));
    c.variants.push_back(conv_variant(s, "packed_f32", Precision::F32, false, false));
    c.variants.push_back(conv_variant(s, "packed_bf16", Precision::BF16, false, false));
    c.variants.push_back(conv_variant(s, "packed_bf16_cl", Precision::BF16, true, false));
    cases.push_back(std::move(c));
  }
  return cases;
}

// ---- attention ---------------------------------------------------------------------------------

struct AttnShape { const char* name; int64_t b, h, tq, tk, d; };

std::vector<Case> attn_cases() {
  const AttnShape shapes[] = {
      {"unet_self_4096x40_bh16", 2, 8, 4096, 4096, 40},
      {"unet_self_1024x80_bh16", 2, 8, 1024, 1024, 80},
      {"unet_cross_4096x77x40_bh16", 2, 8, 4096, 77, 40},
      {"vae_mid_4096x512", 1, 1, 4096, 4096, 512},
  };
  std::vector<Case> cases;
  for (const AttnShape& s : shapes) {
    Case c{"attn", s.name, 4.0 * s.b * s.h * s.tq * s.tk * s.d, 0, {}};
    for (Precision prec : {Precision::F32, Precision::BF16}) {
      c.variants.push_back({std::string(prec == Precision::F32 ? "f32" : "bf16"), [s, prec] {
        struct B { Tensor q, k, v, o; };
        auto b = std::make_shared<B>();
        // [B, T, H, D] storage seen as [B, H, T, D], as the UNet's projections produce them
        b->q = random_tensor(std::vector<int64_t>{s.b, s.tq, s.h, s.d}, 4).permute({0, 2, 1, 3});
        b->k = random_tensor(std::vector<int64_t>{s.b, s.tk, s.h, s.d}, 5).permute({0, 2, 1, 3});
        b->v = random_tensor(std::vector<int64_t>{s.b, s.tk, s.h, s.d}, 6).permute({0, 2, 1, 3});
        b->o = Tensor::empty(DType::F32, {s.b, s.h, s.tq, s.d});
        ops::AttentionParams ap;
        ap.precision = prec;
        Prepared p;
        p.run = [b, ap] { ops::attention(b->q, b->k, b->v, b->o, ap); };
        p.keep = b;
        return p;
      }});
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// ---- group_norm, silu, add ---------------------------------------------------------------------

std::vector<Case> norm_cases() {
  struct S { const char* name; int64_t n, c, h; };
  const S shapes[] = {{"unet_2x320x64x64", 2, 320, 64}, {"vae_1x128x512x512", 1, 128, 512}};
  std::vector<Case> cases;
  for (const S& s : shapes) {
    const std::vector<int64_t> shape{s.n, s.c, s.h, s.h};
    const double elems = static_cast<double>(s.n * s.c * s.h * s.h);
    auto make = [shape](int which, bool cl) {
      return [shape, which, cl] {
        struct B { Tensor x, y, z, g, bt; };
        auto b = std::make_shared<B>();
        b->x = random_tensor(shape, 7);
        b->z = random_tensor(shape, 8);
        b->y = Tensor::empty(DType::F32, shape);
        if (cl) {  // channels-last views of NHWC buffers (values do not matter here)
          const std::vector<int64_t> nhwc{shape[0], shape[2], shape[3], shape[1]};
          b->x = random_tensor(nhwc, 7).permute({0, 3, 1, 2});
          b->z = random_tensor(nhwc, 8).permute({0, 3, 1, 2});
          b->y = Tensor::empty(DType::F32, nhwc).permute({0, 3, 1, 2});
        }
        b->g = random_tensor(std::vector<int64_t>{shape[1]}, 9);
        b->bt = random_tensor(std::vector<int64_t>{shape[1]}, 10);
        Prepared p;
        if (which == 0) p.run = [b] { ops::group_norm(b->x, b->g, b->bt, 32, 1e-6f, b->y); };
        if (which == 1) p.run = [b] { ops::silu(b->x, b->y); };
        if (which == 2) p.run = [b] { ops::add(b->x, b->z, b->y); };
        p.keep = b;
        return p;
      };
    };
    cases.push_back({"norm", std::string("group_norm_") + s.name, 0, elems * 4 * 3,
                     {{"nchw", make(0, false)}, {"channels_last", make(0, true)}}});
    cases.push_back({"norm", std::string("silu_") + s.name, 0, elems * 4 * 2,
                     {{"nchw", make(1, false)}, {"channels_last", make(1, true)}}});
    cases.push_back({"norm", std::string("add_") + s.name, 0, elems * 4 * 3,
                     {{"nchw", make(2, false)}, {"channels_last", make(2, true)}}});
  }
  return cases;
}

// The bf16 GEMM the figures are held to: oneDNN matmul, 2048^3, weights as stored (row-major).
Prepared gemm_ref_prepare() {
  struct B { std::vector<uint16_t> a, w; std::vector<float> c; };
  auto b = std::make_shared<B>();
  const int64_t n = 2048;
  b->a.assign(n * n, bf16_from_f32(0.5f));
  b->w.assign(n * n, bf16_from_f32(0.25f));
  b->c.assign(n * n, 0.0f);
  Prepared p;
  p.run = [b, n] {
    onednn::matmul({b->a.data(), onednn::Type::BF16, 1, n, n, 0, n, 1},
                   {b->w.data(), onednn::Type::BF16, 1, n, n, 0, n, 1}, nullptr, b->c.data(), 0, n);
  };
  p.keep = b;
  return p;
}
constexpr double kGemmRefFlops = 2.0 * 2048 * 2048 * 2048;

// --cpu_time: process CPU seconds instead of wall seconds. On a machine shared with other work,
// time spent descheduled inflates wall time but not CPU time; with --threads=1 CPU time is the
// cleaner figure (with more threads it also counts OpenMP's spin-waiting).
bool g_cpu_time = false;

double clock_seconds() {
  if (!g_cpu_time) return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double seconds_best(const std::function<void()>& run, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = clock_seconds();
    run();
    best = std::min(best, clock_seconds() - t0);
  }
  return best;
}

// --table: variants interleaved per round; best time each; ratios to the first variant.
int table_run(int rounds, const std::string& only) {
  std::vector<Case> cases = conv_cases();
  for (auto& c : attn_cases()) cases.push_back(std::move(c));
  for (auto& c : norm_cases()) cases.push_back(std::move(c));
  Prepared gemm = gemm_ref_prepare();
  gemm.run();
  fmt::print("threads {}; {} time; %gemm: of a oneDNN bf16 matmul 2048^3 timed in the same rounds\n", thread_count(),
             g_cpu_time ? "process CPU" : "wall");
  fmt::print("{:<28} {:<16} {:>10} {:>9} {:>7} {:>8}\n", "case", "variant", "ms", "GFLOP/s", "%gemm", "x first");
  for (const Case& c : cases) {
    if (!only.empty() && c.name.find(only) == std::string::npos && c.group != only) continue;
    std::vector<Prepared> ps;
    for (const Variant& v : c.variants) {
      ps.push_back(v.prepare());
      ps.back().run();  // warm-up: primitives, scratch
    }
    std::vector<double> best(ps.size(), 1e30);
    double gemm_best = 1e30;
    for (int r = 0; r < rounds; ++r) {
      gemm_best = std::min(gemm_best, seconds_best(gemm.run, 1));
      for (size_t i = 0; i < ps.size(); ++i) best[i] = std::min(best[i], seconds_best(ps[i].run, 1));
    }
    const double gemm_gflops = kGemmRefFlops / gemm_best / 1e9;
    for (size_t i = 0; i < ps.size(); ++i) {
      const double gf = c.flops / best[i] / 1e9;
      if (c.flops > 0)
        fmt::print("{:<28} {:<16} {:>10.2f} {:>9.0f} {:>6.0f}% {:>7.2f}x\n", c.name, c.variants[i].name, best[i] * 1e3,
                   gf, 100.0 * gf / gemm_gflops, best[0] / best[i]);
      else
        fmt::print("{:<28} {:<16} {:>10.2f} {:>7.1f} GB/s\n", c.name, c.variants[i].name, best[i] * 1e3,
                   c.bytes / best[i] / 1e9);
    }
    fmt::print("{:<28} {:<16} {:>10.2f} {:>9.0f}\n", "", "(gemm ref)", gemm_best * 1e3, gemm_gflops);
    std::fflush(stdout);
  }
  return 0;
}

void benchmarks_register() {
  std::vector<Case> cases = conv_cases();
  for (auto& c : attn_cases()) cases.push_back(std::move(c));
  for (auto& c : norm_cases()) cases.push_back(std::move(c));
  for (const Case& c : cases)
    for (const Variant& v : c.variants) {
      const double flops = c.flops, bytes = c.bytes;
      benchmark::RegisterBenchmark((c.group + "/" + c.name + "/" + v.name).c_str(),
                                   [v, flops, bytes](benchmark::State& state) {
                                     Prepared p = v.prepare();
                                     p.run();
                                     for (auto _ : state) p.run();
                                     if (flops > 0)
                                       state.counters["GFLOP/s"] = benchmark::Counter(
                                           flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
                                     if (bytes > 0)
                                       state.counters["GB/s"] = benchmark::Counter(
                                           bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
                                   })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.2);
    }
}

}  // namespace
}  // namespace aigc::bench

int main(int argc, char** argv) {
  using namespace aigc::bench;
  int rounds = 3;
  std::string only;
  bool table = false;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--table") table = true;
    else if (a == "--cpu_time") g_cpu_time = true;
    else if (a.rfind("--rounds=", 0) == 0) rounds = std::max(1, std::atoi(a.c_str() + 9));
    else if (a.rfind("--only=", 0) == 0) only = a.substr(7);
    else if (a.rfind("--threads=", 0) == 0) aigc::thread_count_set(std::atoi(a.c_str() + 10));
    else rest.push_back(argv[i]);
  }
  if (table) return table_run(rounds, only);
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmarks_register();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
