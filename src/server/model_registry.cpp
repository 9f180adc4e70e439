#include "server/model_registry.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "formats/gguf.h"
#include "server/api_error.h"

namespace fs = std::filesystem;

namespace aigc::server {

bool model_name_valid(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name.find("..") != std::string::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

std::string chat_content_defuse(std::string content, const std::vector<std::string>& control_texts) {
  static const std::string zwsp = "\xe2\x80\x8b";  // U+200B
  for (const std::string& t : control_texts) {
    if (t.size() < 2) continue;
    for (size_t at = content.find(t); at != std::string::npos; at = content.find(t, at + t.size() + zwsp.size()))
      content.insert(at + 1, zwsp);
  }
  return content;
}

namespace {

// `path` (symlinks followed) lies inside `dir`.
bool path_inside(const fs::path& dir, const fs::path& path) {
  std::error_code ec;
  const fs::path d = fs::weakly_canonical(dir, ec);
  if (ec) return false;
  const fs::path p = fs::weakly_canonical(path, ec);
  if (ec) return false;
  auto [di, pi] = std::mismatch(d.begin(), d.end(), p.begin(), p.end());
  return di == d.end() && pi != p.end();
}

bool is_image_file(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".safetensors" || e == ".ckpt";
}

void defaults_read(const nlohmann::json& j, ModelDefaults& d, const std::string& where) {
  if (!j.is_object()) error_throw("\"defaults\" must be an object", where);
  if (j.contains("temperature")) d.temperature = j.at("temperature").get<float>();
  if (j.contains("top_p")) d.top_p = j.at("top_p").get<float>();
  if (j.contains("max_tokens")) d.max_tokens = j.at("max_tokens").get<int64_t>();
}

}  // namespace

ModelRegistry::ModelRegistry(RegistryOptions opt) : opt_(std::move(opt)) {
  if (!opt_.models_dir.empty() && !fs::is_directory(opt_.models_dir))
    error_throw("not a directory", opt_.models_dir, "give --models a folder holding *.gguf files");
  std::lock_guard lk(mu_);
  if (!opt_.model_file.empty()) {
    if (!fs::is_regular_file(opt_.model_file)) error_throw("no such model file", opt_.model_file, "check the -m path");
    ModelConfig c;
    c.name = fs::path(opt_.model_file).stem().string();
    if (!model_name_valid(c.name)) c.name = "model";
    c.path = opt_.model_file;
    default_name_ = c.name;
    slots_.emplace(c.name, std::make_unique<ModelSlot>(c));
  }
  scan_locked();
}

ModelRegistry::~ModelRegistry() {
  shutdown();
  std::vector<std::unique_ptr<JobQueue>> queues;
  {
    std::lock_guard lk(mu_);
    for (auto& [name, s] : slots_) queues.push_back(std::move(s->queue));
  }
  queues.clear();  // joins the workers (outside the lock: a running job may still take it)
}

void ModelRegistry::scan_locked() {
  if (opt_.models_dir.empty()) return;
  const fs::path dir(opt_.models_dir);
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const fs::path p = e.path();
    const std::string stem = p.stem().string();
    const bool text = p.extension() == ".gguf";
    const bool image = is_image_file(p) && opt_.image_backend_open;
    if ((!text && !image) || !model_name_valid(stem) || slots_.count(stem) || !path_inside(dir, p)) continue;
    ModelConfig c;
    c.name = stem;
    c.kind = text ? ModelKind::Text : ModelKind::Image;
    c.path = p.string();
    slots_.emplace(stem, std::make_unique<ModelSlot>(c));
  }
  const fs::path cfg_path = dir / "models.json";
  if (!fs::is_regular_file(cfg_path)) return;
  nlohmann::json cfg;
  try {
    std::ifstream in(cfg_path);
    cfg = nlohmann::json::parse(in);
    if (!cfg.is_object()) error_throw("the top level must be an object", cfg_path.string());
    if (cfg.contains("default")) default_name_ = cfg.at("default").get<std::string>();
    if (!cfg.contains("models")) return;
    for (const auto& [name, m] : cfg.at("models").items()) {
      const std::string where = cfg_path.string() + ": models." + name;
      if (!model_name_valid(name)) error_throw("invalid model name (letters, digits, . _ - only)", where);
      ModelSlot* existing = slot_locked(name);
      ModelConfig c = existing ? existing->config : ModelConfig{};
      c.name = name;
      if (m.contains("file")) {
        const std::string file = m.at("file").get<std::string>();
        const fs::path p = dir / file;
        if (!path_inside(dir, p) || !fs::is_regular_file(p))
          error_throw("\"file\" must name a file inside the models folder", where, file);
        c.path = p.string();
        c.kind = is_image_file(p) ? ModelKind::Image : ModelKind::Text;
        if (c.kind == ModelKind::Image && !opt_.image_backend_open) continue;  // no image backend yet
      } else if (!existing) {
        error_throw("needs \"file\" (no model file of that name)", where);
      }
      if (m.contains("ctx_size")) c.ctx_size = m.at("ctx_size").get<int64_t>();
      if (m.contains("chat_template")) c.chat_template = m.at("chat_template").get<std::string>();
      if (m.contains("system")) c.system = m.at("system").get<std::string>();
      if (m.contains("defaults")) defaults_read(m.at("defaults"), c.defaults, where);
      if (existing) {
        // A loaded or busy model keeps what it was loaded with (its worker reads the config).
        if (!existing->loaded && existing->use.try_lock()) {
          existing->config = c;
          existing->use.unlock();
        }
      } else {
        slots_.emplace(name, std::make_unique<ModelSlot>(c));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    error_throw(std::string("bad models.json: ") + e.what(), cfg_path.string(),
                "see README (server): {\"models\": {\"name\": {\"file\": \"x.gguf\", ...}}}");
  }
}

ModelSlot* ModelRegistry::slot_locked(const std::string& name) {
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : it->second.get();
}

void ModelRegistry::image_backend_add(const std::string& name, std::shared_ptr<ImageBackend> backend) {
  AIGC_ASSERT(model_name_valid(name) && backend, "image model name '{}'", name);
  std::lock_guard lk(mu_);
  ModelConfig c;
  c.name = name;
  c.kind = ModelKind::Image;
  auto s = std::make_unique<ModelSlot>(c);
  s->image = std::move(backend);
  s->image_pinned = true;
  s->loaded = true;
  s->memory_bytes = s->image->memory_bytes();
  slots_[name] = std::move(s);
}

ModelSlot& ModelRegistry::find(const std::string& requested, ModelKind kind) {
  std::lock_guard lk(mu_);
  std::string name = requested;
  if (name.empty()) {
    name = default_name_;
    if (name.empty()) {  // the only model of this kind
      for (auto& [n, s] : slots_)
        if (s->config.kind == kind) {
          if (!name.empty()) throw ApiError::bad_request("'model' is required (several models are served)", "model");
          name = n;
        }
    }
    if (name.empty()) throw ApiError::bad_request("'model' is required", "model");
  }
  if (!model_name_valid(name))
    throw ApiError::bad_request("invalid model name: use letters, digits, '.', '_' and '-' only", "model",
                                "invalid_model_name");
  ModelSlot* s = slot_locked(name);
  if (!s) {
    try {
      scan_locked();
    } catch (const Error& e) {
      log_warn("models folder: {}", e.what());
    }
    s = slot_locked(name);
  }
  if (!s) throw ApiError::not_found("The model '" + name + "' does not exist", "model", "model_not_found");
  if (s->config.kind != kind)
    throw ApiError::bad_request("The model '" + name + "' is " +
                                    (s->config.kind == ModelKind::Text ? "a text model" : "an image model"),
                                "model", "model_kind_mismatch");
  return *s;
}

std::vector<ModelListing> ModelRegistry::list() {
  std::lock_guard lk(mu_);
  try {
    scan_locked();
  } catch (const Error& e) {
    log_warn("models folder: {}", e.what());
  }
  std::vector<ModelListing> out;
  for (auto& [n, s] : slots_) out.push_back({n, s->config.kind, s->loaded});
  return out;
}

JobQueue& ModelRegistry::queue(ModelSlot& s) {
  std::lock_guard lk(mu_);
  if (!s.queue) s.queue = std::make_unique<JobQueue>(s.config.name, opt_.queue_size);
  return *s.queue;
}

void ModelRegistry::make_room_locked(ModelSlot& self, int64_t need) {
  if (opt_.memory_budget <= 0) return;
  auto used = [&] {
    int64_t u = 0;
    for (auto& [n, s] : slots_)
      if (s->loaded && !s->image_pinned) u += s->memory_bytes;  // pinned: the caller's memory
    return u;
  };
  while (used() + need > opt_.memory_budget) {
    ModelSlot* victim = nullptr;
    for (auto& [n, s] : slots_)
      if (s.get() != &self && s->loaded && !s->image_pinned && (!victim || s->last_used < victim->last_used)) {
        if (s->use.try_lock()) {  // idle: nobody is generating with it
          s->use.unlock();
          if (!victim || s->last_used < victim->last_used) victim = s.get();
        }
      }
    if (!victim) {
      log_warn("memory budget: {} MiB in use, {} MiB more needed for {}, nothing idle to unload", used() >> 20,
               need >> 20, self.config.name);
      return;
    }
    std::lock_guard vl(victim->use);  // cannot block for long: it was idle a moment ago
    log_info("memory budget: unloading {} (least recently used)", victim->config.name);
    victim->text.reset();
    victim->text_model.reset();
    victim->image.reset();
    victim->loaded = false;
    victim->memory_bytes = 0;
  }
}

void ModelRegistry::loaded_set(ModelSlot& s, int64_t bytes) {
  std::lock_guard lk(mu_);
  s.loaded = true;
  s.memory_bytes = bytes;
  s.last_used = std::chrono::steady_clock::now();
}

TextGenerator& ModelRegistry::text_acquire(ModelSlot& s) {
  if (s.text) {
    std::lock_guard lk(mu_);
    s.last_used = std::chrono::steady_clock::now();
    return *s.text;
  }
  std::error_code ec;
  const int64_t file_bytes = static_cast<int64_t>(fs::file_size(s.config.path, ec));
  if (ec) error_throw("cannot read the model file", s.config.path);
  if (opt_.memory_budget > 0 && file_bytes > opt_.memory_budget)
    error_throw(fmt::format("model needs {} MiB, the memory budget is {} MiB", file_bytes >> 20, opt_.memory_budget >> 20),
                s.config.name, "raise --memory-budget");
  {
    std::lock_guard lk(mu_);
    make_room_locked(s, file_bytes);
  }
  auto model = text_model_load(s.config.path, {.use_mmap = !opt_.no_mmap, .mlock = opt_.mlock});
  int64_t n_ctx = s.config.ctx_size > 0 ? s.config.ctx_size : opt_.ctx_size;
  if (n_ctx <= 0) n_ctx = std::min<int64_t>(model->n_ctx_train() > 0 ? model->n_ctx_train() : 4096, 4096);
  auto gen = std::make_unique<TextGenerator>(
      *model, TextContextParams{.n_ctx = n_ctx, .cache_type_k = opt_.cache_type_k, .cache_type_v = opt_.cache_type_v});
  std::string jinja;
  if (const GgufValue* v = model->gguf().find("tokenizer.chat_template"); v && v->type() == GgufType::STRING)
    jinja = v->as_string();
  if (!s.config.chat_template.empty()) {
    s.chat_template = chat_template_resolve(s.config.chat_template, "");
  } else {
    s.chat_template = chat_template_detect(jinja);  // nullopt: chat requests get a clear 400
  }
  const text::Vocab& v = gen->vocab();
  s.bos = v.data().bos == text::token_null ? "<s>" : v.token_text(v.data().bos);
  s.eos = v.data().eos == text::token_null ? "</s>" : v.token_text(v.data().eos);
  s.control_texts.clear();
  for (size_t id = 0; id < v.size(); ++id) {
    const auto tid = static_cast<text::TokenId>(id);
    if (v.token_type(tid) == text::TokenType::Control || v.token_type(tid) == text::TokenType::UserDefined)
      s.control_texts.push_back(v.token_text(tid));
  }
  // Weights (mapped or read) plus the KV cache: layers * ctx * embd keys and as many values, f32
  // or f16 (an upper bound: grouped KV heads need less).
  const auto kv_elem = static_cast<int64_t>(dtype_traits(opt_.cache_type_k).block_bytes +
                                            dtype_traits(opt_.cache_type_v).block_bytes);
  const int64_t bytes = file_bytes + model->n_layer() * n_ctx * model->n_embd() * kv_elem;
  s.text_model = std::move(model);
  s.text = std::move(gen);
  loaded_set(s, bytes);
  log_info("loaded {} ({} MiB with its cache, context {})", s.config.name, bytes >> 20, n_ctx);
  return *s.text;
}

ImageBackend& ModelRegistry::image_acquire(ModelSlot& s) {
  if (!s.image) {
    if (!opt_.image_backend_open) error_throw("no image backend is available", s.config.name);
    {
      std::lock_guard lk(mu_);
      make_room_locked(s, 0);
    }
    s.image = opt_.image_backend_open(s.config.path);
    loaded_set(s, s.image->memory_bytes());
    std::lock_guard lk(mu_);
    make_room_locked(s, 0);
  }
  std::lock_guard lk(mu_);
  s.last_used = std::chrono::steady_clock::now();
  return *s.image;
}

std::vector<Metrics::ModelGauge> ModelRegistry::gauges() {
  std::lock_guard lk(mu_);
  std::vector<Metrics::ModelGauge> g;
  for (auto& [n, s] : slots_) g.push_back({n, s->queue ? s->queue->depth() : 0, s->loaded});
  return g;
}

int64_t ModelRegistry::memory_in_use() {
  std::lock_guard lk(mu_);
  int64_t u = 0;
  for (auto& [n, s] : slots_)
    if (s->loaded) u += s->memory_bytes;
  return u;
}

void ModelRegistry::shutdown() {
  std::lock_guard lk(mu_);
  for (auto& [n, s] : slots_)
    if (s->queue) s->queue->shutdown();
}

std::mutex& ModelRegistry::compute_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace aigc::server
