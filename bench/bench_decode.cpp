// Decode GEMV kernels side by side, in weight GB/s (bytes of weight rows read per call): those of
// every kernel set this CPU runs (AVX2: its vec_dot per row, the path before the set had decode
// kernels, and its decode kernel; AVX-512: the avx512vnni set's Q4_0 kernel, 16-byte loads and
// inserts, against the avx512vbmi set's, byte permutes; and the Q8_0 kernel; the R16 kernels
// (Q4_0, Q4_1, Q5_0, Q5_1 repacked at load; AVX2 and AVX-512); the Q4_1, Q5_0 and Q5_1 kernels of the file
// layouts (AVX2's, which every set takes) beside their vec_dot; for Q4_K, Q5_K and Q6_K each set's
// vec_dot per weight row and its several-rows kernel over tiles of 64 rows, which decode runs; for
// Q4_K_X16, Q5_K_X16 and Q6_K_X16, repacked at load, their kernels), beside a plain read of the same bytes (512-bit
// loads, or 256-bit without AVX-512, into 4 accumulators: what the memory gives one stream per
// thread). In cache (a 2048-wide weight of ~250 KiB, in L2, reused; 1 thread) and from memory
// (TinyLlama's FFN shape 5632x2048, copies past 1 GiB used in turn; 1 and 2 threads, each its own
// half of the rows; and its down projection, 2048x5632, 2 threads). The weights come from
// buffer_alloc, as a model's do with --no-mmap (2 MiB aligned, transparent huge pages). The
// variants alternate within each repetition and the best repetition is kept, so a busy machine
// slows all alike.
//   build/bench_decode [reps=7] [types, e.g. q4_0,q4_0_r16 (default: all)]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <list>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <immintrin.h>

// GCC 12's _mm512_reduce_add_epi32 self-initialises an undefined vector: a false -Wuninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "backend/cpu/ops.h"
#include "backend/cpu/quant_dot.h"
#include "core/quant.h"
#include "core/tensor.h"

namespace aigc {
namespace {

using Clock = std::chrono::steady_clock;

struct Weights {
  DType type;
  int64_t N, K, row_bytes;
  std::vector<std::shared_ptr<void>> copies;
};

Weights weights_make(DType type, int64_t N, int64_t K, double min_total_bytes) {
  Weights w{type, N, K, static_cast<int64_t>(*dtype_row_bytes(type, K)), {}};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> row(static_cast<size_t>(K));
  std::vector<uint8_t> first(static_cast<size_t>(N * w.row_bytes));
  for (int64_t n = 0; n < N; ++n) {
    for (float& v : row) v = u(rng);
    const int64_t shape[] = {1, K};
    Tensor src = Tensor::view_of(DType::F32, shape, row.data());
    // (X16: the file type's rows, repacked below)
    Tensor dst = Tensor::view_of(x16_file_type(type).value_or(type), shape, first.data() + n * w.row_bytes);
    ops::copy(src, dst);
  }
  if (x16_file_type(type)) {
    std::vector<uint8_t> group(static_cast<size_t>(kX16Rows * w.row_bytes));
    for (int64_t g = 0; g + kX16Rows <= N; g += kX16Rows) {
      std::copy_n(first.data() + g * w.row_bytes, group.size(), group.data());
      x16_pack(type, group.data(), first.data() + g * w.row_bytes, K);
    }
  }
  const int copies = std::max(1, static_cast<int>(min_total_bytes / static_cast<double>(first.size()) + 0.999));
  for (int i = 0; i < copies; ++i) {
    w.copies.push_back(buffer_alloc(first.size()));
    std::copy(first.begin(), first.end(), static_cast<uint8_t*>(w.copies.back().get()));
  }
  return w;
}

// One activation row in DecodeRow layout (64-byte aligned, as a fresh vector's data would not be).
struct Activation {
  std::vector<uint8_t> mem;
  DecodeRow row;
};

// One random activation row quantised to blocks of Q8_0 (or Q8_K, the K-quants' activations).
template <typename Block = BlockQ8_0>
std::vector<Block> activation_blocks(int64_t K) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(K));
  for (float& v : x) v = u(rng);
  constexpr bool kK = std::is_same_v<Block, BlockQ8_K>;
  std::vector<Block> xq(static_cast<size_t>(K / (kK ? kQK_K : kQK8_0)));
  if constexpr (kK)
    quantize_row_q8_K_ref(x.data(), xq.data(), K);
  else
    quantize_row_q8_0_ref(x.data(), xq.data(), K);
  return xq;
}

