// aigc serve: the OpenAI-compatible HTTP server and web UI (src/server/http_server.h).
// SIGINT/SIGTERM stop it gracefully: no new connections, waiting jobs refused, running
// generations cancelled, open streams closed; then exit 0.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/commands.h"
#include "cli/text_options.h"
#include "core/error.h"
#include "core/log.h"
#include "image/pixel_diffusion.h"
#include "server/http_server.h"
#include "server/pixel_image_backend.h"
#include "server/sd_image_backend.h"
#include "server/test_pattern_backend.h"

namespace aigc::cli {

namespace {

struct ServeArgs {
  server::ServeOptions opt;
  std::string memory_budget = "0";
  std::string test_image_model;
  std::string clip_vocab;
  std::string cache_type_k = "f32", cache_type_v = "f32";
  double max_body_mib = 32;
};

// "8G", "512M", "1.5G", "0" (bytes when no suffix).
int64_t bytes_parse(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || v < 0) error_throw("not a size: '" + s + "'", "--memory-budget", "e.g. 8G, 512M, 0 (no limit)");
  std::string unit(end);
  double mul = 1;
  if (unit == "K" || unit == "k" || unit == "KiB") mul = 1024.0;
  else if (unit == "M" || unit == "m" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "g" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) error_throw("unknown size unit '" + unit + "'", "--memory-budget", "use K, M or G");
  return static_cast<int64_t>(v * mul);
}

void serve_run(ServeArgs& a) {
  server::ServeOptions& o = a.opt;
  if (o.registry.models_dir.empty() && o.registry.model_file.empty())
    error_throw("no models to serve", "aigc serve",
                "give --models DIR (a folder of *.gguf and *.safetensors) or -m FILE");
  if (o.api_key.empty())
    if (const char* k = std::getenv("AIGC_API_KEY")) o.api_key = k;
  o.registry.memory_budget = bytes_parse(a.memory_budget);
  o.registry.cache_type_k = kv_cache_type(a.cache_type_k);
  o.registry.cache_type_v = kv_cache_type(a.cache_type_v);
  o.max_body_bytes = static_cast<size_t>(a.max_body_mib * 1024 * 1024);
  // Image models (*.safetensors in DIR): aigc's own pixel-diffusion models (known by their
  // metadata), else Stable Diffusion checkpoints, with the same file options.
  image::SdModelOptions sd;
  sd.file = {.use_mmap = !o.registry.no_mmap, .mlock = o.registry.mlock};
  sd.clip_vocab = a.clip_vocab;
  o.registry.image_backend_open = [sd](const std::string& path) -> std::shared_ptr<server::ImageBackend> {
    if (image::pixel_diffusion_file_is(path)) return std::make_shared<server::PixelImageBackend>(path);
    return std::make_shared<server::SdImageBackend>(path, sd);
  };

  // Signals go to one thread that waits for them (blocked everywhere else, including the threads
  // the server starts, which inherit this mask).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  server::HttpServer srv(o);
  if (!a.test_image_model.empty()) {
    if (!server::model_name_valid(a.test_image_model))
      error_throw("invalid model name", "--test-image-model", "letters, digits, '.', '_' and '-' only");
    srv.registry().image_backend_add(a.test_image_model, std::make_shared<server::TestPatternBackend>());
  }
  const int port = srv.bind();
  if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1" && o.api_key.empty())
    log_warn("listening on {} without --api-key: anyone who can reach this address can use it", o.host);
  std::fprintf(stderr, "aigc serve: listening on http://%s:%d (web UI at /, API at /v1)\n", o.host.c_str(), port);
  std::fflush(stderr);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    if (!srv.stopping()) {
      std::fprintf(stderr, "aigc serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      srv.stop();
    }
  });
  srv.run();
  if (!srv.stopping()) srv.stop();
  pthread_kill(signals.native_handle(), SIGTERM);  // wakes sigwait if the server stopped by itself
  signals.join();
  std::fprintf(stderr, "aigc serve: stopped\n");
}

}  // namespace

void command_serve_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve models over an OpenAI-compatible HTTP API, with a web UI at /");
  auto a = std::make_shared<ServeArgs>();
  server::ServeOptions& o = a->opt;
  cmd->add_option("-m,--model", o.registry.model_file, "One GGUF text model to serve (named by its file stem)")
      ->type_name("FILE");
  cmd->add_option("--models", o.registry.models_dir,
                  "Folder of models, each named by its file stem and loaded on first use: *.gguf text models, "
                  "*.safetensors Stable Diffusion 1.x/2.x checkpoints; DIR/models.json adds aliases and defaults "
                  "(see README)")
      ->type_name("DIR");
  cmd->add_option("--host", o.host, "Address to listen on (anything but loopback exposes the server)")
      ->default_val("127.0.0.1");
  cmd->add_option("--port", o.port, "Port to listen on (0: any free port)")->default_val(8080)->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o.api_key,
                  "Require 'Authorization: Bearer KEY' on every route but /health and the UI files "
                  "(default: $AIGC_API_KEY, else none)")
      ->type_name("KEY");
  cmd->add_option("--memory-budget", a->memory_budget,
                  "Most memory for loaded models (e.g. 8G); least recently used models are unloaded first (0: no limit)")
      ->default_val("0");
  cmd->add_option("--queue-size", o.registry.queue_size, "Requests per model waiting or running; more get 503")
      ->default_val(16)
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--timeout", o.timeout_s, "Time limit per request in seconds (queue wait included)")
      ->default_val(600)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-body", a->max_body_mib, "Largest request body in MiB (uploads included); more gets 413")
      ->default_val(32)
      ->check(CLI::PositiveNumber);
  cmd->add_option("-c,--ctx-size", o.registry.ctx_size, "Context size per text model (0: the model's, at most 4096)")
      ->default_val(0);
  cmd->add_option("--clip-vocab", a->clip_vocab,
                  "CLIP tokenizer of the image models: bpe_simple_vocab_16e6.txt.gz or a folder with vocab.json + "
                  "merges.txt (default: $AIGC_CLIP_VOCAB, next to the model, or ../shared/tokenizers/clip)")
      ->type_name("FILE");
  cmd->add_flag("--no-mmap", o.registry.no_mmap, "Read model files into memory instead of mapping them");
  cmd->add_flag("--mlock", o.registry.mlock, "Lock model weights in memory (no paging out)");
  cache_type_options_add(cmd, a->cache_type_k, a->cache_type_v);
  cmd->add_option("--http-threads", o.http_threads, "Connection threads (0: queue size x (models + 1) + 8, at least 2 x queue size + 8)")->default_val(0);
  cmd->add_option("--test-image-model", a->test_image_model,
                  "Testing: serve an image model NAME that draws test patterns (no diffusion), to exercise the "
                  "image API and the studio UI")
      ->type_name("NAME")
      ->group("Testing");
  cmd->footer(
      "Routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, POST /v1/images/generations,\n"
      "POST /v1/images/edits (multipart: image, mask), GET /health, GET /metrics (Prometheus); web UI at /.\n"
      "Compute threads: -t N (default: one per physical core). Ctrl+C or SIGTERM stops it gracefully.\n"
      "Example: aigc serve --models ~/models --port 8080, then open http://127.0.0.1:8080/");
  cmd->callback([a]() { serve_run(*a); });
}

}  // namespace aigc::cli
