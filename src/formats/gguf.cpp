#include "formats/gguf.h"

#include "core/mapped_file.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <limits>

namespace aigc {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

namespace {

constexpr uint32_t kVersionMin = 2, kVersionMax = 3, kVersionWrite = 3;  // default alignment 32: gguf.h
constexpr int kArrayDepthMax = 8;          // nested arrays deeper than this are rejected
constexpr uint64_t kKeyBytesMax = 65535;   // spec: keys are at most 2^16-1 bytes
constexpr uint64_t kNameBytesMax = 65535;  // reader: any sane length (the writer keeps GGML's 63)
constexpr size_t kWriterNameBytesMax = 63; // GGML_MAX_NAME is 64 including the NUL
// Smallest possible encodings, to reject counts that the file cannot hold before allocating.
constexpr uint64_t kKvBytesMin = 8 + 1 + 4 + 1;          // key length, 1 key byte, type, u8 value
constexpr uint64_t kTensorInfoBytesMin = 8 + 1 + 4 + 4 + 8;  // name length, 1 byte, n_dims, type, offset
constexpr const char* kHintDamaged =
    "the file is damaged or incomplete (an interrupted download?); download or convert it again";

bool type_known(uint32_t id) { return id <= static_cast<uint32_t>(GgufType::FLOAT64); }

// Bytes of one element of a scalar type; 0 for STRING and ARRAY.
size_t scalar_bytes(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    default: return 0;
  }
}

// Smallest encoding of one array element of type t.
uint64_t element_bytes_min(GgufType t) {
  if (t == GgufType::STRING) return 8;        // u64 length
  if (t == GgufType::ARRAY) return 4 + 8;     // element type, count
  return scalar_bytes(t);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

bool is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Bytes from a file made safe to print: quotes, escapes, cut to max_chars (on a UTF-8 boundary).
std::string string_quote(std::string_view s, size_t max_chars) {
  size_t n = std::min(s.size(), max_chars);
  while (n < s.size() && n > 0 && (static_cast<uint8_t>(s[n]) & 0xC0) == 0x80) --n;  // keep code points whole
  std::string out = "\"";
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  out += "\"";
  if (n < s.size()) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

}  // namespace

std::string gguf_type_name(GgufType type) {
  static constexpr const char* kNames[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                           "bool", "string", "array", "uint64", "int64", "float64"};
  const auto id = static_cast<uint32_t>(type);
  return type_known(id) ? kNames[id] : fmt::format("type#{}", id);
}

// ---- GgufValue ----------------------------------------------------------------------------------

struct GgufValueAccess {
  static GgufValue packed(GgufType elem, std::vector<uint8_t> raw) {
    return GgufValue(GgufType::ARRAY, elem, std::move(raw));
  }
  static GgufValue strings(std::vector<std::string> items) {
    return GgufValue(GgufType::ARRAY, GgufType::STRING, std::move(items));
  }
  static GgufValue arrays(std::vector<GgufValue> items) {
    return GgufValue(GgufType::ARRAY, GgufType::ARRAY, std::move(items));
  }
  static GgufValue scalar(GgufType type, uint64_t bits) { return GgufValue(type, GgufType::UINT8, bits); }
  static const std::vector<uint8_t>& raw(const GgufValue& v) { return std::get<std::vector<uint8_t>>(v.v_); }
  static uint64_t bits(const GgufValue& v) { return std::get<uint64_t>(v.v_); }
};

GgufValue GgufValue::array_empty(GgufType elem) {
  if (!type_known(static_cast<uint32_t>(elem))) error_throw(fmt::format("array of unknown type {}", gguf_type_name(elem)));
  if (elem == GgufType::STRING) return GgufValueAccess::strings({});
  if (elem == GgufType::ARRAY) return GgufValueAccess::arrays({});
  return GgufValueAccess::packed(elem, {});
}

std::string GgufValue::type_str() const {
  if (type_ != GgufType::ARRAY) return gguf_type_name(type_);
  return "array<" + gguf_type_name(elem_) + ">";
}

const std::string& GgufValue::as_string() const {
  if (type_ != GgufType::STRING) error_throw(fmt::format("metadata value has type {}, expected string", type_str()));
  return std::get<std::string>(v_);
}

std::optional<uint64_t> GgufValue::to_uint() const {
  const uint64_t b = type_ == GgufType::ARRAY || type_ == GgufType::STRING ? 0 : std::get<uint64_t>(v_);
  switch (type_) {
    case GgufType::UINT8: case GgufType::UINT16: case GgufType::UINT32: case GgufType::UINT64: return b;
    case GgufType::INT8: return as<int8_t>() >= 0 ? std::optional<uint64_t>(b) : std::nullopt;
    case GgufType::INT16: return as<int16_t>() >= 0 ? std::optional<uint64_t>(b) : std::nullopt;
    case GgufType::INT32: return as<int32_t>() >= 0 ? std::optional<uint64_t>(b) : std::nullopt;
    case GgufType::INT64: return as<int64_t>() >= 0 ? std::optional<uint64_t>(b) : std::nullopt;
    default: return std::nullopt;
  }
}

GgufType GgufValue::array_type() const {
  if (type_ != GgufType::ARRAY) error_throw(fmt::format("metadata value has type {}, expected an array", type_str()));
  return elem_;
}

size_t GgufValue::size() const {
  if (type_ != GgufType::ARRAY) return 0;
  if (elem_ == GgufType::STRING) return std::get<std::vector<std::string>>(v_).size();
  if (elem_ == GgufType::ARRAY) return std::get<std::vector<GgufValue>>(v_).size();
  return std::get<std::vector<uint8_t>>(v_).size() / scalar_bytes(elem_);
}

const std::vector<std::string>& GgufValue::array_strings() const {
  if (type_ != GgufType::ARRAY || elem_ != GgufType::STRING)
    error_throw(fmt::format("metadata value has type {}, expected array<string>", type_str()));
  return std::get<std::vector<std::string>>(v_);
}

const std::vector<GgufValue>& GgufValue::array_arrays() const {
  if (type_ != GgufType::ARRAY || elem_ != GgufType::ARRAY)
    error_throw(fmt::format("metadata value has type {}, expected array<array>", type_str()));
  return std::get<std::vector<GgufValue>>(v_);
}

GgufValue GgufValue::at(size_t i) const {
  const size_t n = size();
  if (type_ != GgufType::ARRAY || i >= n)
    error_throw(fmt::format("index {} out of range of a {} value with {} elements", i, type_str(), n));
  if (elem_ == GgufType::STRING) return GgufValue(std::get<std::vector<std::string>>(v_)[i]);
  if (elem_ == GgufType::ARRAY) return std::get<std::vector<GgufValue>>(v_)[i];
  const size_t es = scalar_bytes(elem_);
  uint64_t bits = 0;
  std::memcpy(&bits, std::get<std::vector<uint8_t>>(v_).data() + i * es, es);
  return GgufValueAccess::scalar(elem_, bits);
}

bool GgufValue::operator==(const GgufValue& o) const {
  return type_ == o.type_ && (type_ != GgufType::ARRAY || elem_ == o.elem_) && v_ == o.v_;
}

std::string GgufValue::to_string(size_t max_items, size_t max_chars) const {
  switch (type_) {
    case GgufType::UINT8: return fmt::format("{}", as<uint8_t>());
    case GgufType::INT8: return fmt::format("{}", as<int8_t>());
    case GgufType::UINT16: return fmt::format("{}", as<uint16_t>());
    case GgufType::INT16: return fmt::format("{}", as<int16_t>());
    case GgufType::UINT32: return fmt::format("{}", as<uint32_t>());
    case GgufType::INT32: return fmt::format("{}", as<int32_t>());
    case GgufType::FLOAT32: return fmt::format("{}", as<float>());
    case GgufType::BOOL: return as<bool>() ? "true" : "false";
    case GgufType::UINT64: return fmt::format("{}", as<uint64_t>());
    case GgufType::INT64: return fmt::format("{}", as<int64_t>());
    case GgufType::FLOAT64: return fmt::format("{}", as<double>());
    case GgufType::STRING: return string_quote(as_string(), max_chars);
    case GgufType::ARRAY: break;
  }
  const size_t n = size();
  const size_t shown = std::min(n, max_items);
  // Nested arrays are shown shorter (half as many items per level, then only their count), so
  // that deep nesting cannot print max_items^depth elements.
  const size_t inner_items = max_items / 2;
  std::string s = "[";
  for (size_t i = 0; i < shown; ++i) {
    if (i) s += ", ";
    const GgufValue e = at(i);
    if (!e.is_array()) s += e.to_string(max_items, max_chars);
    else if (inner_items) s += e.to_string(inner_items, max_chars);
    else s += fmt::format("[...] ({} items)", e.size());
  }
  if (shown == n) return s + "]";
  return s + (shown ? ", ...]" : "...]") + fmt::format(" ({} items)", n);
}

nlohmann::json GgufValue::to_json(size_t max_items) const {
  switch (type_) {
    case GgufType::UINT8: return as<uint8_t>();
    case GgufType::INT8: return as<int8_t>();
    case GgufType::UINT16: return as<uint16_t>();
    case GgufType::INT16: return as<int16_t>();
    case GgufType::UINT32: return as<uint32_t>();
    case GgufType::INT32: return as<int32_t>();
    case GgufType::FLOAT32: return as<float>();
    case GgufType::BOOL: return as<bool>();
    case GgufType::UINT64: return as<uint64_t>();
    case GgufType::INT64: return as<int64_t>();
    case GgufType::FLOAT64: return as<double>();
    case GgufType::STRING: return as_string();
    case GgufType::ARRAY: break;
  }
  nlohmann::json j = nlohmann::json::array();
  const size_t shown = std::min(size(), max_items);
  if (elem_ == GgufType::STRING) {
    const auto& items = array_strings();
    for (size_t i = 0; i < shown; ++i) j.push_back(items[i]);
  } else {
    for (size_t i = 0; i < shown; ++i) j.push_back(at(i).to_json(max_items));
  }
  return j;
}

// ---- reader -------------------------------------------------------------------------------------

struct GgufParser {
  const uint8_t* p;
  size_t size;
  const std::string& name;
  size_t pos = 0;
  std::string ctx;  // "key 'x'" or "tensor 'y'" while inside one

  std::string where(size_t at) const {
    std::string w = fmt::format("{}, byte {}", name, at);
    if (!ctx.empty()) w += ", " + ctx;
    return w;
  }
  [[noreturn]] void fail(size_t at, std::string what, std::string hint = kHintDamaged) const {
    error_throw(std::move(what), where(at), std::move(hint));
  }
  size_t left() const { return size - pos; }
  void need(uint64_t n, const char* what) const {
    if (n > left()) fail(pos, fmt::format("file ends inside {}: {} bytes needed, {} left", what, n, left()));
  }
  template <typename T> T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string read_string(const char* what, uint64_t max_len) {
    const size_t at = pos;
    const uint64_t len = read<uint64_t>(what);
    if (len > max_len) fail(at, fmt::format("{} is {} bytes long, more than the limit of {}", what, len, max_len));
    if (len > left())
      fail(at, fmt::format("{} of {} bytes runs past the end of the file ({} bytes left)", what, len, left()));
    std::string s(reinterpret_cast<const char*>(p + pos), len);
    pos += len;
    return s;
  }

  GgufValue value_read(GgufType type, int depth) {
    const size_t at = pos;
    switch (type) {
      case GgufType::UINT8: return read<uint8_t>("a uint8 value");
      case GgufType::INT8: return read<int8_t>("an int8 value");
      case GgufType::UINT16: return read<uint16_t>("a uint16 value");
      case GgufType::INT16: return read<int16_t>("an int16 value");
      case GgufType::UINT32: return read<uint32_t>("a uint32 value");
      case GgufType::INT32: return read<int32_t>("an int32 value");
      case GgufType::FLOAT32: return read<float>("a float32 value");
      case GgufType::UINT64: return read<uint64_t>("a uint64 value");
      case GgufType::INT64: return read<int64_t>("an int64 value");
      case GgufType::FLOAT64: return read<double>("a float64 value");
      case GgufType::BOOL: {
        const auto b = read<uint8_t>("a bool value");
        if (b > 1) fail(at, fmt::format("invalid bool byte {:#04x} (must be 0 or 1)", b));
        return b == 1;
      }
      case GgufType::STRING: return read_string("a string value", std::numeric_limits<uint64_t>::max());
      case GgufType::ARRAY: return array_read(depth);
    }
    fail(at, fmt::format("unknown metadata value type {}", static_cast<uint32_t>(type)));
  }

  // `depth`: arrays enclosing this one.
  GgufValue array_read(int depth) {
    const size_t at = pos;
    if (depth >= kArrayDepthMax)
      fail(at, fmt::format("metadata arrays nested more than {} deep", kArrayDepthMax),
           "no real model needs this; the file is damaged or hostile");
    const auto type_id = read<uint32_t>("an array header");
    if (!type_known(type_id)) fail(at, fmt::format("array of unknown metadata value type {}", type_id));
    const auto elem = static_cast<GgufType>(type_id);
    const auto n = read<uint64_t>("an array header");
    if (n > left() / element_bytes_min(elem))
      fail(at, fmt::format("array of {} {} elements cannot fit in the {} bytes left in the file", n,
                           gguf_type_name(elem), left()));
    if (elem == GgufType::STRING) {
      std::vector<std::string> items;
      items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) items.push_back(read_string("a string in an array", std::numeric_limits<uint64_t>::max()));
      return GgufValueAccess::strings(std::move(items));
    }
    if (elem == GgufType::ARRAY) {
      std::vector<GgufValue> items;
      items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) items.push_back(array_read(depth + 1));
      return GgufValueAccess::arrays(std::move(items));
    }
    const size_t bytes = n * scalar_bytes(elem);  // <= left(), checked above
    if (elem == GgufType::BOOL)
      for (size_t i = 0; i < bytes; ++i)
        if (p[pos + i] > 1) fail(pos + i, fmt::format("invalid bool byte {:#04x} in an array (must be 0 or 1)", p[pos + i]));
    std::vector<uint8_t> raw(p + pos, p + pos + bytes);
    pos += bytes;
    return GgufValueAccess::packed(elem, std::move(raw));
  }

