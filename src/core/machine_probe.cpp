// Machine probe: memory bandwidth and peak FMA throughput, measured. This file is compiled without
// ISA flags; each SIMD loop carries its own target attribute and runs only when
// __builtin_cpu_supports says the CPU (and OS) has the instructions.
#include "core/machine_probe.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace aigc {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- machine description ---------------------------------------------------------------------

std::string file_read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

size_t cache_size_parse(const std::string& s) {  // "1024K", "32768K", "2M"
  if (s.empty()) return 0;
  size_t v = std::strtoull(s.c_str(), nullptr, 10);
  if (s.back() == 'K') v <<= 10;
  if (s.back() == 'M') v <<= 20;
  return v;
}

int cpu_list_count(const std::string& s) {  // "0-3,8-11" -> 8
  int n = 0;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part.empty()) continue;
    const size_t dash = part.find('-');
    if (dash == std::string::npos) {
      ++n;
    } else {
      n += std::atoi(part.c_str() + dash + 1) - std::atoi(part.c_str()) + 1;
    }
  }
  return n;
}

MachineInfo machine_info_read() {
  MachineInfo info;
  {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("model name", 0) == 0) {
        const size_t colon = line.find(':');
        if (colon != std::string::npos) info.cpu_model = line.substr(colon + 2);
        break;
      }
    }
  }
  info.logical_cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  info.physical_cores = physical_core_count();
  for (int idx = 0; idx < 8; ++idx) {
    const std::string base = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(idx) + "/";
    const std::string level = file_read_line(base + "level");
    if (level.empty()) break;
    const std::string type = file_read_line(base + "type");
    const size_t size = cache_size_parse(file_read_line(base + "size"));
    const int sharing = std::max(1, cpu_list_count(file_read_line(base + "shared_cpu_list")));
    const int instances = std::max(1, info.logical_cpus / sharing);
    if (level == "1" && type == "Data") info.l1d_bytes = size;
    if (level == "2") info.l2_bytes = size, info.l2_instances = instances;
    if (level == "3") info.l3_bytes = size, info.l3_instances = instances;
  }
  __builtin_cpu_init();
  struct Feature { const char* name; bool on; };
  const Feature features[] = {
      {"avx2", __builtin_cpu_supports("avx2") != 0},
      {"fma", __builtin_cpu_supports("fma") != 0},
      {"avx512f", __builtin_cpu_supports("avx512f") != 0},
      {"avx512bw", __builtin_cpu_supports("avx512bw") != 0},
      {"avx512vnni", __builtin_cpu_supports("avx512vnni") != 0},
      {"avx512bf16", __builtin_cpu_supports("avx512bf16") != 0},
  };
  for (const Feature& ft : features) {
    if (!ft.on) continue;
    if (!info.features.empty()) info.features += ' ';
    info.features += ft.name;
  }
  return info;
}


// ---- memory bandwidth ------------------------------------------------------------------------

constexpr size_t kStreamBytes = size_t{1} << 30;  // 1 GiB: far beyond any L3
constexpr size_t kBlock = 64;                      // floats per unrolled step (4 zmm, 8 ymm)
// Read passes: each reads the next of kReadSlices slices of the buffer (32 MiB, about one
// weight matrix; the 31 slices read in between, ~1 GiB, evict it from any cache), at least
// kReadPassesMin rounds of the variants, then more while under kReadSeconds, at most
// kReadPassesMax. Short passes find the quiet moments of a shared machine, as the best of a
// GEMV's calls does: on a busy 2-core VM 1 GiB passes read 15-50% below what an f16 GEMV streamed
// (34-35 GB/s, one thread), 256 MiB passes ~25% below.
constexpr int kReadSlices = 32, kReadPassesMin = 8, kReadPassesMax = 1000, kCopyPasses = 3;
constexpr double kReadSeconds = 1.0;

