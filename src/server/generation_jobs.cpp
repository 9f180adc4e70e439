#include "server/generation_jobs.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "core/error.h"
#include "formats/gguf.h"

namespace aigc::server {

using json = nlohmann::json;

namespace {
const char* const kFingerprint = "aigc-" AIGC_VERSION;  // system_fingerprint of every answer
}  // namespace

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

// ---- the jobs (on the model's worker thread) ----------------------------------------------------

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

}  // namespace aigc::server
