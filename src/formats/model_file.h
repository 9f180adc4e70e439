// Which model file format a path holds, by its first bytes (not its name): GGUF starts with
// "GGUF"; safetensors with a u64 header length then '{'; a sharded safetensors checkpoint is a
// JSON index (*.safetensors.index.json).
#pragma once

#include <string>

namespace aigc {

enum class ModelFormat { Gguf, Safetensors, SafetensorsIndex };

// Throws aigc::Error for a missing/unreadable file or one that is none of the formats.
ModelFormat model_format_detect(const std::string& path);

}  // namespace aigc
