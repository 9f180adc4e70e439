#include "server/openai_request.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "server/api_error.h"

namespace aigc::server {

namespace {

using json = nlohmann::json;

json body_parse(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers past double
    throw ApiError::bad_request(std::string("The request body is not valid JSON: ") + e.what(), {}, "invalid_json");
  }
  if (!j.is_object()) throw ApiError::bad_request("The request body must be a JSON object", {}, "invalid_json");
  return j;
}

void fields_check(const json& j, const std::set<std::string>& allowed) {
  for (const auto& [k, v] : j.items())
    if (!allowed.count(k)) throw ApiError::bad_request("Unrecognized request argument supplied: " + k, k);
}

std::string string_get(const json& j, const char* key, bool required) {
  if (!j.contains(key) || j.at(key).is_null()) {
    if (required) throw ApiError::bad_request(std::string("'") + key + "' is a required property", key);
    return {};
  }
  if (!j.at(key).is_string()) throw ApiError::bad_request(std::string("'") + key + "' must be a string", key);
  return j.at(key).get<std::string>();
}

std::optional<double> number_get(const json& j, const char* key, double lo, double hi) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  if (!v.is_number()) throw ApiError::bad_request(std::string("'") + key + "' must be a number", key);
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    throw ApiError::bad_request(fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, d), key);
  return d;
}

std::optional<int64_t> int_get(const json& j, const char* key, int64_t lo, int64_t hi) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  if (!v.is_number_integer()) throw ApiError::bad_request(std::string("'") + key + "' must be an integer", key);
  const int64_t i = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
  if (i < lo || i > hi) throw ApiError::bad_request(fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, i), key);
  return i;
}

bool bool_get(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return false;
  if (!j.at(key).is_boolean()) throw ApiError::bad_request(std::string("'") + key + "' must be a boolean", key);
  return j.at(key).get<bool>();
}

const std::set<std::string> kSamplingFields = {
    "model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "min_p", "frequency_penalty", "presence_penalty", "repeat_penalty", "stop", "seed", "user", "logprobs",
    "response_format"};

SamplingRequest sampling_parse(const json& j) {
  SamplingRequest r;
  if (auto v = number_get(j, "temperature", 0, 2)) r.temperature = static_cast<float>(*v);
  if (auto v = number_get(j, "top_p", 0, 1)) r.top_p = static_cast<float>(*v);
  if (auto v = number_get(j, "min_p", 0, 1)) r.min_p = static_cast<float>(*v);
  if (auto v = number_get(j, "frequency_penalty", -2, 2)) r.frequency_penalty = static_cast<float>(*v);
  if (auto v = number_get(j, "presence_penalty", -2, 2)) r.presence_penalty = static_cast<float>(*v);
  if (auto v = number_get(j, "repeat_penalty", 0, 10)) r.repeat_penalty = static_cast<float>(*v);
  if (auto v = int_get(j, "top_k", 0, 1 << 20)) r.top_k = static_cast<int32_t>(*v);
  if (auto v = int_get(j, "max_tokens", 1, 1 << 20)) r.max_tokens = *v;
  if (auto v = int_get(j, "max_completion_tokens", 1, 1 << 20)) r.max_tokens = *v;
  if (auto v = int_get(j, "seed", INT64_MIN, INT64_MAX)) r.seed = *v;
  if (auto v = int_get(j, "n", 1, 8)) r.n = static_cast<int>(*v);
  r.stream = bool_get(j, "stream");
  if (j.contains("stream_options") && !j.at("stream_options").is_null()) {
    const json& so = j.at("stream_options");
    if (!so.is_object()) throw ApiError::bad_request("'stream_options' must be an object", "stream_options");
    if (!r.stream) throw ApiError::bad_request("'stream_options' needs 'stream': true", "stream_options");
    r.include_usage = bool_get(so, "include_usage");
  }
  if (j.contains("stop") && !j.at("stop").is_null()) {
    const json& s = j.at("stop");
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) throw ApiError::bad_request("'stop' items must be strings", "stop");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw ApiError::bad_request("'stop' must be a string or an array of at most 4 strings", "stop");
    }
  }
  if (bool_get(j, "logprobs")) throw ApiError::bad_request("'logprobs' is not supported", "logprobs");
  if (j.contains("response_format") && !j.at("response_format").is_null()) {
    const json& rf = j.at("response_format");
    if (!rf.is_object() || rf.value("type", "") != "text")
      throw ApiError::bad_request("only 'response_format': {\"type\": \"text\"} is supported", "response_format");
  }
  if (j.contains("user") && !j.at("user").is_string()) throw ApiError::bad_request("'user' must be a string", "user");
  return r;
}

}  // namespace

