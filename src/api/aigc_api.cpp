// The C API (include/aigc/aigc.h) over the C++ engine: catches every exception at the boundary.
#include "aigc/aigc.h"

#include <map>
#include <new>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "formats/model_file.h"
#include "formats/safetensors.h"

struct aigc_model_file {
  std::string format;
  std::vector<aigc::TensorInfo> tensors;
  std::map<std::string, std::string, std::less<>> metadata;
};

namespace {

thread_local std::string g_last_error;

template <typename F>
aigc_status api_guard(F&& f) {
  try {
    f();
    g_last_error.clear();
    return AIGC_OK;
  } catch (const aigc::Error& e) {
    g_last_error = e.what();
    return AIGC_ERROR_FILE;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
    return AIGC_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return AIGC_ERROR_INTERNAL;
  }
}

aigc_status api_invalid(const char* what) {
  g_last_error = what;
  return AIGC_ERROR_INVALID_ARGUMENT;
}

}  // namespace

extern "C" {

const char* aigc_version(void) { return AIGC_VERSION; }
const char* aigc_last_error(void) { return g_last_error.c_str(); }
void aigc_threads_set(int n) { aigc::thread_count_set(n); }
int aigc_threads_get(void) { return aigc::thread_count(); }

aigc_status aigc_model_file_open(const char* path, aigc_model_file** out) {
  if (!path || !out) return api_invalid("aigc_model_file_open: path and out must not be NULL");
  *out = nullptr;
  return api_guard([&] {
    auto f = std::make_unique<aigc_model_file>();
    if (aigc::model_format_detect(path) == aigc::ModelFormat::Gguf) {
      aigc::GgufFile g = aigc::GgufFile::open(path);
      f->format = "GGUF v" + std::to_string(g.version());
      for (const aigc::GgufKV& kv : g.metadata())
        f->metadata[kv.key] = kv.value.type() == aigc::GgufType::STRING ? kv.value.as_string() : kv.value.to_string(8, SIZE_MAX);
      f->tensors = g.tensor_infos();
    } else {
      aigc::SafetensorsFile s = aigc::SafetensorsFile::open(path);
      f->format = "safetensors";
      for (const auto& [k, v] : s.metadata()) f->metadata[k] = v;
      f->tensors = s.tensor_infos();
    }
    *out = f.release();
  });
}

void aigc_model_file_free(aigc_model_file* f) { delete f; }

const char* aigc_model_file_format(const aigc_model_file* f) { return f ? f->format.c_str() : ""; }

int64_t aigc_model_file_tensor_count(const aigc_model_file* f) {
  return f ? static_cast<int64_t>(f->tensors.size()) : 0;
}

aigc_status aigc_model_file_tensor(const aigc_model_file* f, int64_t index, aigc_tensor_desc* out) {
  if (!f || !out) return api_invalid("aigc_model_file_tensor: f and out must not be NULL");
  if (index < 0 || index >= static_cast<int64_t>(f->tensors.size()))
    return api_invalid("aigc_model_file_tensor: index out of range");
  const aigc::TensorInfo& t = f->tensors[static_cast<size_t>(index)];
  if (t.shape.size() > 8) return api_invalid("aigc_model_file_tensor: tensor has more than 8 dims");
  *out = {};
  out->name = t.name.c_str();
  out->type_name = t.type_name.c_str();
  out->n_dims = static_cast<int32_t>(t.shape.size());
  for (size_t d = 0; d < t.shape.size(); ++d) out->shape[d] = t.shape[d];
  out->offset = t.offset;
  out->nbytes = t.nbytes;
  return AIGC_OK;
}

const char* aigc_model_file_metadata(const aigc_model_file* f, const char* key) {
  if (!f || !key) return nullptr;
  auto it = f->metadata.find(key);
  return it == f->metadata.end() ? nullptr : it->second.c_str();
}

}  // extern "C"
