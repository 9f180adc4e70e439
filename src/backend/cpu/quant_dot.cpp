// Scalar reference dot kernels and the run-time choice of the SIMD kernel set (quant_dot.h).
#include "backend/cpu/quant_dot.h"

#include "core/cpu_features.h"

#include "core/half.h"

namespace aigc {

float vec_dot_q8_0_q8_0_ref(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK8_0;
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d) * static_cast<float>(sumi);
  }
  return sumf;
}

float vec_dot_q4_0_q8_0_ref(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK4_0;
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int32_t sumi = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int v0 = (x[ib].qs[j] & 0x0f) - 8;  // element j
      const int v1 = (x[ib].qs[j] >> 4) - 8;    // element j + 16
      sumi += v0 * y[ib].qs[j] + v1 * y[ib].qs[j + kQK4_0 / 2];
    }
    sumf += f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d) * static_cast<float>(sumi);
  }
  return sumf;
}

namespace {

const QuantKernels kQuantKernelsRef = {
    "ref",
    quantize_row_q8_0_ref,
    dequantize_row_q8_0_ref,
    dequantize_row_q4_0_ref,
    vec_dot_q8_0_q8_0_ref,
    vec_dot_q4_0_q8_0_ref,
};


}  // namespace

const QuantKernels* quant_kernels_find(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::Ref: return &kQuantKernelsRef;
    case QuantIsa::Avx2: return cpu_has_avx2() ? &quant_kernels_avx2() : nullptr;
    case QuantIsa::Avx512Vnni: return cpu_has_avx512_vnni() ? &quant_kernels_avx512vnni() : nullptr;
  }
  return nullptr;
}

const QuantKernels& quant_kernels() {
  static const QuantKernels* best = [] {
    for (QuantIsa isa : {QuantIsa::Avx512Vnni, QuantIsa::Avx2})
      if (const QuantKernels* k = quant_kernels_find(isa)) return k;
    return &kQuantKernelsRef;
  }();
  return *best;
}

}  // namespace aigc
