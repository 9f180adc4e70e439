// Scaled dot-product attention: out = softmax(q k^T * scale [+ causal mask]) v per (batch, head).
//   q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], out [B, Hq, Tq, Dv]; any strides (e.g. a
//   [B, T, H, D] projection permuted to [B, H, T, D]). Query head h reads kv head h / (Hq / Hkv).
//   Causal: query i is at absolute position q_offset + i and sees keys j <= q_offset + i.
//   k and v may be f16 (an f16 KV cache): the flash kernel converts them a key block at a time,
//   the GEMM paths convert them whole first (16 or more queries repay that).
// Paths, by precision and shape:
// - GEMM (attention_gemm; 16 or more queries and keys, AVX-512): blocks of kBf16QueryBlock queries,
//   scores [blk, Tk] f32 = q_blk · k^T (a oneDNN matmul), exp(scores - max) in one AVX-512 pass,
//   out rows = P · v (oneDNN) scaled by 1 / row sum. In bf16 (p.precision == BF16, CPUs with
//   AVX512-BF16: k, v and q converted, P rounded to bf16) or in f32 (operands read in place, up to
//   kGemmMaxKeys keys). Tasks (batch, head, query block) run side by side, each on one thread with
//   1-thread oneDNN primitives. Scratch: blk x Tk (f32 (+ bf16)) per thread, plus k and v of every
//   head in bf16 for the bf16 path; no [Tq, Tk] matrix.
// - Grouped decode (attention_grouped; up to 4 queries with grouped KV heads), below.
// - The f32 flash kernel otherwise (kernels_f32_impl.h attention_rows): never forms a score matrix,
//   streams over key blocks with a running max and sum.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <mutex>
#include <vector>

#include "backend/cpu/kernels_f32.h"
#include "backend/cpu/onednn.h"
#include "backend/cpu/op_check.h"
#include "backend/cpu/ops.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

// Element (b, h, j, c) of an f32 or f16 k / v as f32.
float kv_at(const Tensor& t, int64_t b, int64_t h, int64_t j, int64_t c) {
  return t.type() == DType::F16 ? f16_to_f32(t.at<uint16_t>(b, h, j, c)) : t.at<float>(b, h, j, c);
}

void attention_check(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const AttentionParams& p) {
  const char* op = "attention";
  check_f32(q, op, "q");
  check_f32_or_f16(k, op, "k");
  check_f32_or_f16(v, op, "v");
  check_f32(out, op, "out");
  auto fail = [&](const std::string& why) {
    error_throw(fmt::format("attention: {} (q {}, k {}, v {}, out {})", why, q.shape_str(), k.shape_str(),
                            v.shape_str(), out.shape_str()),
                op, "expected q [B, Hq, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], out [B, Hq, Tq, Dv]");
  };
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 || out.ndim() != 4) fail("all tensors must be 4-d");
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0)) fail("batch sizes differ");
  if (k.size(1) != v.size(1) || k.size(1) == 0 || q.size(1) % k.size(1) != 0)
    fail("query heads must be a multiple of the key/value heads");
  if (k.size(2) != v.size(2)) fail("k and v have different lengths");
  if (k.size(3) != q.size(3)) fail("q and k head dims differ");
  if (out.size(0) != q.size(0) || out.size(1) != q.size(1) || out.size(2) != q.size(2) || out.size(3) != v.size(3))
    fail("out shape");
  if (k.size(2) == 0 && q.size(2) > 0) fail("no keys");
  if (p.q_offset < 0) fail(fmt::format("q_offset {} is negative", p.q_offset));
}

float attention_scale(const Tensor& q, const AttentionParams& p) {
  return p.scale != 0.0f ? p.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(3))));
}

// Stride of dimension `dim` in floats (f32 tensors).
int64_t stride_floats(const Tensor& t, int dim) { return t.stride_bytes(dim) / static_cast<int64_t>(sizeof(float)); }
// ... in elements (f32 or f16).
int64_t stride_elems(const Tensor& t, int dim) {
  return t.stride_bytes(dim) / static_cast<int64_t>(dtype_traits(t.type()).block_bytes);
}

