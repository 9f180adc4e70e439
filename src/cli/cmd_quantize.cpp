// aigc quantize IN OUT --type T: rewrites a GGUF file with its 2-d weight matrices quantised.
//
// Which tensor gets which type (llama.cpp's rules, src/llama-quant.cpp, for dense models):
//   - 2-d f32 / f16 / bf16 tensors whose name ends in "weight": type T, with GGML's reference
//     quantiser (quant.h). A row length that is not a multiple of T's block size (256 for the
//     K-quants) falls back as llama.cpp does: q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0; if even
//     that does not divide the row (not a multiple of 32), the tensor keeps its type.
//   - output.weight (or token_embd.weight when the model ties them and has no output.weight) is
//     the most quantisation-sensitive matrix: it becomes q6_K (q8_0 when its rows are not a
//     multiple of 256) unless T is q8_0 or q6_K already, as llama.cpp does for every target type
//     below 6 bits. token_embd.weight otherwise gets T like the rest.
//   - The mixes q4_K_S, q4_K_M, q5_K_S, q5_K_M (the files most often published) give some
//     matrices more bits, as llama.cpp does: with more_bits(i, n) = i < n/8 || i >= 7n/8 ||
//     (i - n/8) % 3 == 2 (the first and last eighth of the layers and every third between),
//       _M: the i-th attn_v (of n) and the ffn_down of layer i (of block_count) become q6_K where
//           more_bits(i, n); a fused attn_qkv becomes q5_K (q4_K_M) or q6_K (q5_K_M);
//       q4_K_S: the first 4 attn_v and the ffn_down of the first block_count/8 layers become q5_K;
//       q5_K_S: as plain q5_K.
//     (llama.cpp's further special cases, for 70B and mixture-of-experts models and Falcon, are
//     not applied.) Plain q4_K / q5_K give every matrix but the output that type.
//   - 1-d tensors (norms, biases) and every other tensor of a float type: f32 (lossless).
//   - tensors already quantised, and integer tensors: copied unchanged.
// Metadata is copied in order; general.file_type is set to llama.cpp's `enum llama_ftype` value
// for T (q4_0 2, q4_1 3, q8_0 7, q5_0 8, q5_1 9, q4_K and q4_K_S 14, q4_K_M 15, q5_K and q5_K_S 16,
// q5_K_M 17, q6_K 18) and general.quantization_version to 2 (GGML_QNT_VERSION). The whole output
// is built in memory before it is written (OUT.tmp, then renamed), so OUT is never left half
// written.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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

using Clock = std::chrono::steady_clock;

// Which of llama.cpp's K-quant mixes a target is (see the top of this file).
enum class Mix { None, S, M };

struct TargetType {
  const char* name;
  DType type;      // what most matrices become
  uint32_t ftype;  // llama.cpp enum llama_ftype
  Mix mix;
};

constexpr TargetType kTargets[] = {
    {"q4_0", DType::Q4_0, 2, Mix::None},    {"q4_1", DType::Q4_1, 3, Mix::None},
    {"q8_0", DType::Q8_0, 7, Mix::None},    {"q5_0", DType::Q5_0, 8, Mix::None},
    {"q5_1", DType::Q5_1, 9, Mix::None},    {"q4_K", DType::Q4_K, 14, Mix::None},
    {"q4_K_S", DType::Q4_K, 14, Mix::S},    {"q4_K_M", DType::Q4_K, 15, Mix::M},
    {"q5_K", DType::Q5_K, 16, Mix::None},   {"q5_K_S", DType::Q5_K, 16, Mix::S},
    {"q5_K_M", DType::Q5_K, 17, Mix::M},    {"q6_K", DType::Q6_K, 18, Mix::None},
};

