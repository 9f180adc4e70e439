// safetensors: reader (single file or sharded checkpoint) and writer.
//
// Layout (huggingface/safetensors spec): u64 little-endian N; N bytes of UTF-8 JSON, optionally
// padded with spaces; then the data buffer. The JSON maps each tensor name to
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} (offsets relative to the data
// buffer) plus an optional "__metadata__" string -> string map. The buffer must be covered exactly:
// no overlaps, no holes, no trailing bytes (the spec forbids them to prevent polyglot files).
// A sharded checkpoint is a `*.safetensors.index.json`
// {"metadata": {...}, "weight_map": {tensor: "model-00001-of-00002.safetensors", ...}}.
//
//   SafetensorsFile f = SafetensorsFile::open("vae.safetensors");   // or "model.safetensors.index.json"
//   for (const TensorInfo& ti : f.tensor_infos()) fmt::print("{} {}\n", ti.name, ti.type_name);
//   Tensor w = f.tensor("decoder.conv_in.weight");   // zero-copy view of the mapped file, read-only
//
//   safetensors_write("out.safetensors", {{"w", w}}, {{"format", "pt"}});
//
// Every problem in a file is reported as one aigc::Error naming the file, the tensor and the field.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "formats/tensor_info.h"

namespace aigc {

// Largest JSON header accepted (the reference implementation uses the same cap).
constexpr uint64_t kSafetensorsHeaderMax = 100u << 20;

class SafetensorsFile {
 public:
  // PATH is a .safetensors file, or a sharded checkpoint's *.index.json (each shard opened once).
  static SafetensorsFile open(const std::string& path, FileLoadOptions opt = {});
  // Parses a whole .safetensors image held in memory. Does not copy: `bytes` must outlive the
  // result and the tensors taken from it. `name` is used in error messages and TensorInfo::file.
  static SafetensorsFile parse(std::span<const uint8_t> bytes, const std::string& name = "<memory>");

  // In file order (by shard, then by offset).
  const std::vector<TensorInfo>& tensor_infos() const { return infos_; }
  // __metadata__ of a single file; the index's "metadata" of a sharded one (non-string values as
  // compact JSON, e.g. "total_size" -> "1234").
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(std::string_view name) const;
  // Zero-copy, read-only view (a copy only when the file places it misaligned for its type).
  // Throws aigc::Error for a missing name, a dtype the engine has no DType for, or > kMaxDims dims.
  Tensor tensor(std::string_view name) const;
  // The raw bytes of a tensor, any dtype.
  std::span<const uint8_t> tensor_bytes(const TensorInfo& info) const;

 private:
  struct Shard {
    std::shared_ptr<MappedFile> file;  // null for parse()
    const uint8_t* data = nullptr;
    size_t size = 0;
  };
  void shard_add(Shard shard, const std::string& path);
  void index_build();

  std::vector<Shard> shards_;
  std::vector<TensorInfo> infos_;
  std::vector<size_t> info_shard_;  // shard of infos_[i]
  std::map<std::string, size_t, std::less<>> by_name_;
  std::map<std::string, std::string> metadata_;
};

// The parts of a `*.safetensors.index.json`, checked (shard names may not leave the index's folder).
struct SafetensorsIndex {
  std::map<std::string, std::string> metadata;    // values that are not strings: compact JSON
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
};
SafetensorsIndex safetensors_index_parse(std::span<const uint8_t> bytes, const std::string& path);

// Writes PATH.tmp, then renames it to PATH. Tensors may be strided; types F32, F16, BF16, F64, I8,
// I16, I32, I64. Data is ordered by element size (largest first) then name, so every tensor stays
// aligned to its element size; the header is padded with spaces to a multiple of 8 bytes.
void safetensors_write(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace aigc
