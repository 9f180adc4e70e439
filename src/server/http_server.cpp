#include "server/http_server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <deque>

#include "core/error.h"
#include "server/api_error.h"
#include "server/generation_jobs.h"
#include "server/openai_request.h"
#include "server/web_assets.h"

namespace aigc::server {

namespace {

using json = nlohmann::json;

void json_send(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void error_send(httplib::Response& res, const ApiError& e) {
  if (e.status() == 503) res.set_header("Retry-After", "2");
  json_send(res, e.status(), e.body());
}

// Writes an exchange's events to the client as they come; a failed write cancels the job.
void stream_attach(httplib::Response& res, std::shared_ptr<Exchange> ex) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [ex](size_t, httplib::DataSink& sink) {
        std::unique_lock lk(ex->mu);
        ex->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return !ex->chunks.empty() || ex->done; });
        std::deque<std::string> out;
        out.swap(ex->chunks);
        const bool done = ex->done;
        lk.unlock();
        for (const std::string& c : out)
          if (!sink.write(c.data(), c.size())) {
            ex->cancel = true;
            return false;
          }
        if (!sink.is_writable()) {
          ex->cancel = true;
          return false;
        }
        if (done) sink.done();
        return true;
      },
      [ex](bool success) {
        if (!success) ex->cancel = true;
      });
}

bool key_equal(std::string_view a, std::string_view b) {  // constant time in the content
  unsigned char d = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return d == 0;
}

const char* route_label(const std::string& path) {
  static const char* known[] = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
                                "/v1/images/generations", "/v1/images/edits"};
  for (const char* k : known)
    if (path == k) return k;
  if (web_asset_find(path)) return "/ui";
  return "other";
}

thread_local Clock::time_point t_request_start;

}  // namespace

HttpServer::HttpServer(ServeOptions opt) : opt_(std::move(opt)) {
  ::signal(SIGPIPE, SIG_IGN);  // a client that went away must not kill the server
  registry_ = std::make_unique<ModelRegistry>(opt_.registry);
  http_ = std::make_unique<httplib::Server>();
  // A waiting or streaming request holds a connection thread: enough for every queue to be full,
  // plus some for the cheap routes (models, metrics, the UI), capped.
  const size_t models = registry_->list().size();
  const size_t threads = opt_.http_threads > 0
                             ? static_cast<size_t>(opt_.http_threads)
                             : std::min<size_t>(1024, opt_.registry.queue_size * std::max<size_t>(2, models + 1) + 8);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second server
  // (or another program) bind the same port and take a share of the connections.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http_->set_payload_max_length(opt_.max_body_bytes);
  http_->set_keep_alive_timeout(2);
  http_->set_read_timeout(30);
  http_->set_write_timeout(30);
  routes_add();
}

HttpServer::~HttpServer() {
  stop();
  registry_.reset();  // joins the workers before the server they report to goes
}

int HttpServer::bind() {
  if (opt_.port == 0) {
    const int p = http_->bind_to_any_port(opt_.host);
    if (p <= 0) error_throw("cannot listen", opt_.host, "check --host");
    opt_.port = p;
    return p;
  }
  if (!http_->bind_to_port(opt_.host, opt_.port))
    error_throw(fmt::format("cannot listen on {}:{}", opt_.host, opt_.port), "--port",
                "is another server using the port? choose another with --port");
  return opt_.port;
}

void HttpServer::run() { http_->listen_after_bind(); }

void HttpServer::stop() {
  if (stopping_.exchange(true)) return;
  registry_->shutdown();  // refuse new jobs, drop waiting ones (their clients hear 503)
  http_->stop();          // stop accepting; open streams end (their jobs see the cancel)
}

