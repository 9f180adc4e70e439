// linear_quantized: y[M, N] = x[M, K] · dequant(w[N, K])^T for quantised weights, GGML style:
// each activation row is quantised once (Q8_0 for the 32-element types, Q8_K for the K-quants),
// then each output is one integer-SIMD dot product of a weight row with an activation row
// (kernels in quant_dot.h).
#include "backend/cpu/linear_quantized.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "backend/cpu/gemv.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/ops.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace aigc::ops {

namespace {

// The activation format each weight type is dotted with.
DType activation_type(DType w) {
  return dtype_traits(w).block_size == kQK_K ? DType::Q8_K : DType::Q8_0;  // the K-quants and their X16 layouts
}

// Quantises the M rows of x (contiguous [M, K]) into a thread_local buffer of activation blocks.
// The buffer only grows: after the first call of a given size, decode steps allocate nothing
// (each calling thread keeps one buffer).
template <typename BlockA>
const BlockA* activations_quantize(void (*quantize)(const float*, BlockA*, int64_t), const float* xd, int64_t M,
                                   int64_t K, int64_t nb, void (*reorder)(BlockA*, int64_t) = nullptr) {
  thread_local std::vector<BlockA> buf;
  if (buf.size() < static_cast<size_t>(M * nb)) buf.resize(M * nb);
  BlockA* xq = buf.data();
  parallel_for(M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      quantize(xd + m * K, xq + m * nb, K);
      if (reorder) reorder(xq + m * nb, nb);
    }
  }, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, K)));
  return xq;
}

void linear_quantized_check(const Tensor& x, const Tensor& w, const Tensor& y) {
  AIGC_CHECK(linear_quantized_supports(w.type()),
             "linear_quantized: weight type {} (expected q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K or an R16 layout)",
             dtype_name(w.type()));
  AIGC_CHECK(w.ndim() == 2 && w.is_contiguous(), "linear_quantized: weight {} must be a contiguous [N, K]",
             w.shape_str());
  AIGC_CHECK(x.type() == DType::F32 && x.ndim() >= 1 && x.is_contiguous(),
             "linear_quantized: input {} must be contiguous f32 [..., K]", x.shape_str());
  AIGC_CHECK(y.type() == DType::F32 && y.ndim() >= 1 && y.is_contiguous(),
             "linear_quantized: output {} must be contiguous f32 [..., N]", y.shape_str());
  AIGC_CHECK(x.size(-1) == w.size(1) && y.size(-1) == w.size(0) && x.rows() == y.rows(),
             "linear_quantized: shapes x {}, w {}, y {} do not match (y[M, N] = x[M, K] · w[N, K]^T)",
             x.shape_str(), w.shape_str(), y.shape_str());
  const int64_t bs = dtype_traits(w.type()).block_size;
  AIGC_CHECK(w.size(1) % bs == 0, "linear_quantized: K = {} is not a multiple of {}", w.size(1), bs);
}

// Outputs [n0, n1) of every row: a tile of weight rows is dotted with all M activation rows
// while it is in cache, so for M > 1 each weight row is read from memory once.
template <typename BlockW, typename BlockA>
void linear_rows(float (*vec_dot)(int64_t, const BlockW*, const BlockA*), const Tensor& w,
                 const BlockA* xq, int64_t M, float* y, int64_t n0, int64_t n1) {
  const int64_t N = w.size(0), K = w.size(1), nb = K / dtype_traits(activation_type(w.type())).block_size;
  const int64_t row_bytes = w.stride_bytes(0);
  const char* wd = static_cast<const char*>(w.data());
  constexpr int64_t kTileBytes = 32 * 1024;  // stays in L1/L2 while the M activation rows pass by
  const int64_t tile = std::clamp<int64_t>(kTileBytes / std::max<int64_t>(1, row_bytes), 1, 64);
  for (int64_t t0 = n0; t0 < n1; t0 += tile) {
    const int64_t t1 = std::min(n1, t0 + tile);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = t0; n < t1; ++n) {
        const auto* w_row = reinterpret_cast<const BlockW*>(wd + n * row_bytes);
        y[m * N + n] = vec_dot(K, w_row, xq + m * nb);
      }
    }
  }
}

