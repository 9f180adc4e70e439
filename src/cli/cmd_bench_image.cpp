// aigc bench image -m FILE: speed of the Stable Diffusion components, as a fraction of the machine.
//   UNet step with CFG: one UNet forward of batch 2 (cond + uncond, as the pipeline runs it) on a
//     random latent with a random 77-token context, at each size (default 256 and 512); one
//     untimed warm-up per size, then the mean over the repetitions.
//   VAE decode: one latent of the largest size (batch 1), after an untimed warm-up on a small one.
//   GFLOP/s: analytic FLOP counts of the model's configuration (image/sd_flops.h) / time, and as a
//     fraction of the measured peak FMA rate of the precision used (machine_probe: bf16 dot products
//     with --precision bf16 on CPUs that have them, else f32).
//   Peak RSS: the process's peak resident memory (weights + activations of the biggest run).
// The random-weight SD 1.5 checkpoint of full size is written by bench/make_sd15.py.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/precision.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/machine_probe.h"
#include "core/thread_pool.h"
#include "image/sd_flops.h"
#include "image/sd_model.h"

namespace aigc::cli {

namespace {

using namespace aigc::image;
using Clock = std::chrono::steady_clock;

struct BenchImageArgs {
  std::string model;
  std::vector<int> sizes = {256, 512};
  int repetitions = 2;
  std::string precision = "bf16";
  std::string unet_type = "default";
  bool no_vae = false;
  bool no_probe = false;
  bool no_mmap = false;
  bool json = false;
};

uint64_t peak_rss() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// Resident set now, bytes (/proc/self/statm; 0 when unavailable).
uint64_t rss_now() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * 4096ull : 0;
}

double gib(uint64_t b) { return static_cast<double>(b) / (1u << 30); }

void fill_random(Tensor& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  float* p = t.ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
}

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Row {
  std::string test;
  int size = 0;
  double seconds = 0, gflop = 0;
};

void bench_image_run(const BenchImageArgs& a) {
  if (a.repetitions < 1) error_throw("repetitions must be at least 1", "-r");
  for (int s : a.sizes)
    if (s < 64 || s > 2048 || s % 8 != 0)
      error_throw(fmt::format("size {} is not a multiple of 8 in [64, 2048]", s), "--sizes", "e.g. 256,512");
  SdModelOptions mo;
  mo.precision = ops::precision_parse(a.precision);
  mo.unet_type = unet_weight_type_parse(a.unet_type);
  mo.file.use_mmap = !a.no_mmap;
  SdModel model = SdModel::open(a.model, mo);
  const SdModelInfo& info = model.info();
  std::vector<Row> rows;
  {
    const auto t0 = Clock::now();
    UNet& unet = model.unet();
    log_info("bench image: UNet loaded in {:.1f} s; {:.2f} GiB of weights, RSS now {:.2f} GiB (peak {:.2f})",
             seconds(t0), gib(unet.weight_bytes()), gib(rss_now()), gib(peak_rss()));
    const UNetConfig& c = unet.config();
    for (int s : a.sizes) {
      const int64_t h = s / 8;
      Tensor x = Tensor::empty(DType::F32, {2, c.in_channels, h, h});
      Tensor ctx = Tensor::empty(DType::F32, {2, 77, c.context_dim});
      Tensor out = Tensor::empty(DType::F32, {2, c.out_channels, h, h});
      fill_random(x, 1);
      fill_random(ctx, 2);
      const std::vector<float> ts = {500.0f, 500.0f};
      unet.forward(x, ts, ctx, out);  // warm-up
      log_info("bench image: {}^2: {:.0f} MiB of activations, RSS now {:.2f} GiB (peak {:.2f})", s,
               static_cast<double>(unet.activation_bytes()) / (1 << 20), gib(rss_now()), gib(peak_rss()));
      double total = 0;
      for (int r = 0; r < a.repetitions; ++r) {
        const auto t1 = Clock::now();
        unet.forward(x, ts, ctx, out);
        total += seconds(t1);
        log_info("UNet CFG step at {}^2: {:.3f} s", s, seconds(t1));
      }
      rows.push_back({"UNet step (CFG, batch 2)", s, total / a.repetitions, 2 * unet_flops(c, h, h) * 1e-9});
    }
    model.unet_release();
    log_info("bench image: UNet released, RSS now {:.2f} GiB", gib(rss_now()));
  }
  if (!a.no_vae) {
    Vae& vae = model.vae(false);
    log_info("bench image: VAE decoder loaded; {:.2f} GiB of weights, RSS now {:.2f} GiB", gib(vae.weight_bytes()),
             gib(rss_now()));
    const VaeConfig& c = vae.config();
    const int s = a.sizes.back();
    const int64_t h = s / 8;
    Tensor small = Tensor::empty(DType::F32, {1, c.z_channels, 8, 8});
    Tensor small_img = Tensor::empty(DType::F32, {1, 3, 64, 64});
    fill_random(small, 3);
    vae.decode(small, small_img);  // warm-up
    Tensor z = Tensor::empty(DType::F32, {1, c.z_channels, h, h});
    Tensor img = Tensor::empty(DType::F32, {1, 3, s, s});
    fill_random(z, 4);
    double total = 0;
    for (int r = 0; r < a.repetitions; ++r) {
      const auto t1 = Clock::now();
      vae.decode(z, img);
      total += seconds(t1);
    }
    rows.push_back({"VAE decode", s, total / a.repetitions, vae_decode_flops(c, h, h) * 1e-9});
    model.vae_release();
  }
  const uint64_t rss = peak_rss();
  const int threads = thread_count();
  double peak = 0;
  std::string peak_kind;
  if (!a.no_probe) {
    const MachineLimits& lim = machine_probe(threads);
    const bool bf16 = mo.precision == ops::Precision::BF16 && lim.bf16_gflops > 0;
    peak = bf16 ? lim.bf16_gflops : lim.f32_gflops;
    peak_kind = bf16 ? "bf16" : "f32 " + lim.f32_isa;
  }
  if (a.json) {
    nlohmann::json j = {{"model", a.model},        {"family", info.description}, {"precision", a.precision}, {"unet_type", a.unet_type},
                        {"threads", threads},      {"peak_rss_bytes", rss},      {"repetitions", a.repetitions},
                        {"peak_gflops", peak > 0 ? nlohmann::json(peak) : nlohmann::json()}};
    nlohmann::json rs = nlohmann::json::array();
    for (const Row& r : rows)
      rs.push_back({{"test", r.test}, {"size", r.size}, {"seconds", r.seconds}, {"gflop", r.gflop},
                    {"gflops", r.gflop / r.seconds},
                    {"fraction_of_peak", peak > 0 ? nlohmann::json(r.gflop / r.seconds / peak) : nlohmann::json()}});
    j["results"] = rs;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("| model | precision | threads | test | size | s | GFLOP | GFLOP/s | of peak | peak RSS |\n");
  std::printf("|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
  const std::string name = a.unet_type == "default" ? info.name : info.name + " (UNet " + a.unet_type + ")";
  for (const Row& r : rows)
    std::printf("| %s | %s | %d | %s | %dx%d | %.3f | %s | %.1f | %s | %.2f GiB |\n", name.c_str(), a.precision.c_str(),
                threads, r.test.c_str(), r.size, r.size, r.seconds, fmt::format("{:.4g}", r.gflop).c_str(),
                r.gflop / r.seconds,
                peak > 0 ? fmt::format("{:.0f}%", 100 * r.gflop / r.seconds / peak).c_str() : "-",
                static_cast<double>(rss) / (1u << 30));
  if (peak > 0) std::printf("\npeak: %.0f GFLOP/s (%s FMA, measured, %d threads)\n", peak, peak_kind.c_str(), threads);
}

}  // namespace

void command_bench_image_register(CLI::App* bench) {
  auto* cmd = bench->add_subcommand(
      "image",
      "Stable Diffusion speed: seconds per UNet step with CFG (a batch of 2) at each size, the VAE decode at the "
      "largest size, peak RSS, and achieved GFLOP/s (analytic FLOP counts) against the measured peak FMA rate");
  cmd->fallthrough();
  auto a = std::make_shared<BenchImageArgs>();
  cmd->add_option("-m,--model", a->model, "SD 1.x / 2.x checkpoint (bench/make_sd15.py writes a random one)")
      ->required()
      ->type_name("PATH");
  cmd->add_option("--sizes", a->sizes, "Image sizes (square, multiples of 8, 64 to 2048)")->delimiter(',')->default_str("256,512");
  cmd->add_option("-r,--repetitions", a->repetitions, "Timed runs of each test")->default_val(2);
  cmd->add_option("--precision", a->precision, "f32 or bf16")->default_val("bf16");
  cmd->add_option("--unet-type", a->unet_type,
                  "UNet weights: default (packed in the --precision type) or q8_0 (Q8_0 blocks, about half the memory)")
      ->default_val("default")
      ->type_name("default|q8_0");
  cmd->add_flag("--no-vae", a->no_vae, "Skip the VAE decode");
  cmd->add_flag("--no-probe", a->no_probe, "Skip the peak-FMA probe (~2 s)");
  cmd->add_flag("--no-mmap", a->no_mmap, "Read the model into memory instead of mapping it");
  cmd->add_flag("--json", a->json, "Print JSON instead of a markdown table");
  cmd->callback([a]() { bench_image_run(*a); });
}

}  // namespace aigc::cli
