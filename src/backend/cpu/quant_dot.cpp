// Scalar reference dot kernels and the run-time choice of the SIMD kernel set (quant_dot.h).
#include "backend/cpu/quant_dot.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"

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

uint32_t qh_u32(const uint8_t* qh) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 | static_cast<uint32_t>(qh[2]) << 16 |
         static_cast<uint32_t>(qh[3]) << 24;
}

// The 32 values of a Q4_1 / Q5_0 / Q5_1 block (without offset or min): nibble j / j+16 of qs,
// plus bit e of qh as bit 4 of element e when qh is given.
void legacy_values(const uint8_t* qs, const uint8_t* qh, int* q) {
  const uint32_t h = qh ? qh_u32(qh) : 0;
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0f) | static_cast<int>(((h >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((h >> (j + 16)) & 1) << 4);
  }
}

int32_t block_sum(const int8_t* qs) {
  int32_t s = 0;
  for (int j = 0; j < 32; ++j) s += qs[j];
  return s;
}

}  // namespace

float vec_dot_q4_1_q8_0_ref(int64_t n, const BlockQ4_1* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK4_1;
  float sumf = 0.0f;
  int q[32];
  for (int64_t ib = 0; ib < nb; ++ib) {
    legacy_values(x[ib].qs, nullptr, q);
    int32_t sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += q[j] * y[ib].qs[j];
    const float dy = f16_to_f32(y[ib].d);
    sumf += f16_to_f32(x[ib].d) * dy * static_cast<float>(sumi) +
            f16_to_f32(x[ib].m) * dy * static_cast<float>(block_sum(y[ib].qs));
  }
  return sumf;
}

float vec_dot_q5_0_q8_0_ref(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK5_0;
  float sumf = 0.0f;
  int q[32];
  for (int64_t ib = 0; ib < nb; ++ib) {
    legacy_values(x[ib].qs, x[ib].qh, q);
    int32_t sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += (q[j] - 16) * y[ib].qs[j];
    sumf += f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d) * static_cast<float>(sumi);
  }
  return sumf;
}

float vec_dot_q5_1_q8_0_ref(int64_t n, const BlockQ5_1* x, const BlockQ8_0* y) {
  const int64_t nb = n / kQK5_1;
  float sumf = 0.0f;
  int q[32];
  for (int64_t ib = 0; ib < nb; ++ib) {
    legacy_values(x[ib].qs, x[ib].qh, q);
    int32_t sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += q[j] * y[ib].qs[j];
    const float dy = f16_to_f32(y[ib].d);
    sumf += f16_to_f32(x[ib].d) * dy * static_cast<float>(sumi) +
            f16_to_f32(x[ib].m) * dy * static_cast<float>(block_sum(y[ib].qs));
  }
  return sumf;
}

namespace {

// Q4_K / Q5_K: the 256 values q (0..15 or 0..31) in element order.
void k45_values(const uint8_t* qs, const uint8_t* qh, int* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = (qs[32 * c + l] & 0x0f) | (qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0);
      q[64 * c + 32 + l] = (qs[32 * c + l] >> 4) | (qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0);
    }
}

float k45_dot(const uint16_t d16, uint16_t dmin16, const uint8_t* scales, const int* q, const BlockQ8_K& y) {
  int32_t sumi = 0, summ = 0;
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, mn;
    scale_min_k4_get(s, scales, &sc, &mn);
    int32_t isum = 0;
    for (int j = 32 * s; j < 32 * s + 32; ++j) isum += q[j] * y.qs[j];
    sumi += sc * isum;
    summ += mn * (y.bsums[2 * s] + y.bsums[2 * s + 1]);
  }
  return y.d * f16_to_f32(d16) * static_cast<float>(sumi) - y.d * f16_to_f32(dmin16) * static_cast<float>(summ);
}

}  // namespace

float vec_dot_q4_K_q8_K_ref(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  const int64_t nb = n / kQK_K;
  float sumf = 0.0f;
  int q[kQK_K];
  for (int64_t ib = 0; ib < nb; ++ib) {
    k45_values(x[ib].qs, nullptr, q);
    sumf += k45_dot(x[ib].d, x[ib].dmin, x[ib].scales, q, y[ib]);
  }
  return sumf;
}

