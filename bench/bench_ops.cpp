// CPU ops as GB/s next to the probe's bandwidth (%bw: of the probe's copy figure,
// which counts bytes the same way: read + written, no write-allocate).
//   build/bench_ops                                  # threads 1 and 2
//   build/bench_ops --threads=1,8 --benchmark_filter=copy
// To add an op: one OpCase in op_cases() (shapes, the bytes it moves, a prepare that allocates and
// returns the call to time).
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/ops.h"
#include "core/tensor.h"
#include "harness.h"

namespace aigc::bench {
namespace {

struct OpCase {
  std::string name;                               // "<op>/<what>"
  double bytes;                                   // moved per call (read + written)
  double flops;                                   // per call; 0 for pure data movement
  std::function<GemmPrepared()> prepare;          // run + keep (c unused)
  BandwidthRef bw = BandwidthRef::copy;           // read: decode GEMV (weights streamed once)
};

Tensor tensor_random(DType type, std::initializer_list<int64_t> shape, uint32_t seed) {
  Tensor t = Tensor::empty(type, shape);
  std::vector<float> v(t.numel());
  values_fill(v, seed);
  Tensor src = Tensor::view_of(DType::F32, t.shape(), v.data());
  ops::copy(src, t);
  return t;
}

std::vector<OpCase> op_cases() {
  constexpr int64_t n = 4096;
  std::vector<OpCase> cases;
  // [4096, 4096] f32 transposed view -> contiguous (as attention's permutes do).
  cases.push_back({"copy/transpose_f32_4096x4096", 2.0 * n * n * 4, 0, [] {
                     struct B { Tensor x, y; };
                     auto b = std::make_shared<B>();
                     b->x = tensor_random(DType::F32, {n, n}, 1);
                     b->y = Tensor::empty(DType::F32, {n, n});
                     const Tensor xt = b->x.transpose(0, 1);
                     GemmPrepared p;
                     p.run = [b, xt] { ops::copy(xt, b->y); };
                     p.keep = b;
                     return p;
                   }});
  // f32 -> f16, contiguous (weights conversion, KV cache in f16).
  cases.push_back({"copy/f32_to_f16_4096x4096", n * n * (4.0 + 2.0), 0, [] {
                     struct B { Tensor x, y; };
                     auto b = std::make_shared<B>();
                     b->x = tensor_random(DType::F32, {n, n}, 2);
                     b->y = Tensor::empty(DType::F16, {n, n});
                     GemmPrepared p;
                     p.run = [b] { ops::copy(b->x, b->y); };
                     p.keep = b;
                     return p;
                   }});

  // The main ops at the shapes of the models that follow (LLM with n_embd 4096, SD 1.5 UNet).
  // `tensors` are made once (inputs random, outputs uninitialised); `run` is what is timed.
  auto add_case = [&](std::string name, double bytes, double flops, std::vector<Tensor> tensors,
                      std::function<void(std::vector<Tensor>&)> run, BandwidthRef bw = BandwidthRef::copy) {
    auto t = std::make_shared<std::vector<Tensor>>(std::move(tensors));
    cases.push_back({std::move(name), bytes, flops, [t, run] {
                       GemmPrepared p;
                       p.run = [t, run] { run(*t); };
                       p.keep = t;
                       return p;
                     }, bw});
  };
  const double f = 4.0;  // bytes per f32
  add_case("rms_norm/512x4096", 2 * 512 * 4096 * f, 4.0 * 512 * 4096,
           {tensor_random(DType::F32, {512, 4096}, 3), tensor_random(DType::F32, {4096}, 4),
            Tensor::empty(DType::F32, {512, 4096})},
           [](auto& t) { ops::rms_norm(t[0], &t[1], 1e-5f, t[2]); });
  add_case("layer_norm/4096x320", 2 * 4096 * 320 * f, 8.0 * 4096 * 320,
           {tensor_random(DType::F32, {4096, 320}, 5), tensor_random(DType::F32, {320}, 6),
            tensor_random(DType::F32, {320}, 7), Tensor::empty(DType::F32, {4096, 320})},
           [](auto& t) { ops::layer_norm(t[0], &t[1], &t[2], 1e-5f, t[3]); });
  add_case("group_norm/1x320x64x64_g32", 2 * 320 * 4096 * f, 8.0 * 320 * 4096,
           {tensor_random(DType::F32, {1, 320, 64, 64}, 8), tensor_random(DType::F32, {320}, 9),
            tensor_random(DType::F32, {320}, 10), Tensor::empty(DType::F32, {1, 320, 64, 64})},
           [](auto& t) { ops::group_norm(t[0], t[1], t[2], 32, 1e-5f, t[3]); });
  add_case("softmax/causal_32x512x512", 2 * 32 * 512 * 512 * f, 4.0 * 32 * 512 * 512,
           {tensor_random(DType::F32, {32, 512, 512}, 11), Tensor::empty(DType::F32, {32, 512, 512})},
           [](auto& t) { ops::softmax(t[0], t[1], true); });
  add_case("silu/512x11008", 2 * 512 * 11008 * f, 5.0 * 512 * 11008,
           {tensor_random(DType::F32, {512, 11008}, 12), Tensor::empty(DType::F32, {512, 11008})},
           [](auto& t) { ops::silu(t[0], t[1]); });
  add_case("gelu/4096x1280", 2 * 4096 * 1280 * f, 10.0 * 4096 * 1280,
           {tensor_random(DType::F32, {4096, 1280}, 13), Tensor::empty(DType::F32, {4096, 1280})},
           [](auto& t) { ops::gelu(t[0], t[1]); });
  add_case("add/512x4096", 3 * 512 * 4096 * f, 512 * 4096,
           {tensor_random(DType::F32, {512, 4096}, 14), tensor_random(DType::F32, {512, 4096}, 15),
            Tensor::empty(DType::F32, {512, 4096})},
           [](auto& t) { ops::add(t[0], t[1], t[2]); });
  {
    auto pos = std::make_shared<std::vector<int32_t>>(512);
    for (int i = 0; i < 512; ++i) (*pos)[i] = i;
    add_case("rope/512x32x128", 2 * 512 * 32 * 128 * f, 6.0 * 512 * 32 * 128,
             {tensor_random(DType::F32, {512, 32, 128}, 16), Tensor::empty(DType::F32, {512, 32, 128})},
             [pos](auto& t) { ops::rope(t[0], *pos, ops::RopeParams{}, t[1]); });
  }
  add_case("upsample_nearest/1x320x64x64_x2", (1 + 4) * 320 * 4096 * f, 0,
           {tensor_random(DType::F32, {1, 320, 64, 64}, 17), Tensor::empty(DType::F32, {1, 320, 128, 128})},
           [](auto& t) { ops::upsample_nearest(t[0], 2, t[1]); });
  // Attention: SD 1.5's first UNet level (4096 pixels, 8 heads of 40), and an LLM decode step
  // (32 query heads over 8 KV heads, 1024 cached positions).
  add_case("attention/sd_self_1x8x4096x40", 4.0 * 8 * 4096 * 40 * f, 4.0 * 8 * 4096.0 * 4096 * 40,
           {tensor_random(DType::F32, {1, 8, 4096, 40}, 18), tensor_random(DType::F32, {1, 8, 4096, 40}, 19),
            tensor_random(DType::F32, {1, 8, 4096, 40}, 20), Tensor::empty(DType::F32, {1, 8, 4096, 40})},
           [](auto& t) { ops::attention(t[0], t[1], t[2], t[3]); });
  add_case("attention/llm_decode_32q_8kv_1024x128", 2.0 * 8 * 1024 * 128 * f, 4.0 * 32 * 1024 * 128,
           {tensor_random(DType::F32, {1, 32, 1, 128}, 21), tensor_random(DType::F32, {1, 8, 1024, 128}, 22),
            tensor_random(DType::F32, {1, 8, 1024, 128}, 23), Tensor::empty(DType::F32, {1, 32, 1, 128})},
           [](auto& t) { ops::attention(t[0], t[1], t[2], t[3], {.causal = true, .q_offset = 1023}); },
           BandwidthRef::read);
  // TinyLlama's decode attention at a long context (32 query heads over 4 KV heads of 64, 4096
  // cached positions): 8 query heads share each kv head's keys and values.
  add_case("attention/llm_decode_32q_4kv_4096x64", 2.0 * 4 * 4096 * 64 * f, 4.0 * 32 * 4096 * 64,
           {tensor_random(DType::F32, {1, 32, 1, 64}, 28), tensor_random(DType::F32, {1, 4, 4096, 64}, 29),
            tensor_random(DType::F32, {1, 4, 4096, 64}, 30), Tensor::empty(DType::F32, {1, 32, 1, 64})},
           [](auto& t) { ops::attention(t[0], t[1], t[2], t[3], {.causal = true, .q_offset = 4095}); },
           BandwidthRef::read);
  // The same with an f16 KV cache (--cache-type-k/v f16): half the bytes, converted per key block.
  add_case("attention/llm_decode_32q_4kv_4096x64_f16kv", 2.0 * 4 * 4096 * 64 * 2.0, 4.0 * 32 * 4096 * 64,
           {tensor_random(DType::F32, {1, 32, 1, 64}, 28), tensor_random(DType::F16, {1, 4, 4096, 64}, 29),
            tensor_random(DType::F16, {1, 4, 4096, 64}, 30), Tensor::empty(DType::F32, {1, 32, 1, 64})},
           [](auto& t) { ops::attention(t[0], t[1], t[2], t[3], {.causal = true, .q_offset = 4095}); },
           BandwidthRef::read);
  // Decode GEMV: one token through a 4096x4096 weight; bound by reading the weight once.
  for (DType wt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    const double wbytes = static_cast<double>(*dtype_row_bytes(wt, 4096)) * 4096;
    add_case(fmt::format("linear/decode_1x4096x4096_{}", dtype_name(wt)), wbytes, 2.0 * 4096 * 4096,
             {tensor_random(DType::F32, {1, 4096}, 24), tensor_random(wt, {4096, 4096}, 25),
              Tensor::empty(DType::F32, {1, 4096})},
             [](auto& t) { ops::linear(t[0], t[1], nullptr, t[2]); }, BandwidthRef::read);
  }
  // Decode GEMV as a token sees it: TinyLlama's FFN shape (5632x2048), the weights streamed from
  // memory, not cache: enough copies to pass 256 MiB (8x this machine's L3), used in turn.
  for (DType wt : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    constexpr int64_t kN = 5632, kK = 2048;
    const double wbytes = static_cast<double>(*dtype_row_bytes(wt, kK)) * kN;
    cases.push_back({fmt::format("linear/decode_1x{}x{}_{}_from_memory", kN, kK, dtype_name(wt)), wbytes,
                     2.0 * kN * kK, [wt, wbytes] {
                       struct B { Tensor x, y; std::vector<Tensor> w; size_t next = 0; };
                       auto b = std::make_shared<B>();
                       b->x = tensor_random(DType::F32, {1, kK}, 26);
                       b->y = Tensor::empty(DType::F32, {1, kN});
                       const Tensor w0 = tensor_random(wt, {kN, kK}, 27);
                       const int copies = static_cast<int>(std::ceil((256.0 * (1 << 20)) / wbytes));
                       for (int i = 0; i < copies; ++i) {
                         b->w.push_back(Tensor::empty(wt, {kN, kK}));
                         std::memcpy(b->w.back().data(), w0.data(), static_cast<size_t>(wbytes));
                       }
                       GemmPrepared p;
                       p.run = [b] {
                         ops::linear(b->x, b->w[b->next], nullptr, b->y);
                         b->next = (b->next + 1) % b->w.size();
                       };
                       p.keep = b;
                       return p;
                     }, BandwidthRef::read});
  }
  return cases;
}

void op_benchmarks_register(const std::vector<OpCase>& cases, const std::vector<int>& threads) {
  for (const OpCase& oc : cases) {
    for (int t : threads) {
      const std::string name = oc.name + "/threads:" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), [oc, t, name](benchmark::State& state) {
        aigc::thread_count_set(t);
        GemmPrepared& p = prepared_get<GemmPrepared>(name, [&](GemmPrepared& fresh) {
          fresh = oc.prepare();
          fresh.run();  // warm-up: page faults
        });
        Work w;
        w.bytes = oc.bytes;
        w.flops = oc.flops;
        w.bw = oc.bw;
        loop_time(state, p.run, w, machine_probe(t));
      })->UseRealTime()->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace
}  // namespace aigc::bench

int main(int argc, char** argv) {
  using namespace aigc::bench;
  const std::vector<int> threads = harness_init(argc, argv);
  op_benchmarks_register(op_cases(), threads);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
