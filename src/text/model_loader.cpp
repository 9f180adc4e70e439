#include "text/model_loader.h"

#include "backend/cpu/linear_quantized.h"

#include <algorithm>
#include <cmath>

#include "core/quant.h"
#include "formats/gguf.h"

namespace aigc {

namespace {

std::string shape_of(std::span<const int64_t> s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

bool linear_type_ok(DType t) {
  // the float types and every type with an integer dot kernel (llama.cpp's Q4_0 files have a
  // q6_K output.weight)
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || ops::linear_quantized_supports(t);
}

int64_t ModelLoader::count(const std::string& key) const {
  const uint64_t v = f.get_uint(key);
  if (v == 0 || v > (uint64_t{1} << 31))
    error_throw(fmt::format("{} = {} is out of range", key, v), f.path(), "the model file is damaged");
  return static_cast<int64_t>(v);
}

int64_t ModelLoader::count_or(const std::string& key, int64_t dflt) const { return f.find(key) ? count(key) : dflt; }

float ModelLoader::positive_or(const std::string& key, float dflt) const {
  if (!f.find(key)) return dflt;
  const float x = f.get_f32(key);
  if (!std::isfinite(x) || x <= 0.0f)
    error_throw(fmt::format("{} = {} must be a positive number", key, x), f.path());
  return x;
}

Tensor ModelLoader::tensor(const std::string& name, std::initializer_list<int64_t> shape, bool linear) const {
  const TensorInfo* ti = f.tensor_info_find(name);
  if (!ti)
    error_throw(fmt::format("tensor '{}' is missing", name), f.path(),
                fmt::format("is this a complete {} GGUF?", family));
  const std::span<const int64_t> want(shape.begin(), shape.size());
  if (ti->shape.size() != want.size() || !std::equal(want.begin(), want.end(), ti->shape.begin()))
    error_throw(fmt::format("tensor '{}' has shape {}, expected {} from the hyper-parameters", name,
                            shape_of(ti->shape), shape_of(want)),
                f.path(), "the file's metadata and tensors disagree");
  if (!ti->type || (linear ? !linear_type_ok(*ti->type) : !dtype_can_convert(*ti->type)))
    error_throw(fmt::format("tensor '{}' has type {}, which is not supported here", name, ti->type_name), f.path(),
                linear_types_hint());
  Tensor t = f.tensor(name);
  if (const std::optional<DType> rt = linear ? ops::linear_repack_type(t.type(), t.size(0), t.size(-1)) : std::nullopt;
      rt && t.ndim() == 2) {
    // Into the layout the kernels run faster, in the file's own pages where they can be written
    // (privately: a mapping's pages are copied as written), else into a copy.
    std::optional<Tensor> in_place = f.tensor_rewrite(name, *rt);
    Tensor dst = in_place ? std::move(*in_place) : Tensor::empty(*rt, t.shape());
    ops::linear_repack(t, dst);
    dst.name = t.name;
    return dst;
  }
  return t;
}

Tensor ModelLoader::vector_f32(const std::string& name, int64_t n) const {
  Tensor t = tensor(name, {n}, false);
  if (t.type() == DType::F32) return t;
  Tensor out = Tensor::empty(DType::F32, {n});
  row_to_f32(t.type(), t.data(), out.ptr<float>(), n);
  out.name = name;
  return out;
}

int64_t ModelLoader::vocab_size(const std::string& vocab_key) const {
  int64_t n = 0;
  if (f.find(vocab_key)) {
    n = count(vocab_key);
  } else if (const GgufValue* toks = f.find("tokenizer.ggml.tokens"); toks && toks->is_array()) {
    n = static_cast<int64_t>(toks->size());
  } else if (const TensorInfo* ti = f.tensor_info_find("token_embd.weight"); ti && ti->shape.size() == 2) {
    n = ti->shape[0];
  }
  if (n <= 0) error_throw("the vocabulary size is unknown (no vocab_size, tokens or token_embd)", f.path());
  return n;
}

}  // namespace aigc