void HttpServer::routes_add() {
  httplib::Server& s = *http_;

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request_start = Clock::now();
    if (opt_.api_key.empty() || req.path == "/health" || (req.method == "GET" && web_asset_find(req.path)))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.rfind(prefix, 0) != 0 || !key_equal(auth.substr(prefix.size()), opt_.api_key)) {
      error_send(res, ApiError::unauthorized(auth.empty() ? "Missing API key: send 'Authorization: Bearer KEY'"
                                                          : "Incorrect API key provided"));
      res.set_header("WWW-Authenticate", "Bearer");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    // Requests refused before routing (e.g. 413 while reading the body) have no start time: 0 s.
    const double secs = t_request_start == Clock::time_point{}
                            ? 0.0
                            : std::chrono::duration<double>(Clock::now() - t_request_start).count();
    t_request_start = {};
    metrics_.request_observe(route_label(req.path), res.status, secs);
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string msg = res.status == 404   ? "Unknown route: " + req.method + " " + req.path
                      : res.status == 413 ? "The request body is larger than the server accepts (--max-body)"
                      : res.status == 405 ? "Method not allowed"
                                          : "Request failed";
    json b = api_error_body(res.status, msg);
    if (res.status == 413) b["error"]["code"] = "request_too_large";
    json_send(res, res.status, b);
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      error_send(res, e);
    } catch (const std::exception& e) {
      error_send(res, ApiError::internal(e.what()));
    }
  });

  // ---- UI, health, metrics, models ----
  auto ui = [](const httplib::Request& req, httplib::Response& res) {
    const WebAsset* a = web_asset_find(req.path);
    if (!a) return error_send(res, ApiError::not_found("Not found: " + req.path));
    res.set_content(std::string(a->data), std::string(a->content_type).c_str());
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'");
    res.set_header("X-Content-Type-Options", "nosniff");
  };
  s.Get("/", ui);
  s.Get(R"(/[A-Za-z0-9_\-]+\.(html|js|css|svg|png))", ui);
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    json_send(res, stopping_ ? 503 : 200, {{"status", stopping_ ? "stopping" : "ok"}});
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(registry_->gauges()), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json data = json::array();
    for (const ModelListing& m : registry_->list())
      data.push_back({{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "aigc"},
                      {"kind", m.kind == ModelKind::Text ? "text" : "image"}, {"loaded", m.loaded}});
    json_send(res, 200, {{"object", "list"}, {"data", data}});
  });
  s.Get(R"(/v1/models/([A-Za-z0-9._\-]+))", [this](const httplib::Request& req, httplib::Response& res) {
    for (const ModelListing& m : registry_->list())
      if (m.name == req.matches[1].str())
        return json_send(res, 200, {{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "aigc"}});
    error_send(res, ApiError::not_found("The model '" + req.matches[1].str() + "' does not exist", "model", "model_not_found"));
  });

  // ---- text ----
  auto text_route = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      const Clock::time_point deadline = t_request_start + std::chrono::duration_cast<Clock::duration>(
                                                               std::chrono::duration<double>(opt_.timeout_s));
      auto spec = std::make_shared<TextSpec>();
      spec->chat = chat;
      spec->created = unix_now();
      spec->deadline = deadline;
      if (chat) {
        ChatRequest r = chat_request_parse(req.body);
        spec->model = r.model;
        spec->messages = std::move(r.messages);
        spec->sampling = r.sampling;
      } else {
        CompletionRequest r = completion_request_parse(req.body);
        spec->model = r.model;
        spec->prompt = std::move(r.prompt);
        spec->echo = r.echo;
        spec->sampling = r.sampling;
      }
      spec->id = id_make(chat ? "chatcmpl" : "cmpl");
      ModelSlot& slot = registry_->find(spec->model, ModelKind::Text);
      spec->model = slot.config.name;
      auto ex = std::make_shared<Exchange>();
      const bool pushed = registry_->queue(slot).push(
          {.run =
               [this, &slot, spec, ex] {
                 try {
                   text_job_run(JobEnv{*registry_, metrics_, stopping_, opt_.token_delay_us}, slot, *spec, *ex);
                 } catch (const std::exception& e) {
                   ex->fail(ApiError::internal(e.what()));
                 }
                 ex->release();
               },
           .drop =
               [ex] {
                 ex->fail(ApiError::unavailable("The server is shutting down", "shutting_down"));
                 ex->release();
               }});
      if (!pushed)
        throw ApiError::unavailable(stopping_ ? "The server is shutting down"
                                              : "The model's queue is full; retry after a moment",
                                    stopping_ ? "shutting_down" : "queue_full");
      if (!ex->wait_started(deadline)) {
        ex->cancel = true;
        throw ApiError::unavailable("The request timed out waiting in the queue", "timeout");
      }
      {
        std::lock_guard lk(ex->mu);
        if (ex->error) throw *ex->error;
      }
      if (spec->sampling.stream) return stream_attach(res, ex);
      if (!ex->wait_done(deadline + std::chrono::seconds(5))) {
        ex->cancel = true;
        throw ApiError::unavailable("The request timed out", "timeout");
      }
      std::lock_guard lk(ex->mu);
      if (ex->result.is_null()) {
        // Failed after starting: the failure event is the last chunk.
        const std::string last = ex->chunks.empty() ? "" : ex->chunks.back();
        throw ApiError::internal("Generation failed: " + last);
      }
      json_send(res, 200, ex->result);
    };
  };
  s.Post("/v1/chat/completions", text_route(true));
  s.Post("/v1/completions", text_route(false));

  // ---- images ----
  auto image_route = [this](bool edit) {
    return [this, edit](const httplib::Request& req, httplib::Response& res) {
      const Clock::time_point deadline = t_request_start + std::chrono::duration_cast<Clock::duration>(
                                                               std::chrono::duration<double>(opt_.timeout_s));
      ImageGenerationRequest r;
      if (edit) {
        if (!req.is_multipart_form_data())
          throw ApiError::bad_request("/v1/images/edits takes multipart/form-data (image, mask, prompt, ...)");
        std::vector<std::pair<std::string, std::string>> fields;
        std::string image, mask;
        for (const auto& [name, part] : req.files) {
          if (name == "image" || name == "image[]") image = part.content;
          else if (name == "mask") mask = part.content;
          else fields.emplace_back(name, part.content);
        }
        r = image_edit_request_parse(fields, std::move(image), std::move(mask));
      } else {
        r = image_request_parse(req.body);
      }
      ModelSlot& slot = registry_->find(r.model, ModelKind::Image);
      auto ex = std::make_shared<Exchange>();
      auto spec = std::make_shared<ImageGenerationRequest>(std::move(r));
      const bool pushed = registry_->queue(slot).push(
          {.run =
               [this, &slot, spec, ex, deadline] {
                 try {
                   image_job_run(JobEnv{*registry_, metrics_, stopping_, opt_.token_delay_us}, slot, *spec, *ex,
                                 deadline);
                 } catch (const std::exception& e) {
                   ex->fail(ApiError::internal(e.what()));
                 }
                 ex->release();
               },
           .drop =
               [ex] {
                 ex->fail(ApiError::unavailable("The server is shutting down", "shutting_down"));
                 ex->release();
               }});
      if (!pushed) throw ApiError::unavailable("The model's queue is full; retry after a moment", "queue_full");
      if (!ex->wait_started(deadline)) {
        ex->cancel = true;
        throw ApiError::unavailable("The request timed out waiting in the queue", "timeout");
      }
      {
        std::lock_guard lk(ex->mu);
        if (ex->error) throw *ex->error;
      }
      if (spec->stream) return stream_attach(res, ex);
      if (!ex->wait_done(deadline + std::chrono::seconds(5))) {
        ex->cancel = true;
        throw ApiError::unavailable("The request timed out", "timeout");
      }
      std::lock_guard lk(ex->mu);
      if (ex->result.is_null()) throw ex->failure ? *ex->failure : ApiError::internal("Image generation failed");
      json_send(res, 200, ex->result);
    };
  };
  s.Post("/v1/images/generations", image_route(false));
  s.Post("/v1/images/edits", image_route(true));
}

}  // namespace aigc::server
