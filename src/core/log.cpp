#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace aigc {

static std::atomic<LogLevel> g_log_level{LogLevel::Warn};

void log_level_set(LogLevel level) { g_log_level = level; }
LogLevel log_level_get() { return g_log_level; }

void log_write(LogLevel level, const std::string& msg) {
  static const char* names[] = {"debug", "info", "warning", "error", ""};
  std::fprintf(stderr, "aigc: %s: %s\n", names[static_cast<int>(level)], msg.c_str());
}

}  // namespace aigc
