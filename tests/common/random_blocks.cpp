#include "common/random_blocks.h"

#include <cmath>

namespace aigc::test {

std::vector<BlockQ8_K> q8_K_random(int64_t nb, std::mt19937& rng, int lim, bool unit) {
  std::vector<BlockQ8_K> y(static_cast<size_t>(nb));
  std::uniform_int_distribution<int> q(-lim, lim);
  for (auto& b : y) {
    b.d = unit ? 1.0f : std::ldexp(static_cast<float>(rng() % 1000 + 1), -12);
    for (auto& v : b.qs) v = static_cast<int8_t>(q(rng));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += b.qs[16 * g + j];
      b.bsums[g] = static_cast<int16_t>(s);
    }
  }
  return y;
}

}  // namespace aigc::test
