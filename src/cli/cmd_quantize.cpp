// aigc quantize IN OUT --type T: rewrites a GGUF file with its 2-d weight matrices quantised.
//
// Which tensor gets which type (llama.cpp's rules for a plain, non-mixed quantisation):
//   - 2-d f32 / f16 / bf16 tensors whose name ends in "weight": type T, with GGML's reference
//     quantiser (quant.h). A row length that is not a multiple of T's block size (256 for the
//     K-quants) falls back as llama.cpp does: q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0; if even
//     that does not divide the row (not a multiple of 32), the tensor keeps its type.
//   - output.weight (or token_embd.weight when the model ties them and has no output.weight) is
//     the most quantisation-sensitive matrix: it becomes q6_K (q8_0 when its rows are not a
//     multiple of 256) unless T is q8_0 or q6_K already, as llama.cpp does for every target type
//     below 6 bits. token_embd.weight otherwise gets T like the rest.
//   - 1-d tensors (norms, biases) and every other tensor of a float type: f32 (lossless).
//   - tensors already quantised, and integer tensors: copied unchanged.
// Metadata is copied in order; general.file_type is set to llama.cpp's `enum llama_ftype` value
// for T (q4_0 2, q4_1 3, q8_0 7, q5_0 8, q5_1 9, q4_K 14 (Q4_K_S), q5_K 16 (Q5_K_S), q6_K 18) and
// general.quantization_version to 2 (GGML_QNT_VERSION). The whole output is built in memory before
// it is written (OUT.tmp, then renamed), so OUT is never left half written.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"

namespace aigc::cli {

namespace {

struct TargetType {
  DType type;
  uint32_t ftype;  // llama.cpp enum llama_ftype
};

constexpr TargetType kTargets[] = {
    {DType::Q4_0, 2}, {DType::Q4_1, 3}, {DType::Q8_0, 7}, {DType::Q5_0, 8}, {DType::Q5_1, 9},
    {DType::Q4_K, 14}, {DType::Q5_K, 16}, {DType::Q6_K, 18},
};

std::string targets_list() {
  std::string s;
  for (const TargetType& t : kTargets) s += (s.empty() ? "" : ", ") + std::string(dtype_name(t.type));
  return s;
}

const TargetType& target_find(const std::string& name) {
  const std::optional<DType> t = dtype_from_name(name);
  for (const TargetType& tt : kTargets)
    if (t && *t == tt.type) return tt;
  error_throw(fmt::format("unknown quantisation type '{}'", name), "aigc quantize --type",
              "one of " + targets_list());
}

bool row_fits(DType t, int64_t k) { return k % dtype_traits(t).block_size == 0; }

// The type a 2-d float weight [N, K] becomes; src keeps its own type when nothing fits.
DType weight_type(DType target, bool sensitive, int64_t k, DType src) {
  DType t = target;
  if (sensitive && target != DType::Q8_0 && target != DType::Q6_K) t = DType::Q6_K;
  if (!row_fits(t, k)) {
    switch (t) {
      case DType::Q4_K: t = DType::Q5_0; break;
      case DType::Q5_K: t = DType::Q5_1; break;
      default: t = DType::Q8_0; break;
    }
  }
  if (!row_fits(t, k)) t = src;
  return t;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// src (any float type, any shape with a dense last dim) converted row by row to `type`.
Tensor tensor_convert(const Tensor& src, DType type) {
  Tensor dst = Tensor::empty(type, src.shape());
  const int64_t rows = src.ndim() == 0 ? 1 : src.rows(), k = src.ndim() == 0 ? 1 : src.size(-1);
  if (rows == 0 || k == 0) return dst;
  parallel_for(rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(k);
    for (int64_t r = r0; r < r1; ++r) {
      row_to_f32(src.type(), src.ndim() == 0 ? src.data() : src.row_ptr(r), buf.data(), k);
      row_from_f32(type, buf.data(), src.ndim() == 0 ? dst.data() : dst.row_ptr(r), k);
    }
  }, 1);
  return dst;
}

void quantize_file(const std::string& in, const std::string& out, const TargetType& target) {
  const GgufFile f = GgufFile::open(in);
  GgufWriter w;
  for (const GgufKV& kv : f.metadata()) {
    if (kv.key == "general.file_type" || kv.key == "general.quantization_version") continue;
    w.metadata_add(kv.key, kv.value);
  }
  w.metadata_add("general.quantization_version", uint32_t{2});
  w.metadata_add("general.file_type", target.ftype);

  const bool has_output = f.tensor_info_find("output.weight") != nullptr;
  for (const TensorInfo& info : f.tensor_infos()) {
    if (!info.type)
      error_throw(fmt::format("tensor '{}' has type {}, which aigc cannot convert", info.name, info.type_name), in);
    const Tensor src = f.tensor(info.name);
    const DType st = src.type();
    const bool is_float = st == DType::F32 || st == DType::F16 || st == DType::BF16;
    if (!is_float) {  // already quantised, or integer data: as it is
      w.tensor_add(info.name, src);
      continue;
    }
    DType t = DType::F32;
    if (src.ndim() == 2 && ends_with(info.name, "weight")) {
      const bool sensitive = info.name == "output.weight" || (!has_output && info.name == "token_embd.weight");
      t = weight_type(target.type, sensitive, src.size(1), st);
    }
    log_info("{}: {} {} -> {}", info.name, dtype_name(st), src.shape_str(), dtype_name(t));
    w.tensor_add(info.name, t == st ? src : tensor_convert(src, t));
  }
  w.write(out);
}

}  // namespace

void command_quantize_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Write a copy of a GGUF model with its weight matrices quantised");
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>();
  cmd->add_option("IN", *in, "Input GGUF file (f32 / f16 / bf16 weights)")->required();
  cmd->add_option("OUT", *out, "Output GGUF file")->required();
  cmd->add_option("--type", *type, "Target type: " + targets_list())->required();
  cmd->callback([in, out, type]() {
    const TargetType& target = target_find(*type);
    quantize_file(*in, *out, target);
  });
}

}  // namespace aigc::cli
