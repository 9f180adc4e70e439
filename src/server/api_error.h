// ApiError: a request the server refuses, with the HTTP status and the OpenAI-style error body
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// Thrown by request parsing and the routes; the HTTP layer turns it into the response.
//
//   throw ApiError::bad_request("'temperature' must be between 0 and 2", "temperature");
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace aigc::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type, std::string param = {}, std::string code = {});

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // {"error": {...}}; param and code are null when empty (as OpenAI sends them).
  nlohmann::json body() const;

  static ApiError bad_request(std::string message, std::string param = {}, std::string code = {});  // 400
  static ApiError unauthorized(std::string message);                                                  // 401
  static ApiError not_found(std::string message, std::string param = {}, std::string code = {});    // 404
  static ApiError too_large(std::string message);                                                     // 413
  static ApiError unavailable(std::string message, std::string code = {});                           // 503
  static ApiError internal(std::string message);                                                      // 500

 private:
  int status_;
  std::string type_, param_, code_;
};

// The body for a status with no more specific message (unknown route, wrong method, ...).
nlohmann::json api_error_body(int status, const std::string& message);

}  // namespace aigc::server
