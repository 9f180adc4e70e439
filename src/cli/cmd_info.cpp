// aigc info FILE: metadata and tensor table of a GGUF or safetensors file (or --json).
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/model_file.h"
#include "formats/safetensors.h"

namespace aigc::cli {

namespace {

struct InfoOptions {
  std::string path;
  bool json = false;
  size_t max_items = 8;
};

std::string bytes_human(uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 3) { v /= 1024; ++u; }
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string shape_human(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t numel_of(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

// The parts of both formats that `info` shows.
struct FileSummary {
  std::string format;  // "GGUF v3", "safetensors", "safetensors (sharded, 2 files)"
  std::vector<std::pair<std::string, std::string>> metadata_text;  // key, "type value"
  nlohmann::json metadata_json = nlohmann::json::object();
  std::vector<TensorInfo> tensors;
};

FileSummary summary_gguf(const std::string& path, size_t max_items) {
  GgufFile f = GgufFile::open(path);
  FileSummary s;
  s.format = fmt::format("GGUF v{}", f.version());
  for (const GgufKV& kv : f.metadata()) {
    s.metadata_text.emplace_back(kv.key, fmt::format("{:<16} {}", kv.value.type_str(),
                                                     kv.value.to_string(max_items ? max_items : SIZE_MAX, 80)));
    s.metadata_json[kv.key] = kv.value.to_json(max_items ? max_items : SIZE_MAX);
  }
  s.tensors = f.tensor_infos();
  return s;
}

FileSummary summary_safetensors(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  FileSummary s;
  std::map<std::string, int> files;
  for (const TensorInfo& ti : f.tensor_infos()) files[ti.file]++;
  s.format = files.size() > 1 ? fmt::format("safetensors (sharded, {} files)", files.size()) : "safetensors";
  for (const auto& [k, v] : f.metadata()) {
    s.metadata_text.emplace_back(k, fmt::format("{:<16} {}", "string", v.size() > 80 ? v.substr(0, 77) + "..." : v));
    s.metadata_json[k] = v;
  }
  s.tensors = f.tensor_infos();
  return s;
}

void info_print_table(const InfoOptions& opt, const FileSummary& s) {
  uint64_t params = 0, bytes = 0;
  std::map<std::string, std::pair<int, uint64_t>> by_type;  // type -> count, bytes
  size_t name_w = 4;
  for (const TensorInfo& t : s.tensors) {
    params += numel_of(t.shape);
    bytes += t.nbytes;
    by_type[t.type_name].first++;
    by_type[t.type_name].second += t.nbytes;
    name_w = std::max(name_w, t.name.size());
  }
  name_w = std::min<size_t>(name_w, 60);
  fmt::print("file:     {}\n", opt.path);
  fmt::print("format:   {}\n", s.format);
  fmt::print("tensors:  {} ({:.3f} M parameters, {})\n", s.tensors.size(), params / 1e6, bytes_human(bytes));
  std::string types;
  for (const auto& [name, cb] : by_type)
    types += fmt::format("{}{} x{} ({})", types.empty() ? "" : ", ", name, cb.first, bytes_human(cb.second));
  if (!types.empty()) fmt::print("types:    {}\n", types);
  fmt::print("\nmetadata ({} keys):\n", s.metadata_text.size());
  size_t key_w = 4;
  for (const auto& kv : s.metadata_text) key_w = std::max(key_w, kv.first.size());
  for (const auto& [k, v] : s.metadata_text) fmt::print("  {:<{}}  {}\n", k, key_w, v);
  fmt::print("\ntensors:\n  {:>5}  {:<{}}  {:<8} {:<22} {:>10}  {:>12}\n", "#", "name", name_w, "type", "shape", "size",
             "offset");
  for (size_t i = 0; i < s.tensors.size(); ++i) {
    const TensorInfo& t = s.tensors[i];
    fmt::print("  {:>5}  {:<{}}  {:<8} {:<22} {:>10}  {:>12}\n", i, t.name, name_w, t.type_name,
               shape_human(t.shape), bytes_human(t.nbytes), t.offset);
  }
}

void info_print_json(const InfoOptions& opt, const FileSummary& s) {
  nlohmann::json j;
  j["file"] = opt.path;
  j["format"] = s.format;
  j["metadata"] = s.metadata_json;
  j["tensors"] = nlohmann::json::array();
  for (const TensorInfo& t : s.tensors)
    j["tensors"].push_back({{"name", t.name}, {"type", t.type_name}, {"shape", t.shape},
                            {"offset", t.offset}, {"nbytes", t.nbytes}, {"file", t.file}});
  // Strings in a model file need not be UTF-8: replace bad bytes rather than fail.
  fmt::print("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
}

void info_run(const InfoOptions& opt) {
  const ModelFormat format = model_format_detect(opt.path);
  FileSummary s = format == ModelFormat::Gguf ? summary_gguf(opt.path, opt.max_items) : summary_safetensors(opt.path);
  if (opt.json)
    info_print_json(opt, s);
  else
    info_print_table(opt, s);
}

}  // namespace

void command_info_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the metadata and tensor table of a GGUF or safetensors file");
  auto opt = std::make_shared<InfoOptions>();
  cmd->add_option("FILE", opt->path, "Model file: .gguf, .safetensors, or a sharded *.safetensors.index.json")
      ->required();
  cmd->add_flag("--json", opt->json, "Print JSON (metadata, tensors with type, shape, offset, size)");
  cmd->add_option("--max-items", opt->max_items, "Array elements shown per metadata value (0: all)")
      ->default_val(8);
  cmd->callback([opt]() { info_run(*opt); });
}

}  // namespace aigc::cli
