#include "server/api_error.h"

namespace aigc::server {

ApiError::ApiError(int status, std::string message, std::string type, std::string param, std::string code)
    : std::runtime_error(std::move(message)), status_(status), type_(std::move(type)), param_(std::move(param)),
      code_(std::move(code)) {}

nlohmann::json ApiError::body() const {
  nlohmann::json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) e["param"] = param_;
  if (!code_.empty()) e["code"] = code_;
  return {{"error", e}};
}

ApiError ApiError::bad_request(std::string m, std::string param, std::string code) {
  return ApiError(400, std::move(m), "invalid_request_error", std::move(param), std::move(code));
}
ApiError ApiError::unauthorized(std::string m) {
  return ApiError(401, std::move(m), "authentication_error", {}, "invalid_api_key");
}
ApiError ApiError::not_found(std::string m, std::string param, std::string code) {
  return ApiError(404, std::move(m), "invalid_request_error", std::move(param), std::move(code));
}
ApiError ApiError::too_large(std::string m) {
  return ApiError(413, std::move(m), "invalid_request_error", {}, "request_too_large");
}
ApiError ApiError::unavailable(std::string m, std::string code) {
  return ApiError(503, std::move(m), "server_error", {}, std::move(code));
}
ApiError ApiError::internal(std::string m) { return ApiError(500, std::move(m), "server_error"); }

nlohmann::json api_error_body(int status, const std::string& message) {
  const char* type = status == 401 ? "authentication_error" : status >= 500 ? "server_error" : "invalid_request_error";
  return ApiError(status, message, type).body();
}

}  // namespace aigc::server
