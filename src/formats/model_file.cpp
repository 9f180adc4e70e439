#include "formats/model_file.h"

#include <cstdint>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/mapped_file.h"

namespace aigc {

ModelFormat model_format_detect(const std::string& path) {
  MappedFile::open(path, {.use_mmap = true});  // same clear errors as loading: missing, a folder...
  std::ifstream f(path, std::ios::binary);
  unsigned char head[9] = {};
  f.read(reinterpret_cast<char*>(head), sizeof head);
  const auto got = static_cast<size_t>(f.gcount());
  if (got >= 4 && std::memcmp(head, "GGUF", 4) == 0) return ModelFormat::Gguf;
  if (got >= 4 && std::memcmp(head, "FUGG", 4) == 0) return ModelFormat::Gguf;  // big-endian: the reader explains
  if (got == 9 && head[8] == '{') return ModelFormat::Safetensors;
  if (got >= 1) {
    size_t i = 0;
    while (i < got && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) ++i;
    const bool json_name = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
    if (i < got && head[i] == '{' && json_name) return ModelFormat::SafetensorsIndex;
  }
  error_throw("not a GGUF or safetensors file (unrecognised first bytes)", path,
              "aigc reads .gguf files, .safetensors files and *.safetensors.index.json of sharded checkpoints");
}

}  // namespace aigc
