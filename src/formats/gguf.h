// GGUF, the model file format of ggml / llama.cpp (versions 2 and 3): reader and writer.
//
//   GgufFile f = GgufFile::open("model.gguf");
//   const std::string& arch = f.get_string("general.architecture");
//   uint64_t n_layer = f.get_uint(arch + ".block_count");          // u32 or u64 in the file
//   std::vector<std::string> tokens = f.get_array("tokenizer.ggml.tokens", GgufType::STRING).array_strings();
//   Tensor wq = f.tensor("blk.0.attn_q.weight");  // zero-copy view of the mapped file, [out, in]
//
//   GgufWriter w;
//   w.metadata_add("general.architecture", "llama");
//   w.metadata_add("llama.block_count", uint32_t{2});
//   w.tensor_add("token_embd.weight", emb);       // any type, any strides; written contiguous
//   w.write("out.gguf");                          // writes out.gguf.tmp, then renames it
//
// Layout (little endian; facts from the spec, ggml docs/gguf.md):
//   "GGUF", u32 version, u64 tensor count, u64 metadata kv count,
//   kvs:          string key, u32 value type, value
//   tensor infos: string name, u32 n_dims, u64 ne[n_dims] (GGML order: innermost first),
//                 u32 ggml type, u64 offset (from the data section start, a multiple of the alignment)
//   zero padding up to `general.alignment` (u32, a power of two, default 32), then the tensor data.
//   string: u64 byte length + bytes (no NUL).  array: u32 element type, u64 count, elements.
// Shapes in TensorInfo and Tensor are PyTorch order (outermost first), i.e. ne reversed.
// Every size, count and offset in a file is checked against the file's size before use: a damaged
// or hostile file throws aigc::Error (what, where = file + byte offset + key/tensor, hint).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "formats/tensor_info.h"

