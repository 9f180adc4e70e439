// The decode linears of a real Llama-family GGUF, kind by kind, beside a plain read of the same
// weights: what bench_decode measures for one matrix, in situ. Kinds: each layer's Q/K/V group,
// output projection, gate/up group and down projection (every layer back to back, as a token
// runs them, without the norms and attention between), all four in order, and the output layer.
// Each kind's timed run sits between two plain reads of the model's weights
// (memory_read_pass_gbs), and its weight GB/s is reported over their mean, per round (the VM's
// memory changes speed within seconds) and as means; rounds alternate the kinds.
// (Session 6 found the Q4_0 kernel at 94% of a plain read in bench_decode but the linears here at
// 70-85% when the memory is fast, 94-100% when it is slow; this is the tool to find the rest.)
//   build/bench_decode_layers MODEL.gguf [rounds=6] [threads=2] [-v: every round]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "core/error.h"
#include "core/machine_probe.h"
#include "core/thread_pool.h"
#include "text/model_llama.h"

namespace aigc {
namespace {

using Clock = std::chrono::steady_clock;

enum Kind { kQkv, kWo, kGateUp, kDown, kAll, kOutput, kKinds };
const char* const kKindNames[kKinds] = {"qkv", "wo", "gate_up", "down", "all four", "output"};

struct Buffers {
  Tensor h, q, k, v, o, g, u, logits;
};

Buffers buffers_make(const LlamaHparams& hp) {
  auto vec = [](int64_t n, float step) {
    Tensor t = Tensor::zeros(DType::F32, {1, n});
    for (int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = step * static_cast<float>(i % 7 - 3);
    return t;
  };
  return {vec(hp.n_embd, 0.01f),
          vec(hp.n_head * hp.head_dim, 0.01f),
          vec(hp.n_head_kv * hp.head_dim, 0.0f),
          vec(hp.n_head_kv * hp.head_dim, 0.0f),
          vec(hp.n_embd, 0.0f),
          vec(hp.n_ff, 0.01f),
          vec(hp.n_ff, 0.0f),
          vec(hp.n_vocab, 0.0f)};
}

void kind_run(const LlamaModel& m, Buffers& b, int kind) {
  if (kind == kOutput) return ops::linear(b.h, m.output, nullptr, b.logits);
  for (const LlamaLayer& L : m.layers) {
    if (kind == kQkv || kind == kAll) {
      const ops::LinearGroupItem qkv[] = {{&L.wq, nullptr, &b.q}, {&L.wk, nullptr, &b.k}, {&L.wv, nullptr, &b.v}};
      ops::linear_group(qkv, b.h);
    }
    if (kind == kWo || kind == kAll) ops::linear(b.q, L.wo, nullptr, b.o);
    if (kind == kGateUp || kind == kAll) {
      const ops::LinearGroupItem gate_up[] = {{&L.w_gate, nullptr, &b.g}, {&L.w_up, nullptr, &b.u}};
      ops::linear_group(gate_up, b.h);
    }
    if (kind == kDown || kind == kAll) ops::linear(b.g, L.w_down, nullptr, b.o);
  }
}

double kind_bytes(const LlamaModel& m, int kind) {
  if (kind == kOutput) return static_cast<double>(m.output.nbytes());
  double bytes = 0;
  for (const LlamaLayer& L : m.layers) {
    if (kind == kQkv || kind == kAll) bytes += static_cast<double>(L.wq.nbytes() + L.wk.nbytes() + L.wv.nbytes());
    if (kind == kWo || kind == kAll) bytes += static_cast<double>(L.wo.nbytes());
    if (kind == kGateUp || kind == kAll) bytes += static_cast<double>(L.w_gate.nbytes() + L.w_up.nbytes());
    if (kind == kDown || kind == kAll) bytes += static_cast<double>(L.w_down.nbytes());
  }
  return bytes;
}

int run(int argc, char** argv) {
  std::vector<std::string> args;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-v") == 0) verbose = true;
    else args.emplace_back(argv[i]);
  }
  if (args.empty()) {
    fmt::print(stderr, "usage: bench_decode_layers MODEL.gguf [rounds=6] [threads=2] [-v]\n");
    return 2;
  }
  const int rounds = args.size() > 1 ? std::max(1, std::atoi(args[1].c_str())) : 6;
  const int threads = args.size() > 2 ? std::max(1, std::atoi(args[2].c_str())) : 2;
  thread_count_set(threads);
  const LlamaModel m = LlamaModel::load(args[0], {.use_mmap = false});
  Buffers b = buffers_make(m.hp);
  const std::span<const uint8_t> weights = m.decode_weights_span();
  fmt::print("{}: {} layers, {} threads, {} rounds; weights read beside each run (layers and output): {:.0f} MB\n", args[0],
             m.layers.size(), threads, rounds, static_cast<double>(weights.size()) / 1e6);
  for (int kind = 0; kind < kKinds; ++kind) kind_run(m, b, kind);  // warm-up
  std::vector<double> gbs_sum(kKinds, 0), of_read_sum(kKinds, 0), read_min(kKinds, 1e30), read_max(kKinds, 0);
  for (int r = 0; r < rounds; ++r)
    for (int kind = 0; kind < kKinds; ++kind) {
      const double before = memory_read_pass_gbs(weights.data(), weights.size(), threads);
      const int reps = kind == kOutput ? 40 : 4;
      const auto t0 = Clock::now();
      for (int i = 0; i < reps; ++i) kind_run(m, b, kind);
      const double gbs = kind_bytes(m, kind) * reps / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
      const double after = memory_read_pass_gbs(weights.data(), weights.size(), threads);
      const double read = 0.5 * (before + after);
      gbs_sum[kind] += gbs;
      of_read_sum[kind] += gbs / read;
      read_min[kind] = std::min(read_min[kind], read);
      read_max[kind] = std::max(read_max[kind], read);
      if (verbose)
        fmt::print("  round {} {:<8} {:5.1f} GB/s, read {:5.1f} / {:5.1f} GB/s before / after: {:3.0f}%\n", r + 1,
                   kKindNames[kind], gbs, before, after, 100 * gbs / read);
    }
  fmt::print("{:<9} {:>9} {:>9} {:>9} {:>16}\n", "kind", "MB/token", "GB/s", "of read", "read seen GB/s");
  for (int kind = 0; kind < kKinds; ++kind)
    fmt::print("{:<9} {:9.1f} {:9.1f} {:8.0f}% {:7.1f} - {:5.1f}\n", kKindNames[kind], kind_bytes(m, kind) / 1e6,
               gbs_sum[kind] / rounds, 100 * of_read_sum[kind] / rounds, read_min[kind], read_max[kind]);
  fmt::print("(the output layer is small enough to stay partly in cache across its 40 back-to-back runs)\n");
  return 0;
}

}  // namespace
}  // namespace aigc

int main(int argc, char** argv) {
  try {
    return aigc::run(argc, argv);
  } catch (const aigc::Error& e) {
    fmt::print(stderr, "bench_decode_layers: {}\n", e.what());
    return 1;
  }
}