// Thread ith's part of n floats (n a multiple of kBlock), in whole blocks.
void part_range(size_t n, int ith, int nth, size_t& b, size_t& e) {
  const size_t blocks = n / kBlock;
  b = blocks * ith / nth * kBlock;
  e = blocks * (ith + 1) / nth * kBlock;
}

// (Not _mm512_reduce_add_ps: GCC 12 warns about its own header there.)
__attribute__((target("avx512f"))) float sum_avx512(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}

// A streaming kernel's read, as the decode (GEMV) kernels read their weights: one sequential
// stream per thread, 64-byte loads into A independent accumulators (A x 64 bytes a step), so
// neither the load ports nor a dependency chain limit it. Integer adds: 1-cycle latency.
// (Measured on a Zen 4 VM: several streams side by side, slices a power of two apart, or software
// prefetch all read 20-50% slower than this; the hardware prefetcher wants one sequential stream.)
template <int A>
__attribute__((target("avx512f"))) uint64_t read_stream_avx512(const float* p, size_t n) {
  const char* base = reinterpret_cast<const char*>(p);
  const size_t bytes = n * sizeof(float) / (64 * A) * (64 * A);
  __m512i acc[A];
  for (int a = 0; a < A; ++a) acc[a] = _mm512_setzero_si512();
  for (size_t off = 0; off < bytes; off += 64 * A) {
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a) acc[a] = _mm512_add_epi64(acc[a], _mm512_load_si512(base + off + 64 * a));
  }
  for (size_t off = bytes; off + 64 <= n * sizeof(float); off += 64)  // the tail
    acc[0] = _mm512_add_epi64(acc[0], _mm512_load_si512(base + off));
  __m512i t = acc[0];
  for (int a = 1; a < A; ++a) t = _mm512_add_epi64(t, acc[a]);
  alignas(64) uint64_t v[8];
  _mm512_store_si512(v, t);
  return v[0] ^ v[7];
}

// The same with 256-bit loads: on Zen 4 (512-bit loads split in two) these measured ~8% faster
// than the 512-bit ones, one thread, 16 MiB reads from memory (37 vs 34 GB/s).
template <int A>
__attribute__((target("avx2"))) uint64_t read_stream_avx2(const float* p, size_t n) {
  const char* base = reinterpret_cast<const char*>(p);
  const size_t bytes = n * sizeof(float) / (32 * A) * (32 * A);
  __m256i acc[A];
  for (int a = 0; a < A; ++a) acc[a] = _mm256_setzero_si256();
  for (size_t off = 0; off < bytes; off += 32 * A) {
#pragma GCC unroll 8
    for (int a = 0; a < A; ++a)
      acc[a] = _mm256_add_epi64(acc[a], _mm256_load_si256(reinterpret_cast<const __m256i*>(base + off + 32 * a)));
  }
  for (size_t off = bytes; off + 32 <= n * sizeof(float); off += 32)  // the tail
    acc[0] = _mm256_add_epi64(acc[0], _mm256_load_si256(reinterpret_cast<const __m256i*>(base + off)));
  for (int a = 1; a < A; ++a) acc[0] = _mm256_add_epi64(acc[0], acc[a]);
  alignas(32) uint64_t v[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), acc[0]);
  return v[0] ^ v[3];
}

__attribute__((target("avx2"))) float read_avx2(const float* p, size_t n) {
  __m256 s[8];
  for (auto& v : s) v = _mm256_setzero_ps();
  for (size_t i = 0; i < n; i += kBlock) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) s[j] = _mm256_add_ps(s[j], _mm256_load_ps(p + i + 8 * j));
  }
  for (int j = 1; j < 8; ++j) s[0] = _mm256_add_ps(s[0], s[j]);
  alignas(32) float t[8];
  _mm256_store_ps(t, s[0]);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

