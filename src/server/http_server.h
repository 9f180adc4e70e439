// HttpServer: aigc's OpenAI-compatible HTTP API and web UI (cpp-httplib underneath).
//
//   GET  /health                 {"status": "ok"} (no API key needed)
//   GET  /v1/models              the models (text and image), by name
//   POST /v1/completions         text completion (stream: server-sent events ending "data: [DONE]")
//   POST /v1/chat/completions    chat (the model's chat template), same streaming
//   POST /v1/images/generations  txt2img (JSON; "stream": true adds progress events)
//   POST /v1/images/edits        img2img / inpainting (multipart: image, mask, prompt, ...)
//   GET  /metrics                Prometheus text
//   GET  /                       the web UI (embedded)
//
//   ServeOptions o;
//   o.registry.model_file = "tiny.gguf";
//   HttpServer s(o);
//   int port = s.bind();          // o.port 0: any free port
//   std::thread t([&] { s.run(); });
//   ...
//   s.stop();                     // graceful: refuse new work, cancel in-flight, return from run()
//   t.join();
//
// Each model has one worker and a bounded queue (ServeOptions::registry.queue_size): a full queue
// answers 503 with Retry-After. A streaming client that disconnects cancels its generation; every
// request has a time limit (timeout_s, counted from arrival). Errors are OpenAI-shaped JSON.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "server/metrics.h"
#include "server/model_registry.h"

namespace httplib {
class Server;
}

namespace aigc::server {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                      // 0: any free port (bind() returns it)
  std::string api_key;                  // non-empty: "Authorization: Bearer KEY" on every route but /health and the UI files
  size_t max_body_bytes = 32u << 20;    // larger requests get 413
  double timeout_s = 600;               // per request, from arrival to the last token
  int http_threads = 0;                 // connection threads; 0: enough for every queue to be full, plus a few
  RegistryOptions registry;
  int64_t token_delay_us = 0;           // tests only: a pause after each token (to hold a queue busy)
  // Image models: registry.image_backend_open opens a model file as an ImageBackend (`aigc serve`
  // sets it to SdImageBackend, server/sd_image_backend.h); null: image files in DIR are not listed.
};

class HttpServer {
 public:
  explicit HttpServer(ServeOptions opt);  // throws aigc::Error (models folder, ...)
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  ModelRegistry& registry() { return *registry_; }
  Metrics& metrics() { return metrics_; }
  // Binds host:port; returns the port. Throws aigc::Error when it cannot.
  int bind();
  // Serves until stop(). Returns after in-flight connections have ended.
  void run();
  // Thread-safe and idempotent (may be called from a signal-handling thread).
  void stop();
  bool stopping() const { return stopping_; }

 private:
  void routes_add();
  ServeOptions opt_;
  std::unique_ptr<ModelRegistry> registry_;
  std::unique_ptr<httplib::Server> http_;
  Metrics metrics_;
  std::atomic<bool> stopping_{false};
};

}  // namespace aigc::server