// Activation rows per pass of a multi-row kernel (DecodeGemv, VecDotRowsK) over a tile of weight
// rows: kVecDotRowsMax up to K = 3072, half that above, so that a pass's rows (~K bytes each) stay
// in L1 (32 KiB) while the tile's weight rows go by from L2 (TinyLlama Q4_0, 2 threads, pp16: 145
// t/s with 4 a pass, 172 with 8; 8 at K = 5632 measured no faster than 4). Only the first pass over
// a tile prefetches (2 threads, 16 copies of a 2048x5632 Q4_0 weight from memory: 24-32 rows 164 ->
// 200 GMAC/s, K = 5632 16 rows 153 -> 168). In cache, 2 threads, 2048x5632: 1 row 103 GMAC/s, 4 rows
// 180, 8 to 32 rows ~195-200, except that one or two row counts run at ~150 in a given run, which
// ones changing between runs (48 and 64 in one, 32 in another): not understood.
int64_t rows_per_pass(int64_t K) { return K <= 3072 ? kVecDotRowsMax : kVecDotRowsMax / 2; }

// Weight rows [t0, t1) of w (N rows, row_bytes apart) against the M Q8_K activation rows xq with a
// kernel that dots several activation rows per pass over a weight row (VecDotRowsK),
// rows_per_pass rows a pass; y [M, N]. Each output is the single vec_dot's bits.
void rows_k_tile(VecDotRowsK rows_kernel, const char* wd, int64_t row_bytes, int64_t N, int64_t K,
                 const BlockQ8_K* xq, int64_t M, float* y, int64_t t0, int64_t t1) {
  const int64_t nb = K / kQK_K, per_pass = rows_per_pass(K);
  for (int64_t m0 = 0; m0 < M; m0 += per_pass) {
    const int rows = static_cast<int>(std::min(per_pass, M - m0));
    rows_kernel(K, wd + t0 * row_bytes, row_bytes, t1 - t0, xq + m0 * nb, nb, rows, y + m0 * N + t0, N, m0 == 0);
  }
}

// linear_rows with a several-rows kernel (long K-quant prompts): tiles of 64 weight rows, each in
// cache while every activation row goes by. (X16 weights: n0, n1 multiples of 16, as are the tiles.)
void linear_rows_multi(VecDotRowsK rows_kernel, const Tensor& w, const BlockQ8_K* xq, int64_t M, float* y,
                       int64_t n0, int64_t n1) {
  for (int64_t t0 = n0; t0 < n1; t0 += 64)
    rows_k_tile(rows_kernel, static_cast<const char*>(w.data()), w.stride_bytes(0), w.size(0), w.size(1), xq, M, y, t0,
                std::min(n1, t0 + 64));
}

// Decode and short prompts (M <= kDecodeMaxRows) for one or more weights that share the input x:
// the rows of x are quantised (and laid out) once, then one parallel region covers the rows of
// every weight. Each thread streams its own share of the weight rows (decode_schedule, below);
// every output is one kernel's fixed sequence of operations on one weight row and one activation
// row, so the split never changes a bit.
struct DecodeTarget {
  const void* w;
  int64_t row_bytes, N;
  float* y;             // [M, N]
  VecDotRowsK rows_k;   // K-quant weights: the set's several-rows kernel (linear_decode_k)
};