Activation activation_make(DType type, int64_t K) {
  const int64_t nb = K / kQK8_0;
  const std::vector<BlockQ8_0> xq = activation_blocks(K);
  Activation a;
  a.mem.resize(static_cast<size_t>(K + 8 * nb + 256));
  auto* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(a.mem.data()) + 63) & ~uintptr_t{63});
  auto* qs = reinterpret_cast<int8_t*>(base);
  auto* d = reinterpret_cast<float*>(base + (K + 63) / 64 * 64);
  auto* bias = reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(d) + (4 * nb + 63) / 64 * 64);
  decode_row_prepare(type, xq.data(), K, qs, d, bias);
  a.row = {qs, d, bias};
  return a;
}

// The reference: rows [n0, n1) read as 512-bit loads into 4 accumulators (y[0] keeps them live);
// on CPUs without AVX-512, 256-bit loads into 4 accumulators.
__attribute__((target("avx512f"))) void plain_read_avx512(const uint8_t* p, int64_t bytes, float* y) {
  __m512i a0 = _mm512_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t o = 0; o + 256 <= bytes; o += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(p + o));
    a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(p + o + 64));
    a2 = _mm512_xor_si512(a2, _mm512_loadu_si512(p + o + 128));
    a3 = _mm512_xor_si512(a3, _mm512_loadu_si512(p + o + 192));
  }
  y[0] = static_cast<float>(_mm512_reduce_add_epi32(_mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3))));
}

__attribute__((target("avx2"))) void plain_read_avx2(const uint8_t* p, int64_t bytes, float* y) {
  __m256i a0 = _mm256_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t o = 0; o + 128 <= bytes; o += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + o)));
    a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + o + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + o + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + o + 96)));
  }
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  y[0] = static_cast<float>(_mm256_extract_epi32(a, 0) ^ _mm256_extract_epi32(a, 7));
}

void plain_read(const void* w, int64_t row_bytes, int64_t n0, int64_t n1, float* y) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  const auto* p = static_cast<const uint8_t*>(w) + n0 * row_bytes;
  (avx512 ? plain_read_avx512 : plain_read_avx2)(p, (n1 - n0) * row_bytes, y);
}

// One way to compute rows [n0, n1) of y = w · a for one activation row.
struct Variant {
  std::string name;
  std::function<void(const void* w, int64_t row_bytes, int64_t K, int64_t n0, int64_t n1, float* y)> run;
};

// A set's decode kernel (DecodeRow layout, prepared once as linear_quantized does): decode_gemv.
Variant decode_variant(const QuantKernels& k, DType type, const Activation& a) {
  const DecodeGemv gemv = decode_gemv(k, type);
  const DecodeRow* row = &a.row;
  return {fmt::format("{} gemv", k.name), [gemv, row](const void* w, int64_t rb, int64_t K, int64_t n0, int64_t n1, float* y) {
            gemv(w, rb, K, row, 1, n0, n1, y, 0, true);
          }};
}

// vec_dot per weight row of rows [n0, n1) against one activation row of blocks y8.
template <typename BlockW, typename BlockA>
Variant vec_dot_loop(std::string name, float (*f)(int64_t, const BlockW*, const BlockA*), const BlockA* y8) {
  return {std::move(name), [f, y8](const void* w, int64_t rb, int64_t K, int64_t n0, int64_t n1, float* y) {
            for (int64_t n = n0; n < n1; ++n) y[n - n0] = f(K, reinterpret_cast<const BlockW*>(static_cast<const char*>(w) + n * rb), y8);
          }};
}

// The activations in the set's K-quant order (q8_K_reorder), kept for the program's life.
const BlockQ8_K* k_activations(const QuantKernels& k, const std::vector<BlockQ8_K>& xq) {
  static std::list<std::vector<BlockQ8_K>> reordered;
  if (!k.q8_K_reorder) return xq.data();
  reordered.push_back(xq);
  k.q8_K_reorder(reordered.back().data(), static_cast<int64_t>(xq.size()));
  return reordered.back().data();
}

// A set's K-quant several-rows kernel over tiles of 64 weight rows, one activation row, prefetching
// (what linear_quantized runs for a decode step: VecDotRowsK); X16 weights: their kernel.
Variant rows_k_variant(const QuantKernels& k, DType type, const std::vector<BlockQ8_K>& xq) {
  const VecDotRowsK f = vec_dot_rows_kernel(k, type);
  const BlockQ8_K* y8 = k_activations(k, xq);
  return {fmt::format("{} rows", k.name), [f, y8](const void* w, int64_t rb, int64_t K, int64_t n0, int64_t n1, float* y) {
            for (int64_t t0 = n0; t0 < n1; t0 += 64)
              f(K, static_cast<const char*>(w) + t0 * rb, rb, std::min<int64_t>(64, n1 - t0), y8, 0, 1, y + t0 - n0, 0, true);
          }};
}

