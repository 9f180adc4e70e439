// OpenAI-compatible request bodies: parsed and checked field by field before anything is queued.
// Every violation throws ApiError (400) naming the field in `param`, as OpenAI does. Unknown
// fields are refused ("Unrecognized request argument"), except a few that clients send and that
// change nothing here (`user`, `logprobs: false`, `response_format: {"type": "text"}`).
//
//   ChatRequest r = chat_request_parse(body_json);      // throws ApiError
//   GenerateParams p = generate_params(r.sampling, slot.config.defaults, 0);   // choice 0
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "server/image_backend.h"
#include "server/model_registry.h"
#include "text/chat_template.h"
#include "text/generator.h"

namespace aigc::server {

// Sampling fields shared by chat and completions; unset ones take the model's defaults, then ours.
struct SamplingRequest {
  std::optional<float> temperature, top_p, min_p, frequency_penalty, presence_penalty, repeat_penalty;
  std::optional<int32_t> top_k;
  std::optional<int64_t> max_tokens, seed;
  std::vector<std::string> stop;  // at most 4
  int n = 1;                      // choices, 1..8
  bool stream = false, include_usage = false;
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;
  SamplingRequest sampling;
};

struct CompletionRequest {
  std::string model;
  std::string prompt;
  bool echo = false;
  SamplingRequest sampling;
};

struct ImageGenerationRequest {
  std::string model;
  ImageRequest image;
  bool stream = false;  // extension: server-sent progress events (the web UI uses it)
};

// Body is the raw request text (so malformed JSON gets a precise message).
ChatRequest chat_request_parse(const std::string& body);
CompletionRequest completion_request_parse(const std::string& body);
ImageGenerationRequest image_request_parse(const std::string& body);
// Multipart edits: `fields` are the text parts, image/mask the uploaded files' bytes.
ImageGenerationRequest image_edit_request_parse(const std::vector<std::pair<std::string, std::string>>& fields,
                                                std::string image, std::string mask);

// The engine's parameters for choice `index` (seed + index, so n choices differ but repeat).
GenerateParams generate_params(const SamplingRequest& r, const ModelDefaults& d, int index);

}  // namespace aigc::server
