// Random quantised blocks for the kernel tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "core/quant.h"

namespace aigc::test {

// nb Q8_K activation blocks as the quantiser writes them: qs in [-lim, lim], bsums their group
// sums; d 1 (`unit`) or a random multiple of 2^-12 in (0, 0.25].
std::vector<BlockQ8_K> q8_K_random(int64_t nb, std::mt19937& rng, int lim, bool unit);

}  // namespace aigc::test
