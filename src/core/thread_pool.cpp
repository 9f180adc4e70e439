#include "core/thread_pool.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace aigc {

int physical_core_count() {
  // Count distinct (package, core) pairs; SMT siblings share one.
  std::set<std::pair<int, int>> cores;
  unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned cpu = 0; cpu < n; ++cpu) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream fc(base + "core_id"), fp(base + "physical_package_id");
    int core = -1, pkg = -1;
    if (!(fc >> core) || !(fp >> pkg)) return static_cast<int>(n);
    cores.insert({pkg, core});
  }
  return cores.empty() ? static_cast<int>(n) : static_cast<int>(cores.size());
}

static std::atomic<int> g_threads{0};

void thread_count_set(int n) {
  if (n <= 0) n = physical_core_count();
  g_threads = n;
  omp_set_num_threads(n);  // oneDNN (OpenMP runtime) follows this too
}

int thread_count() {
  int n = g_threads.load();
  if (n == 0) {
    thread_count_set(0);
    n = g_threads.load();
  }
  return n;
}

void thread_pool_run(FunctionRef<void(int, int)> fn) {
  const int nth = thread_count();
  if (nth == 1) {
    fn(0, 1);
    return;
  }
#pragma omp parallel num_threads(nth)
  fn(omp_get_thread_num(), omp_get_num_threads());
}

void parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t)> fn, int64_t min_per_thread) {
  if (n <= 0) return;
  const int nth = thread_count();
  if (nth == 1 || n < 2 * std::max<int64_t>(1, min_per_thread)) {
    fn(0, n);
    return;
  }
  thread_pool_run([&](int ith, int nt) {
    const int64_t chunk = (n + nt - 1) / nt;
    const int64_t b = ith * chunk, e = std::min(n, b + chunk);
    if (b < e) fn(b, e);
  });
}

}  // namespace aigc