// Calls tile(target, t0, t1) for tiles of at most 64 rows covering the rows of every target, on
// the thread pool. min_rows: rows below which a thread is not worth it. unit: every t0 and t1 a
// multiple of it (kX16Rows where X16 weights are among the targets; every N must then be a
// multiple of it too).
template <typename Tile>
void decode_schedule(std::span<const DecodeTarget> targets, int64_t min_rows, int64_t unit, const Tile& tile) {
  int64_t total = 0;
  for (const DecodeTarget& t : targets) {
    AIGC_ASSERT(t.N % unit == 0, "decode_schedule: {} rows in units of {}", t.N, unit);
    total += t.N;
  }
  const int nth = thread_count();
  // Rows [r0, r1) of the concatenated targets, a tile of 64 rows at a time.
  auto rows_run = [&](int64_t r0, int64_t r1) {
    int64_t base = 0;
    for (const DecodeTarget& t : targets) {
      const int64_t n0 = std::max<int64_t>(r0 - base, 0), n1 = std::min<int64_t>(r1 - base, t.N);
      for (int64_t t0 = n0; t0 < n1; t0 += 64) tile(t, t0, std::min(n1, t0 + 64));
      base += t.N;
      if (base >= r1) break;
    }
  };
  if (nth == 1 || total < 2 * min_rows) return rows_run(0, total);
  // Each thread owns a contiguous share of the rows and takes them from its front, 64 rows a claim,
  // so it reads one stream and the kernels' prefetch (16 KiB ahead) runs on into its next claim; a
  // thread done with its share takes rows from the back of the others', min_tile a claim, so the
  // threads still finish together when one was slowed. Measured (scratch benchmark: the linears
  // of TinyLlama's 22 layers back to back, 2 threads, beside a plain read of the same weights),
  // memory fast / slow: shares 79 / 94% of the read, fixed halves 77.5 / 94%, the former guided
  // tiles from one shared counter (each claim 1/(4 nth) of the rows left) 70 / 91%: each new tile
  // restarted the stream and wasted the prefetch past its end.
  const int64_t min_tile = (std::max<int64_t>(16, min_rows) + unit - 1) / unit * unit;
  AIGC_ASSERT(total < (int64_t{1} << 32), "decode_schedule: {} rows", total);
  struct alignas(64) Share { std::atomic<uint64_t> front_back; };  // front | back << 32 (rows)
  thread_local std::unique_ptr<Share[]> shares;
  thread_local int shares_cap = 0;
  if (shares_cap < nth) shares.reset(new Share[static_cast<size_t>(nth)]), shares_cap = nth;
  Share* share = shares.get();  // the caller's (in the workers, `shares` names their own, empty)
  auto pack = [](int64_t front, int64_t back) { return static_cast<uint64_t>(front) | static_cast<uint64_t>(back) << 32; };
  const int64_t units = total / unit;
  for (int i = 0; i < nth; ++i)
    share[i].front_back.store(pack(units * i / nth * unit, units * (i + 1) / nth * unit), std::memory_order_relaxed);
  // Claims rows of share s until it is empty: `own` from the front, 64 rows, else from the back.
  auto drain = [&](Share& s, bool own) {
    uint64_t v = s.front_back.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t f = static_cast<int64_t>(v & 0xffffffffu), b = static_cast<int64_t>(v >> 32);
      if (f >= b) return;
      const int64_t r0 = own ? f : std::max(f, b - min_tile), r1 = own ? std::min(b, f + 64) : b;
      if (s.front_back.compare_exchange_weak(v, own ? pack(r1, b) : pack(f, r0), std::memory_order_relaxed)) {
        rows_run(r0, r1);
        v = s.front_back.load(std::memory_order_relaxed);
      }  // else v was reloaded
    }
  };
  thread_pool_run([&](int ith, int) {
    drain(share[ith], true);
    // every share, not only the running threads' (should the runtime give fewer than nth)
    for (int d = 1; d < nth; ++d) drain(share[(ith + d) % nth], false);
  });
}

// Small layers stay on one thread (each thread gets at least ~64K multiply-adds).
int64_t decode_min_rows(int64_t M, int64_t K) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, M * K)); }

