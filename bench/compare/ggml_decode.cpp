// A decode step's matrix-vector products, aigc beside ggml (the CPU backend of llama.cpp), on the
// same weight bytes: one activation row times many copies of a weight matrix (more than 1 GiB in
// all, so that every product reads its weights from memory, as generation does), the copies taken
// in turn; ggml as one graph of mul_mat nodes computed with ggml_graph_compute_with_ctx, aigc as one
// ops::linear per copy. Both quantise the activation row per product. The two alternate within
// each repetition; the best repetition of each is printed, in GB/s of weight bytes.
//
// Not built by default and never by CI: it needs a ggml checkout built with CMake, given as
//   cmake -S . -B build-cmp -DAIGC_GGML_DIR=/path/to/ggml   (its libraries in /path/to/ggml/build/src)
//   ninja -C build-cmp compare_ggml_decode
//   build-cmp/compare_ggml_decode [types=q4_0,q8_0,f16,q4_K,q6_K,q5_0,q4_1] [threads=1,2] [reps=4]
// ggml's buffer is ours (2 MiB aligned, transparent huge pages asked for, as aigc's weights are),
// so the two read memory the same way. (llama.cpp's own loader gives ggml 64-byte aligned buffers,
// which on a VM with THP set to "madvise" get 4 KiB pages; and llama.cpp repacks Q4_0 for AVX2 into
// its interleaved layout, which plain ggml does not: this compares the kernels, not llama.cpp.)
#include <ggml-cpu.h>
#include <ggml.h>

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

ggml_type ggml_type_named(const std::string& name) {
  for (int i = 0; i < GGML_TYPE_COUNT; ++i) {
    const char* n = ggml_type_name(static_cast<ggml_type>(i));
    if (n && name == n) return static_cast<ggml_type>(i);
  }
  return GGML_TYPE_COUNT;
}

struct Case {
  aigc::DType type;
  ggml_type gtype;
  int64_t N, K;
};

// GB/s of both engines over `reps` alternations; threads for both.
void run(const Case& c, int threads, int reps) {
  using namespace aigc;
  thread_count_set(threads);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor wf = Tensor::empty(DType::F32, {c.N, c.K});
  for (int64_t i = 0; i < wf.numel(); ++i) wf.ptr<float>()[i] = u(rng);
  Tensor wq = Tensor::empty(c.type, {c.N, c.K});
  ops::copy(wf, wq);  // aigc's quantiser: GGML's block layouts, so ggml reads the same bytes
  const size_t bytes = wq.nbytes();
  if (bytes != ggml_row_size(c.gtype, c.K) * static_cast<size_t>(c.N)) {
    fmt::print("{}: sizes differ (aigc {}, ggml {} bytes)\n", dtype_name(c.type), bytes,
               ggml_row_size(c.gtype, c.K) * static_cast<size_t>(c.N));
    return;
  }
  const int copies = static_cast<int>(1024.0 * 1024 * 1024 / static_cast<double>(bytes)) + 1;

  // aigc: its own copies (buffer_alloc: 2 MiB aligned, huge pages), one output row each
  std::vector<Tensor> ws, ys;
  for (int i = 0; i < copies; ++i) {
    ws.push_back(Tensor::empty(c.type, {c.N, c.K}));
    std::memcpy(ws.back().data(), wq.data(), bytes);
    ys.push_back(Tensor::empty(DType::F32, {1, c.N}));
  }
  Tensor x = Tensor::empty(DType::F32, {1, c.K});
  for (int64_t i = 0; i < c.K; ++i) x.ptr<float>()[i] = u(rng);

  // ggml: a context over a buffer of ours holding its copies, the activation and the graph
  const size_t graph_nodes = static_cast<size_t>(4 * copies);
  const size_t mem = (bytes + 4096) * copies + static_cast<size_t>(copies) * (c.N * 4 + 4096) + c.K * 4 +
                     ggml_graph_overhead_custom(graph_nodes, false) + (size_t{64} << 20);
  std::shared_ptr<void> buf = buffer_alloc(mem);
  ggml_init_params ip = {mem, buf.get(), false};
  ggml_context* ctx = ggml_init(ip);
  ggml_tensor* gx = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, c.K, 1);
  std::memcpy(gx->data, x.data(), static_cast<size_t>(c.K) * 4);
  ggml_cgraph* gf = ggml_new_graph_custom(ctx, graph_nodes, false);
  std::vector<ggml_tensor*> gy;
  for (int i = 0; i < copies; ++i) {
    ggml_tensor* w = ggml_new_tensor_2d(ctx, c.gtype, c.K, c.N);
    std::memcpy(w->data, wq.data(), bytes);
    gy.push_back(ggml_mul_mat(ctx, w, gx));
    ggml_build_forward_expand(gf, gy.back());
  }

  double best_aigc = 0, best_ggml = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    ggml_graph_compute_with_ctx(ctx, gf, threads);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best_ggml = std::max(best_ggml, static_cast<double>(bytes) * copies / s / 1e9);
    t0 = Clock::now();
    for (int i = 0; i < copies; ++i) ops::linear(x, ws[i], nullptr, ys[i]);
    s = std::chrono::duration<double>(Clock::now() - t0).count();
    best_aigc = std::max(best_aigc, static_cast<double>(bytes) * copies / s / 1e9);
  }
  // the same products: the outputs agree to the activation quantisation's error
  const float* ya = ys[0].ptr<float>();
  const auto* yg = static_cast<const float*>(gy[0]->data);
  double max_diff = 0, max_abs = 0;
  for (int64_t n = 0; n < c.N; ++n) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(ya[n] - yg[n])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(yg[n])));
  }
  fmt::print("| {} | {}x{} | {} | {:.1f} | {:.1f} | {:.2f} | {:.1e} |\n", dtype_name(c.type), c.N, c.K, threads, best_aigc,
             best_ggml, best_aigc / best_ggml, max_diff / max_abs);
  std::fflush(stdout);
  ggml_free(ctx);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> types = split(argc > 1 ? argv[1] : "q4_0,q8_0,f16,q4_K,q6_K,q5_0,q4_1");
  const std::vector<std::string> threads = split(argc > 2 ? argv[2] : "1,2");
  const int reps = argc > 3 ? std::max(1, std::atoi(argv[3])) : 4;
  ggml_cpu_init();
  std::printf("weights from memory, GB/s of weight bytes (best of %d alternations); diff: max |aigc - ggml| / max |ggml|\n\n", reps);
  std::printf("| type | N x K | threads | aigc GB/s | ggml GB/s | aigc / ggml | diff |\n|---|---|--:|--:|--:|--:|--:|\n");
  for (const std::string& t : types) {
    const std::optional<aigc::DType> type = aigc::dtype_from_name(t);
    const ggml_type gtype = ggml_type_named(t);
    if (!type || gtype == GGML_TYPE_COUNT) {
      std::fprintf(stderr, "unknown type %s\n", t.c_str());
      return 1;
    }
    for (const std::string& th : threads)
      for (auto [N, K] : {std::pair<int64_t, int64_t>{5632, 2048}, {2048, 5632}})
        run({*type, gtype, N, K}, std::max(1, std::atoi(th.c_str())), reps);
  }
  return 0;
}
