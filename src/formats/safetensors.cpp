#include "formats/safetensors.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/log.h"

namespace aigc {

namespace {

using Json = nlohmann::json;

struct StDType {
  std::string_view name;
  uint32_t size;
  std::optional<DType> type;  // nullopt: listed, not loadable
};

// Element types of the safetensors spec and their sizes in bytes.
constexpr StDType kStDTypes[] = {
    {"BOOL", 1, std::nullopt}, {"U8", 1, std::nullopt},      {"I8", 1, DType::I8},
    {"I16", 2, DType::I16},    {"U16", 2, std::nullopt},     {"F16", 2, DType::F16},
    {"BF16", 2, DType::BF16},  {"I32", 4, DType::I32},       {"U32", 4, std::nullopt},
    {"F32", 4, DType::F32},    {"F64", 8, DType::F64},       {"I64", 8, DType::I64},
    {"U64", 8, std::nullopt},  {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const StDType* st_dtype_find(std::string_view name) {
  for (const StDType& d : kStDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

const StDType* st_dtype_of(DType type) {
  for (const StDType& d : kStDTypes)
    if (d.type == type) return &d;
  return nullptr;
}

// Tensor names come from the file: keep messages one readable line whatever they hold.
std::string name_quote(std::string_view name) {
  std::string s = "'";
  for (char c : name.substr(0, 200)) s += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (name.size() > 200) s += "...";
  return s + "'";
}

std::string where_field(const std::string& path, std::string_view tensor, std::string_view field) {
  std::string w = path + ": tensor " + name_quote(tensor);
  if (!field.empty()) w += fmt::format(", field \"{}\"", field);
  return w;
}

constexpr int kJsonDepthMax = 16;  // headers nest 3 deep; deeper input is hostile

// Parses JSON, rejecting duplicate keys in any object (nlohmann::json would silently keep one,
// so two entries for one tensor name would go unnoticed) and absurd nesting.
Json json_parse_strict(const uint8_t* begin, const uint8_t* end, const std::string& path,
                       std::string_view what) {
  std::vector<std::set<std::string>> keys;  // one per open object
  auto check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kJsonDepthMax)
      error_throw(fmt::format("{} nests deeper than {} levels", what, kJsonDepthMax), path,
                  "the file is not a valid safetensors file");
    switch (event) {
      case Json::parse_event_t::object_start: keys.emplace_back(); break;
      case Json::parse_event_t::object_end: if (!keys.empty()) keys.pop_back(); break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          error_throw(fmt::format("duplicate key {} in {}", name_quote(parsed.get<std::string>()), what),
                      path, "each name may appear once; the file is corrupt or was crafted");
        break;
      default: break;
    }
    return true;
  };
  try {
    return Json::parse(begin, end, check, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    error_throw(fmt::format("{} is not valid JSON: {}", what, e.what()), path,
                "the file is truncated or not a safetensors file");
  }
}

// A non-negative JSON integer, or an error naming the field.
uint64_t json_u64(const Json& v, const std::string& path, std::string_view tensor, std::string_view field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  const char* why = v.is_number_integer() ? "is negative" : v.is_number_float() ? "is not an integer" : "is not a number";
  error_throw(fmt::format("value {} {}", v.dump().substr(0, 40), why), where_field(path, tensor, field),
              "shapes and offsets are non-negative integers");
}

struct Parsed {
  std::vector<TensorInfo> infos;  // by offset
  std::map<std::string, std::string> metadata;
};

Parsed header_parse(const uint8_t* data, size_t size, const std::string& path) {
  if (size < 8)
    error_throw(fmt::format("file is {} bytes, shorter than the 8-byte header length", size), path,
                "the file is truncated or not a safetensors file");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little endian on any host
  if (n > kSafetensorsHeaderMax)
    error_throw(fmt::format("header length {} exceeds the {} byte limit", n, kSafetensorsHeaderMax), path,
                "the file is corrupt or not a safetensors file");
  if (n > size - 8)
    error_throw(fmt::format("header length {} runs past the end of the {}-byte file", n, size), path,
                "the file is truncated");
  const uint8_t* hdr = data + 8;
  const uint64_t data_start = 8 + n;
  const uint64_t buffer_size = size - data_start;
  Json j = json_parse_strict(hdr, hdr + n, path, "header");
  if (!j.is_object())
    error_throw(fmt::format("header is a JSON {}, not an object", j.type_name()), path,
                "the file is not a safetensors file");

  Parsed out;
  struct Range { uint64_t begin, end; size_t info; };
  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const Json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object())
        error_throw(fmt::format("__metadata__ is a JSON {}, not an object", v.type_name()), path,
                    "__metadata__ maps strings to strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          error_throw(fmt::format("__metadata__ value {} is a JSON {}, not a string", name_quote(m.key()),
                                  m.value().type_name()),
                      path, "__metadata__ maps strings to strings");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object())
      error_throw(fmt::format("entry is a JSON {}, not an object", v.type_name()), where_field(path, name, ""),
                  "each tensor is {\"dtype\", \"shape\", \"data_offsets\"}");
    TensorInfo ti;
    ti.name = name;
    ti.file = path;
    // dtype
    auto d = v.find("dtype");
    if (d == v.end() || !d->is_string())
      error_throw(d == v.end() ? "missing dtype" : "dtype is not a string", where_field(path, name, "dtype"),
                  "dtype is a string such as \"F32\"");
    ti.type_name = d->get<std::string>();
    const StDType* st = st_dtype_find(ti.type_name);
    if (!st)
      error_throw(fmt::format("unknown dtype {}", name_quote(ti.type_name)), where_field(path, name, "dtype"),
                  "known: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64 F8_E4M3 F8_E5M2");
    ti.type = st->type;
    // shape
    auto s = v.find("shape");
    if (s == v.end() || !s->is_array())
      error_throw(s == v.end() ? "missing shape" : "shape is not an array", where_field(path, name, "shape"),
                  "shape is an array of non-negative integers");
    // Even with a zero dim, the other dims' product (times the element size) must fit an int64:
    // tensor strides are computed from it.
    uint64_t span = st->size;
    bool any_zero = false;
    for (const Json& e : *s) {
      const uint64_t dim = json_u64(e, path, name, "shape");
      ti.shape.push_back(static_cast<int64_t>(dim));
      any_zero |= dim == 0;
      if (__builtin_mul_overflow(span, dim == 0 ? 1 : dim, &span) ||
          span > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        error_throw("shape's byte size overflows 63 bits", where_field(path, name, "shape"), "the file is corrupt");
    }
    const uint64_t nbytes = any_zero ? 0 : span;
    const uint64_t numel = nbytes / st->size;
    // data_offsets
    auto o = v.find("data_offsets");
    if (o == v.end() || !o->is_array() || o->size() != 2)
      error_throw(o == v.end() ? "missing data_offsets" : "data_offsets is not a [begin, end] pair",
                  where_field(path, name, "data_offsets"), "data_offsets is [begin, end] in bytes");
    const uint64_t begin = json_u64((*o)[0], path, name, "data_offsets");
    const uint64_t end = json_u64((*o)[1], path, name, "data_offsets");
    if (begin > end)
      error_throw(fmt::format("data_offsets [{}, {}] ends before it begins", begin, end),
                  where_field(path, name, "data_offsets"), "the file is corrupt");
    if (end > buffer_size)
      error_throw(fmt::format("data_offsets [{}, {}] run past the {}-byte data buffer", begin, end, buffer_size),
                  where_field(path, name, "data_offsets"), "the file is truncated");
    if (end - begin != nbytes)
      error_throw(fmt::format("data_offsets [{}, {}] hold {} bytes but {} elements of {} need {}", begin, end,
                              end - begin, numel, ti.type_name, nbytes),
                  where_field(path, name, "data_offsets"), "shape, dtype and offsets disagree; the file is corrupt");
    ti.offset = data_start + begin;
    ti.nbytes = nbytes;
    ranges.push_back({begin, end, out.infos.size()});
    out.infos.push_back(std::move(ti));
  }

  // The buffer must be covered exactly once.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const std::string* prev = nullptr;
  for (const Range& r : ranges) {
    const std::string& name = out.infos[r.info].name;
    if (r.begin < pos)
      error_throw(fmt::format("data [{}, {}) overlaps tensor {}", r.begin, r.end, name_quote(*prev)),
                  where_field(path, name, "data_offsets"), "tensors may not share bytes; the file is corrupt");
    if (r.begin > pos)
      error_throw(fmt::format("{} unused bytes before this tensor's data at {}", r.begin - pos, r.begin),
                  where_field(path, name, "data_offsets"),
                  "the spec forbids holes in the data buffer; the file is corrupt or was crafted");
    pos = r.end;
    prev = &name;
  }
  if (pos != buffer_size)
    error_throw(fmt::format("{} bytes after the last tensor's data are not used by any tensor", buffer_size - pos),
                path, "the spec forbids trailing bytes; the file is corrupt or was crafted");

  std::vector<TensorInfo> sorted;
  sorted.reserve(ranges.size());
  for (const Range& r : ranges) sorted.push_back(std::move(out.infos[r.info]));
  out.infos = std::move(sorted);
  return out;
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

SafetensorsIndex safetensors_index_parse(std::span<const uint8_t> bytes, const std::string& path) {
  if (bytes.size() > kSafetensorsHeaderMax)
    error_throw(fmt::format("index is {} bytes, over the {} byte limit", bytes.size(), kSafetensorsHeaderMax),
                path, "is this really a safetensors index?");
  Json j = json_parse_strict(bytes.data(), bytes.data() + bytes.size(), path, "index");
  if (!j.is_object())
    error_throw(fmt::format("index is a JSON {}, not an object", j.type_name()), path,
                "a sharded checkpoint's index is {\"metadata\": {...}, \"weight_map\": {...}}");
  SafetensorsIndex idx;
  if (auto m = j.find("metadata"); m != j.end() && !m->is_null()) {
    if (!m->is_object())
      error_throw(fmt::format("index \"metadata\" is a JSON {}, not an object", m->type_name()), path,
                  "the index is corrupt");
    for (auto it = m->begin(); it != m->end(); ++it)
      idx.metadata[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  }
  auto w = j.find("weight_map");
  if (w == j.end() || !w->is_object())
    error_throw(w == j.end() ? "index has no \"weight_map\"" : "index \"weight_map\" is not an object", path,
                "a sharded checkpoint's index maps each tensor name to its shard file");
  for (auto it = w->begin(); it != w->end(); ++it) {
    const std::string where = fmt::format("{}: weight_map[{}]", path, name_quote(it.key()));
    if (it.key() == "__metadata__")
      error_throw("\"__metadata__\" is not a tensor name", where, "the index is corrupt");
    if (!it.value().is_string())
      error_throw(fmt::format("shard is a JSON {}, not a file name", it.value().type_name()), where,
                  "weight_map values are shard file names");
    const std::string& shard = it.value().get_ref<const std::string&>();
    // Shards live beside the index: a name that could point elsewhere is refused.
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos)
      error_throw(fmt::format("shard file name {} is not a plain file name", name_quote(shard)), where,
                  "shards must be files in the index's folder (no '/', '..' or absolute paths)");
    idx.weight_map[it.key()] = shard;
  }
  return idx;
}

void SafetensorsFile::shard_add(Shard shard, const std::string& path) {
  Parsed p = header_parse(shard.data, shard.size, path);
  const size_t s = shards_.size();
  shards_.push_back(std::move(shard));
  if (shards_.size() == 1) metadata_ = std::move(p.metadata);
  for (TensorInfo& ti : p.infos) {
    info_shard_.push_back(s);
    infos_.push_back(std::move(ti));
  }
}

void SafetensorsFile::index_build() {
  for (size_t i = 0; i < infos_.size(); ++i) {
    auto [it, fresh] = by_name_.emplace(infos_[i].name, i);
    if (!fresh)
      error_throw(fmt::format("tensor is in two shards: {} and {}", infos_[it->second].file, infos_[i].file),
                  where_field(infos_[i].file, infos_[i].name, ""), "the checkpoint is corrupt");
  }
}

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  SafetensorsFile f;
  f.shard_add({nullptr, bytes.data(), bytes.size()}, name);
  f.index_build();
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path, FileLoadOptions opt) {
  SafetensorsFile f;
  if (!ends_with(path, ".json")) {
    auto file = MappedFile::open(path, opt);
    const uint8_t* data = file->data();
    const size_t size = file->size();
    f.shard_add({std::move(file), data, size}, path);
    f.index_build();
    return f;
  }
  // Sharded checkpoint: the index is small, read it into memory.
  auto index_file = MappedFile::open(path, {.use_mmap = false});
  SafetensorsIndex idx = safetensors_index_parse({index_file->data(), index_file->size()}, path);
  std::set<std::string> shard_names;
  for (const auto& [tensor, shard] : idx.weight_map) shard_names.insert(shard);
  const std::string dir = dir_of(path);
  for (const std::string& shard : shard_names) {  // sorted: model-00001-of-N first
    const std::string shard_path = dir + "/" + shard;
    auto file = MappedFile::open(shard_path, opt);
    const uint8_t* data = file->data();
    const size_t size = file->size();
    f.shard_add({std::move(file), data, size}, shard_path);
  }
  f.metadata_ = std::move(idx.metadata);
  f.index_build();
  // The weight map and the shards must agree both ways.
  for (const TensorInfo& ti : f.infos_) {
    auto it = idx.weight_map.find(ti.name);
    if (it == idx.weight_map.end())
      error_throw("tensor is in a shard but not in the index's weight_map", where_field(ti.file, ti.name, ""),
                  "the index does not match its shards");
    if (dir + "/" + it->second != ti.file)
      error_throw(fmt::format("weight_map puts this tensor in {}, but it is in {}", it->second, ti.file),
                  where_field(path, ti.name, ""), "the index does not match its shards");
  }
  for (const auto& [tensor, shard] : idx.weight_map)
    if (!f.find(tensor))
      error_throw(fmt::format("weight_map puts this tensor in {}, which does not hold it", shard),
                  where_field(path, tensor, ""), "the index does not match its shards");
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &infos_[it->second];
}

std::span<const uint8_t> SafetensorsFile::tensor_bytes(const TensorInfo& info) const {
  const size_t i = static_cast<size_t>(&info - infos_.data());
  AIGC_ASSERT(i < infos_.size(), "TensorInfo does not belong to this file");
  const Shard& s = shards_[info_shard_[i]];
  return {s.data + info.offset, static_cast<size_t>(info.nbytes)};
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo* info = find(name);
  if (!info)
    error_throw(fmt::format("no tensor named {}", name_quote(name)), infos_.empty() ? "" : infos_[0].file,
                "list the tensors with `aigc info FILE`");
  if (!info->type)
    error_throw(fmt::format("unsupported dtype {}", info->type_name), where_field(info->file, info->name, "dtype"),
                "the engine computes with F32, F16, BF16, F64, I8, I16, I32, I64; convert the checkpoint");
  if (info->shape.size() > static_cast<size_t>(kMaxDims))
    error_throw(fmt::format("tensor has {} dims, at most {} supported", info->shape.size(), kMaxDims),
                where_field(info->file, info->name, "shape"), "reshape it in the checkpoint");
  std::span<const uint8_t> bytes = tensor_bytes(*info);
  const size_t elem = dtype_traits(*info->type).block_bytes;
  const auto& owner = shards_[info_shard_[static_cast<size_t>(info - infos_.data())]].file;
  Tensor t;
  if (reinterpret_cast<uintptr_t>(bytes.data()) % elem == 0 || bytes.empty()) {
    t = Tensor::view_of(*info->type, info->shape, const_cast<uint8_t*>(bytes.data()), owner);
  } else {
    // The spec does not require alignment (an unpadded header moves every tensor): copy.
    log_debug("safetensors: {} is misaligned in {}; copying it", info->name, info->file);
    t = Tensor::empty(*info->type, info->shape);
    if (!bytes.empty()) std::memcpy(t.data(), bytes.data(), bytes.size());
  }
  t.name = info->name;
  return t;
}

// ---- writer -----------------------------------------------------------------

namespace {

// Appends the elements of any-strided `t` in row-major order.
void tensor_bytes_append(const Tensor& t, std::vector<uint8_t>& out) {
  const size_t elem = dtype_traits(t.type()).block_bytes;
  const auto* base = static_cast<const uint8_t*>(t.data());
  if (t.numel() == 0) return;
  if (t.is_contiguous()) {
    out.insert(out.end(), base, base + t.nbytes());
    return;
  }
  std::array<int64_t, kMaxDims> idx{};
  const int nd = t.ndim();
  for (int64_t n = 0; n < t.numel(); ++n) {
    int64_t off = 0;
    for (int d = 0; d < nd; ++d) off += idx[d] * t.stride_bytes(d);
    out.insert(out.end(), base + off, base + off + elem);
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < t.size(d)) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

void safetensors_write(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item { const std::string* name; const Tensor* t; const StDType* st; };
  std::vector<Item> items;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      error_throw("\"__metadata__\" cannot name a tensor", path, "rename the tensor");
    const StDType* st = st_dtype_of(t.type());
    if (!st)
      error_throw(fmt::format("cannot write a {} tensor to safetensors", dtype_name(t.type())),
                  path + ": tensor " + name_quote(name), "convert it to F32, F16 or BF16 first");
    AIGC_CHECK(t.defined(), "tensor '{}' has no data", name);
    items.push_back({&name, &t, st});
  }
  // Largest elements first keeps every tensor aligned to its element size (the data starts at a
  // multiple of 8); then by name, so the output is deterministic.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.st->size > b.st->size; });

  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t pos = 0;
  for (const Item& it : items) {
    const uint64_t nbytes = static_cast<uint64_t>(it.t->numel()) * it.st->size;
    header[*it.name] = {{"dtype", std::string(it.st->name)}, {"shape", it.t->shape_vec()}, {"data_offsets", {pos, pos + nbytes}}};
    pos += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {  // a name or metadata string that is not UTF-8
    error_throw(fmt::format("cannot encode the header: {}", e.what()), path, "tensor names and metadata must be UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) error_throw(fmt::format("cannot create file: {}", std::strerror(errno)), tmp, "check the folder exists and is writable");
  bool ok = true;
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  ok &= std::fwrite(len, 1, 8, fp) == 8;
  ok &= std::fwrite(text.data(), 1, text.size(), fp) == text.size();
  std::vector<uint8_t> buf;
  for (const Item& it : items) {
    if (!ok) break;
    buf.clear();
    tensor_bytes_append(*it.t, buf);
    ok &= std::fwrite(buf.data(), 1, buf.size(), fp) == buf.size();
  }
  const int err = errno;
  ok &= std::fclose(fp) == 0;
  if (!ok) {
    std::remove(tmp.c_str());
    error_throw(fmt::format("write failed: {}", std::strerror(err)), tmp, "check free disk space");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    error_throw(fmt::format("cannot rename {} to the final name: {}", tmp, std::strerror(e)), path,
                "check the folder's permissions");
  }
}

}  // namespace aigc