namespace aigc {

class MappedFile;

// Metadata value types; values are the spec's ids.
enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// "uint32", "string", "array", ... (the spec's names); "type#N" for an unknown id.
std::string gguf_type_name(GgufType type);

template <typename T> constexpr GgufType gguf_type_of();
template <> constexpr GgufType gguf_type_of<uint8_t>() { return GgufType::UINT8; }
template <> constexpr GgufType gguf_type_of<int8_t>() { return GgufType::INT8; }
template <> constexpr GgufType gguf_type_of<uint16_t>() { return GgufType::UINT16; }
template <> constexpr GgufType gguf_type_of<int16_t>() { return GgufType::INT16; }
template <> constexpr GgufType gguf_type_of<uint32_t>() { return GgufType::UINT32; }
template <> constexpr GgufType gguf_type_of<int32_t>() { return GgufType::INT32; }
template <> constexpr GgufType gguf_type_of<float>() { return GgufType::FLOAT32; }
template <> constexpr GgufType gguf_type_of<bool>() { return GgufType::BOOL; }
template <> constexpr GgufType gguf_type_of<uint64_t>() { return GgufType::UINT64; }
template <> constexpr GgufType gguf_type_of<int64_t>() { return GgufType::INT64; }
template <> constexpr GgufType gguf_type_of<double>() { return GgufType::FLOAT64; }

// One metadata value: a scalar, a string, or an array (of scalars, strings or arrays).
// Numeric arrays are stored packed (as in the file), so a 150k-entry score table costs 600 KB.
class GgufValue {
 public:
  // Implicit on purpose: metadata_add("k", uint32_t{5}), metadata_add("k", "text").
  GgufValue() : GgufValue(uint8_t{0}) {}
  GgufValue(uint8_t v) : GgufValue(gguf_type_of<uint8_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(int8_t v) : GgufValue(gguf_type_of<int8_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(uint16_t v) : GgufValue(gguf_type_of<uint16_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(int16_t v) : GgufValue(gguf_type_of<int16_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(uint32_t v) : GgufValue(gguf_type_of<uint32_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(int32_t v) : GgufValue(gguf_type_of<int32_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(float v) : GgufValue(gguf_type_of<float>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(bool v) : GgufValue(gguf_type_of<bool>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(uint64_t v) : GgufValue(gguf_type_of<uint64_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(int64_t v) : GgufValue(gguf_type_of<int64_t>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(double v) : GgufValue(gguf_type_of<double>(), GgufType::UINT8, scalar_bits(v)) {}
  GgufValue(std::string v) : type_(GgufType::STRING), v_(std::move(v)) {}
  GgufValue(std::string_view v) : GgufValue(std::string(v)) {}
  GgufValue(const char* v) : GgufValue(std::string(v)) {}

  // Array of T: a scalar type above, std::string, or GgufValue (an array of arrays: every item
  // must itself be an array; their element types may differ).
  template <typename T> static GgufValue array(const std::vector<T>& items);
  // Empty array with element type `elem`.
  static GgufValue array_empty(GgufType elem);

  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::ARRAY; }
  std::string type_str() const;  // "uint32", "array<string>", "array<array>"

  // Scalar of exactly type T (uint32_t for UINT32, ...); throws aigc::Error for another type.
  template <typename T> T as() const;
  const std::string& as_string() const;
  // Any integer type holding a value >= 0 (counts are written as u32 by some tools, u64 by others).
  std::optional<uint64_t> to_uint() const;

  // Arrays (size() is 0 for a scalar). Accessors throw aigc::Error on a type mismatch.
  GgufType array_type() const;  // element type
  size_t size() const;
  template <typename T> std::vector<T> array_values() const;  // elements of scalar type T
  const std::vector<std::string>& array_strings() const;
  const std::vector<GgufValue>& array_arrays() const;
  GgufValue at(size_t i) const;  // element i of any array

  // For `aigc info`: long strings cut to max_chars bytes, arrays to their first max_items
  // elements plus the count ("[1, 2, 3, ...] (32000 items)"); nested arrays shown shorter.
  std::string to_string(size_t max_items = 8, size_t max_chars = 80) const;
  // Full value (arrays cut to max_items elements when given). Strings are copied as they are:
  // dump with nlohmann::json::error_handler_t::replace, since a file's strings may not be UTF-8.
  nlohmann::json to_json(size_t max_items = SIZE_MAX) const;

  // Floats compare by bits (NaN equals the same NaN), as needed for round-trip tests.
  bool operator==(const GgufValue& o) const;

 private:
  friend struct GgufValueAccess;  // the reader fills packed arrays directly
  // scalar bits (low bytes, little endian) | string | packed scalar array | strings | arrays
  using Storage =
      std::variant<uint64_t, std::string, std::vector<uint8_t>, std::vector<std::string>, std::vector<GgufValue>>;
  GgufValue(GgufType type, GgufType elem, Storage v) : type_(type), elem_(elem), v_(std::move(v)) {}
  template <typename T> static uint64_t scalar_bits(T v) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
  }

  GgufType type_ = GgufType::UINT8;
  GgufType elem_ = GgufType::UINT8;  // arrays: element type
  Storage v_;
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

class GgufFile {
 public:
  // Maps (or reads, with use_mmap=false) the file and parses it.
  static GgufFile open(const std::string& path, FileLoadOptions opt = {});
  // Parses bytes in memory. Tensors view `bytes` and keep `owner` alive; with a null owner the
  // bytes must outlive the tensors. `name` appears in messages and in TensorInfo::file.
  static GgufFile parse(std::span<const uint8_t> bytes, std::shared_ptr<void> owner = nullptr,
                        std::string name = "<memory>");

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // tensor data section, from the file start

  const std::vector<GgufKV>& metadata() const { return kvs_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  // Typed getters: throw aigc::Error "key X is missing" / "key X has type Y, expected Z".
  const GgufValue& get(std::string_view key) const;
  const GgufValue& get(std::string_view key, GgufType type) const;
  const std::string& get_string(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;  // any integer type with a value >= 0
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const GgufValue& get_array(std::string_view key, GgufType elem) const;

  // Infos in file order; shape in PyTorch order, offset from the file start.
  const std::vector<TensorInfo>& tensor_infos() const { return tensors_; }
  const TensorInfo* tensor_info_find(std::string_view name) const;  // nullptr when absent
  // Zero-copy view of a tensor's bytes (owner: the mapped file). Read-only memory: never write
  // through it. Throws aigc::Error when the name is missing.
  Tensor tensor(std::string_view name) const;
  // The tensor's bytes, writable by this process alone (a private mapping's pages are copied as
  // they are written; the file never changes), as a view of type `layout` (the same bytes per row)
  // for rewriting a weight into that layout in place: from then on tensor(name) is of that type,
  // so a second load of this file finds the rewritten weight as it is. nullopt when this file was
  // parsed from memory, the pages cannot be made writable, or the tensor was rewritten already.
  std::optional<Tensor> tensor_rewrite(std::string_view name, DType layout) const;

 private:
  friend struct GgufParser;
  std::string path_;
  std::span<const uint8_t> bytes_;
  std::shared_ptr<void> owner_;
  std::shared_ptr<MappedFile> file_;  // when opened from a path
  mutable std::map<std::string, DType, std::less<>> rewritten_;  // by tensor_rewrite: the bytes' type now
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKV> kvs_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> kv_index_, tensor_index_;
};

// Writes GGUF v3. Metadata and tensors keep the order they were added in. Each tensor's data is
// padded to the alignment (the last one too); a file without tensors ends after its metadata, as
// gguf-py writes vocab-only files (our output is byte-identical to llama.cpp's vocab files).
class GgufWriter {
 public:
  // Throws on an empty or too long key, a duplicate key, or an invalid "general.alignment"
  // (it must be a uint32 power of two; it sets the alignment of the file).
  void metadata_add(std::string key, GgufValue value);
  // Sets "general.alignment" (adds the key where it is first set). Default without it: 32.
  void alignment_set(uint32_t alignment);
  uint32_t alignment() const { return alignment_; }
  // Keeps the view (sharing its owner) until write. Any type, any strides. A 0-d tensor is
  // stored as [1] (GGML has no 0-d tensors). Throws on a duplicate name or one over 64 bytes.
  void tensor_add(std::string name, const Tensor& tensor);

  // Writes PATH.tmp, then renames it to PATH, so a failed write leaves PATH as it was.
  void write(const std::string& path) const;
  std::vector<uint8_t> to_bytes() const;

 private:
  template <typename Sink> void emit(Sink& sink) const;
  std::vector<GgufKV> kvs_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
  uint32_t alignment_ = 32;
};

// ---- implementation of the templates ----------------------------------------------------------

template <typename T> T GgufValue::as() const {
  if (type_ != gguf_type_of<T>())
    error_throw(fmt::format("metadata value has type {}, expected {}", type_str(), gguf_type_name(gguf_type_of<T>())));
  T v;
  std::memcpy(&v, &std::get<uint64_t>(v_), sizeof(T));
  return v;
}

template <typename T> GgufValue GgufValue::array(const std::vector<T>& items) {
  if constexpr (std::is_same_v<T, std::string>) {
    return GgufValue(GgufType::ARRAY, GgufType::STRING, items);
  } else if constexpr (std::is_same_v<T, GgufValue>) {
    for (const GgufValue& it : items)
      if (!it.is_array()) error_throw(fmt::format("array of arrays given a {} item", it.type_str()));
    return GgufValue(GgufType::ARRAY, GgufType::ARRAY, items);
  } else {
    std::vector<uint8_t> raw(items.size() * sizeof(T));
    for (size_t i = 0; i < items.size(); ++i) {
      const T v = items[i];  // vector<bool> yields a proxy; copy to a real T first
      std::memcpy(raw.data() + i * sizeof(T), &v, sizeof(T));
    }
    return GgufValue(GgufType::ARRAY, gguf_type_of<T>(), std::move(raw));
  }
}

template <typename T> std::vector<T> GgufValue::array_values() const {
  if (type_ != GgufType::ARRAY || elem_ != gguf_type_of<T>())
    error_throw(fmt::format("metadata value has type {}, expected array<{}>", type_str(),
                            gguf_type_name(gguf_type_of<T>())));
  const std::vector<uint8_t>& raw = std::get<std::vector<uint8_t>>(v_);
  std::vector<T> out(raw.size() / sizeof(T));
  for (size_t i = 0; i < out.size(); ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    out[i] = v;
  }
  return out;
}

}  // namespace aigc