// A set's K-quant vec_dot per weight row (what linear_quantized ran for a decode step before the
// several-rows kernels).
Variant vec_dot_k_variant(const QuantKernels& k, DType type, const std::vector<BlockQ8_K>& xq) {
  const std::string name = fmt::format("{} vec_dot", k.name);
  const BlockQ8_K* y = k_activations(k, xq);
  if (type == DType::Q4_K) return vec_dot_loop(name, k.vec_dot_q4_K_q8_K, y);
  if (type == DType::Q5_K) return vec_dot_loop(name, k.vec_dot_q5_K_q8_K, y);
  return vec_dot_loop(name, k.vec_dot_q6_K_q8_K, y);
}

// A set's vec_dot per weight row against the Q8_0 activation blocks (the path of sets without a
// decode kernel).
Variant vec_dot_variant(const QuantKernels& k, DType type, const std::vector<BlockQ8_0>& xq) {
  const std::string name = fmt::format("{} vec_dot", k.name);
  switch (type) {
    case DType::Q4_0: return vec_dot_loop(name, k.vec_dot_q4_0_q8_0, xq.data());
    case DType::Q4_1: return vec_dot_loop(name, k.vec_dot_q4_1_q8_0, xq.data());
    case DType::Q5_0: return vec_dot_loop(name, k.vec_dot_q5_0_q8_0, xq.data());
    case DType::Q5_1: return vec_dot_loop(name, k.vec_dot_q5_1_q8_0, xq.data());
    default: return vec_dot_loop(name, k.vec_dot_q8_0_q8_0, xq.data());
  }
}

// GB/s of `v` over the weight copies in turn for `seconds`, `threads` threads each on its own
// share of the rows (no barrier between calls); y0: thread 0's y[0].
double variant_gbs(const Variant& v, const Weights& w, int threads, double seconds, float* y0) {
  std::vector<std::thread> pool;
  std::vector<int64_t> bytes(static_cast<size_t>(threads), 0);
  const auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const int64_t n0 = w.N * t / threads, n1 = w.N * (t + 1) / threads;
      std::vector<float> y(static_cast<size_t>(n1 - n0 + 1));
      size_t next = static_cast<size_t>(t) % w.copies.size();
      do {
        v.run(w.copies[next].get(), w.row_bytes, w.K, n0, n1, y.data());
        next = (next + 1) % w.copies.size();
        bytes[static_cast<size_t>(t)] += (n1 - n0) * w.row_bytes;
      } while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds);
      if (t == 0) *y0 = y[0];
    });
  for (std::thread& th : pool) th.join();
  int64_t total = 0;
  for (int64_t b : bytes) total += b;
  return static_cast<double>(total) / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
}

// The activation row in every format a kernel takes.
struct Inputs {
  Activation decode;              // DecodeRow layout (Q4_0, Q8_0 weights)
  std::vector<BlockQ8_0> q8_0;    // Q8_0 blocks
  std::vector<BlockQ8_K> q8_K;    // Q8_K blocks (K-quant weights)
};

bool is_k_quant(DType t) { return dtype_traits(t).block_size == kQK_K; }  // and their X16 layouts

Inputs inputs_make(DType type, int64_t K) {
  Inputs in;
  if (is_k_quant(type)) {
    in.q8_K = activation_blocks<BlockQ8_K>(K);
  } else {
    in.decode = activation_make(type, K);
    in.q8_0 = activation_blocks(K);
  }
  return in;
}

// The kernels of every set this CPU runs, for weights of `type`: decode kernels where a set has
// them, and the AVX2 vec_dot (what linear_quantized used on AVX2 CPUs before their decode kernels);
// for the K-quants, each set's vec_dot (a decode step's kernel).
std::vector<Variant> variants_make(DType type, const Inputs& in) {
  std::vector<Variant> v;
  for (QuantIsa isa : {QuantIsa::Avx2, QuantIsa::Avx512Vnni, QuantIsa::Avx512Vbmi}) {
    const QuantKernels* k = quant_kernels_find(isa);
    if (!k) continue;
    if (is_k_quant(type)) {
      if (isa == QuantIsa::Avx512Vbmi) continue;  // Vnni's kernels
      if (!x16_file_type(type)) v.push_back(vec_dot_k_variant(*k, type, in.q8_K));  // X16: no vec_dot
      if (vec_dot_rows_kernel(*k, type)) v.push_back(rows_k_variant(*k, type, in.q8_K));
      continue;
    }
    if (isa == QuantIsa::Avx2 && !r16_file_type(type)) v.push_back(vec_dot_variant(*k, type, in.q8_0));
    if (isa == QuantIsa::Avx512Vbmi && type != DType::Q4_0) continue;  // the VNNI set's kernel
    if (isa != QuantIsa::Avx2 && (type == DType::Q4_1 || type == DType::Q5_0 || type == DType::Q5_1))
      continue;  // AVX2's kernel in every set
    if (decode_gemv(*k, type)) v.push_back(decode_variant(*k, type, in.decode));
  }
  v.push_back({"plain read", [](const void* w, int64_t rb, int64_t, int64_t n0, int64_t n1, float* y) {
                 plain_read(w, rb, n0, n1, y);
               }});
  return v;
}