  void header_read(GgufFile& f, uint64_t& n_tensors, uint64_t& n_kv) {
    if (size < 4) fail(0, fmt::format("file of {} bytes is too short to be a GGUF file", size), "give a .gguf model file");
    if (std::memcmp(p, "GGUF", 4) != 0) {
      // GGML's older formats store their magic as a little-endian u32.
      const bool legacy = !std::memcmp(p, "lmgg", 4) || !std::memcmp(p, "fmgg", 4) || !std::memcmp(p, "tjgg", 4);
      fail(0, fmt::format("not a GGUF file: magic bytes {:02x} {:02x} {:02x} {:02x}, expected 'GGUF'", p[0], p[1], p[2], p[3]),
           legacy ? "this is a pre-GGUF GGML/GGJT file; re-convert the model to GGUF with a current llama.cpp"
                  : "give a .gguf model file");
    }
    pos = 4;
    const auto v = read<uint32_t>("the header");
    if (v == 1)
      fail(4, "GGUF version 1 is not supported",
           "v1 files (2023) use 32-bit counts; re-convert the model with a current llama.cpp "
           "(convert_hf_to_gguf.py) to get a v3 file");
    const uint32_t v_swapped = __builtin_bswap32(v);
    if (v_swapped >= 1 && v_swapped <= 3)
      fail(4, fmt::format("big-endian GGUF file (version {} stored big-endian)", v_swapped),
           "aigc reads little-endian files only; convert it with gguf-py's gguf_convert_endian.py or use "
           "the little-endian release of the model");
    if (v < kVersionMin || v > kVersionMax)
      fail(4, fmt::format("unsupported GGUF version {}", v),
           fmt::format("aigc reads GGUF versions {} to {}; a newer version needs a newer aigc", kVersionMin, kVersionMax));
    f.version_ = v;
    n_tensors = read<uint64_t>("the header");
    n_kv = read<uint64_t>("the header");
    // Cap counts by what the rest of the file could hold before anything is allocated for them.
    if (n_kv > left() / kKvBytesMin)
      fail(16, fmt::format("metadata count {} is impossible in a file of {} bytes", n_kv, size));
    if (n_tensors > left() / kTensorInfoBytesMin)
      fail(8, fmt::format("tensor count {} is impossible in a file of {} bytes", n_tensors, size));
    if (n_kv * kKvBytesMin + n_tensors * kTensorInfoBytesMin > left())
      fail(8, fmt::format("{} tensors and {} metadata entries cannot fit in a file of {} bytes", n_tensors, n_kv, size));
  }

