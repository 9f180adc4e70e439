#include "core/cpu_features.h"

#include <cpuid.h>

namespace aigc {

static bool cpu_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

bool cpu_has_avx2() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  return v;
}

bool cpu_has_avx512() {
  static const bool v = cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return v;
}

bool cpu_has_avx512_vnni() {
  static const bool v = cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
  return v;
}

bool cpu_has_avx512_bf16() {
  // avx512bf16 is CPUID leaf 7 subleaf 1, EAX bit 5
  static const bool v = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return cpu_has_avx512() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
  }();
  return v;
}

}  // namespace aigc
