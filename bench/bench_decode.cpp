// Decode GEMV kernels side by side on one thread, in weight GB/s (bytes of weight rows read per
// call): the Q4_0 kernel of the avx512vnni set (gemv_q4_0_row: 16-byte loads and inserts) against
// the avx512vbmi set's (byte permutes), in cache (a 2048-wide weight of ~250 KiB, in L2, reused)
// and from memory (TinyLlama's FFN shape 5632x2048, copies past 512 MiB used in turn), and the
// Q8_0 kernel for reference. The variants alternate within each repetition and the best
// repetition is kept, so a busy machine slows both alike.
//   build/bench_decode [reps=7]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

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
  std::vector<std::vector<uint8_t>> copies;
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
    Tensor dst = Tensor::view_of(type, shape, first.data() + n * w.row_bytes);
    ops::copy(src, dst);
  }
  const int copies = std::max(1, static_cast<int>(min_total_bytes / static_cast<double>(first.size()) + 0.999));
  for (int i = 0; i < copies; ++i) w.copies.push_back(first);
  return w;
}

// One activation row in DecodeRow layout (64-byte aligned, as a fresh vector's data would not be).
struct Activation {
  std::vector<uint8_t> mem;
  DecodeRow row;
};

Activation activation_make(DType type, int64_t K) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(K));
  for (float& v : x) v = u(rng);
  const int64_t nb = K / kQK8_0;
  std::vector<BlockQ8_0> xq(static_cast<size_t>(nb));
  quantize_row_q8_0_ref(x.data(), xq.data(), K);
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

void bench_pair(const char* what, const QuantKernels& k0, const QuantKernels& k1, const Weights& w, int reps,
                double seconds_per_rep) {
  const Activation a = activation_make(w.type, w.K);
  const QuantKernels* ks[2] = {&k0, &k1};
  std::vector<float> y(static_cast<size_t>(w.N));
  double best[2] = {0, 0};
  float y0[2] = {0, 0};
  size_t next = 0;
  for (int r = 0; r < reps; ++r) {
    for (int v = 0; v < 2; ++v) {
      const DecodeGemv gemv = w.type == DType::Q4_0 ? ks[v]->gemv_q4_0 : ks[v]->gemv_q8_0;
      int64_t calls = 0;
      double dt = 0;
      const auto t0 = Clock::now();
      do {
        gemv(w.copies[next].data(), w.row_bytes, w.K, a.row, 0, w.N, y.data());
        next = (next + 1) % w.copies.size();
        ++calls;
        dt = std::chrono::duration<double>(Clock::now() - t0).count();
      } while (dt < seconds_per_rep);
      best[v] = std::max(best[v], static_cast<double>(calls) * w.N * w.row_bytes / dt / 1e9);
      y0[v] = y[0];
    }
  }
  fmt::print("{:<36} {:>5} {:>10} {:6.1f} GB/s   {:>10} {:6.1f} GB/s   x{:.2f}   (y[0] {:.4f} / {:.4f})\n", what,
             dtype_name(w.type), k0.name, best[0], k1.name, best[1], best[1] / best[0], y0[0], y0[1]);
}

}  // namespace
}  // namespace aigc

int main(int argc, char** argv) {
  using namespace aigc;
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  const QuantKernels* vnni = quant_kernels_find(QuantIsa::Avx512Vnni);
  const QuantKernels* vbmi = quant_kernels_find(QuantIsa::Avx512Vbmi);
  if (!vnni || !vbmi) {
    fmt::print("this CPU lacks AVX-512 VNNI or VBMI: no decode kernels to compare\n");
    return 0;
  }
  for (DType t : {DType::Q4_0, DType::Q8_0}) {
    const int64_t n_cache = t == DType::Q4_0 ? 224 : 112;  // ~250 KiB
    bench_pair("in cache, 1 thread (Nx2048)", *vnni, *vbmi, weights_make(t, n_cache, 2048, 0), reps, 0.05);
    bench_pair("from memory, 1 thread (5632x2048)", *vnni, *vbmi, weights_make(t, 5632, 2048, 512.0 * (1 << 20)),
               reps, 0.2);
  }
  return 0;
}