float read_generic(const float* p, size_t n) {
  // Integer sums vectorise without reassociation flags.
  const uint64_t* q = reinterpret_cast<const uint64_t*>(p);
  uint64_t s = 0;
  for (size_t i = 0; i < n / 2; ++i) s += q[i];
  return static_cast<float>(s & 1);
}

__attribute__((target("avx512f"))) void copy_avx512(const float* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i += 16) _mm512_store_ps(dst + i, _mm512_load_ps(src + i));
}
__attribute__((target("avx2"))) void copy_avx2(const float* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i += 8) _mm256_store_ps(dst + i, _mm256_load_ps(src + i));
}
void copy_generic(const float* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
}

__attribute__((target("avx512f"))) void triad_avx512(float* a, const float* b, const float* c, size_t n, float s) {
  const __m512 vs = _mm512_set1_ps(s);
  for (size_t i = 0; i < n; i += 16)
    _mm512_store_ps(a + i, _mm512_add_ps(_mm512_load_ps(b + i), _mm512_mul_ps(vs, _mm512_load_ps(c + i))));
}
__attribute__((target("avx2"))) void triad_avx2(float* a, const float* b, const float* c, size_t n, float s) {
  const __m256 vs = _mm256_set1_ps(s);
  for (size_t i = 0; i < n; i += 8)
    _mm256_store_ps(a + i, _mm256_add_ps(_mm256_load_ps(b + i), _mm256_mul_ps(vs, _mm256_load_ps(c + i))));
}
void triad_generic(float* a, const float* b, const float* c, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
}

// The buffer comes from buffer_alloc, as the weights do (--no-mmap): 2 MiB aligned and asked for
// transparent huge pages before first touch, so the probe sees the same TLB behaviour as decode.
float* stream_buffer_alloc(std::shared_ptr<void>& owner, size_t bytes) {
  try {
    owner = buffer_alloc(bytes);
  } catch (const Error&) {
    error_throw("cannot allocate the 1 GiB buffer for the bandwidth probe", "machine_probe", "free some memory");
  }
  return static_cast<float*>(owner.get());
}

// Best time of `passes` runs of body(ith, nth) on `threads` threads: the OpenMP team that
// thread_pool_run starts for the kernels (thread_pool.cpp), with an explicit thread count. A run's
// time is from the first thread's start to the last one's end, all started after a barrier, so
// the team's wake-up is not counted: on a machine with more runnable threads than cores, waking a
// sleeping worker took milliseconds and made every short pass look several times slower.
template <typename Body>
double parallel_best_seconds(int threads, int passes, Body body) {
  double best = 1e30;
  for (int pass = 0; pass < passes; ++pass) {
    Clock::time_point first_start = Clock::time_point::max(), last_end = Clock::time_point::min();
#pragma omp parallel num_threads(threads)
    {
#pragma omp barrier
      const auto t0 = Clock::now();
      body(omp_get_thread_num(), omp_get_num_threads());
      const auto t1 = Clock::now();
#pragma omp critical(aigc_machine_probe)
      {
        first_start = std::min(first_start, t0);
        last_end = std::max(last_end, t1);
      }
    }
    best = std::min(best, std::chrono::duration<double>(last_end - first_start).count());
  }
  return best;
}

volatile float g_sink;  // keeps results alive so no loop is optimised away

