// Baseline (x86-64 / any CPU) build of the f32 row kernels, and the run-time choice among builds.
#include "backend/cpu/kernels_f32_impl.h"

namespace aigc::ops {

KernelsF32 kernels_f32_generic() { return kernels_f32_make("generic"); }

bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool cpu_has_avx512() {
  // the avx512/ files are compiled with F/BW/VL/DQ (+VNNI/BF16, which these float loops never emit)
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

const KernelsF32& kernels_f32() {
  static const KernelsF32 k = cpu_has_avx512() ? kernels_f32_avx512()
                              : cpu_has_avx2() ? kernels_f32_avx2()
                                               : kernels_f32_generic();
  return k;
}

}  // namespace aigc::ops
