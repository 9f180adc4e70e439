// ModelRegistry: the models the server offers, by name; loaded on first use, unloaded least
// recently used first to stay under a memory budget; one JobQueue (one worker) per model.
//
// Sources of models:
//   --models DIR   every DIR/*.gguf is a text model named by its file stem; DIR/models.json
//                  (optional) adds aliases and per-model defaults:
//                    {"default": "tiny",
//                     "models": {"tiny-chat": {"file": "tiny.gguf", "ctx_size": 512, "chat_template": "chatml",
//                                              "system": "Be brief.",
//                                              "defaults": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 64}}}}
//   -m FILE        one text model, named by its file stem
//   image_backend_add(name, backend)   an image model made by the caller (tests, and later the
//                  Stable Diffusion pipeline through ServeOptions::image_backend_open)
//
// Names are checked before any file access: letters, digits, '.', '_', '-' only, no "..", at most
// 128 bytes, and the resolved file (symlinks followed) must lie inside DIR.
//
// Threads: find()/list() from HTTP threads; text_acquire()/image_acquire() on the model's worker
// with the slot's `use` mutex held (that is how "in use" is known: eviction only try_locks it).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "server/image_backend.h"
#include "server/job_queue.h"
#include "server/metrics.h"
#include "text/chat_template.h"
#include "text/generator.h"

namespace aigc::server {

enum class ModelKind { Text, Image };

// Defaults a request gets for the fields it leaves out (models.json "defaults").
struct ModelDefaults {
  std::optional<float> temperature, top_p;
  std::optional<int64_t> max_tokens;
};

struct ModelConfig {
  std::string name;
  ModelKind kind = ModelKind::Text;
  std::string path;            // text: the GGUF file; image: the file given to image_backend_open
  int64_t ctx_size = 0;        // 0: the server's --ctx-size, else min(trained, 4096)
  std::string chat_template;   // "" = from the file's metadata
  std::string system;          // system message put first when a chat has none
  ModelDefaults defaults;
};

struct RegistryOptions {
  std::string models_dir;      // "" = none
  std::string model_file;      // -m FILE ("" = none)
  int64_t memory_budget = 0;   // bytes; <= 0: no limit
  size_t queue_size = 16;      // per model: jobs waiting or running
  int64_t ctx_size = 0;
  DType cache_type_k = DType::F32, cache_type_v = DType::F32;  // KV cache types of the text models
  bool no_mmap = false, mlock = false;
  // Opens an image model file (e.g. *.safetensors in DIR). Null: image files in DIR are not listed.
  std::function<std::shared_ptr<ImageBackend>(const std::string& path)> image_backend_open;
};

// One model: its configuration, its queue, and while loaded its weights.
struct ModelSlot {
  explicit ModelSlot(ModelConfig c) : config(std::move(c)) {}
  ModelConfig config;
  std::unique_ptr<JobQueue> queue;  // created on first use
  std::mutex use;                   // held by the worker while it loads and generates
  // Loaded state, guarded by `use`:
  std::unique_ptr<TextModel> text_model;
  std::unique_ptr<TextGenerator> text;
  std::optional<ChatTemplate> chat_template;
  std::string bos = "<s>", eos = "</s>";
  std::vector<std::string> control_texts;  // texts of the control tokens (for chat_content_defuse)
  std::shared_ptr<ImageBackend> image;
  bool image_pinned = false;        // added with image_backend_add: never unloaded
  // Accounting, guarded by the registry's mutex:
  int64_t memory_bytes = 0;
  bool loaded = false;
  std::chrono::steady_clock::time_point last_used{};
};

struct ModelListing {
  std::string name;
  ModelKind kind;
  bool loaded;
};

class ModelRegistry {
 public:
  explicit ModelRegistry(RegistryOptions opt);  // reads DIR and models.json; throws aigc::Error
  ~ModelRegistry();                             // shuts the queues down and joins the workers

  // Before serving (it may replace a slot of the same name).
  void image_backend_add(const std::string& name, std::shared_ptr<ImageBackend> backend);

  // The model `name` ("" = the default model). Throws ApiError: 400 for an invalid name,
  // 404 for an unknown one (after looking at DIR again: files may be added while running).
  ModelSlot& find(const std::string& name, ModelKind kind);
  std::vector<ModelListing> list();
  // Queue of the slot (created on first use).
  JobQueue& queue(ModelSlot& s);

  // On the worker, with s.use held: loads the model if needed (unloading idle models first to
  // respect the budget) and marks it used. Throws aigc::Error when it cannot load.
  TextGenerator& text_acquire(ModelSlot& s);
  ImageBackend& image_acquire(ModelSlot& s);

  std::vector<Metrics::ModelGauge> gauges();
  int64_t memory_in_use();
  // Refuses new jobs everywhere and drops waiting ones.
  void shutdown();

  // Process-wide: one generation computes at a time (the engine's threads are shared by all).
  static std::mutex& compute_mutex();

 private:
  void scan_locked();  // (re)reads DIR and models.json into slots_
  ModelSlot* slot_locked(const std::string& name);
  void make_room_locked(ModelSlot& self, int64_t need);
  void loaded_set(ModelSlot& s, int64_t bytes);

  RegistryOptions opt_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<ModelSlot>> slots_;
  std::string default_name_;
};

// A chat message's text with every control-token text in it (e.g. "<|im_end|>") broken by a
// zero-width space after its first character, so that text a user writes cannot close the turn
// or open another role when the rendered prompt is tokenized with special-token parsing.
std::string chat_content_defuse(std::string content, const std::vector<std::string>& control_texts);

// True when `name` may name a model: [A-Za-z0-9._-], 1..128 bytes, not "." or "..", no "..".
bool model_name_valid(const std::string& name);

}  // namespace aigc::server