float vec_dot_q5_K_q8_K_ref(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  const int64_t nb = n / kQK_K;
  float sumf = 0.0f;
  int q[kQK_K];
  for (int64_t ib = 0; ib < nb; ++ib) {
    k45_values(x[ib].qs, x[ib].qh, q);
    sumf += k45_dot(x[ib].d, x[ib].dmin, x[ib].scales, q, y[ib]);
  }
  return sumf;
}

float vec_dot_q6_K_q8_K_ref(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  const int64_t nb = n / kQK_K;
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < nb; ++ib) {
    int32_t sumi = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[ib].ql + 64 * h;
      const uint8_t* qh = x[ib].qh + 32 * h;
      int q[128];
      for (int l = 0; l < 32; ++l) {
        q[l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
        q[l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
        q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
        q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      }
      for (int g = 0; g < 8; ++g) {
        int32_t isum = 0;
        for (int j = 16 * g; j < 16 * g + 16; ++j) isum += (q[j] - 32) * y[ib].qs[128 * h + j];
        sumi += x[ib].scales[8 * h + g] * isum;
      }
    }
    sumf += y[ib].d * f16_to_f32(x[ib].d) * static_cast<float>(sumi);
  }
  return sumf;
}

DecodeRowLayout decode_row_layout(DType w, int64_t nb) {
  const bool r16 = r16_file_type(w).has_value();
  const DType base = r16_file_type(w).value_or(w);  // an R16 type's offset is its file type's
  AIGC_ASSERT(base == DType::Q4_0 || base == DType::Q8_0 || base == DType::Q4_1 || base == DType::Q5_0 ||
                  base == DType::Q5_1, "decode_row_prepare: {}", dtype_name(w));
  DecodeRowLayout l{};
  l.offset = base == DType::Q8_0 ? 128 : base == DType::Q5_0 ? 16 : base == DType::Q4_0 ? 8 : 1;
  l.r16 = r16;
  const int* order = w == DType::Q4_0 ? kDecodeOrderQ4_0 : r16 ? kDecodeOrderNatural : kDecodeOrderQ8_0;
  for (int p = 0; p < kDecodeGroup; ++p) l.position[order[p]] = p;
  // the kDecodeOrderQ8_0 kernels take half groups, a row's last one too
  l.ordered = order == kDecodeOrderQ8_0 ? nb / 8 * 8 : nb / kDecodeGroup * kDecodeGroup;
  return l;
}

void decode_row_prepare(DType w, const BlockQ8_0* xq, int64_t K, int8_t* qs, float* d, int32_t* bias) {
  const int64_t nb = K / kQK8_0, ng = nb / kDecodeGroup;
  const DecodeRowLayout l = decode_row_layout(w, nb);
  for (int64_t ib = 0; ib < nb; ++ib) {
    const int64_t g = ib / kDecodeGroup, j = ib % kDecodeGroup;
    const int64_t slot = ib < l.ordered ? g * kDecodeGroup + l.position[j] : ib;  // block ib's scale and bias
    d[slot] = f16_to_f32(xq[ib].d);
    bias[slot] = l.offset * block_sum(xq[ib].qs);
    int8_t* dst = qs + ib * kQK8_0;
    if (w == DType::Q4_0 && g < ng) {  // quad layout: [b0..b3 elements 0..15, b0..b3 elements 16..31]
      dst = qs + g * kDecodeGroup * kQK8_0 + (j / 4) * 128 + (j % 4) * 16;
      for (int e = 0; e < 16; ++e) dst[e] = xq[ib].qs[e], dst[64 + e] = xq[ib].qs[16 + e];
    } else if (l.r16) {  // [v][low nibbles, high nibbles][4 elements of each block], c blocks in the group
      int8_t* grp = qs + g * kDecodeGroup * kQK8_0;
      const int64_t c = std::min<int64_t>(kDecodeGroup, nb - g * kDecodeGroup);
      for (int v = 0; v < 4; ++v)
        for (int i = 0; i < 4; ++i) {
          grp[8 * c * v + 4 * j + i] = xq[ib].qs[4 * v + i];
          grp[8 * c * v + 4 * c + 4 * j + i] = xq[ib].qs[16 + 4 * v + i];
        }
    } else {
      for (int e = 0; e < kQK8_0; ++e) dst[e] = xq[ib].qs[e];
    }
  }
}