// Weights of the 32-element types with the set's GEMV kernels (DecodeRow layout).
void linear_decode(const QuantKernels& k, DecodeGemv gemv, DType type, const float* xd, int64_t M, int64_t K,
                   std::span<const DecodeTarget> targets) {
  AIGC_ASSERT(M >= 1 && M <= kDecodeMaxRows, "linear_decode: M = {}", M);
  const int64_t nb = K / kQK8_0;
  thread_local std::vector<int8_t> qs_buf;
  thread_local std::vector<float> d_buf;
  thread_local std::vector<int32_t> bias_buf;
  if (qs_buf.size() < static_cast<size_t>(M * K)) qs_buf.resize(M * K);
  if (d_buf.size() < static_cast<size_t>(M * nb)) d_buf.resize(M * nb), bias_buf.resize(M * nb);
  // (pointers, not the thread_local names: in a worker thread those name the worker's own buffers)
  int8_t* const qs = qs_buf.data();
  float* const d = d_buf.data();
  int32_t* const bias = bias_buf.data();
  DecodeRow rows[kDecodeMaxRows];
  for (int64_t m = 0; m < M; ++m) rows[m] = {qs + m * K, d + m * nb, bias + m * nb};
  // One row at a time on the calling thread for decode (a fork would cost more than the ~1-3 us
  // of a row); a prompt's rows in parallel.
  auto prepare = [&](int64_t m0, int64_t m1) {
    thread_local std::vector<BlockQ8_0> xq;  // each thread's own
    if (xq.size() < static_cast<size_t>(nb)) xq.resize(nb);
    for (int64_t m = m0; m < m1; ++m) {
      k.quantize_row_q8_0(xd + m * K, xq.data(), K);
      k.decode_row_prepare(type, xq.data(), K, qs + m * K, d + m * nb, bias + m * nb);
    }
  };
  if (M <= gemv::kMaxRows)
    prepare(0, M);
  else
    parallel_for(M, prepare, 1);
  // each tile passed over by rows_per_pass activation rows at a time
  const int64_t per_pass = rows_per_pass(K);
  decode_schedule(targets, decode_min_rows(M, K), 1, [&](const DecodeTarget& t, int64_t t0, int64_t t1) {
    for (int64_t m0 = 0; m0 < M; m0 += per_pass)
      gemv(t.w, t.row_bytes, K, rows + m0, static_cast<int>(std::min(per_pass, M - m0)), t0, t1, t.y + m0 * t.N + t0,
           t.N, m0 == 0);
  });
}

// K-quant weights (any mix of Q4_K, Q5_K, Q6_K and their X16 layouts: one Q8_K activation format) with the
// set's several-rows kernels, on the same schedule (in units of 16 rows where X16 weights are in).
void linear_decode_k(const QuantKernels& k, const float* xd, int64_t M, int64_t K, std::span<const DecodeTarget> targets,
                     int64_t unit) {
  AIGC_ASSERT(M >= 1 && M <= kDecodeMaxRows, "linear_decode_k: M = {}", M);
  const int64_t nb = K / kQK_K;
  const BlockQ8_K* xq = activations_quantize(k.quantize_row_q8_K, xd, M, K, nb, k.q8_K_reorder);
  decode_schedule(targets, decode_min_rows(M, K), unit, [&](const DecodeTarget& t, int64_t t0, int64_t t1) {
    rows_k_tile(t.rows_k, static_cast<const char*>(t.w), t.row_bytes, t.N, K, xq, M, t.y, t0, t1);
  });
}

}  // namespace

