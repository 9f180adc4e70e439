// The jobs a model's worker runs: text generation (chat and completions, streaming or not) and
// image generation through an ImageBackend. Each reports through its Exchange and honours the
// cancel flag, the server's stopping flag and the request's deadline.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "server/exchange.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/openai_request.h"

namespace aigc::server {

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

struct JobEnv {
  ModelRegistry& registry;
  Metrics& metrics;
  const std::atomic<bool>& stopping;
  int64_t token_delay_us;  // tests only
};

void text_job_run(const JobEnv& env, ModelSlot& slot, const TextSpec& spec, Exchange& ex);
void image_job_run(const JobEnv& env, ModelSlot& slot, const ImageGenerationRequest& spec, Exchange& ex,
                   Clock::time_point deadline);

int64_t unix_now();
std::string id_make(const char* prefix);  // "chatcmpl-..." (random, unique in the process)
std::string base64_encode(std::string_view in);

}  // namespace aigc::server
