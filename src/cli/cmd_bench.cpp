// aigc bench: benchmarks of whole models, as a fraction of what the machine can do. One subcommand
// per workload: `aigc bench text` today (image and train join later).
//
// aigc bench text -m FILE: prompt processing and generation speed of a text GGUF (any architecture
// text_model_load reads), the way
// llama-bench measures them:
//   pp N: N random token ids (fixed seed; no tokenizer) in one batched eval from an empty cache.
//   tg N: one untimed token at position 0, then N single-token evals (positions 1..N), timed.
//   Each repetition restarts the sequence (TextContext::truncate: the same as a fresh context, with
//   its memory kept); one untimed pp + tg warm-up per thread count comes first. Reported: mean and
//   sample stddev of tokens/s over the repetitions.
// Generation reads every weight once per token, so its speed is bounded by memory bandwidth:
//   bound t/s = read bandwidth (machine_bandwidth_probe, measured after the runs, per thread count)
//               / weight bytes read per token (TextModel::decode_bytes_per_token: every layer's
//                 weights, output.weight, the norms, one embedding row; the KV cache is left out).
//   The probe takes the best of many short passes; a VM's memory can change speed within seconds,
//   so a run may meet a slower memory than the probe did. Hence also "of read during": one plain
//   read of the weights themselves just before and just after each tg run (memory_read_pass_gbs),
//   and tg's weight bytes per second as a fraction of their mean.
// Weights are read into memory by default (--no-mmap): machines that page out cold file-backed
// memory (this project's VMs do, after about a minute) would otherwise measure disk reads.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/text_options.h"
#include "core/error.h"
#include "core/log.h"
#include "core/machine_probe.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "text/text_model.h"

