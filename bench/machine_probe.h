// The machine probe lives in the engine now (src/core/machine_probe.h, so that `aigc bench` can
// use it); the benchmarks keep their names in aigc::bench through these aliases.
#pragma once

#include "core/machine_probe.h"

namespace aigc::bench {

using aigc::machine_bandwidth_probe;
using aigc::machine_info;
using aigc::machine_info_print;
using aigc::machine_limits_print;
using aigc::machine_probe;
using aigc::MachineInfo;
using aigc::MachineLimits;

}  // namespace aigc::bench