  void metadata_read(GgufFile& f, uint64_t n_kv) {
    f.kvs_.reserve(n_kv);
    size_t alignment_at = 0;
    for (uint64_t i = 0; i < n_kv; ++i) {
      const size_t at = pos;
      ctx.clear();
      std::string key = read_string("a metadata key", kKeyBytesMax);
      if (key.empty()) fail(at, "empty metadata key");
      ctx = "key " + string_quote(key, 80);
      if (f.kv_index_.count(key)) fail(at, "duplicate metadata key");
      const auto type_id = read<uint32_t>("a metadata value type");
      if (!type_known(type_id)) fail(pos - 4, fmt::format("unknown metadata value type {}", type_id));
      if (key == "general.alignment") alignment_at = at;
      GgufValue value = value_read(static_cast<GgufType>(type_id), 0);
      f.kv_index_.emplace(key, f.kvs_.size());
      f.kvs_.push_back({std::move(key), std::move(value)});
    }
    ctx.clear();
    if (const GgufValue* a = f.find("general.alignment")) {
      ctx = "key \"general.alignment\"";
      if (a->type() != GgufType::UINT32)
        fail(alignment_at, fmt::format("general.alignment has type {}, expected uint32", a->type_str()));
      if (!is_pow2(a->as<uint32_t>()))
        fail(alignment_at, fmt::format("general.alignment {} is not a power of two", a->as<uint32_t>()));
      f.alignment_ = a->as<uint32_t>();
      ctx.clear();
    }
  }

