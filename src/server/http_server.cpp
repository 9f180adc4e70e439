#include "server/http_server.h"

#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/web_assets.h"

namespace aigc::server {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

const char* const kFingerprint = "aigc-" AIGC_VERSION;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string id_make(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}-{:x}{:04x}", prefix, rng() & 0xffffffffffffull, counter++ & 0xffff);
}

std::string base64_encode(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

void json_send(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void error_send(httplib::Response& res, const ApiError& e) {
  if (e.status() == 503) res.set_header("Retry-After", "2");
  json_send(res, e.status(), e.body());
}

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

// What a route's handler and the model's worker share for one request.
// The end of a job (its last events, its result or its error) is held back until release(),
// which the worker calls after it let go of the model: a client that sends its next request as
// soon as it has the answer then finds the model idle (the memory budget may unload it).
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> chunks;  // server-sent events not yet written
  bool started = false, done = false;
  std::optional<ApiError> error;   // before started: the HTTP answer
  json result;                     // non-streaming answer
  std::atomic<bool> cancel{false}; // client gone, timed out, or server stopping
  std::vector<std::string> tail;   // the last events, held until release()
  bool ended = false;              // fail() or finish() was called

  void push(std::string s) {
    {
      std::lock_guard lk(mu);
      chunks.push_back(std::move(s));
    }
    cv.notify_all();
  }
  void push_last(std::string s) {
    std::lock_guard lk(mu);
    tail.push_back(std::move(s));
  }
  void start() {
    {
      std::lock_guard lk(mu);
      started = true;
    }
    cv.notify_all();
  }
  void fail(ApiError e) {
    std::lock_guard lk(mu);
    if (ended) return;
    if (!started) error = std::move(e);
    else tail.push_back(sse(e.body()) + "data: [DONE]\n\n");
    ended = true;
  }
  void finish() {
    std::lock_guard lk(mu);
    ended = true;
  }
  // Publishes the end (call once the model is free). A job that ended without fail()/finish()
  // is reported as an internal error.
  void release() {
    {
      std::lock_guard lk(mu);
      if (!ended) {
        const ApiError e = ApiError::internal("The job ended without an answer");
        if (!started) error = e;
        else tail.push_back(sse(e.body()) + "data: [DONE]\n\n");
      }
      for (std::string& t : tail) chunks.push_back(std::move(t));
      tail.clear();
      started = done = true;
    }
    cv.notify_all();
  }
  // Waits until the job started (or failed) or the deadline passed; false on the deadline.
  bool wait_started(Clock::time_point deadline) {
    std::unique_lock lk(mu);
    return cv.wait_until(lk, deadline, [&] { return started || done; });
  }
  bool wait_done(Clock::time_point deadline) {
    std::unique_lock lk(mu);
    return cv.wait_until(lk, deadline, [&] { return done; });
  }
};

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

struct TextSpec {
  bool chat = false;
  std::string id, model;
  int64_t created = 0;
  std::vector<ChatMessage> messages;
  std::string prompt;
  bool echo = false;
  SamplingRequest sampling;
  Clock::time_point deadline;
};

// ---- the jobs (on the model's worker thread) ----------------------------------------------------

struct JobEnv {
  ModelRegistry& registry;
  Metrics& metrics;
  const std::atomic<bool>& stopping;
  int64_t token_delay_us;
};

void text_job_run(const JobEnv& env, ModelSlot& slot, const TextSpec& spec, Exchange& ex) {
  std::lock_guard use(slot.use);
  std::lock_guard compute(ModelRegistry::compute_mutex());
  if (ex.cancel || env.stopping) return ex.fail(ApiError::unavailable("The request was cancelled", "cancelled"));
  if (Clock::now() >= spec.deadline) return ex.fail(ApiError::unavailable("The request timed out in the queue", "timeout"));
  TextGenerator* gen = nullptr;
  try {
    gen = &env.registry.text_acquire(slot);
  } catch (const Error& e) {
    return ex.fail(ApiError::unavailable(std::string("The model could not be loaded: ") + e.what(), "model_load_failed"));
  }
  std::vector<text::TokenId> tokens;
  try {
    if (spec.chat) {
      if (!slot.chat_template)
        return ex.fail(ApiError::bad_request(
            "The model names no chat template aigc recognises; use /v1/completions, or set \"chat_template\" (" +
                chat_template_names() + ") for it in models.json",
            "model", "no_chat_template"));
      std::vector<ChatMessage> msgs = spec.messages;
      for (ChatMessage& m : msgs) m.content = chat_content_defuse(std::move(m.content), slot.control_texts);
      const bool has_system = std::any_of(msgs.begin(), msgs.end(), [](const ChatMessage& m) { return m.role == "system"; });
      if (!has_system && !slot.config.system.empty()) msgs.insert(msgs.begin(), {"system", slot.config.system});
      const std::string prompt = chat_template_render(*slot.chat_template, msgs, true, slot.bos, slot.eos);
      tokens = gen->vocab().encode(prompt, {.add_special = true, .parse_special = true});
    } else {
      tokens = gen->vocab().encode(spec.prompt, {.add_special = true, .parse_special = false});
    }
  } catch (const Error& e) {
    return ex.fail(ApiError::bad_request(e.what(), spec.chat ? "messages" : "prompt"));
  }
  if (tokens.empty()) return ex.fail(ApiError::bad_request("The prompt is empty", spec.chat ? "messages" : "prompt"));
  if (static_cast<int64_t>(tokens.size()) >= gen->n_ctx())
    return ex.fail(ApiError::bad_request(fmt::format("This model's context holds {} tokens; the prompt has {}",
                                                     gen->n_ctx(), tokens.size()),
                                         spec.chat ? "messages" : "prompt", "context_length_exceeded"));
  ex.start();

  const bool stream = spec.sampling.stream;
  const char* object = spec.chat ? (stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  auto chunk = [&](json choice) {
    return sse({{"id", spec.id}, {"object", object}, {"created", spec.created}, {"model", spec.model},
                {"system_fingerprint", kFingerprint}, {"choices", json::array({std::move(choice)})}});
  };
  auto delta = [&](int index, std::string_view text, bool first) {
    if (spec.chat) {
      json d = {{"content", text}};
      if (first) d["role"] = "assistant";
      return chunk({{"index", index}, {"delta", d}, {"logprobs", nullptr}, {"finish_reason", nullptr}});
    }
    return chunk({{"text", text}, {"index", index}, {"logprobs", nullptr}, {"finish_reason", nullptr}});
  };
  int64_t completion_tokens = 0;
  json choices = json::array();
  bool timed_out = false;
  try {
    for (int i = 0; i < spec.sampling.n; ++i) {
      if (ex.cancel || env.stopping) break;
      const GenerateParams params = generate_params(spec.sampling, slot.config.defaults, i);
      std::string text;
      if (!spec.chat && spec.echo) {
        text = spec.prompt;
        if (stream) ex.push(delta(i, spec.prompt, false));
      }
      bool first = true;
      if (stream && spec.chat) {  // the role comes first, as OpenAI sends it
        ex.push(delta(i, "", true));
        first = false;
      }
      const GenerateResult r = gen->generate(tokens, params, [&](std::string_view piece) {
        if (ex.cancel || env.stopping) return false;
        if (Clock::now() >= spec.deadline) {
          timed_out = true;
          return false;
        }
        if (stream) ex.push(delta(i, piece, first));
        first = false;
        if (env.token_delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(env.token_delay_us));
        return true;
      });
      text += r.text;
      completion_tokens += r.n_generated;
      // A time limit ends the text as max_tokens would: "length".
      const std::string finish = r.end == GenerateEnd::Cancelled ? (timed_out ? "length" : "cancelled")
                                                                   : std::string(generate_end_name(r.end));
      if (r.end == GenerateEnd::Cancelled && !timed_out) env.metrics.cancelled_add();
      if (stream) {
        json c = spec.chat ? json{{"index", i}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", finish}}
                           : json{{"text", ""}, {"index", i}, {"logprobs", nullptr}, {"finish_reason", finish}};
        ex.push(chunk(c));
      } else if (spec.chat) {
        choices.push_back({{"index", i}, {"message", {{"role", "assistant"}, {"content", text}}}, {"logprobs", nullptr},
                           {"finish_reason", finish}});
      } else {
        choices.push_back({{"text", text}, {"index", i}, {"logprobs", nullptr}, {"finish_reason", finish}});
      }
      if (timed_out) break;
    }
  } catch (const Error& e) {
    env.metrics.tokens_add(static_cast<int64_t>(tokens.size()), completion_tokens);
    return ex.fail(ApiError::bad_request(e.what()));
  }
  const int64_t prompt_tokens = static_cast<int64_t>(tokens.size());
  env.metrics.tokens_add(prompt_tokens, completion_tokens);
  const json usage = {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens},
                      {"total_tokens", prompt_tokens + completion_tokens}};
  if (stream) {
    if (spec.sampling.include_usage)
      ex.push_last(sse({{"id", spec.id}, {"object", object}, {"created", spec.created}, {"model", spec.model},
                   {"system_fingerprint", kFingerprint}, {"choices", json::array()}, {"usage", usage}}));
    ex.push_last("data: [DONE]\n\n");
  } else {
    std::lock_guard lk(ex.mu);
    ex.result = {{"id", spec.id}, {"object", object}, {"created", spec.created}, {"model", spec.model},
                 {"system_fingerprint", kFingerprint}, {"choices", choices}, {"usage", usage}};
  }
  ex.finish();
}

void image_job_run(const JobEnv& env, ModelSlot& slot, const ImageGenerationRequest& spec, Exchange& ex,
                   Clock::time_point deadline) {
  std::lock_guard use(slot.use);
  std::lock_guard compute(ModelRegistry::compute_mutex());
  if (ex.cancel || env.stopping) return ex.fail(ApiError::unavailable("The request was cancelled", "cancelled"));
  ImageBackend* backend = nullptr;
  try {
    backend = &env.registry.image_acquire(slot);
  } catch (const Error& e) {
    return ex.fail(ApiError::unavailable(std::string("The model could not be loaded: ") + e.what(), "model_load_failed"));
  }
  ImageRequest r = spec.image;
  if (r.sampler.empty()) {
    const auto names = backend->samplers();
    if (!names.empty()) r.sampler = names.front();
  } else {
    const auto names = backend->samplers();
    if (std::find(names.begin(), names.end(), r.sampler) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      return ex.fail(ApiError::bad_request("Unknown sampler '" + r.sampler + "' (this model has: " + list + ")", "sampler"));
    }
  }
  if (r.seed < 0) r.seed = static_cast<int64_t>(std::random_device{}() & 0x7fffffff);
  try {
    backend->validate(r);
  } catch (const Error& e) {
    return ex.fail(ApiError::bad_request(e.what()));
  }
  ex.start();
  // Cancellation for the backend: the client's flag, the server stopping, or the time limit.
  std::atomic<bool> cancel{false};
  std::atomic<bool> job_done{false};
  std::thread watchdog([&] {
    while (!job_done) {
      if (ex.cancel || env.stopping || Clock::now() >= deadline) cancel = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  auto progress = [&](const ImageProgress& p) {
    if (!spec.stream) return;
    json e = {{"type", "progress"}, {"step", p.step}, {"total", p.total}, {"image", p.image_index}};
    if (!p.preview_png.empty()) e["preview_b64"] = base64_encode(p.preview_png);
    ex.push(sse(e));
  };
  std::vector<std::string> images;
  std::optional<ApiError> failure;
  try {
    images = backend->generate(r, progress, cancel);
  } catch (const ImageCancelled&) {
    failure = Clock::now() >= deadline ? ApiError::unavailable("The request timed out", "timeout")
                                       : ApiError::unavailable("The request was cancelled", "cancelled");
    env.metrics.cancelled_add();
  } catch (const Error& e) {
    failure = ApiError::bad_request(e.what());
  }
  job_done = true;
  watchdog.join();
  if (failure) return ex.fail(*failure);
  env.metrics.images_add(static_cast<int64_t>(images.size()));
  json data = json::array();
  for (size_t i = 0; i < images.size(); ++i)
    data.push_back({{"b64_json", base64_encode(images[i])}, {"seed", r.seed + static_cast<int64_t>(i)},
                    {"revised_prompt", nullptr}});
  json result = {{"created", unix_now()},
                 {"data", data},
                 {"parameters",
                  {{"prompt", r.prompt}, {"negative_prompt", r.negative_prompt}, {"steps", r.steps}, {"sampler", r.sampler},
                   {"seed", r.seed}, {"cfg_scale", r.cfg_scale}, {"size", fmt::format("{}x{}", r.width, r.height)},
                   {"mode", r.mode == ImageMode::Txt2Img ? "txt2img" : r.mode == ImageMode::Img2Img ? "img2img" : "inpaint"},
                   {"strength", r.strength}}}};
  if (spec.stream) {
    result["type"] = "result";
    ex.push_last(sse(result));
    ex.push_last("data: [DONE]\n\n");
  } else {
    std::lock_guard lk(ex.mu);
    ex.result = std::move(result);
  }
  ex.finish();
}

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
    json_send(res, res.status, api_error_body(res.status, msg));
    if (res.status == 413) {
      json b = api_error_body(413, msg);
      b["error"]["code"] = "request_too_large";
      json_send(res, 413, b);
    }
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
      if (ex->result.is_null()) throw ApiError::internal("Image generation failed");
      json_send(res, 200, ex->result);
    };
  };
  s.Post("/v1/images/generations", image_route(false));
  s.Post("/v1/images/edits", image_route(true));
}

}  // namespace aigc::server