namespace {

// The reference R16 decode kernel: each group (the last one partial, c < 16 blocks) unpacked to its file type's
// blocks, every element's value times the activation byte where decode_row_prepare put it, the
// block's bias subtracted (Q4_1 / Q5_1: the min times the bias added), times the scales.
template <typename Block>
void gemv_r16_ref(const void* w, int64_t row_bytes, int64_t K, const DecodeRow* a, int rows, int64_t n0, int64_t n1,
                  float* y, int64_t ldy, bool) {
  using L = R16Layout<Block>;
  const DType r16 = L::kMin ? (L::kHigh ? DType::Q5_1_R16 : DType::Q4_1_R16) : (L::kHigh ? DType::Q5_0_R16 : DType::Q4_0_R16);
  const int64_t nb = K / 32;
  Block blk[kDecodeGroup];
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + n * row_bytes;
    for (int r = 0; r < rows; ++r) {
      float sum = 0.0f;
      for (int64_t g = 0; g * kDecodeGroup < nb; ++g) {
        const int64_t b0 = g * kDecodeGroup, cnt = std::min<int64_t>(kDecodeGroup, nb - b0);
        r16_unpack(r16, row + b0 * sizeof(Block), blk, cnt * 32);
        for (int64_t j = 0; j < cnt; ++j) {
          int32_t isum = 0;
          for (int e = 0; e < 32; ++e) {
            // element e of block b0 + j: its unsigned value, and where decode_row_prepare put its activation
            int q = e < 16 ? blk[j].qs[e] & 0x0f : blk[j].qs[e - 16] >> 4;
            if constexpr (L::kHigh) {
              uint32_t qh;
              std::memcpy(&qh, blk[j].qh, 4);
              q |= static_cast<int>((qh >> e) & 1u) << 4;
            }
            const int64_t at = b0 * 32 + 8 * cnt * ((e % 16) / 4) + (e < 16 ? 0 : 4 * cnt) + 4 * j + e % 4;
            isum += q * a[r].qs[at];
          }
          const float dy = a[r].d[b0 + j];
          const int32_t bias = a[r].bias[b0 + j];
          if constexpr (L::kMin)
            sum += f16_to_f32(blk[j].d) * dy * static_cast<float>(isum) + f16_to_f32(blk[j].m) * dy * static_cast<float>(bias);
          else
            sum += f16_to_f32(blk[j].d) * dy * static_cast<float>(isum - bias);
        }
      }
      y[r * ldy + n - n0] = sum;
    }
  }
}



}  // namespace

namespace {

// Each group of 16 rows of an X16 weight back in its file layout, then `dot` per row.
template <typename Block>
void vec_dot_rows_x16_ref(DType x16, float (*dot)(int64_t, const Block*, const BlockQ8_K*), int64_t n, const void* x,
                          int64_t row_bytes, int64_t nw, const BlockQ8_K* y, int64_t y_stride, int rows, float* out,
                          int64_t ldo) {
  AIGC_ASSERT(nw % kX16Rows == 0 && row_bytes == n / kQK_K * static_cast<int64_t>(sizeof(Block)),
              "vec_dot_rows_x16_ref: nw {}, row_bytes {}, n {}", nw, row_bytes, n);
  const int64_t nb = n / kQK_K;
  thread_local std::vector<Block> blocks;  // one group of rows in the file layout
  blocks.resize(static_cast<size_t>(kX16Rows * nb));
  for (int64_t i0 = 0; i0 < nw; i0 += kX16Rows) {
    x16_unpack(x16, static_cast<const uint8_t*>(x) + i0 * row_bytes, blocks.data(), n);
    for (int i = 0; i < kX16Rows; ++i)
      for (int r = 0; r < rows; ++r) out[r * ldo + i0 + i] = dot(n, blocks.data() + i * nb, y + r * y_stride);
  }
}

}  // namespace

void vec_dot_rows_q4_K_x16_ref(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                               int64_t y_stride, int rows, float* out, int64_t ldo, bool) {
  vec_dot_rows_x16_ref(DType::Q4_K_X16, vec_dot_q4_K_q8_K_ref, n, x, row_bytes, nw, y, y_stride, rows, out, ldo);
}

void vec_dot_rows_q5_K_x16_ref(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                               int64_t y_stride, int rows, float* out, int64_t ldo, bool) {
  vec_dot_rows_x16_ref(DType::Q5_K_X16, vec_dot_q5_K_q8_K_ref, n, x, row_bytes, nw, y, y_stride, rows, out, ldo);
}