void bandwidth_measure(int threads, MachineLimits& lim) {
  std::shared_ptr<void> owner;
  float* p = stream_buffer_alloc(owner, kStreamBytes);
  const size_t n = kStreamBytes / sizeof(float);
  const size_t slice = n / kReadSlices;  // floats; a multiple of kBlock
  // First touch by the thread that will read each part of each slice (right NUMA node, pages
  // faulted in).
#pragma omp parallel num_threads(threads)
  for (int sl = 0; sl < kReadSlices; ++sl) {
    size_t b, e;
    part_range(slice, omp_get_thread_num(), omp_get_num_threads(), b, e);
    for (size_t i = sl * slice + b; i < sl * slice + e; ++i) p[i] = static_cast<float>(i & 1023) * 1e-3f;
  }
  const bool avx512 = cpu_has_avx512(), avx2 = cpu_has_avx2();

  // Read: a few variants of the streaming read, passes taken round-robin so that a burst of
  // traffic from other programs (a shared or virtual machine) hits every variant alike; each
  // variant's best pass is its figure, and the fastest variant is the machine's read bandwidth.
  struct ReadVariant { const char* name; uint64_t (*fn)(const float*, size_t); double t; };
  ReadVariant variants[] = {
      {"avx512 1 stream x4", read_stream_avx512<4>, 1e30},
      {"avx512 1 stream x8", read_stream_avx512<8>, 1e30},
      {"avx512 1 stream x2", read_stream_avx512<2>, 1e30},
      {"avx2 1 stream x8", read_stream_avx2<8>, 1e30},
  };
  double t_read = 1e30;
  if (avx512) {
    const auto t0 = Clock::now();
    int next_slice = 0;  // every read takes the next slice: none starts in cache
    for (int pass = 0; pass < kReadPassesMax && (pass < kReadPassesMin || seconds_since(t0) < kReadSeconds); ++pass) {
      for (ReadVariant& v : variants) {
        const float* ps = p + (next_slice++ % kReadSlices) * slice;
        const double t = parallel_best_seconds(threads, 1, [&](int ith, int nth) {
          size_t b, e;
          part_range(slice, ith, nth, b, e);
          const uint64_t s = v.fn(ps + b, e - b);
          if (s == 12345) g_sink = 1.0f;
        });
        v.t = std::min(v.t, t);
      }
    }
    for (const ReadVariant& v : variants) {
      lim.read_variants.emplace_back(v.name, slice * sizeof(float) / v.t * 1e-9);
      if (v.t < t_read) t_read = v.t, lim.read_method = v.name;
    }
  } else {
    for (int pass = 0; pass < 4 * kReadSlices; ++pass) {
      const float* ps = p + (pass % kReadSlices) * slice;
      t_read = std::min(t_read, parallel_best_seconds(threads, 1, [&](int ith, int nth) {
        size_t b, e;
        part_range(slice, ith, nth, b, e);
        const float s = avx2 ? read_avx2(ps + b, e - b) : read_generic(ps + b, e - b);
        if (s == 12345.0f) g_sink = s;
      }));
    }
    lim.read_method = avx2 ? "avx2" : "generic";
  }
  lim.read_gbs = slice * sizeof(float) / t_read * 1e-9;

  // Copy: first half -> second half; the same partition for source and destination.
  const size_t half = n / 2 / kBlock * kBlock;
  const double t_copy = parallel_best_seconds(threads, kCopyPasses, [&](int ith, int nth) {
    size_t b, e;
    part_range(half, ith, nth, b, e);
    if (avx512) copy_avx512(p + b, p + half + b, e - b);
    else if (avx2) copy_avx2(p + b, p + half + b, e - b);
    else copy_generic(p + b, p + half + b, e - b);
  });
  lim.copy_gbs = 2.0 * half * sizeof(float) / t_copy * 1e-9;

  // Triad on thirds: a = b + s * c.
  const size_t third = n / 3 / kBlock * kBlock;
  float *a = p, *bb = p + third, *c = p + 2 * third;
  const double t_triad = parallel_best_seconds(threads, kCopyPasses, [&](int ith, int nth) {
    size_t b, e;
    part_range(third, ith, nth, b, e);
    if (avx512) triad_avx512(a + b, bb + b, c + b, e - b, 0.5f);
    else if (avx2) triad_avx2(a + b, bb + b, c + b, e - b, 0.5f);
    else triad_generic(a + b, bb + b, c + b, e - b, 0.5f);
  });
  lim.triad_gbs = 3.0 * third * sizeof(float) / t_triad * 1e-9;
  g_sink = p[n - 1];
}