// The flash kernel's inputs for kv head hk of batch b; the caller sets the query rows (q, out,
// their strides, nq), the keys they see (tk) and the mask (causal_pos0).
AttentionRows kv_rows(const Tensor& k, const Tensor& v, int64_t b, int64_t hk, float scale) {
  AttentionRows a;
  a.k = k.type() == DType::F32 ? &k.at<float>(b, hk, 0, 0) : nullptr;
  a.k16 = k.type() == DType::F16 ? &k.at<uint16_t>(b, hk, 0, 0) : nullptr;
  a.k_stride = stride_elems(k, 2);
  a.v = v.type() == DType::F32 ? &v.at<float>(b, hk, 0, 0) : nullptr;
  a.v16 = v.type() == DType::F16 ? &v.at<uint16_t>(b, hk, 0, 0) : nullptr;
  a.v_stride = stride_elems(v, 2);
  a.d = k.size(3);
  a.dv = v.size(3);
  a.scale = scale;
  return a;
}

// Runs the flash kernel (kernels_f32_impl.h attention_rows) on tasks 0 .. n-1 side by side;
// task(t) gives each one's rows. Scratch: one buffer per thread, grown once, reused across calls.
void flash_tasks_run(int64_t n, int64_t D, int64_t Dv, FunctionRef<AttentionRows(int64_t)> task) {
  const KernelsF32& kern = kernels_f32();
  const int64_t scratch_floats = attention_scratch_floats(D, Dv);
  parallel_for(n, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scratch;
    if (static_cast<int64_t>(scratch.size()) < scratch_floats) scratch.resize(scratch_floats);
    for (int64_t t = t0; t < t1; ++t) kern.attention(task(t), scratch.data());
  });
}

// ---- bf16 path ----------------------------------------------------------------------------------

// Queries per block: the [blk, Tk] f32 score block (512 KiB at Tk = 4096) stays in L2 between the
// matmul that writes it and the softmax pass that reads it. (Measured at 4096 x 40, one thread,
// CPU time: 16 -> 52%, 32 -> 59%, 64 -> 57%, 128 -> 61% of the bf16 GEMM; the two matmuls, not the
// softmax (~14% of the time), are what is left.)
constexpr int64_t kBf16QueryBlock = 32;
// Keys up to which f32 attention takes the GEMM path: its [32, Tk] score block is then at most
// 4 MiB per thread.
constexpr int64_t kGemmMaxKeys = 32768;

// GCC 12's AVX-512 headers start some intrinsics from _mm512_undefined_ps(), which -Wuninitialized
// reports inside every caller; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define AIGC_AVX512_BF16 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// dst[i] = bf16(src[i]) (round to nearest even), n elements.
AIGC_AVX512_BF16 void row_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), reinterpret_cast<const __m256i&>(b));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, reinterpret_cast<const __m256i&>(b));
  }
}

#define AIGC_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

// 2^t for t <= 0: t split into integer n (applied exactly by vscalefps) and f in [-0.5, 0.5], 2^f
// by its degree-5 Taylor polynomial (relative error < 3e-6, far below bf16's 2^-9 rounding).
AIGC_AVX512 inline __m512 exp2_avx512(__m512 t) {
  const __m512 ni = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, ni);
  __m512 y = _mm512_fmadd_ps(_mm512_set1_ps(0.00133335581464284f), f, _mm512_set1_ps(0.00961812910762848f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.0555041086648216f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.240226506959101f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(0.693147180559945f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, ni);
}

// In place: s[0, n_valid) = exp((s - max) * scale), s[n_valid, n) = 0; returns the sum. scale > 0.
// (The bf16 path then rounds the row to bf16: the same bits as rounding each exponential as it
// is made, and the sum is of the unrounded ones.)
AIGC_AVX512 float softmax_row_f32(float* s, int64_t n, int64_t n_valid, float scale) {
  const int64_t full = n_valid / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (n_valid - full)) - 1);
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t i = 0; i < full; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + i));
  if (tail) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail, s + full));
  const float k = scale * 1.44269504088896341f;  // log2(e)
  const __m512 vk = _mm512_set1_ps(k), vbias = _mm512_set1_ps(-_mm512_reduce_max_ps(vmax) * k);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t i = 0; i < full; i += 16) {
    const __m512 e = exp2_avx512(_mm512_fmadd_ps(_mm512_loadu_ps(s + i), vk, vbias));
    vsum = _mm512_add_ps(vsum, e);
    _mm512_storeu_ps(s + i, e);
  }
  if (tail) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp2_avx512(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, s + full), vk, vbias)));
    vsum = _mm512_add_ps(vsum, e);
    _mm512_mask_storeu_ps(s + full, tail, e);
  }
  for (int64_t i = n_valid; i < n; ++i) s[i] = 0.0f;
  return _mm512_reduce_add_ps(vsum);
}

