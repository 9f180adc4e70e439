// What a model file says about one tensor, common to every format (GGUF, safetensors), so that
// `aigc info` and the model loaders treat files alike.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace aigc {

struct TensorInfo {
  std::string name;
  std::string type_name;        // as the file spells it ("F16", "q4_K", "BOOL")
  std::optional<DType> type;    // nullopt: a type the engine cannot compute with (listed, not loadable)
  std::vector<int64_t> shape;   // PyTorch order (outermost first), whatever order the file uses
  uint64_t offset = 0;          // bytes from the start of the file holding the data
  uint64_t nbytes = 0;
  std::string file;             // the file holding the data (sharded checkpoints span several)
};

}  // namespace aigc