ChatRequest chat_request_parse(const std::string& body) {
  const json j = body_parse(body);
  auto allowed = kSamplingFields;
  allowed.insert("messages");
  fields_check(j, allowed);
  ChatRequest r;
  r.model = string_get(j, "model", false);
  if (!j.contains("messages")) throw ApiError::bad_request("'messages' is a required property", "messages");
  const json& ms = j.at("messages");
  if (!ms.is_array() || ms.empty()) throw ApiError::bad_request("'messages' must be a non-empty array", "messages");
  for (size_t i = 0; i < ms.size(); ++i) {
    const json& m = ms[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw ApiError::bad_request(param + " must be an object", param);
    const std::string role = string_get(m, "role", true);
    if (role != "system" && role != "user" && role != "assistant" && role != "developer")
      throw ApiError::bad_request(param + ".role must be one of system, developer, user, assistant", param + ".role");
    std::string content;
    if (!m.contains("content") || m.at("content").is_null()) {
      throw ApiError::bad_request(param + ".content is required", param + ".content");
    } else if (m.at("content").is_string()) {
      content = m.at("content").get<std::string>();
    } else if (m.at("content").is_array()) {  // [{"type": "text", "text": ...}, ...]
      for (const json& part : m.at("content")) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part.at("text").is_string())
          throw ApiError::bad_request(param + ".content: only text parts are supported", param + ".content");
        content += part.at("text").get<std::string>();
      }
    } else {
      throw ApiError::bad_request(param + ".content must be a string or an array of text parts", param + ".content");
    }
    r.messages.push_back({role == "developer" ? "system" : role, std::move(content)});
  }
  r.sampling = sampling_parse(j);
  return r;
}

CompletionRequest completion_request_parse(const std::string& body) {
  const json j = body_parse(body);
  auto allowed = kSamplingFields;
  allowed.insert({"prompt", "echo"});
  fields_check(j, allowed);
  CompletionRequest r;
  r.model = string_get(j, "model", false);
  if (!j.contains("prompt")) throw ApiError::bad_request("'prompt' is a required property", "prompt");
  const json& p = j.at("prompt");
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
  } else {
    throw ApiError::bad_request("'prompt' must be a string (or an array of one string)", "prompt");
  }
  r.echo = bool_get(j, "echo");
  r.sampling = sampling_parse(j);
  return r;
}

namespace {

void size_parse(const std::string& size, ImageRequest& r) {
  int w = 0, h = 0;
  char x = 0, extra = 0;
  if (std::sscanf(size.c_str(), "%d%c%d%c", &w, &x, &h, &extra) != 3 || x != 'x' || w < 64 || h < 64 || w > 2048 ||
      h > 2048 || w % 8 || h % 8)
    throw ApiError::bad_request("'size' must be WIDTHxHEIGHT, each a multiple of 8 from 64 to 2048 (e.g. 512x512)", "size");
  r.width = w;
  r.height = h;
}

void image_fields(const json& j, ImageGenerationRequest& r) {
  r.model = string_get(j, "model", false);
  r.image.prompt = string_get(j, "prompt", true);
  if (r.image.prompt.empty()) throw ApiError::bad_request("'prompt' must not be empty", "prompt");
  r.image.negative_prompt = string_get(j, "negative_prompt", false);
  if (auto v = int_get(j, "n", 1, 4)) r.image.n = static_cast<int>(*v);
  if (j.contains("size") && !j.at("size").is_null()) size_parse(string_get(j, "size", true), r.image);
  const std::string fmt = string_get(j, "response_format", false);
  if (!fmt.empty() && fmt != "b64_json")
    throw ApiError::bad_request("only 'response_format': 'b64_json' is supported (no URLs are served)", "response_format");
  if (auto v = int_get(j, "steps", 1, 150)) r.image.steps = static_cast<int>(*v);
  r.image.sampler = string_get(j, "sampler", false);
  if (auto v = int_get(j, "seed", INT64_MIN, INT64_MAX)) r.image.seed = *v;
  if (auto v = number_get(j, "cfg_scale", 0, 30)) r.image.cfg_scale = static_cast<float>(*v);
  if (auto v = number_get(j, "strength", 0, 1)) r.image.strength = static_cast<float>(*v);
  r.stream = bool_get(j, "stream");
}

}  // namespace

