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
// for other vendors.
int cpu_amd_family();
// Whether the AVX-512 quantised decode kernels prefetch the weights into L2 16 KiB ahead besides
// into L1 4 KiB ahead (the GEMV: cpu_gemv_prefetch_l2): yes, except on Zen 5 (AMD family 1Ah), where the
// L2 prefetch costs 5-10% (measurements: avx512/quant_dot_avx512.cpp). AIGC_PREFETCH_L2=0 or 1 in
// the environment overrides (tuning experiments).
bool cpu_decode_prefetch_l2();
// Whether they (and the GEMV) prefetch into L1 4 KiB ahead: yes, except on Zen 4 (AMD family 19h: its
// AVX-512 CPUs), where the L1 prefetch holds back the kernels that are faster than the memory (R16:
// from memory, one core, 66-83% of a read with it, 89-104% without). AIGC_PREFETCH_L1=0 or 1 in
// the environment overrides.
bool cpu_decode_prefetch_l1();
// The f16/bf16/f32 GEMV's L2 prefetch: as cpu_decode_prefetch_l2(), but not on Zen 4 either, where
// the GEMV (not bound by its instructions) streams best with no software prefetch at all (TinyLlama
// F16 tg, 1 thread: 10.5-11.1 t/s with it, 12.2-12.7 without). AIGC_PREFETCH_L2 overrides it too.
bool cpu_gemv_prefetch_l2();
// The AVX-512 K-quant kernels of the file layouts (Q4_K, Q5_K, Q6_K as the file has them: the
// kernels nearest to being bound by their instructions): prefetch into L2 16 KiB ahead (every CPU)
// and into L1 4 KiB ahead except on AMD (families 19h and 1Ah). On Zen 5 (bench_decode, 5632x2048
// from memory, 1 thread, alternated): Q4_K 88-90% of a read with the L1 prefetch alone, 95% with
// the L2 one alone; Q6_K 92-93% and 97-101%; 87% with both. The AIGC_PREFETCH_L1 / _L2 overrides
// apply here too.
bool cpu_kquant_prefetch_l2();
bool cpu_kquant_prefetch_l1();

}  // namespace aigc
