#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace aigc {

static std::string error_format(const std::string& what, const std::string& where,
                                const std::string& hint) {
  std::string s = what;
  if (!where.empty()) s += " (" + where + ")";
  if (!hint.empty()) s += "; hint: " + hint;
  return s;
}

Error::Error(std::string what, std::string where, std::string hint)
    : std::runtime_error(error_format(what, where, hint)),
      what_(std::move(what)),
      where_(std::move(where)),
      hint_(std::move(hint)) {}

void error_throw(std::string what, std::string where, std::string hint) {
  throw Error(std::move(what), std::move(where), std::move(hint));
}

namespace detail {
void assert_fail(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "aigc: internal error at %s:%d: assertion '%s' failed%s%s\n", file, line,
               cond, msg.empty() ? "" : ": ", msg.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

}  // namespace aigc