void bench_kernels(const char* what, const Weights& w, int threads, int reps, double seconds_per_rep) {
  const Inputs in = inputs_make(w.type, w.K);
  const std::vector<Variant> variants = variants_make(w.type, in);
  std::vector<double> best(variants.size(), 0.0);
  std::vector<float> y0(variants.size(), 0.0f);
  for (int r = 0; r < reps; ++r)
    for (size_t v = 0; v < variants.size(); ++v)
      best[v] = std::max(best[v], variant_gbs(variants[v], w, threads, seconds_per_rep, &y0[v]));
  const double read = best.back();
  fmt::print("{:<36} {:>5}", what, dtype_name(w.type));
  for (size_t v = 0; v + 1 < variants.size(); ++v)
    fmt::print("  {} {:5.1f} GB/s ({:3.0f}%)", variants[v].name, best[v], 100 * best[v] / read);
  fmt::print("  read {:5.1f} GB/s  (y[0]", read);
  for (size_t v = 0; v + 1 < variants.size(); ++v) fmt::print(" {:.4f}", y0[v]);
  fmt::print(")\n");
}

}  // namespace
}  // namespace aigc

int main(int argc, char** argv) {
  using namespace aigc;
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  if (!quant_kernels_find(QuantIsa::Avx2)) {
    fmt::print("this CPU lacks AVX2: no decode kernels to compare\n");
    return 0;
  }
  fmt::print("(percent: of the plain read of the same bytes with the same threads)\n");
  const std::string only = argc > 2 ? argv[2] : "";  // comma-separated type names (dtype_name), or all
  for (DType t : {DType::Q4_0, DType::Q4_0_R16, DType::Q8_0, DType::Q4_1, DType::Q4_1_R16, DType::Q5_0, DType::Q5_0_R16,
                  DType::Q5_1, DType::Q5_1_R16, DType::Q4_K, DType::Q4_K_X16, DType::Q5_K,
                  DType::Q5_K_X16, DType::Q6_K, DType::Q6_K_X16}) {
    if (r16_file_type(t) && !decode_gemv(quant_kernels(), t)) continue;  // no kernel: never repacked
    if (x16_file_type(t) && !vec_dot_rows_kernel(quant_kernels(), t)) continue;  // no kernel: never repacked
    if (!only.empty()) {  // (appended: GCC 12 warns falsely about "," + only)
      std::string list(","), name(",");
      list.append(only).append(",");
      name.append(dtype_name(t)).append(",");
      if (list.find(name) == std::string::npos) continue;
    }
    const int64_t n_cache = 256 * 1024 / *dtype_row_bytes(t, 2048) / 16 * 16;  // ~250 KiB (X16: whole groups)
    bench_kernels("in cache, 1 thread (Nx2048)", weights_make(t, n_cache, 2048, 0), 1, reps, 0.05);
    // Qwen2.5-0.5B's rows (896 = 28 blocks of 32: a full group of 16 and a partial one; not a row
    // of K-quant blocks, which is why published files give these matrices Q5_0 / Q8_0)
    if (896 % dtype_traits(t).block_size == 0) {
      bench_kernels("in cache, 1 thread (Nx896)", weights_make(t, 256 * 1024 / *dtype_row_bytes(t, 896), 896, 0), 1,
                    reps, 0.05);
      bench_kernels("from memory, 1 thread (4864x896)", weights_make(t, 4864, 896, 1024.0 * (1 << 20)), 1, reps, 0.2);
    }
    const Weights big = weights_make(t, 5632, 2048, 1024.0 * (1 << 20));
    bench_kernels("from memory, 1 thread (5632x2048)", big, 1, reps, 0.2);
    bench_kernels("from memory, 2 threads (5632x2048)", big, 2, reps, 0.2);
    // the FFN down projection's long rows (K = 5632): a kernel change can move them apart from K = 2048
    // (session 9, fast memory: one row a pass 84% against 83% of a plain read; four rows 73% against 95%)
    const Weights down = weights_make(t, 2048, 5632, 1024.0 * (1 << 20));
    bench_kernels("from memory, 2 threads (2048x5632)", down, 2, reps, 0.2);
  }
  return 0;
}
