// What this CPU can run, decided once. The levels match how the kernel folders are compiled:
// src/backend/cpu/avx2/ with AVX2+FMA+F16C, src/backend/cpu/avx512/ with AVX-512 F/BW/VL/DQ
// (+VNNI, BF16 where a kernel uses them). Uses CPUID directly for F16C, which clang 14's
// __builtin_cpu_supports does not know.
#pragma once

namespace aigc {

bool cpu_has_avx2();         // AVX2 + FMA + F16C
bool cpu_has_avx512();       // cpu_has_avx2() + AVX-512 F, BW, VL, DQ
bool cpu_has_avx512_vnni();  // cpu_has_avx512() + VNNI
bool cpu_has_avx512_bf16();  // cpu_has_avx512() + BF16
// An AMD CPU's family (base + extended, as AMD documents it: 0x19 Zen 3 / Zen 4, 0x1a Zen 5), or 0
// for other vendors: kernels whose best prefetching differs between them ask.
int cpu_amd_family();

}  // namespace aigc