  void tensor_infos_read(GgufFile& f, uint64_t n_tensors) {
    std::vector<size_t> info_at;
    f.tensors_.reserve(n_tensors);
    info_at.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      const size_t at = pos;
      ctx.clear();
      std::string tname = read_string("a tensor name", kNameBytesMax);
      if (tname.empty()) fail(at, "empty tensor name");
      ctx = "tensor " + string_quote(tname, 80);
      if (f.tensor_index_.count(tname)) fail(at, "duplicate tensor name");
      const auto n_dims = read<uint32_t>("a tensor info");
      if (n_dims > static_cast<uint32_t>(kMaxDims))
        fail(at, fmt::format("tensor has {} dims; GGUF allows at most {}", n_dims, kMaxDims));
      uint64_t ne[kMaxDims] = {1, 1, 1, 1};  // GGML order: ne[0] is the innermost (row) dimension
      for (uint32_t d = 0; d < n_dims; ++d) {
        ne[d] = read<uint64_t>("a tensor info");
        if (ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          fail(at, fmt::format("dimension {} of size {} is too large", d, ne[d]));
      }
      const auto type_id = read<uint32_t>("a tensor info");
      const std::optional<DTypeTraits> traits = dtype_traits_find(type_id);
      if (!traits)
        fail(at, fmt::format("unknown ggml tensor type id {}", type_id),
             "the file uses a tensor type this aigc does not know (a newer llama.cpp?) or is damaged");
      const auto offset = read<uint64_t>("a tensor info");

      const auto type = static_cast<DType>(type_id);
      // Bound every partial product that Tensor computes (element counts, byte strides), also when
      // a zero dim makes the total 0: dims counted as at least 1, times the bytes of a block.
      int64_t span = static_cast<int64_t>(traits->block_bytes);
      for (uint64_t n : ne)
        if (__builtin_mul_overflow(span, std::max<int64_t>(static_cast<int64_t>(n), 1), &span))
          fail(at, fmt::format("tensor size overflows 64 bits (ne = [{}, {}, {}, {}])", ne[0], ne[1], ne[2], ne[3]));
      if (static_cast<int64_t>(ne[0]) % traits->block_size != 0)
        fail(at, fmt::format("row of {} elements is not a multiple of the {} block size {}", ne[0], traits->name,
                             traits->block_size));
      const uint64_t nbytes = *dtype_row_bytes(type, static_cast<int64_t>(ne[0])) * ne[1] * ne[2] * ne[3];  // <= span
      if (offset % f.alignment_ != 0)
        fail(at, fmt::format("tensor data offset {} is not a multiple of the alignment {}", offset, f.alignment_));

      TensorInfo ti;
      ti.name = tname;
      ti.type_name = std::string(traits->name);
      ti.type = type;
      for (uint32_t d = n_dims; d-- > 0;) ti.shape.push_back(static_cast<int64_t>(ne[d]));  // PyTorch order
      ti.offset = offset;  // relative for now
      ti.nbytes = nbytes;
      ti.file = f.path_;
      f.tensor_index_.emplace(std::move(tname), f.tensors_.size());
      f.tensors_.push_back(std::move(ti));
      info_at.push_back(at);
    }
    ctx.clear();
    f.data_offset_ = align_up(pos, f.alignment_);
    for (size_t i = 0; i < f.tensors_.size(); ++i) {
      TensorInfo& ti = f.tensors_[i];
      if (f.data_offset_ > size || ti.offset > size - f.data_offset_ || ti.nbytes > size - f.data_offset_ - ti.offset) {
        ctx = "tensor " + string_quote(ti.name, 80);
        fail(info_at[i], fmt::format("tensor data (offset {} + {} bytes after the data section at byte {}) lies "
                                     "outside the file of {} bytes", ti.offset, ti.nbytes, f.data_offset_, size));
      }
      ti.offset += f.data_offset_;  // from the file start
    }
  }
};

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, std::shared_ptr<void> owner, std::string name) {
  GgufFile f;
  f.path_ = std::move(name);
  f.bytes_ = bytes;
  f.owner_ = std::move(owner);
  GgufParser r{bytes.data(), bytes.size(), f.path_, 0, {}};
  uint64_t n_tensors = 0, n_kv = 0;
  r.header_read(f, n_tensors, n_kv);
  r.metadata_read(f, n_kv);
  r.tensor_infos_read(f, n_tensors);
  return f;
}

