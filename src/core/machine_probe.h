// Machine limits: what this CPU can do at best, measured, so that every benchmark can report its
// result as a fraction of the limit (GFLOP/s / peak FMA, GB/s / memory bandwidth).
//
//   const MachineInfo& info = machine_info();           // CPU model, cores, caches, features
//   const MachineLimits& lim = machine_probe(2);        // measured once per thread count, cached
//   double gbs = machine_bandwidth_probe(1).read_gbs;   // bandwidth only (~1 s), for `aigc bench`
//   state.counters["%peak"] = 100 * gflops / lim.f32_gflops;
//
// Bandwidth: streams over a 1 GiB buffer (>> any L3), best of several passes, in STREAM's byte
// convention (bytes the program reads + writes; write-allocate traffic is not counted).
// Read bandwidth is measured the way a decode (GEMV) kernel reads its weights: every thread reads
// its own contiguous half (third, ...) of the buffer as one sequential stream of 512-bit loads into
// 2, 4 or 8 independent accumulators (and 256-bit loads); passes (each a 32 MiB slice of the
// buffer, the slices in turn, so each is cold) of the variants alternate, each variant's best pass counts (about 1 s in all: many short
// passes find the quiet moments of a shared machine, as a kernel's best call does), and the
// fastest variant is read_gbs (the bound for weight-streaming kernels), read_method names it.
// On CPUs without AVX-512: one AVX2 stream (8 accumulators). The buffer comes from buffer_alloc,
// as the weights do (--no-mmap): 2 MiB aligned, transparent huge pages asked for before first
// touch (with 4 KiB pages, TLB misses cost up to ~40% of the stream in a virtual machine).
// Other programs reading memory at the same time lower every figure: measure on a quiet machine.
// Peak compute: independent FMA chains held in registers (no memory traffic), on the widest
// instruction set the CPU has (AVX-512 / AVX2), chosen at run time. Flops count a multiply and an
// add as 2, as oneDNN and PyTorch count a GEMM's 2*M*N*K; for VDPBF16PS (bf16 pairs into f32)
// each instruction is 32 products and 32 adds = 64 flops.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace aigc {

struct MachineInfo {
  std::string cpu_model;     // /proc/cpuinfo "model name"
  int logical_cpus = 0;
  int physical_cores = 0;
  size_t l1d_bytes = 0;      // one instance (as seen by cpu 0)
  size_t l2_bytes = 0;
  size_t l3_bytes = 0;
  int l2_instances = 0;      // how many such caches the machine has (0: unknown)
  int l3_instances = 0;
  std::string features;      // "avx2 fma avx512f avx512bf16 ..." (those the kernels care about)
};

struct MachineLimits {
  int threads = 0;
  double read_gbs = 0;       // memory read bandwidth (the best read variant, see above)
  std::string read_method;   // which variant gave it, e.g. "avx512 x4 prefetch"
  std::vector<std::pair<std::string, double>> read_variants;  // every variant tried: name, GB/s
  double copy_gbs = 0;       // a[i] = b[i]: bytes read + bytes written
  double triad_gbs = 0;      // a[i] = b[i] + s * c[i]: 3 streams
  double f32_gflops = 0;     // peak f32 FMA
  std::string f32_isa;       // "avx512", "avx2" or "generic"
  double bf16_gflops = 0;    // peak VDPBF16PS; 0 when the CPU lacks avx512_bf16
};

const MachineInfo& machine_info();

// Measures (first call for a thread count: about 2 s) or returns the cached limits.
// threads <= 0: one per physical core.
const MachineLimits& machine_probe(int threads);
// The bandwidth figures only (read, copy, triad; compute fields 0 unless machine_probe ran for this
// thread count): about 1 s on first call, cached per thread count. Throws aigc::Error when the
// 1 GiB buffer cannot be mapped.
const MachineLimits& machine_bandwidth_probe(int threads);

// One timed pass over [p, p + bytes) (aligned inward to 256 bytes), each of `threads` threads
// reading its contiguous part with the probe's streaming read (avx512 x4, else avx2 / generic):
// what memory gives at this moment for these bytes (no best-of: a VM's bandwidth can change
// within seconds). `aigc bench text` reads the model's weights this way before and after each
// generation run. 0 when the range is too small to time.
double memory_read_pass_gbs(const void* p, size_t bytes, int threads);

void machine_info_print(const MachineInfo& info, FILE* f = stdout);
void machine_limits_print(const MachineLimits& lim, FILE* f = stdout);

}  // namespace aigc
