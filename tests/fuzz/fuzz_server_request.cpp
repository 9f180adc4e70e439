// libFuzzer target for the server's request parsing (server/openai_request.h): arbitrary bytes as
// the body of POST /v1/chat/completions, /v1/completions and /v1/images/generations, and as the
// fields of a multipart /v1/images/edits. Every input either parses into a request whose checked
// invariants hold or throws ApiError (a 4xx for the client); anything else — another exception
// type, a crash, a sanitizer report — is a bug. Build and run: tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "server/api_error.h"
#include "server/openai_request.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_sampling(const aigc::server::SamplingRequest& s) {
  check(s.n >= 1 && s.n <= 8);
  check(s.stop.size() <= 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace aigc::server;
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    const ChatRequest r = chat_request_parse(body);
    check(!r.messages.empty());
    check_sampling(r.sampling);
  } catch (const ApiError& e) {
    check(e.status() >= 400 && e.status() < 500);
  }
  try {
    const CompletionRequest r = completion_request_parse(body);
    check_sampling(r.sampling);
  } catch (const ApiError& e) {
    check(e.status() >= 400 && e.status() < 500);
  }
  try {
    const ImageGenerationRequest r = image_request_parse(body);
    check(r.image.n >= 1);
  } catch (const ApiError& e) {
    check(e.status() >= 400 && e.status() < 500);
  }
  // Multipart fields: split the input at the first two NUL bytes into name, value, rest.
  std::vector<std::pair<std::string, std::string>> fields;
  size_t at = 0;
  while (at < body.size() && fields.size() < 16) {
    const size_t a = body.find('\0', at);
    if (a == std::string::npos) break;
    const size_t b = body.find('\0', a + 1);
    fields.emplace_back(body.substr(at, a - at), body.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1));
    if (b == std::string::npos) break;
    at = b + 1;
  }
  try {
    (void)image_edit_request_parse(fields, "image bytes", size % 2 ? std::string() : std::string("mask bytes"));
  } catch (const ApiError& e) {
    check(e.status() >= 400 && e.status() < 500);
  }
  return 0;
}
