// Pieces of the training progress line that `aigc train text` and `aigc train image` share.
#pragma once

#include <cstdint>
#include <string>

namespace aigc::train {

// "42s", "3m07s", "1h05m"; "?" for a negative or non-finite time.
std::string duration_str(double seconds);
// "[#####.....]" of `width` cells, filled in proportion to done / total.
std::string progress_bar(int64_t done, int64_t total, int width = 24);
// Prints the progress line of 0-based `step` (of `total`; this run began at `step0`) to stderr: on a
// terminal redrawn in place every step, otherwise one line per 2% of the run, the first and the last.
void progress_line_print(const std::string& line, int64_t step, int64_t step0, int64_t total, bool tty);

}  // namespace aigc::train
