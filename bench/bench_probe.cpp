// Prints the machine and its measured limits for 1 thread and for all physical cores.
//   build/bench_probe                 # human-readable
//   build/bench_probe --markdown      # a markdown table (bench/run_all.sh uses this)
//   build/bench_probe --threads=1,2,4
//   build/bench_probe --variants      # also every read variant's GB/s
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include "core/thread_pool.h"
#include "machine_probe.h"

int main(int argc, char** argv) {
  using namespace aigc::bench;
  bool markdown = false, variants = false;
  std::set<int> threads;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--markdown") == 0) {
      markdown = true;
    } else if (std::strcmp(argv[i], "--variants") == 0) {
      variants = true;
    } else if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      for (const char* p = argv[i] + 10; *p;) {
        char* end = nullptr;
        const long v = std::strtol(p, &end, 10);
        if (end == p) break;
        if (v > 0) threads.insert(static_cast<int>(v));
        p = *end == ',' ? end + 1 : end;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--markdown] [--variants] [--threads=1,2,...]\n", argv[0]);
      return 2;
    }
  }
  if (threads.empty()) threads = {1, aigc::physical_core_count()};

  const MachineInfo& info = machine_info();
  if (!markdown) {
    machine_info_print(info);
    for (int t : threads) {
      const MachineLimits& l = machine_probe(t);
      machine_limits_print(l);
      if (variants)
        for (const auto& [name, gbs] : l.read_variants) std::printf("  read %-20s %.1f GB/s\n", name.c_str(), gbs);
    }
    return 0;
  }
  std::printf("Machine: %s; %d physical cores (%d logical); L2 %zu KiB x %d; L3 %zu MiB x %d; %s\n\n",
              info.cpu_model.c_str(), info.physical_cores, info.logical_cpus, info.l2_bytes >> 10,
              info.l2_instances, info.l3_bytes >> 20, info.l3_instances, info.features.c_str());
  std::printf("| threads | read GB/s | copy GB/s | triad GB/s | f32 FMA GFLOP/s | bf16 GFLOP/s |\n");
  std::printf("|--:|--:|--:|--:|--:|--:|\n");
  for (int t : threads) {
    const MachineLimits& l = machine_probe(t);
    std::printf("| %d | %.1f | %.1f | %.1f | %.1f (%s) | %s |\n", t, l.read_gbs, l.copy_gbs, l.triad_gbs,
                l.f32_gflops, l.f32_isa.c_str(),
                l.bf16_gflops > 0 ? std::to_string(static_cast<int>(l.bf16_gflops + 0.5)).c_str() : "n/a");
  }
  return 0;
}