// Grows v to at least n elements (kept: the hot loop allocates nothing once warm).
template <typename T>
T* scratch_get(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// t as f32: t itself, or (f16) converted into `buf` ([B, H, T, D], contiguous).
Tensor kv_as_f32(const Tensor& t, std::vector<float>& buf) {
  if (t.type() == DType::F32) return t;
  const int64_t B = t.size(0), H = t.size(1), T = t.size(2), D = t.size(3);
  float* dst = scratch_get(buf, B * H * T * D);
  parallel_for(B * H * T, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t j = r % T, h = (r / T) % H, b = r / (T * H);
      row_f16_to_f32(&t.at<uint16_t>(b, h, j, 0), dst + r * D, D);
    }
  }, 64);
  return Tensor::view_of(DType::F32, t.shape(), dst);
}

// Both products through oneDNN on blocks of queries, in bf16 (k and v converted once, q per block,
// exp(scores - max) rounded to bf16) or in f32 (q, k and v read where they are, with their strides).
// Causal blocks stop at the last key their last query sees.
void attention_gemm(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p,
                    float scale, bool bf16) {
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const int64_t group = Hq / Hkv;
  const int64_t blk_max = std::min(kBf16QueryBlock, Tq);
  const int64_t q_blocks = (Tq + blk_max - 1) / blk_max;
  const int64_t out_ld = stride_floats(out, 2);
  const onednn::Type type = bf16 ? onednn::Type::BF16 : onednn::Type::F32;
  // bf16: k and v of every head, once: [B, Hkv, Tk, D] and [B, Hkv, Tk, Dv].
  thread_local std::vector<uint16_t> k_all, v_all;
  uint16_t* kb = bf16 ? scratch_get(k_all, B * Hkv * Tk * D) : nullptr;
  uint16_t* vb = bf16 ? scratch_get(v_all, B * Hkv * Tk * Dv) : nullptr;
  if (bf16)
    parallel_for(B * Hkv * Tk, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t j = r % Tk, hk = (r / Tk) % Hkv, b = r / (Tk * Hkv);
        row_to_bf16(&k.at<float>(b, hk, j, 0), kb + r * D, D);
        row_to_bf16(&v.at<float>(b, hk, j, 0), vb + r * Dv, Dv);
      }
    }, 64);
  const int64_t k_ld = bf16 ? D : stride_floats(k, 2), v_ld = bf16 ? Dv : stride_floats(v, 2);
  const int64_t q_ld = bf16 ? D : stride_floats(q, 2);
  // One parallel region for the whole op: each task (b, h, block of queries) runs its two
  // products on its own thread (many small threaded calls would pay a barrier each).
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mu;
  parallel_for(B * Hq * q_blocks, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<uint16_t> q_s, p_s;
    thread_local std::vector<float> s_s, sum_s;
    uint16_t* qb = bf16 ? scratch_get(q_s, blk_max * D) : nullptr;   // [blk, D]
    uint16_t* pb = bf16 ? scratch_get(p_s, blk_max * Tk) : nullptr;  // [blk, Tk] exp(scores - max), bf16
    float* sb = scratch_get(s_s, blk_max * Tk);  // [blk, Tk] scores (f32: then exp(scores - max))
    float* sums = scratch_get(sum_s, blk_max);
    try {
      for (int64_t t = t0; t < t1 && !failed.load(std::memory_order_relaxed); ++t) {
        const int64_t qblk = t % q_blocks, h = (t / q_blocks) % Hq, b = t / (q_blocks * Hq);
        const int64_t hk = h / group, i0 = qblk * blk_max, blk = std::min(blk_max, Tq - i0);
        // The keys this block sees. A new tk is a new oneDNN primitive (~0.2 ms to create, then
        // cached, shared by every head and layer of the chunk): a 512-token chunk at a new depth makes
        // 32, ~6 ms beside its ~3 s. Rounding tk up to 256 to make fewer cost a 64-token prompt 29%.
        const int64_t tk = p.causal ? std::min(Tk, p.q_offset + i0 + blk) : Tk;
        const void* kh = bf16 ? static_cast<const void*>(kb + (b * Hkv + hk) * Tk * D) : &k.at<float>(b, hk, 0, 0);
        const void* vh = bf16 ? static_cast<const void*>(vb + (b * Hkv + hk) * Tk * Dv) : &v.at<float>(b, hk, 0, 0);
        const void* qh = qb;
        if (bf16)
          for (int64_t r = 0; r < blk; ++r) row_to_bf16(&q.at<float>(b, h, i0 + r, 0), qb + r * D, D);
        else
          qh = &q.at<float>(b, h, i0, 0);
        // scores = q_blk · k^T, k^T being k [tk, D] read as a [D, tk] column-major matrix (measured
        // faster than storing k^T row-major: 60% vs 54% of the GEMM at 4096 x 40, bf16)
        onednn::matmul_serial({qh, type, 1, blk, D, 0, q_ld, 1}, {kh, type, 1, D, tk, 0, 1, k_ld}, nullptr, sb, 0, tk);
        for (int64_t r = 0; r < blk; ++r) {
          const int64_t valid = p.causal ? std::min(tk, p.q_offset + i0 + r + 1) : tk;
          sums[r] = softmax_row_f32(sb + r * tk, tk, valid, scale);
          if (bf16) row_to_bf16(sb + r * tk, pb + r * tk, tk);
        }
        float* o = &out.at<float>(b, h, i0, 0);
        onednn::matmul_serial({bf16 ? static_cast<const void*>(pb) : sb, type, 1, blk, tk, 0, tk, 1},
                              {vh, type, 1, tk, Dv, 0, v_ld, 1}, nullptr, o, 0, out_ld);
        for (int64_t r = 0; r < blk; ++r) {
          const float inv = 1.0f / sums[r];
          for (int64_t c = 0; c < Dv; ++c) o[r * out_ld + c] *= inv;
        }
      }
    } catch (...) {  // exceptions must not leave an OpenMP region: rethrown below
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
      failed = true;
    }
  });
  if (error) std::rethrow_exception(error);
}