ImageGenerationRequest image_request_parse(const std::string& body) {
  const json j = body_parse(body);
  fields_check(j, {"model", "prompt", "negative_prompt", "n", "size", "response_format", "steps", "sampler", "seed",
                   "cfg_scale", "stream", "user", "quality", "style"});
  ImageGenerationRequest r;
  image_fields(j, r);
  return r;
}

ImageGenerationRequest image_edit_request_parse(const std::vector<std::pair<std::string, std::string>>& fields,
                                                std::string image, std::string mask) {
  // Multipart text fields are strings: turn the numeric ones into JSON numbers for one checker.
  json j = json::object();
  const std::set<std::string> numeric = {"n", "steps", "seed", "cfg_scale", "strength"};
  const std::set<std::string> allowed = {"model", "prompt", "negative_prompt", "n", "size", "response_format",
                                         "steps", "sampler", "seed", "cfg_scale", "strength", "stream", "user"};
  for (const auto& [k, v] : fields) {
    if (!allowed.count(k)) throw ApiError::bad_request("Unrecognized request argument supplied: " + k, k);
    if (numeric.count(k)) {
      json n = json::parse(v, nullptr, false);
      if (n.is_discarded() || !n.is_number()) throw ApiError::bad_request("'" + k + "' must be a number", k);
      j[k] = n;
    } else if (k == "stream") {
      j[k] = v == "true" || v == "1";
    } else {
      j[k] = v;
    }
  }
  ImageGenerationRequest r;
  image_fields(j, r);
  if (image.empty()) throw ApiError::bad_request("'image' (a PNG or JPEG file) is required", "image");
  r.image.init_image = std::move(image);
  r.image.mask = std::move(mask);
  r.image.mode = r.image.mask.empty() ? ImageMode::Img2Img : ImageMode::Inpaint;
  return r;
}

GenerateParams generate_params(const SamplingRequest& r, const ModelDefaults& d, int index) {
  GenerateParams p;
  SamplingParams& s = p.sampling;
  if (r.temperature) s.temp = *r.temperature;
  else if (d.temperature) s.temp = *d.temperature;
  if (r.top_p) s.top_p = *r.top_p;
  else if (d.top_p) s.top_p = *d.top_p;
  if (r.top_k) s.top_k = *r.top_k;
  if (r.min_p) s.min_p = *r.min_p;
  if (r.frequency_penalty) s.frequency_penalty = *r.frequency_penalty;
  if (r.presence_penalty) s.presence_penalty = *r.presence_penalty;
  if (r.repeat_penalty) s.repeat_penalty = *r.repeat_penalty;
  if (r.seed) {
    // Non-negative seeds stay as given (plus the choice index); a negative one means random, as in the CLI.
    s.seed = *r.seed >= 0 ? static_cast<int64_t>((static_cast<uint64_t>(*r.seed) + index) & INT64_MAX) : -1;
  }
  p.n_predict = r.max_tokens ? *r.max_tokens : d.max_tokens ? *d.max_tokens : -1;
  p.stop = r.stop;
  return p;
}

}  // namespace aigc::server