void linear_quantized_with(const QuantKernels& k, const Tensor& x, const Tensor& w, Tensor& y) {
  linear_quantized_check(x, w, y);
  const DType at = activation_type(w.type());
  const int64_t M = x.rows(), K = w.size(1), N = w.size(0), nb = K / dtype_traits(at).block_size;
  if (M == 0 || N == 0) return;
  const float* xd = x.ptr<float>();
  float* yd = y.ptr<float>();
  // Threads split N; each gets at least ~64K multiply-adds so small layers stay on one thread.
  const int64_t min_rows = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, M * K));
  auto run = [&](auto vec_dot, const auto* xq) {
    parallel_for(N, [&](int64_t n0, int64_t n1) { linear_rows(vec_dot, w, xq, M, yd, n0, n1); }, min_rows);
  };
  if (at == DType::Q8_K) {
    const VecDotRowsK rows_kernel = vec_dot_rows_kernel(k, w.type());
    const int64_t unit = x16_row_unit(w.type());
    // (the model loader makes X16 weights only where the CPU's kernel set runs them)
    AIGC_CHECK(rows_kernel || unit == 1, "linear_quantized: the {} kernels have none for {}", k.name, dtype_name(w.type()));
    AIGC_CHECK(N % unit == 0, "linear_quantized: {} weight {} has rows in groups of {}", dtype_name(w.type()), w.shape_str(), unit);
    if (rows_kernel && M <= kDecodeMaxRows) {  // decode and short prompts
      const DecodeTarget t{w.data(), w.stride_bytes(0), N, yd, rows_kernel};
      linear_decode_k(k, xd, M, K, std::span<const DecodeTarget>(&t, 1), unit);
      return;
    }
    const BlockQ8_K* xq = activations_quantize(k.quantize_row_q8_K, xd, M, K, nb, k.q8_K_reorder);
    if (rows_kernel) {  // long prompts: a tile of weight rows stays in cache while all M rows pass
      parallel_for(N / unit, [&](int64_t g0, int64_t g1) { linear_rows_multi(rows_kernel, w, xq, M, yd, g0 * unit, g1 * unit); },
                   (min_rows + unit - 1) / unit);
      return;
    }
    switch (w.type()) {
      case DType::Q4_K: run(k.vec_dot_q4_K_q8_K, xq); break;
      case DType::Q5_K: run(k.vec_dot_q5_K_q8_K, xq); break;
      default: run(k.vec_dot_q6_K_q8_K, xq); break;
    }
    return;
  }
  // (the model loader makes R16 weights only where the CPU's kernel set runs them)
  AIGC_CHECK(!r16_file_type(w.type()) || decode_gemv(k, w.type()),
             "linear_quantized: the {} kernels have none for {}", k.name, dtype_name(w.type()));
  if (const DecodeGemv gemv = decode_gemv(k, w.type())) {
    // in chunks of kDecodeMaxRows rows (every output is the single row's bits either way)
    for (int64_t m0 = 0; m0 < M; m0 += kDecodeMaxRows) {
      const DecodeTarget t{w.data(), w.stride_bytes(0), N, yd + m0 * N, nullptr};
      linear_decode(k, gemv, w.type(), xd + m0 * K, std::min(kDecodeMaxRows, M - m0), K,
                    std::span<const DecodeTarget>(&t, 1));
    }
    return;
  }
  const BlockQ8_0* xq = activations_quantize(k.quantize_row_q8_0, xd, M, K, nb);
  switch (w.type()) {
    case DType::Q8_0: run(k.vec_dot_q8_0_q8_0, xq); break;
    case DType::Q4_0: run(k.vec_dot_q4_0_q8_0, xq); break;
    case DType::Q4_1: run(k.vec_dot_q4_1_q8_0, xq); break;
    case DType::Q5_0: run(k.vec_dot_q5_0_q8_0, xq); break;
    default: run(k.vec_dot_q5_1_q8_0, xq); break;
  }
}

bool linear_quantized_supports(DType w) {
  switch (w) {
    case DType::Q8_0: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::Q4_0_R16: case DType::Q4_1_R16: case DType::Q5_0_R16: case DType::Q5_1_R16:
    case DType::Q4_K_X16: case DType::Q5_K_X16: case DType::Q6_K_X16:
      return true;
    default:
      return false;
  }
}

std::optional<DType> linear_repack_type(DType w, int64_t N, int64_t K) {
  static const bool enabled = [] {
    const char* e = std::getenv("AIGC_REPACK");
    return !(e && std::string_view(e) == "0");
  }();
  if (!enabled) return std::nullopt;
  if (const std::optional<DType> x16 = x16_of(w))
    return N % kX16Rows == 0 && vec_dot_rows_kernel(quant_kernels(), *x16) ? x16 : std::nullopt;
  const std::optional<DType> r16 = r16_of(w);
  if (K / 32 < kR16Group || !r16 || !decode_gemv(quant_kernels(), *r16)) return std::nullopt;
  return r16;
}

void linear_repack(const Tensor& src, Tensor& dst) {
  const std::optional<DType> to = x16_of(src.type()) ? x16_of(src.type()) : r16_of(src.type());
  AIGC_CHECK(to == dst.type() && src.ndim() == 2 && src.is_contiguous() && dst.ndim() == 2 &&
                 dst.is_contiguous() && src.size(0) == dst.size(0) && src.size(1) == dst.size(1),
             "linear_repack: {} {} -> {} {}", dtype_name(src.type()), src.shape_str(), dtype_name(dst.type()), dst.shape_str());
  const int64_t K = src.size(1), rb = src.stride_bytes(0);
  if (x16_file_type(dst.type())) {
    AIGC_CHECK(src.size(0) % kX16Rows == 0, "linear_repack: {} rows are not a multiple of {}", src.size(0), kX16Rows);
    parallel_for(src.size(0) / kX16Rows, [&](int64_t g0, int64_t g1) {
      std::vector<uint8_t> group(static_cast<size_t>(kX16Rows * rb));  // src's rows, as dst may be the same bytes
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t o = g * kX16Rows * rb;
        std::memcpy(group.data(), static_cast<const uint8_t*>(src.data()) + o, group.size());
        x16_pack(dst.type(), group.data(), static_cast<uint8_t*>(dst.data()) + o, K);
      }
    }, 4);
    return;
  }
  parallel_for(src.size(0), [&](int64_t n0, int64_t n1) {
    std::vector<uint8_t> row(static_cast<size_t>(rb));  // src's row, as dst may be the same bytes
    for (int64_t n = n0; n < n1; ++n) {
      std::memcpy(row.data(), static_cast<const uint8_t*>(src.data()) + n * rb, static_cast<size_t>(rb));
      r16_pack(dst.type(), row.data(), static_cast<uint8_t*>(dst.data()) + n * rb, K);
    }
  }, 64);
}

