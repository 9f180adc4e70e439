// Pieces of the training progress line that `aigc train text` and `aigc train image` share.
#pragma once

#include <cstdint>
#include <string>

namespace aigc::train {

// "42s", "3m07s", "1h05m"; "?" for a negative or non-finite time.
std::string duration_str(double seconds);
// "[#####.....]" of `width` cells, filled in proportion to done / total.
std::string progress_bar(int64_t done, int64_t total, int width = 24);

}  // namespace aigc::train
