// Two tiers of errors (see README "Errors"):
//  - aigc::Error: recoverable, for everything that comes from outside (files, flags, requests,
//    shapes of loaded tensors). Carries what went wrong, where, and a hint for the user.
//  - AIGC_ASSERT: invariants of our own code. Always on, never compiled out; aborts with file:line.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace aigc {

class Error : public std::runtime_error {
 public:
  Error(std::string what, std::string where = {}, std::string hint = {});

  const std::string& what_msg() const { return what_; }
  const std::string& where() const { return where_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string what_, where_, hint_;
};

// Throws aigc::Error. `where` names the file, tensor, flag or field; `hint` says what to do.
[[noreturn]] void error_throw(std::string what, std::string where = {}, std::string hint = {});

namespace detail {
[[noreturn]] void assert_fail(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace aigc

// Invariant of our own code: a failure is a bug in aigc, never a user error.
#define AIGC_ASSERT(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond)) ::aigc::detail::assert_fail(__FILE__, __LINE__, #cond, fmt::format("" __VA_ARGS__)); \
  } while (0)

// Check on data that came from outside (shapes, sizes): throws aigc::Error with the message.
#define AIGC_CHECK(cond, ...)                                           \
  do {                                                                  \
    if (!(cond)) ::aigc::error_throw(fmt::format(__VA_ARGS__), __func__); \
  } while (0)