GgufFile GgufFile::open(const std::string& path, FileLoadOptions opt) {
  std::shared_ptr<MappedFile> m = MappedFile::open(path, opt);
  GgufFile f = parse({m->data(), m->size()}, m, path);
  f.file_ = std::move(m);
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) error_throw(fmt::format("metadata key '{}' is missing", key), path_, "the model file lacks a key this model needs; is it the right file?");
  return *v;
}

const GgufValue& GgufFile::get(std::string_view key, GgufType type) const {
  const GgufValue& v = get(key);
  if (v.type() != type)
    error_throw(fmt::format("metadata key '{}' has type {}, expected {}", key, v.type_str(), gguf_type_name(type)), path_,
                "the file was written by an incompatible converter");
  return v;
}

const std::string& GgufFile::get_string(std::string_view key) const { return get(key, GgufType::STRING).as_string(); }
uint32_t GgufFile::get_u32(std::string_view key) const { return get(key, GgufType::UINT32).as<uint32_t>(); }
float GgufFile::get_f32(std::string_view key) const { return get(key, GgufType::FLOAT32).as<float>(); }
bool GgufFile::get_bool(std::string_view key) const { return get(key, GgufType::BOOL).as<bool>(); }

uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue& v = get(key);
  const std::optional<uint64_t> u = v.to_uint();
  if (!u)
    error_throw(fmt::format("metadata key '{}' has type {} (value {}), expected a non-negative integer", key,
                            v.type_str(), v.to_string(4, 40)),
                path_, "the file was written by an incompatible converter");
  return *u;
}