namespace aigc::cli {

namespace {

struct BenchTextArgs {
  std::string model;
  std::vector<int64_t> n_prompt{512};  // a pp test per entry (0: none), as llama-bench's -p 16,512
  std::vector<int64_t> n_gen{128};     // a tg test per entry (0: none)
  int64_t n_depth = 0;       // tokens in the cache before each test
  int repetitions = 3;
  std::vector<int> threads;  // empty: the global -t (or its default)
  bool mmap = false;
  bool no_mmap = false;      // the default; accepted as llama.cpp spells it
  bool mlock = false;
  std::string cache_type_k = "f32", cache_type_v = "f32";
  bool json = false;
  bool markdown = false;
  bool no_probe = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stats {
  double mean = 0, stddev = 0;
  std::vector<double> samples;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  s.samples = std::move(v);
  if (s.samples.empty()) return s;
  for (double x : s.samples) s.mean += x;
  s.mean /= static_cast<double>(s.samples.size());
  if (s.samples.size() > 1) {
    double ss = 0;
    for (double x : s.samples) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(s.samples.size() - 1));
  }
  return s;
}

// One test (pp N or tg N) at one thread count.
struct TestResult {
  int threads = 0;
  bool tg = false;  // else pp
  int64_t n = 0;    // prompt or generated tokens
  std::string name;  // "pp512", "tg128 @ d4096"
  Stats tps;         // tokens/s
  double read_gbs = 0;  // tg: the probe's best read at this thread count (0: not probed)
  // tg: one pass over the weights before and after each run (their mean: what memory gave during
  // it), and tg's weight bytes per second as a fraction of that; empty with --no-probe.
  Stats read_during_gbs, tg_of_read_during;
};

// What the model file is: size, parameters, the type that dominates its weights.
struct ModelSummary {
  uint64_t file_bytes = 0;
  uint64_t params = 0;
  std::string type;       // dominant tensor type by bytes, as llama.cpp names types ("q4_0", "f16")
  std::string file_type;  // general.file_type as llama.cpp names it ("Q4_0"), or ""
  uint64_t bytes_per_token = 0;
};

// llama.cpp's enum llama_ftype, the values a file is likely to carry.
std::string ftype_name(uint64_t v) {
  static const std::map<uint64_t, const char*> names = {
      {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},     {8, "Q5_0"},
      {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"},  {14, "Q4_K_S"},
      {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"}, {18, "Q6_K"},   {32, "BF16"}};
  const auto it = names.find(v);
  return it != names.end() ? it->second : "ftype " + std::to_string(v);
}

ModelSummary model_summary(const TextModel& m) {
  ModelSummary s;
  const GgufFile& f = m.gguf();
  std::map<std::string, uint64_t> bytes_by_type;
  for (const TensorInfo& ti : f.tensor_infos()) {
    uint64_t n = 1;
    for (int64_t d : ti.shape) n *= static_cast<uint64_t>(d);
    s.params += n;
    bytes_by_type[ti.type ? std::string(dtype_name(*ti.type)) : ti.type_name] += ti.nbytes;
  }
  uint64_t best = 0;
  for (const auto& [t, b] : bytes_by_type)
    if (b > best) best = b, s.type = t;
  if (const GgufValue* v = f.find("general.file_type"))
    if (const std::optional<uint64_t> ft = v->to_uint()) s.file_type = ftype_name(*ft);
  std::ifstream in(f.path(), std::ios::binary | std::ios::ate);
  s.file_bytes = in ? static_cast<uint64_t>(in.tellg()) : 0;

  s.bytes_per_token = m.decode_bytes_per_token();
  return s;
}

// Peak resident set of this process so far, bytes.
uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux: KiB
}

std::string bytes_human(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return fmt::format("{:.2f} {}", v, units[u]);
}

std::string count_human(uint64_t n) {
  if (n >= 1000000000ull) return fmt::format("{:.2f} B", n * 1e-9);
  if (n >= 1000000ull) return fmt::format("{:.2f} M", n * 1e-6);
  if (n >= 1000ull) return fmt::format("{:.2f} K", n * 1e-3);
  return std::to_string(n);
}

std::vector<int32_t> tokens_random(int64_t n, int64_t n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(n_vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = dist(rng);
  return t;
}

// Tokens/s of one pp run: the whole prompt in one eval, after the first `depth` cached positions
// (0: an empty cache).
double pp_run(TextContext& ctx, const std::vector<int32_t>& prompt, int64_t depth) {
  ctx.truncate(depth);
  const auto t0 = Clock::now();
  ctx.eval(prompt);
  return static_cast<double>(prompt.size()) / seconds_since(t0);
}

// Tokens/s of one tg run: an untimed first token gen[0], then gen.size() - 1 timed single-token
// evals (depth + gen.size() tokens in the cache in all).
double tg_run(TextContext& ctx, const std::vector<int32_t>& gen, int64_t depth) {
  ctx.truncate(depth);
  ctx.eval({gen.data(), 1});
  const auto t0 = Clock::now();
  for (size_t i = 1; i < gen.size(); ++i) ctx.eval({&gen[i], 1});
  return static_cast<double>(gen.size() - 1) / seconds_since(t0);
}

nlohmann::json stats_json(const Stats& s) {
  return {{"mean", s.mean}, {"stddev", s.stddev}, {"samples", s.samples}};
}

void bench_text_run(const BenchTextArgs& a) {
  int64_t max_prompt = 0, max_gen = 0;
  for (int64_t p : a.n_prompt) {
    if (p < 0)
      error_throw(fmt::format("-p/--n-prompt must be 0 (no pp test) or more, got {}", p), "aigc bench text",
                  "llama-bench's default is 512");
    max_prompt = std::max(max_prompt, p);
  }
  for (int64_t n : a.n_gen) {
    if (n < 0)
      error_throw(fmt::format("-n/--n-gen must be 0 (no tg test) or more, got {}", n), "aigc bench text",
                  "llama-bench's default is 128");
    max_gen = std::max(max_gen, n);
  }
  if (max_prompt == 0 && max_gen == 0)
    error_throw("nothing to run: every -p and -n is 0", "aigc bench text", "give a prompt (-p 512) or a generation (-n 128) size");
  if (a.n_depth < 0)
    error_throw(fmt::format("-d/--n-depth must be 0 or more, got {}", a.n_depth), "aigc bench text");
  if (a.repetitions < 1)
    error_throw(fmt::format("-r/--repetitions must be at least 1, got {}", a.repetitions), "aigc bench text");
  if (a.mmap && a.no_mmap) error_throw("--mmap and --no-mmap both given", "aigc bench text", "pass one");
  std::vector<int> threads = a.threads;
  if (threads.empty()) threads.push_back(thread_count());
  for (int t : threads)
    if (t < 1 || t > 4096)
      error_throw(fmt::format("thread count {} is out of range", t), "aigc bench text --threads-list", "1 to 4096");

  const int threads_before = thread_count();
  const std::unique_ptr<TextModel> model = aigc::text_model_load(a.model, {.use_mmap = a.mmap, .mlock = a.mlock});
  const ModelSummary ms = model_summary(*model);
  const int64_t n_vocab = model->n_vocab();
  // The context holds depth + max(prompt, gen + 1) tokens, at most what the model allows.
  const int64_t max_ctx = model->n_ctx_max();
  if (max_prompt > max_ctx || max_gen >= max_ctx || a.n_depth > max_ctx ||
      a.n_depth + std::max(max_prompt, max_gen + 1) > max_ctx)
    error_throw(fmt::format("-d {} with -p {} / -n {} needs a context of more than {} tokens, the most this {} model holds",
                            a.n_depth, max_prompt, max_gen, max_ctx, model->arch()),
                a.model, "use smaller -d, -p or -n (the context holds -d + max(-p, -n + 1) tokens)");
  const std::vector<int32_t> prompt_all = tokens_random(max_prompt, n_vocab, 1234);  // pp N: the first N
  const std::vector<int32_t> gen_all = tokens_random(max_gen + 1, n_vocab, 5678);
  // One context for every run: truncate(depth) restarts the test after the depth tokens, as a
  // fresh context that had evaluated them would (their cache entries stay as they were).
  const int64_t depth = a.n_depth;
  const std::unique_ptr<TextContext> ctx_owner =
      model->context_create({.n_ctx = depth + std::max<int64_t>(max_prompt, max_gen + 1),
                             .n_batch = std::max<int64_t>(max_prompt, 1),
                             .cache_type_k = cli::kv_cache_type(a.cache_type_k),
                             .cache_type_v = cli::kv_cache_type(a.cache_type_v)});
  TextContext& ctx = *ctx_owner;
  log_info("bench text: {} ({}), context {}, arena {}, cache {}", a.model, ms.type, ctx.n_ctx(),
           bytes_human(ctx.arena_bytes()), bytes_human(ctx.cache_bytes()));
  if (depth > 0) {  // filled once, untimed
    // a long depth takes a while (3584 tokens of TinyLlama: ~30 s on 2 cores): say so on stderr
    std::fprintf(stderr, "aigc bench text: evaluating %lld tokens of depth (untimed)...\n", static_cast<long long>(depth));
    const auto t0 = Clock::now();
    ctx.reset();
    ctx.eval(tokens_random(depth, n_vocab, 4321));
    std::fprintf(stderr, "aigc bench text: depth ready in %.1f s\n", seconds_since(t0));
  }
  auto test_name = [&](bool tg, int64_t n) {
    return fmt::format("{}{}", tg ? "tg" : "pp", n) + (depth > 0 ? fmt::format(" @ d{}", depth) : "");
  };

  const std::span<const uint8_t> weights = model->decode_weights_span();
  std::vector<TestResult> results;  // per thread count: the pp tests, then the tg tests, in the order given
  for (int t : threads) {
    thread_count_set(t);
    // warm-up: faults in the weights, spins up the threads
    if (max_prompt > 0) pp_run(ctx, prompt_all, depth);
    tg_run(ctx, {gen_all.begin(), gen_all.begin() + std::min<int64_t>(2, max_gen + 1)}, depth);
    for (int64_t p : a.n_prompt) {
      if (p == 0) continue;
      TestResult r;
      r.threads = t, r.tg = false, r.n = p, r.name = test_name(false, p);
      const std::vector<int32_t> prompt(prompt_all.begin(), prompt_all.begin() + p);
      std::vector<double> pp;
      for (int i = 0; i < a.repetitions; ++i) {
        pp.push_back(pp_run(ctx, prompt, depth));
        log_info("threads {} {} repetition {}: {:.2f} t/s", t, r.name, i + 1, pp.back());
      }
      r.tps = stats_of(pp);
      results.push_back(r);
    }
    for (int64_t n : a.n_gen) {
      if (n == 0) continue;
      TestResult r;
      r.threads = t, r.tg = true, r.n = n, r.name = test_name(true, n);
      const std::vector<int32_t> gen(gen_all.begin(), gen_all.begin() + n + 1);
      std::vector<double> tg, during, of_during;
      for (int i = 0; i < a.repetitions; ++i) {
        const double before = a.no_probe ? 0.0 : memory_read_pass_gbs(weights.data(), weights.size(), t);
        tg.push_back(tg_run(ctx, gen, depth));
        const double after = a.no_probe ? 0.0 : memory_read_pass_gbs(weights.data(), weights.size(), t);
        if (before > 0 && after > 0) {
          during.push_back(0.5 * (before + after));
          of_during.push_back(tg.back() * static_cast<double>(ms.bytes_per_token) * 1e-9 / during.back());
          log_info("threads {} {} repetition {}: {:.2f} t/s, weights read at {:.1f} / {:.1f} GB/s before / after: {:.0f}%",
                   t, r.name, i + 1, tg.back(), before, after, 100 * of_during.back());
        } else {
          log_info("threads {} {} repetition {}: {:.2f} t/s", t, r.name, i + 1, tg.back());
        }
      }
      r.tps = stats_of(tg);
      if (!during.empty()) r.read_during_gbs = stats_of(during), r.tg_of_read_during = stats_of(of_during);
      results.push_back(r);
    }
  }
  thread_count_set(threads_before);
  // Read before the probe, whose 1 GiB buffer would otherwise be the peak.
  const uint64_t rss = peak_rss_bytes();
  if (!a.no_probe && max_gen > 0)
    for (int t : threads) {
      const double gbs = machine_bandwidth_probe(t).read_gbs;
      for (TestResult& r : results)
        if (r.tg && r.threads == t) r.read_gbs = gbs;
    }

  auto bound_tps = [&](const TestResult& r) {
    return r.read_gbs > 0 ? r.read_gbs * 1e9 / static_cast<double>(ms.bytes_per_token) : 0.0;
  };

  if (a.json) {
    nlohmann::json j = {
        {"model", a.model},
        {"file_bytes", ms.file_bytes},
        {"params", ms.params},
        {"type", ms.type},
        {"file_type", ms.file_type.empty() ? nlohmann::json() : nlohmann::json(ms.file_type)},
        {"n_prompt", a.n_prompt},
        {"n_gen", a.n_gen},
        {"n_depth", a.n_depth},
        {"repetitions", a.repetitions},
        {"mmap", a.mmap},
        {"mlock", a.mlock},
        {"cache_type_k", a.cache_type_k},
        {"cache_type_v", a.cache_type_v},
        {"weight_bytes_per_token", ms.bytes_per_token},
        {"peak_rss_bytes", rss},
    };
    nlohmann::json rows = nlohmann::json::array();
    for (const TestResult& r : results) {
      nlohmann::json row = {{"threads", r.threads}, {"test", r.name}, {"n_prompt", r.tg ? 0 : r.n},
                            {"n_gen", r.tg ? r.n : 0}, {"tps", stats_json(r.tps)}};
      if (r.tg) {
        const double bound = bound_tps(r);
        row["read_gbs"] = r.read_gbs > 0 ? nlohmann::json(r.read_gbs) : nlohmann::json();
        row["tg_bound_tps"] = bound > 0 ? nlohmann::json(bound) : nlohmann::json();
        row["tg_fraction_of_bound"] = bound > 0 ? nlohmann::json(r.tps.mean / bound) : nlohmann::json();
        row["read_gbs_during"] = r.read_during_gbs.samples.empty() ? nlohmann::json() : stats_json(r.read_during_gbs);
        row["tg_fraction_of_read_during"] =
            r.tg_of_read_during.samples.empty() ? nlohmann::json() : stats_json(r.tg_of_read_during);
      }
      rows.push_back(row);
    }
    j["results"] = rows;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  // Markdown, as llama-bench prints it; one row per thread count and test.
  const std::string type = ms.file_type.empty() ? ms.type : ms.file_type;
  std::printf("| model | size | params | type | load | threads | test | t/s | GB/s read | bound t/s | of bound | of read during | peak RSS |\n");
  std::printf("|---|---:|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
  const std::string name = a.model.substr(a.model.find_last_of('/') + 1);
  const std::string load = std::string(a.mmap ? "mmap" : "read") + (a.mlock ? "+mlock" : "");
  for (const TestResult& r : results) {
    const std::string head = fmt::format("| {} | {} | {} | {} | {} | {} | {} | {:.2f} ± {:.2f} |", name,
                                         bytes_human(ms.file_bytes), count_human(ms.params), type, load, r.threads,
                                         r.name, r.tps.mean, r.tps.stddev);
    if (!r.tg) {
      std::printf("%s | | | | %s |\n", head.c_str(), bytes_human(rss).c_str());
      continue;
    }
    const double bound = bound_tps(r);
    const std::string during = r.tg_of_read_during.samples.empty()
                                   ? std::string("-")
                                   : fmt::format("{:.0f} ± {:.0f}%", 100 * r.tg_of_read_during.mean,
                                                 100 * r.tg_of_read_during.stddev);
    std::printf("%s %s | %s | %s | %s | %s |\n", head.c_str(),
                r.read_gbs > 0 ? fmt::format("{:.1f}", r.read_gbs).c_str() : "-",
                bound > 0 ? fmt::format("{:.2f}", bound).c_str() : "-",
                bound > 0 ? fmt::format("{:.0f}%", 100 * r.tps.mean / bound).c_str() : "-", during.c_str(),
                bytes_human(rss).c_str());
  }
  if (max_gen > 0)
    std::printf("\nweights read per generated token: %s; bound = read bandwidth (best of the probe's passes) / that;\n"
                "of read during: tg's weight bytes per second / the speed of one plain read of the weights just\n"
                "before and after each run (mean over the runs: the memory's own speed at the time)\n",
                bytes_human(ms.bytes_per_token).c_str());
}

}  // namespace

void command_bench_register(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks of whole models (speed as a fraction of the machine's limit)");
  bench->require_subcommand(1);
  bench->fallthrough();  // the global -t/-v after `bench text`

  auto* cmd = bench->add_subcommand(
      "text",
      "Prompt and generation speed of a text model, as llama-bench measures them: pp N (one batched eval of N "
      "random tokens from an empty cache) and tg N (N single-token evals after an untimed first token); mean ± "
      "stddev over the repetitions; generation also as a fraction of the memory-bandwidth bound (weight bytes "
      "read per token / measured read bandwidth) and of the speed a plain read of the weights had just before "
      "and after each run (\"of read during\"; -v logs each run's). Weights are read into memory by default (--no-mmap): memory "
      "mapped from the file can be paged out when cold, and the benchmark would then time disk reads.");
  cmd->fallthrough();
  auto a = std::make_shared<BenchTextArgs>();
  cmd->add_option("-m,--model", a->model, std::string("GGUF model file (") + text_model_arch_names() + ')')
      ->required()
      ->type_name("FILE");
  cmd->add_option("-p,--n-prompt", a->n_prompt,
                  "Prompt tokens of the pp test; a list runs one test each (-p 16,64,512), 0 none [512]")
      ->delimiter(',')
      ->type_name("N,N,...");
  cmd->add_option("-n,--n-gen", a->n_gen, "Generated tokens of the tg test; a list runs one test each, 0 none [128]")
      ->delimiter(',')
      ->type_name("N,N,...");
  cmd->add_option("-d,--n-depth", a->n_depth,
                  "Tokens already in the cache when each test starts (llama-bench's -d): pp and tg at a long "
                  "context; they are evaluated once, untimed")
      ->default_val(0);
  cmd->add_option("-r,--repetitions", a->repetitions, "Timed runs of each test")->default_val(3);
  cmd->add_option("--threads-list", a->threads, "Thread counts to run, e.g. 1,2 (default: the global -t)")
      ->delimiter(',')
      ->type_name("N,N,...");
  cmd->add_flag("--no-mmap", a->no_mmap, "Read the weights into memory (the default here)");
  cmd->add_flag("--mmap", a->mmap, "Map the file instead of reading it (pages may be evicted between runs)");
  cmd->add_flag("--mlock", a->mlock, "Pin the weights in RAM");
  cache_type_options_add(cmd, a->cache_type_k, a->cache_type_v);
  cmd->add_flag("--no-probe", a->no_probe, "Skip the bandwidth probe (~1 s per thread count) and the reads beside each tg run: no bound reported");
  auto* json = cmd->add_flag("--json", a->json, "Print JSON instead of a markdown table");
  cmd->add_flag("--markdown", a->markdown, "Print a markdown table (the default)")->excludes(json);
  cmd->callback([a]() { bench_text_run(*a); });
  command_bench_image_register(bench);
}

}  // namespace aigc::cli