void vec_dot_rows_q6_K_x16_ref(int64_t n, const void* x, int64_t row_bytes, int64_t nw, const BlockQ8_K* y,
                               int64_t y_stride, int rows, float* out, int64_t ldo, bool) {
  vec_dot_rows_x16_ref(DType::Q6_K_X16, vec_dot_q6_K_q8_K_ref, n, x, row_bytes, nw, y, y_stride, rows, out, ldo);
}

namespace {

const QuantKernels kQuantKernelsRef = {
    "ref",
    quantize_row_q8_0_ref,
    dequantize_row_q8_0_ref,
    dequantize_row_q4_0_ref,
    vec_dot_q8_0_q8_0_ref,
    vec_dot_q4_0_q8_0_ref,
    quantize_row_q8_K_ref,
    vec_dot_q4_1_q8_0_ref,
    vec_dot_q5_0_q8_0_ref,
    vec_dot_q5_1_q8_0_ref,
    vec_dot_q4_K_q8_K_ref,
    vec_dot_q5_K_q8_K_ref,
    vec_dot_q6_K_q8_K_ref,
    nullptr,
    nullptr,
    decode_row_prepare,
    nullptr,
    nullptr,
    nullptr,
    gemv_r16_ref<BlockQ4_0>,
    nullptr,  // Q4_1, Q5_0, Q5_1: vec_dot
    nullptr,
    nullptr,
    gemv_r16_ref<BlockQ4_1>,
    gemv_r16_ref<BlockQ5_0>,
    gemv_r16_ref<BlockQ5_1>,
    nullptr,  // K-quant activations as quantised
    vec_dot_rows_q4_K_x16_ref,
    vec_dot_rows_q5_K_x16_ref,
    vec_dot_rows_q6_K_x16_ref,
};


}  // namespace

void q8_K_reorder_paired(BlockQ8_K* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    for (int h = 0; h < 2; ++h) {
      int8_t* q = y[b].qs + 128 * h;
      for (int j = 0; j < 32; ++j) std::swap(q[32 + j], q[64 + j]);
    }
    int16_t bs[16];
    for (int i = 0; i < 16; ++i) bs[i] = y[b].bsums[kQ8KPairedBsums[i]];
    std::memcpy(y[b].bsums, bs, sizeof bs);
  }
}

DecodeGemv decode_gemv(const QuantKernels& k, DType type) {
  switch (type) {
    case DType::Q4_0: return k.gemv_q4_0;
    case DType::Q8_0: return k.gemv_q8_0;
    case DType::Q4_1: return k.gemv_q4_1;
    case DType::Q5_0: return k.gemv_q5_0;
    case DType::Q5_1: return k.gemv_q5_1;
    case DType::Q4_0_R16: return k.gemv_q4_0_r16;
    case DType::Q4_1_R16: return k.gemv_q4_1_r16;
    case DType::Q5_0_R16: return k.gemv_q5_0_r16;
    case DType::Q5_1_R16: return k.gemv_q5_1_r16;
    default: return nullptr;
  }
}

VecDotRowsK vec_dot_rows_kernel(const QuantKernels& k, DType type) {
  switch (type) {
    case DType::Q4_K: return k.vec_dot_rows_q4_K;
    case DType::Q5_K: return k.vec_dot_rows_q5_K;
    case DType::Q6_K: return k.vec_dot_rows_q6_K;
    case DType::Q4_K_X16: return k.vec_dot_rows_q4_K_x16;
    case DType::Q5_K_X16: return k.vec_dot_rows_q5_K_x16;
    case DType::Q6_K_X16: return k.vec_dot_rows_q6_K_x16;
    default: return nullptr;
  }
}

const QuantKernels* quant_kernels_find(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::Ref: return &kQuantKernelsRef;
    case QuantIsa::Avx2: return cpu_has_avx2() ? &quant_kernels_avx2() : nullptr;
    case QuantIsa::Avx512Vnni: return cpu_has_avx512_vnni() ? &quant_kernels_avx512vnni() : nullptr;
    case QuantIsa::Avx512Vbmi:
      return cpu_has_avx512_vnni() && __builtin_cpu_supports("avx512vbmi") ? &quant_kernels_avx512vbmi() : nullptr;
  }
  return nullptr;
}

const QuantKernels& quant_kernels() {
  static const QuantKernels* best = [] {
    for (QuantIsa isa : {QuantIsa::Avx512Vbmi, QuantIsa::Avx512Vnni, QuantIsa::Avx2})
      if (const QuantKernels* k = quant_kernels_find(isa)) return k;
    return &kQuantKernelsRef;
  }();
  return *best;
}

}  // namespace aigc
