#include "image/weight_source.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "formats/safetensors.h"

namespace aigc::image {

WeightSource::WeightSource(std::shared_ptr<const SafetensorsFile> file, std::string prefix, std::string component)
    : file_(std::move(file)), prefix_(std::move(prefix)), component_(std::move(component)) {
  AIGC_ASSERT(file_ != nullptr);
}

std::string WeightSource::file_name() const {
  const auto& infos = file_->tensor_infos();
  return infos.empty() ? std::string("<empty checkpoint>") : infos.front().file;
}

bool WeightSource::has(std::string_view key) const { return file_->find(prefix_ + std::string(key)) != nullptr; }

const Tensor* WeightSource::find(std::string_view key) const {
  const std::string full = prefix_ + std::string(key);
  if (!file_->find(full)) return nullptr;
  used_.insert(std::string(key));
  for (auto& [k, t] : cache_)
    if (k == key) return t.get();
  cache_.emplace_back(std::string(key), std::make_unique<Tensor>(file_->tensor(full)));
  return cache_.back().second.get();
}

const Tensor& WeightSource::get(std::string_view key) const {
  const Tensor* t = find(key);
  if (!t)
    error_throw(fmt::format("{}: tensor '{}{}' is missing", component_, prefix_, key), file_name(),
                "the checkpoint is incomplete or not of the model type it was detected as");
  return *t;
}

const Tensor& WeightSource::get(std::string_view key, std::span<const int64_t> shape) const {
  const Tensor& t = get(key);
  bool ok = t.ndim() == static_cast<int>(shape.size());
  for (int d = 0; ok && d < t.ndim(); ++d) ok = t.size(d) == shape[static_cast<size_t>(d)];
  if (!ok)
    error_throw(fmt::format("{}: tensor '{}{}' has shape {}, expected [{}]", component_, prefix_, key, t.shape_str(),
                            fmt::join(shape, ", ")),
                file_name(), "the checkpoint's layers do not fit together; it may be damaged or of another model type");
  if (t.type() != DType::F32 && t.type() != DType::F16 && t.type() != DType::BF16)
    error_throw(fmt::format("{}: tensor '{}{}' has type {}, expected f32, f16 or bf16", component_, prefix_, key,
                            t.shape_str()),
                file_name(), "convert the checkpoint to f16 or f32 safetensors");
  return t;
}

const Tensor& WeightSource::get(std::string_view key, std::initializer_list<int64_t> shape) const {
  return get(key, std::span<const int64_t>(shape.begin(), shape.size()));
}

std::vector<std::string> WeightSource::keys() const {
  std::vector<std::string> out;
  for (const auto& info : file_->tensor_infos())
    if (info.name.compare(0, prefix_.size(), prefix_) == 0) out.push_back(info.name.substr(prefix_.size()));
  std::sort(out.begin(), out.end());
  return out;
}

static bool key_matches(std::string_view key, std::string_view pattern) {
  if (!pattern.empty() && pattern.back() == '*') return key.substr(0, pattern.size() - 1) == pattern.substr(0, pattern.size() - 1);
  return key == pattern;
}

std::vector<std::string> WeightSource::unused_keys(std::initializer_list<std::string_view> ignore) const {
  std::vector<std::string> out;
  for (const std::string& k : keys()) {
    if (used_.count(k)) continue;
    bool skip = false;
    for (std::string_view p : ignore) skip = skip || key_matches(k, p);
    if (!skip) out.push_back(k);
  }
  return out;
}

void WeightSource::unused_check(std::initializer_list<std::string_view> ignore) const {
  const std::vector<std::string> unused = unused_keys(ignore);
  if (unused.empty()) return;
  std::vector<std::string> shown;
  for (size_t i = 0; i < unused.size() && i < 5; ++i) shown.push_back(prefix_ + unused[i]);
  error_throw(fmt::format("{}: {} unknown tensor(s) in the checkpoint: {}{}", component_, unused.size(),
                          fmt::join(shown, ", "), unused.size() > 5 ? ", ..." : ""),
              file_name(), "this model variant is not supported (its extra layers would be ignored and the output wrong)");
}

}  // namespace aigc::image