// ---- grouped KV heads, few queries (decode) ------------------------------------------------------
// With grouped KV heads (Hq = group x Hkv) and a few queries, per-head tasks would each stream the
// whole K and V of their kv head: group times the cache's bytes per token, the largest cost of a
// decode step at long contexts (TinyLlama, group 8, 3584 cached positions: 19 of 42 ms). Here one
// task takes the query heads of one kv head at one query position as the kernel's query rows, so
// K and V are read once per position and kv head (from L1 across the rows of a key block). The
// causal mask is the same for all those rows: their keys are cut at the position instead.
// Queries per call up to which this pays: decode steps (gemv::kMaxRows tokens at most) take it.
constexpr int64_t kGroupedMaxQueries = 4;

void attention_grouped(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p,
                       float scale) {
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const int64_t group = Hq / Hkv;
  // A group's heads go in slices of at most kAttnQueryBlock (the kernel's query block: it reads K
  // and V once per block anyway), so that a large group (multi-query attention: Hkv = 1) still
  // gives every thread work. The slicing depends on the shapes only: results do not change with
  // the thread count.
  const int64_t slices = (group + kAttnQueryBlock - 1) / kAttnQueryBlock;
  const int64_t slice_heads = (group + slices - 1) / slices;  // the last slice may be narrower
  flash_tasks_run(B * Hkv * Tq * slices, D, Dv, [&](int64_t t) {
    const int64_t s = t % slices, i = (t / slices) % Tq, hk = (t / (slices * Tq)) % Hkv, b = t / (slices * Tq * Hkv);
    const int64_t h0 = hk * group + s * slice_heads;
    AttentionRows a = kv_rows(k, v, b, hk, scale);
    a.q = &q.at<float>(b, h0, i, 0);
    a.q_stride = stride_floats(q, 1);  // rows are heads
    a.out = &out.at<float>(b, h0, i, 0);
    a.out_stride = stride_floats(out, 1);
    a.nq = std::min(slice_heads, group - s * slice_heads);
    a.tk = p.causal ? std::min(Tk, p.q_offset + i + 1) : Tk;  // query i sees keys <= q_offset + i
    a.causal_pos0 = -1;
    return a;
  });
}

}  // namespace