// ---- peak compute ----------------------------------------------------------------------------
// acc = acc * a + b on K independent register chains: K covers FMA latency x FMA ports on every
// current core (Intel: 4-5 cycles x 2 ports; Zen 4: 4 cycles x 2 256-bit halves). a < 1 keeps the
// values bounded and normal (no denormal slowdowns).

constexpr int kChains512 = 16, kChains256 = 12, kChainsBf16 = 24;

__attribute__((target("avx512f,fma"))) float fma_avx512(int64_t iters) {
  __m512 acc[kChains512];
  for (int j = 0; j < kChains512; ++j) acc[j] = _mm512_set1_ps(1.0f + j);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains512; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  for (int j = 1; j < kChains512; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  return sum_avx512(acc[0]);
}
constexpr double kFlopsPerIter512 = kChains512 * 16 * 2;

__attribute__((target("avx2,fma"))) float fma_avx2(int64_t iters) {
  __m256 acc[kChains256];
  for (int j = 0; j < kChains256; ++j) acc[j] = _mm256_set1_ps(1.0f + j);
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains256; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  for (int j = 1; j < kChains256; ++j) acc[0] = _mm256_add_ps(acc[0], acc[j]);
  alignas(32) float t[8];
  _mm256_store_ps(t, acc[0]);
  return t[0] + t[7];
}
constexpr double kFlopsPerIter256 = kChains256 * 8 * 2;

float fma_generic(int64_t iters) {
  float acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = 1.0f + j;
  for (int64_t it = 0; it < iters; ++it)
    for (int j = 0; j < 8; ++j) acc[j] = acc[j] * 0.999f + 0.001f;
  return acc[0] + acc[7];
}
constexpr double kFlopsPerIterGeneric = 8 * 2;

// One VDPBF16PS: 16 lanes x 2 bf16 pairs, each pair a multiply and an add: 64 flops.
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_avx512(int64_t iters) {
  __m512 acc[kChainsBf16];
  for (int j = 0; j < kChainsBf16; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.01f), _mm512_set1_ps(0.02f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.03f), _mm512_set1_ps(0.01f));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int j = 0; j < kChainsBf16; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  for (int j = 1; j < kChainsBf16; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  return sum_avx512(acc[0]);
}
constexpr double kFlopsPerIterBf16 = kChainsBf16 * 64;

// GFLOP/s of kernel(iters) run on every thread at once: calibrated to ~50 ms a pass, best of 5.
template <typename Kernel>
double peak_measure(int threads, double flops_per_iter, Kernel kernel) {
  int64_t iters = 1 << 16;
  for (;;) {  // calibrate on one thread: grow until a pass takes >= 20 ms
    const auto t0 = Clock::now();
    g_sink = kernel(iters);
    const double t = seconds_since(t0);
    if (t >= 0.02 || iters >= (int64_t{1} << 34)) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(iters * 0.05 / std::max(t, 1e-6)));
      break;
    }
    iters *= 4;
  }
  const double t = parallel_best_seconds(threads, 5, [&](int, int) {
    const float r = kernel(iters);
    if (r == 12345.0f) g_sink = r;
  });
  return flops_per_iter * static_cast<double>(iters) * threads / t * 1e-9;
}

void compute_measure(int threads, MachineLimits& lim) {
  lim.f32_isa = "generic";
  lim.f32_gflops = peak_measure(threads, kFlopsPerIterGeneric, fma_generic);
  // The widest unit is not always the fastest (Zen 4 splits 512-bit ops in two): take the best.
  if (cpu_has_avx2()) {
    const double g = peak_measure(threads, kFlopsPerIter256, fma_avx2);
    if (g > lim.f32_gflops) lim.f32_gflops = g, lim.f32_isa = "avx2";
  }
  if (cpu_has_avx512()) {
    const double g = peak_measure(threads, kFlopsPerIter512, fma_avx512);
    if (g > lim.f32_gflops) lim.f32_gflops = g, lim.f32_isa = "avx512";
  }
  if (cpu_has_avx512_bf16()) lim.bf16_gflops = peak_measure(threads, kFlopsPerIterBf16, dpbf16_avx512);
}

}  // namespace

