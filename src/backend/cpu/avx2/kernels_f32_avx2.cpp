// AVX2 + FMA build of the f32 row kernels (this folder is compiled with -mavx2 -mfma -mf16c).
#include "backend/cpu/kernels_f32_impl.h"

namespace aigc::ops {
KernelsF32 kernels_f32_avx2() { return kernels_f32_make("avx2"); }
}  // namespace aigc::ops