std::string targets_list() {
  std::string s;
  for (const TargetType& t : kTargets) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

const TargetType& target_find(const std::string& name) {
  auto lower = [](std::string v) {
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return v;
  };
  for (const TargetType& tt : kTargets)
    if (lower(tt.name) == lower(name)) return tt;
  error_throw(fmt::format("unknown quantisation type '{}'", name), "aigc quantize --type",
              "one of " + targets_list());
}

// llama.cpp's use_more_bits: the first and last eighth of n layers and every third one between.
bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Where a mix is in the file: attn_v matrices seen and in all, ffn_down seen and layers.
struct MixState {
  int v = 0, n_v = 0, down = 0, n_layer = 0;
};

// The type the target gives matrix `name` (not the output matrix), before the row-length fallback.
DType mix_type(const TargetType& target, std::string_view name, MixState& st) {
  DType t = target.type;
  const bool q4 = target.type == DType::Q4_K;
  if (name.find("attn_v.weight") != std::string_view::npos) {
    if (target.mix == Mix::M && more_bits(st.v, st.n_v)) t = DType::Q6_K;
    else if (target.mix == Mix::S && q4 && st.v < 4) t = DType::Q5_K;
    ++st.v;
  } else if (name.find("ffn_down") != std::string_view::npos) {
    if (target.mix == Mix::M && more_bits(st.down, st.n_layer)) t = DType::Q6_K;
    else if (target.mix == Mix::S && q4 && st.down < st.n_layer / 8) t = DType::Q5_K;
    ++st.down;
  } else if (name.find("attn_qkv.weight") != std::string_view::npos && target.mix == Mix::M) {
    t = q4 ? DType::Q5_K : DType::Q6_K;
  }
  return t;
}

bool row_fits(DType t, int64_t k) { return k % dtype_traits(t).block_size == 0; }

// The type a 2-d float weight [N, K] becomes (t: the target's type for it); src keeps its own
// type when nothing fits.
DType weight_type(DType t, bool sensitive, int64_t k, DType src) {
  if (sensitive && t != DType::Q8_0 && t != DType::Q6_K) t = DType::Q6_K;
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

// Progress on stderr: on a terminal one line redrawn per tensor, then (unless quiet) a summary.
struct QuantizeProgress {
  bool quiet, tty = isatty(STDERR_FILENO) != 0;
  Clock::time_point t0 = Clock::now();
  void tensor(size_t i, size_t n, const std::string& name, DType from, DType to) const {
    if (quiet || !tty) return;
    std::fprintf(stderr, "\r\033[K[%zu/%zu] %s: %s -> %s", i + 1, n, name.c_str(), std::string(dtype_name(from)).c_str(),
                 std::string(dtype_name(to)).c_str());
  }
  void done(const std::string& out, const TargetType& target, size_t n, uint64_t bytes_in, uint64_t bytes_out) const {
    if (quiet) return;
    if (tty) std::fprintf(stderr, "\r\033[K");
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::fprintf(stderr, "aigc: wrote %s (%s): %zu tensors, %.1f MiB -> %.1f MiB in %.1f s\n", out.c_str(), target.name, n,
                 bytes_in / 1048576.0, bytes_out / 1048576.0, s);
  }
};

void quantize_file(const std::string& in, const std::string& out, const TargetType& target, bool quiet) {
  const QuantizeProgress progress{quiet};
  const GgufFile f = GgufFile::open(in);
  GgufWriter w;
  for (const GgufKV& kv : f.metadata()) {
    if (kv.key == "general.file_type" || kv.key == "general.quantization_version") continue;
    w.metadata_add(kv.key, kv.value);
  }
  w.metadata_add("general.quantization_version", uint32_t{2});
  w.metadata_add("general.file_type", target.ftype);

  const bool has_output = f.tensor_info_find("output.weight") != nullptr;
  MixState mix;
  for (const TensorInfo& info : f.tensor_infos()) {
    const std::string_view n = info.name;
    if (n.find("attn_v.weight") != n.npos || n.find("attn_qkv.weight") != n.npos || n.find("attn_kv_b.weight") != n.npos)
      ++mix.n_v;
    if (n.find("ffn_down") != n.npos) ++mix.n_layer;  // the layer count when block_count is absent
  }
  const std::string arch = f.find("general.architecture") ? f.get_string("general.architecture") : "";
  if (!arch.empty() && f.find(arch + ".block_count"))
    mix.n_layer = static_cast<int>(std::min<uint64_t>(f.get_uint(arch + ".block_count"), 1 << 20));
  uint64_t bytes_in = 0, bytes_out = 0;
  const size_t n_tensors = f.tensor_infos().size();
  for (size_t i = 0; i < n_tensors; ++i) {
    const TensorInfo& info = f.tensor_infos()[i];
    bytes_in += info.nbytes;
    if (!info.type)
      error_throw(fmt::format("tensor '{}' has type {}, which aigc cannot convert", info.name, info.type_name), in);
    const Tensor src = f.tensor(info.name);
    const DType st = src.type();
    const bool is_float = st == DType::F32 || st == DType::F16 || st == DType::BF16;
    if (!is_float) {  // already quantised, or integer data: as it is
      w.tensor_add(info.name, src);
      bytes_out += info.nbytes;
      continue;
    }
    DType t = DType::F32;
    if (src.ndim() == 2 && ends_with(info.name, "weight")) {
      const bool sensitive = info.name == "output.weight" || (!has_output && info.name == "token_embd.weight");
      t = weight_type(sensitive ? target.type : mix_type(target, info.name, mix), sensitive, src.size(1), st);
    }
    log_info("{}: {} {} -> {}", info.name, dtype_name(st), src.shape_str(), dtype_name(t));
    progress.tensor(i, n_tensors, info.name, st, t);
    const Tensor dst = t == st ? src : tensor_convert(src, t);
    bytes_out += dst.nbytes();
    w.tensor_add(info.name, dst);
  }
  w.write(out);
  progress.done(out, target, n_tensors, bytes_in, bytes_out);
}

}  // namespace

void command_quantize_register(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Write a copy of a GGUF model with its weight matrices quantised");
  auto in = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>();
  auto quiet = std::make_shared<bool>(false);
  cmd->add_option("IN", *in, "Input GGUF file (f32 / f16 / bf16 weights)")->required();
  cmd->add_option("OUT", *out, "Output GGUF file")->required();
  cmd->add_option("--type", *type,
                  "Target type: " + targets_list() +
                      " (the _S / _M mixes give some matrices more bits, as llama.cpp's Q4_K_M etc.; case does not matter)")
      ->required();
  cmd->add_flag("-q,--quiet", *quiet, "No progress or summary on stderr");
  cmd->callback([in, out, type, quiet]() {
    const TargetType& target = target_find(*type);
    quantize_file(*in, *out, target, *quiet);
  });
}

}  // namespace aigc::cli