const GgufValue& GgufFile::get_array(std::string_view key, GgufType elem) const {
  const GgufValue& v = get(key, GgufType::ARRAY);
  if (v.array_type() != elem)
    error_throw(fmt::format("metadata key '{}' has type {}, expected array<{}>", key, v.type_str(), gguf_type_name(elem)),
                path_, "the file was written by an incompatible converter");
  return v;
}

const TensorInfo* GgufFile::tensor_info_find(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(std::string_view name) const {
  const TensorInfo* ti = tensor_info_find(name);
  if (!ti) error_throw(fmt::format("tensor '{}' is not in the file", name), path_, "is it the right model file?");
  AIGC_ASSERT(ti->type.has_value());  // the parser rejects unknown types
  // Read-only memory: the view is non-const only because Tensor has no const views.
  auto* data = const_cast<uint8_t*>(bytes_.data()) + ti->offset;
  const auto rw = rewritten_.find(name);
  Tensor t = Tensor::view_of(rw == rewritten_.end() ? *ti->type : rw->second, ti->shape, data, owner_);
  t.name = ti->name;
  return t;
}

std::optional<Tensor> GgufFile::tensor_rewrite(std::string_view name, DType layout) const {
  const Tensor t = tensor(name);
  const TensorInfo* ti = tensor_info_find(name);
  AIGC_ASSERT(dtype_row_bytes(layout, t.size(-1)) == dtype_row_bytes(t.type(), t.size(-1)), "tensor_rewrite: {} -> {}",
              dtype_name(t.type()), dtype_name(layout));
  if (!file_ || rewritten_.count(name) || !file_->writable(ti->offset, ti->nbytes)) return std::nullopt;
  rewritten_.emplace(std::string(name), layout);
  Tensor v = Tensor::view_of(layout, ti->shape, const_cast<uint8_t*>(bytes_.data()) + ti->offset, owner_);
  v.name = ti->name;
  return v;
}

// ---- writer -------------------------------------------------------------------------------------

namespace {

struct VectorSink {
  std::vector<uint8_t>& out;
  uint64_t pos = 0;
  void put(const void* d, size_t n) {
    out.insert(out.end(), static_cast<const uint8_t*>(d), static_cast<const uint8_t*>(d) + n);
    pos += n;
  }
};

struct FileSink {
  std::FILE* f;
  const std::string& path;
  uint64_t pos = 0;
  void put(const void* d, size_t n) {
    if (n && std::fwrite(d, 1, n, f) != n)
      error_throw(fmt::format("write failed: {}", std::strerror(errno)), path, "is the disk full?");
    pos += n;
  }
};

template <typename Sink> void put_u32(Sink& s, uint32_t v) { s.put(&v, 4); }
template <typename Sink> void put_u64(Sink& s, uint64_t v) { s.put(&v, 8); }
template <typename Sink> void put_string(Sink& s, std::string_view v) {
  put_u64(s, v.size());
  s.put(v.data(), v.size());
}
template <typename Sink> void put_padding(Sink& s, uint64_t alignment) {
  static constexpr uint8_t kZeros[256] = {};
  uint64_t n = align_up(s.pos, alignment) - s.pos;
  while (n) {
    const size_t k = std::min<uint64_t>(n, sizeof(kZeros));
    s.put(kZeros, k);
    n -= k;
  }
}

template <typename Sink> void put_value(Sink& s, const GgufValue& v) {
  switch (v.type()) {
    case GgufType::STRING: put_string(s, v.as_string()); return;
    case GgufType::ARRAY: {
      put_u32(s, static_cast<uint32_t>(v.array_type()));
      put_u64(s, v.size());
      if (v.array_type() == GgufType::STRING) {
        for (const std::string& e : v.array_strings()) put_string(s, e);
      } else if (v.array_type() == GgufType::ARRAY) {
        for (const GgufValue& e : v.array_arrays()) put_value(s, e);
      } else {
        const std::vector<uint8_t>& raw = GgufValueAccess::raw(v);
        s.put(raw.data(), raw.size());
      }
      return;
    }
    default: {
      const uint64_t bits = GgufValueAccess::bits(v);
      s.put(&bits, scalar_bytes(v.type()));  // low bytes: little-endian host
    }
  }
}

int array_depth(const GgufValue& v) {
  if (!v.is_array() || v.array_type() != GgufType::ARRAY) return v.is_array() ? 1 : 0;
  int d = 0;
  for (const GgufValue& e : v.array_arrays()) d = std::max(d, array_depth(e));
  return d + 1;
}

// The tensor's bytes in row-major order, gathered when it is a strided view.
template <typename Sink> void put_tensor_data(Sink& s, const Tensor& t) {
  if (t.is_contiguous()) {
    s.put(t.data(), t.nbytes());
    return;
  }
  const DTypeTraits& tr = dtype_traits(t.type());
  const int64_t n = t.size(-1);
  const size_t row_bytes = *dtype_row_bytes(t.type(), n);
  const bool dense = tr.quantized || n <= 1 || t.stride_bytes(-1) == static_cast<int64_t>(tr.block_bytes);
  std::vector<uint8_t> tmp(dense ? 0 : row_bytes);
  for (int64_t r = 0; r < t.rows(); ++r) {
    const auto* row = static_cast<const uint8_t*>(t.row_ptr(r));
    if (dense) {
      s.put(row, row_bytes);
    } else {
      for (int64_t i = 0; i < n; ++i) std::memcpy(&tmp[i * tr.block_bytes], row + i * t.stride_bytes(-1), tr.block_bytes);
      s.put(tmp.data(), row_bytes);
    }
  }
}

}  // namespace

void GgufWriter::metadata_add(std::string key, GgufValue value) {
  if (key.empty() || key.size() > kKeyBytesMax)
    error_throw(fmt::format("metadata key of {} bytes (must be 1 to {})", key.size(), kKeyBytesMax), "GgufWriter");
  for (const GgufKV& kv : kvs_)
    if (kv.key == key) error_throw("duplicate metadata key", "GgufWriter: key " + string_quote(key, 80));
  if (array_depth(value) > kArrayDepthMax)
    error_throw(fmt::format("metadata arrays nested more than {} deep", kArrayDepthMax), "GgufWriter: key " + key);
  if (key == "general.alignment") {
    if (value.type() != GgufType::UINT32 || !is_pow2(value.as<uint32_t>()))
      error_throw(fmt::format("general.alignment must be a uint32 power of two, got {} {}", value.type_str(), value.to_string()),
                  "GgufWriter");
    alignment_ = value.as<uint32_t>();
  }
  kvs_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::alignment_set(uint32_t alignment) {
  if (!is_pow2(alignment)) error_throw(fmt::format("alignment {} is not a power of two", alignment), "GgufWriter");
  auto it = std::find_if(kvs_.begin(), kvs_.end(), [](const GgufKV& kv) { return kv.key == "general.alignment"; });
  if (it == kvs_.end()) {
    kvs_.push_back({"general.alignment", GgufValue(alignment)});
  } else {
    it->value = GgufValue(alignment);
  }
  alignment_ = alignment;
}

void GgufWriter::tensor_add(std::string name, const Tensor& tensor) {
  if (name.empty() || name.size() > kWriterNameBytesMax)
    error_throw(fmt::format("tensor name of {} bytes (must be 1 to {}, GGML's limit)", name.size(), kWriterNameBytesMax),
                "GgufWriter: tensor " + string_quote(name, 80));
  for (const auto& [n, t] : tensors_)
    if (n == name) error_throw("duplicate tensor name", "GgufWriter: tensor " + string_quote(name, 80));
  if (!tensor.defined()) error_throw("tensor has no data", "GgufWriter: tensor " + name);
  if (tensor.ndim() == 0 && dtype_traits(tensor.type()).quantized)
    error_throw("0-d quantised tensor", "GgufWriter: tensor " + name);
  tensors_.emplace_back(std::move(name), tensor);
}

template <typename Sink> void GgufWriter::emit(Sink& s) const {
  s.put("GGUF", 4);
  put_u32(s, kVersionWrite);
  put_u64(s, tensors_.size());
  put_u64(s, kvs_.size());
  for (const GgufKV& kv : kvs_) {
    put_string(s, kv.key);
    put_u32(s, static_cast<uint32_t>(kv.value.type()));
    put_value(s, kv.value);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors_) {
    put_string(s, name);
    const int nd = std::max(t.ndim(), 1);
    put_u32(s, static_cast<uint32_t>(nd));
    for (int d = t.ndim() - 1; d >= 0; --d) put_u64(s, static_cast<uint64_t>(t.size(d)));  // GGML order
    if (t.ndim() == 0) put_u64(s, 1);
    put_u32(s, static_cast<uint32_t>(t.type()));
    put_u64(s, offset);
    offset += align_up(t.nbytes(), alignment_);
  }
  // No tensors, no data section: like gguf-py, which writes vocab-only files without padding.
  if (!tensors_.empty()) put_padding(s, alignment_);
  for (const auto& [name, t] : tensors_) {
    put_tensor_data(s, t);
    put_padding(s, alignment_);
  }
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out;
  VectorSink s{out};
  emit(s);
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    error_throw(fmt::format("cannot create file: {}", std::strerror(errno)), tmp,
                "check that the folder exists and is writable");
  try {
    FileSink s{f, tmp};
    emit(s);
    if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0)
      error_throw(fmt::format("write failed: {}", std::strerror(errno)), tmp, "is the disk full?");
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    error_throw(fmt::format("write failed: {}", std::strerror(e)), tmp, "is the disk full?");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    error_throw(fmt::format("cannot rename {} to the final name: {}", tmp, std::strerror(e)), path,
                "check the folder's permissions");
  }
}

}  // namespace aigc
