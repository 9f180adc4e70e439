// AVX-512 build of the f32 row kernels (this folder is compiled with the AVX-512 flags).
#include "backend/cpu/kernels_f32_impl.h"

namespace aigc::ops {
KernelsF32 kernels_f32_avx512() { return kernels_f32_make("avx512"); }
}  // namespace aigc::ops