bool linear_quantized_prefers(DType w, int64_t M) {
  if (M < 1) return false;
  const QuantKernels& k = quant_kernels();
  if (decode_gemv(k, w)) return M <= (w == DType::Q8_0 ? 40 : kDecodeMaxRows);
  if (w == DType::Q6_K_X16) return vec_dot_rows_kernel(k, w) && M <= kQ6KX16MaxRows;  // (linear_quantized.h)
  if (x16_file_type(w)) return vec_dot_rows_kernel(k, w) != nullptr;  // any M
  return vec_dot_rows_kernel(k, w) && M <= kKQuantMaxRows;
}

void linear_quantized(const Tensor& x, const Tensor& w, Tensor& y) {
  linear_quantized_with(quant_kernels(), x, w, y);
}

void linear_group(std::span<const LinearGroupItem> items, const Tensor& x) {
  constexpr size_t kMaxItems = 8;
  const QuantKernels& k = quant_kernels();
  const DType type = items.empty() ? DType::F32 : items[0].w->type();
  const DecodeGemv gemv = decode_gemv(k, type);
  // One parallel region for all: every w of the type with GEMV kernels (Q4_0, Q8_0, Q4_1, Q5_0, Q5_1), or every w a
  // K-quant with several-rows kernels (mixed K-quants share their Q8_K activations: Q4_K_M files
  // give a layer's V, and some down projections, Q6_K).
  bool same_gemv = gemv != nullptr, all_k = true;
  int64_t unit = 1;
  for (const LinearGroupItem& it : items) {
    same_gemv = same_gemv && it.w->type() == type;
    all_k = all_k && vec_dot_rows_kernel(k, it.w->type()) != nullptr;
    unit = std::max(unit, x16_row_unit(it.w->type()));
  }
  bool fused = (same_gemv || all_k) && !items.empty() && items.size() <= kMaxItems && x.type() == DType::F32 &&
               x.ndim() == 2 && x.is_contiguous() && x.rows() <= kDecodeMaxRows;
  for (const LinearGroupItem& it : items)
    fused = fused && !it.bias && it.w->ndim() == 2 && it.w->is_contiguous() && linear_quantized_prefers(it.w->type(), x.rows()) &&
            it.w->size(1) == x.size(1) && it.w->size(1) % dtype_traits(it.w->type()).block_size == 0 &&
            it.y->type() == DType::F32 && it.y->ndim() == 2 && it.y->is_contiguous() && it.y->size(0) == x.rows() &&
            it.y->size(1) == it.w->size(0) && it.w->size(0) % unit == 0;
  if (!fused) {
    for (const LinearGroupItem& it : items) linear(x, *it.w, it.bias, *it.y);
    return;
  }
  DecodeTarget targets[kMaxItems];
  for (size_t i = 0; i < items.size(); ++i)
    targets[i] = {items[i].w->data(), items[i].w->stride_bytes(0), items[i].w->size(0), items[i].y->ptr<float>(),
                  same_gemv ? nullptr : vec_dot_rows_kernel(k, items[i].w->type())};
  const std::span<const DecodeTarget> all(targets, items.size());
  if (same_gemv)
    linear_decode(k, gemv, type, x.ptr<float>(), x.rows(), x.size(1), all);
  else
    linear_decode_k(k, x.ptr<float>(), x.rows(), x.size(1), all, unit);
}

}  // namespace aigc::ops
