// Baseline (x86-64 / any CPU) build of the f32 row kernels, and the run-time choice among builds.
#include "backend/cpu/kernels_f32_impl.h"
#include "core/cpu_features.h"

namespace aigc::ops {

KernelsF32 kernels_f32_generic() { return kernels_f32_make("generic"); }


const KernelsF32& kernels_f32() {
  static const KernelsF32 k = cpu_has_avx512() ? kernels_f32_avx512()
                              : cpu_has_avx2() ? kernels_f32_avx2()
                                               : kernels_f32_generic();
  return k;
}

}  // namespace aigc::ops