void ref::attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) {
  attention_check(q, k, v, out, p);
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const int64_t group = Hq / Hkv;
  const double scale = attention_scale(q, p);
  std::vector<double> s(Tk), o(Dv);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t valid = p.causal ? std::min(Tk, p.q_offset + i + 1) : Tk;
        double m = -INFINITY;
        for (int64_t j = 0; j < valid; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q.at<float>(b, h, i, d)) * kv_at(k, b, hk, j, d);
          s[j] = dot * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < valid; ++j) sum += s[j] = std::exp(s[j] - m);
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t j = 0; j < valid; ++j)
          for (int64_t c = 0; c < Dv; ++c) o[c] += s[j] * kv_at(v, b, hk, j, c);
        for (int64_t c = 0; c < Dv; ++c) out.at<float>(b, h, i, c) = static_cast<float>(o[c] / sum);
      }
    }
}

void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, const AttentionParams& p) {
  attention_check(q, k, v, out, p);
  if (!rows_dense_f32(q) || !rows_dense(k) || !rows_dense(v) || !rows_dense_f32(out))
    return ref::attention(q, k, v, out, p);
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), Dv = v.size(3);
  const int64_t group = Hq / Hkv;
  const float scale = attention_scale(q, p);
  // bf16 pays off for long sequences only; short ones (decode, CLIP) keep the f32 kernel. A scale
  // <= 0 would flip the max; no model uses one.
  const bool gemm_bf16 = p.precision == Precision::BF16 && Tk >= 16 && Tq >= 16 && scale > 0.0f && cpu_has_avx512_bf16();
  // f32 on AVX-512 machines: the same oneDNN products in f32 beat the flash kernel below at every
  // shape measured with 16 or more queries and keys (2 threads: CLIP 12x77x64 1.15x, an LLM prompt
  // of 64 / 512 tokens 1.4x / 2x, 512 after 2048 cached 2.2x, SD 8x1024x40 2.7x); its score
  // block grows with the keys, so very long contexts keep the flash kernel's fixed memory.
  const bool gemm_f32 = !gemm_bf16 && p.precision == Precision::F32 && Tk >= 16 && Tq >= 16 && Tk <= kGemmMaxKeys &&
                        scale > 0.0f && cpu_has_avx512();
  if ((gemm_bf16 || gemm_f32) && (k.type() == DType::F16 || v.type() == DType::F16)) {
    // An f16 cache on the GEMM paths (prompts): K and V converted to f32 once per call, which
    // 16 or more queries repay; the flash kernel below converts key blocks as it goes.
    thread_local std::vector<float> k32, v32;
    Tensor kf = kv_as_f32(k, k32), vf = kv_as_f32(v, v32);
    return attention_gemm(q, kf, vf, out, p, scale, gemm_bf16);
  }
  if (gemm_bf16 || gemm_f32) return attention_gemm(q, k, v, out, p, scale, gemm_bf16);
  if (group > 1 && Tq <= kGroupedMaxQueries) return attention_grouped(q, k, v, out, p, scale);
  // Tasks: (b, h, block of queries). Blocks of 32 queries keep a head's K/V warm in cache while
  // still giving threads enough tasks at small batch sizes.
  constexpr int64_t kTaskQueries = 32;
  const int64_t q_blocks = (Tq + kTaskQueries - 1) / kTaskQueries;
  flash_tasks_run(B * Hq * q_blocks, D, Dv, [&](int64_t t) {
    const int64_t qblk = t % q_blocks, h = (t / q_blocks) % Hq, b = t / (q_blocks * Hq);
    const int64_t i0 = qblk * kTaskQueries;
    AttentionRows a = kv_rows(k, v, b, h / group, scale);
    a.q = &q.at<float>(b, h, i0, 0);
    a.q_stride = stride_floats(q, 2);
    a.out = &out.at<float>(b, h, i0, 0);
    a.out_stride = stride_floats(out, 2);
    a.nq = std::min(kTaskQueries, Tq - i0);
    a.tk = Tk;
    a.causal_pos0 = p.causal ? p.q_offset + i0 : -1;
    return a;
  });
}

}  // namespace aigc::ops