const MachineInfo& machine_info() {
  static const MachineInfo info = machine_info_read();
  return info;
}

namespace {
std::mutex g_probe_mu;
std::map<int, MachineLimits> g_probe_full, g_probe_bandwidth;  // node-based: references stay valid
}  // namespace

const MachineLimits& machine_probe(int threads) {
  if (threads <= 0) threads = physical_core_count();
  std::lock_guard<std::mutex> lock(g_probe_mu);
  auto it = g_probe_full.find(threads);
  if (it != g_probe_full.end()) return it->second;
  MachineLimits lim;
  lim.threads = threads;
  bandwidth_measure(threads, lim);
  compute_measure(threads, lim);
  return g_probe_full.emplace(threads, lim).first->second;
}

double memory_read_pass_gbs(const void* p, size_t bytes, int threads) {
  if (threads <= 0) threads = physical_core_count();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), start = (a + 255) & ~uintptr_t{255};
  if (!p || bytes < start - a + 2 * kBlock * sizeof(float) * static_cast<size_t>(threads)) return 0.0;
  const size_t n = (bytes - (start - a)) / sizeof(float) / kBlock * kBlock;  // floats, whole blocks
  const float* f = reinterpret_cast<const float*>(start);
  const bool avx512 = cpu_has_avx512(), avx2 = cpu_has_avx2();
  const double t = parallel_best_seconds(threads, 1, [&](int ith, int nth) {
    size_t b, e;
    part_range(n, ith, nth, b, e);
    const double s = avx512 ? static_cast<double>(read_stream_avx512<4>(f + b, e - b))
                     : avx2 ? read_avx2(f + b, e - b)
                            : read_generic(f + b, e - b);
    if (s == 12345.0) g_sink = 1.0f;
  });
  return static_cast<double>(n * sizeof(float)) / t * 1e-9;
}

const MachineLimits& machine_bandwidth_probe(int threads) {
  if (threads <= 0) threads = physical_core_count();
  std::lock_guard<std::mutex> lock(g_probe_mu);
  if (auto it = g_probe_full.find(threads); it != g_probe_full.end()) return it->second;
  if (auto it = g_probe_bandwidth.find(threads); it != g_probe_bandwidth.end()) return it->second;
  MachineLimits lim;
  lim.threads = threads;
  bandwidth_measure(threads, lim);
  return g_probe_bandwidth.emplace(threads, lim).first->second;
}

void machine_info_print(const MachineInfo& info, FILE* f) {
  std::fprintf(f, "cpu: %s\n", info.cpu_model.c_str());
  std::fprintf(f, "cores: %d physical, %d logical\n", info.physical_cores, info.logical_cpus);
  std::fprintf(f, "caches: L1d %zu KiB, L2 %zu KiB x %d, L3 %zu MiB x %d\n", info.l1d_bytes >> 10,
               info.l2_bytes >> 10, info.l2_instances, info.l3_bytes >> 20, info.l3_instances);
  std::fprintf(f, "features: %s\n", info.features.c_str());
}

void machine_limits_print(const MachineLimits& lim, FILE* f) {
  std::fprintf(f, "threads %d: read %.1f GB/s (%s), copy %.1f GB/s, triad %.1f GB/s, f32 FMA %.1f GFLOP/s (%s)",
               lim.threads, lim.read_gbs, lim.read_method.c_str(), lim.copy_gbs, lim.triad_gbs, lim.f32_gflops, lim.f32_isa.c_str());
  if (lim.bf16_gflops > 0) std::fprintf(f, ", bf16 %.1f GFLOP/s", lim.bf16_gflops);
  std::fprintf(f, "\n");
}

}  // namespace aigc
