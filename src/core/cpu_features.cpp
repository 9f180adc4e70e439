#include "core/cpu_features.h"

#include <cpuid.h>

#include <cstdlib>

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

int cpu_amd_family() {
  static const int v = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "Auth" "enti" "cAMD"
    if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned base = (a >> 8) & 0xf, ext = (a >> 20) & 0xff;
    return static_cast<int>(base == 0xf ? base + ext : base);
  }();
  return v;
}

namespace {
// `name` set to 0 or 1 in the environment, else `otherwise`.
bool env_flag(const char* name, bool otherwise) {
  if (const char* e = std::getenv(name); e && (e[0] == '0' || e[0] == '1') && e[1] == '\0') return e[0] == '1';
  return otherwise;
}
}  // namespace

bool cpu_decode_prefetch_l2() {
  static const bool v = env_flag("AIGC_PREFETCH_L2", cpu_amd_family() != 0x1a);
  return v;
}

bool cpu_decode_prefetch_l1() {
  static const bool v = env_flag("AIGC_PREFETCH_L1", cpu_amd_family() != 0x19);
  return v;
}

bool cpu_kquant_prefetch_l2() {
  static const bool v = env_flag("AIGC_PREFETCH_L2", true);
  return v;
}

bool cpu_kquant_prefetch_l1() {
  static const bool v = env_flag("AIGC_PREFETCH_L1", cpu_amd_family() != 0x19 && cpu_amd_family() != 0x1a);
  return v;
}

bool cpu_gemv_prefetch_l2() {
  static const bool v = env_flag("AIGC_PREFETCH_L2", cpu_amd_family() != 0x1a && cpu_amd_family() != 0x19);
  return v;
}

}  // namespace aigc
