// Fast linear with quantised weights: y[M, N] = x[M, K] · dequant(w[N, K])^T.
// Activations are quantised on the fly (to Q8_0 blocks, or Q8_K for the K-quants) and dotted with
// integer SIMD (AVX2, or AVX-512 VNNI where present), as GGML does; the reference is ops::ref::linear.
#pragma once

#include <optional>
#include <span>

#include "core/tensor.h"

namespace aigc::ops {

// x: contiguous f32 [M, K]; w: contiguous [N, K] of a type linear_quantized_supports; y:
// contiguous f32 [M, N].
void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y);

// Weight types with dot kernels: q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K, and aigc's
// R16 and X16 layouts (where the kernel set has a kernel for them).
bool linear_quantized_supports(DType w);

// The layout this CPU's kernels run a linear weight of type w ([N, K]) faster in, if any: Q4_0 ->
// Q4_0_R16, Q5_0 -> Q5_0_R16, ... (r16_of) where the best kernel set has a kernel for it (the AVX2
// and AVX-512 sets; long prompts on AVX512-BF16 CPUs convert R16 rows for the bf16 panel GEMM as
// they convert the file's) and a row holds a full group of 16 blocks; Q4_K -> Q4_K_X16, Q5_K ->
// Q5_K_X16, Q6_K -> Q6_K_X16 (x16_of) where the best set has a kernel for it (the AVX-512 sets) and N is a multiple
// of 16. Setting
// AIGC_REPACK=0 in the environment turns it off.
std::optional<DType> linear_repack_type(DType w, int64_t N, int64_t K);
// Rewrites src (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) into dst (its linear_repack_type, same shape); dst
// may view src's own bytes (in place, a row or a group of 16 rows at a time).
void linear_repack(const Tensor& src, Tensor& dst);

// Activation rows the decode (GEMV) kernels of Q4_0 and Q8_0 weights take in one call, where the
// instruction set has them (AVX2, AVX-512 VNNI): decode steps and short prompts at once, longer
// prompts in chunks of this many rows (each chunk streams the weights again: 7 passes over a
// Q4_0 TinyLlama at 512 tokens, ~0.2 s of ~9 s on an AVX2 CPU, where the vec_dot path ran 2.5x
// slower). K-quant weights take up to this many rows on the same schedule, longer prompts in one
// pass over the weights (a tile of weight rows in cache while every activation row goes by).
constexpr int64_t kDecodeMaxRows = 80;
// Rows up to which ops::linear keeps K-quant weights (Q4_K, Q5_K, Q6_K) on the integer dots on
// CPUs that have the bf16 panel GEMM too (AVX512-BF16).
constexpr int64_t kKQuantMaxRows = 64;

// Whether ops::linear runs x [M, K] · w on the integer kernels (linear_quantized) rather than the
// bf16 GEMM over dequantised panels (linear_panel.h): a panel costs a pass over the weights per
// call, which only pays with enough rows. Measured (`aigc bench text`, TinyLlama-1.1B shapes, 2
// threads, prompt tokens/s, panel -> integer kernels): Q4_0 pp8 42 -> 144, pp16 58 -> 187, pp32
// 94 -> 148, pp64 132 -> 153, pp96 159 -> 150; Q8_0 pp8 49 -> 115, pp16 60 -> 123, pp32 95 -> 122,
// pp48 117 -> 118, pp64 127 -> 119; Q4_K (Q4_K_S file) pp16 49 -> 117, pp32 80 -> 122, pp64
// 118 -> 123, pp96 151 -> 124. Hence Q4_0 up to 80 rows, Q8_0 up to 40, the K-quants up to 64.
// Q4_K_X16 at any M: its kernel outruns the panel GEMM at every prompt length (Zen 5, TinyLlama
// Q4_K_M with Q4_K_X16, 2 threads, panel -> integer: pp96 299 -> 524 t/s, pp128 330 -> 527, pp256
// 390 -> 515, pp512 420 -> 506); Q5_K_X16 too (TinyLlama Q5_K_M, 2 threads, file layout and panel
// -> X16: pp16 165 -> 333, pp128 208-249 -> 355-371, pp512 291 -> 348; 1 thread pp512 160 -> 181).
// Q6_K_X16 up to kQ6KX16MaxRows (TinyLlama Q6_K, panel -> integer:
// 2 threads pp64 255 -> 393, pp128 342 -> 436, pp512 423 -> 428; 1 thread pp256 209 -> 218,
// pp512 222 -> 216).
bool linear_quantized_prefers(DType w, int64_t M);
constexpr int64_t kQ6KX16MaxRows = 256;

// Several linears that share their input x (a layer's Q, K and V projections; gate and up):
// y_i = x · w_i^T (+ bias_i). For decode and short prompts (x: contiguous f32 [M, K], M within
// linear_quantized_prefers) with no bias and every w_i of one type that has GEMV kernels (Q4_0,
// Q8_0), or every w_i a K-quant (any mix of Q4_K, Q5_K, Q6_K and the X16 layouts), where the CPU has AVX2 or AVX-512
// VNNI, x is quantised once and one parallel region covers all the rows; otherwise each is
// ops::linear. The results are those of ops::linear on each, bit for bit.
struct LinearGroupItem {
  const Tensor* w;     // [N_i, K]
  const Tensor* bias;  // [N_i] or nullptr
  Tensor* y;           // [M, N_i]
};
void linear_group(std::span<const LinearGroupItem> items, const Tensor& x);

}  // namespace aigc::ops
