// Progress-line pieces (see train_progress.h).
#include "train/train_progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace aigc::train {

std::string duration_str(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::string progress_bar(int64_t done, int64_t total, int width) {
  const int filled = total > 0 ? static_cast<int>(std::clamp<double>(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0) * width) : 0;
  return "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.') + "]";
}

void progress_line_print(const std::string& line, int64_t step, int64_t step0, int64_t total, bool tty) {
  const bool last = step + 1 == total;
  if (tty)
    std::fprintf(stderr, "\r%s\x1b[K%s", line.c_str(), last ? "\n" : "");
  else if ((step + 1) % std::max<int64_t>(1, total / 50) == 0 || last || step == step0)
    std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace aigc::train
