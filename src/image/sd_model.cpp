#include "image/sd_model.h"

#include <fmt/format.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend/cpu/conv2d_packed.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/log.h"
#include "formats/safetensors.h"
#include "image/weight_source.h"

namespace aigc::image {

namespace fs = std::filesystem;

namespace {

constexpr const char* kUnetPrefix = "model.diffusion_model.";
constexpr const char* kVaePrefix = "first_stage_model.";
constexpr const char* kClipHfPrefix = "cond_stage_model.transformer.";
constexpr const char* kClipOpenPrefix = "cond_stage_model.model.";

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool contains(std::string_view s, std::string_view p) { return s.find(p) != std::string_view::npos; }

const TensorInfo* info_find(const std::vector<TensorInfo>& ts, std::string_view name) {
  for (const TensorInfo& t : ts)
    if (t.name == name) return &t;
  return nullptr;
}

[[noreturn]] void unsupported(const std::string& what, const std::string& where, const std::string& found) {
  error_throw(fmt::format("{} is not supported (yet): only Stable Diffusion 1.x and 2.x are", what), where,
              fmt::format("detected from {}; use an SD 1.x / 2.x checkpoint (e.g. v1-5-pruned-emaonly.safetensors)",
                          found));
}

// SDXL, SD3, Flux and other things that are not SD 1.x / 2.x, by their characteristic keys.
void foreign_check(const std::vector<TensorInfo>& ts, const std::string& where) {
  for (const TensorInfo& t : ts) {
    const std::string& n = t.name;
    if (contains(n, "joint_blocks.")) unsupported("Stable Diffusion 3", where, fmt::format("tensor '{}'", n));
    if (contains(n, "double_blocks.") || contains(n, "single_blocks."))
      unsupported("Flux", where, fmt::format("tensor '{}'", n));
    if (starts_with(n, "conditioner.embedders.") || starts_with(n, "add_embedding."))
      unsupported("SDXL", where, fmt::format("tensor '{}'", n));
    if (starts_with(n, "lora_") || contains(n, ".lora_down.") || contains(n, ".lora_A."))
      error_throw("this is a LoRA, not a full checkpoint", where,
                  "LoRAs are not supported yet; pass a full SD 1.x / 2.x checkpoint");
  }
}

std::string file_slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) error_throw("cannot read the file", path, "check the path and its permissions");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json json_read(const std::string& path) {
  try {
    return nlohmann::json::parse(file_slurp(path));
  } catch (const nlohmann::json::exception& e) {
    error_throw(fmt::format("malformed JSON: {}", e.what()), path, "the diffusers folder is damaged");
  }
}

// A diffusers component's weights: *.safetensors (plain, then fp16 variant) or a sharded index.
std::string diffusers_weights_find(const fs::path& folder, const char* component, const char* base) {
  const fs::path dir = folder / component;
  if (!fs::is_directory(dir))
    error_throw(fmt::format("the diffusers folder has no {}/ folder", component), folder.string(),
                "a Stable Diffusion folder holds unet/, vae/, text_encoder/ and tokenizer/");
  for (const std::string& name :
       {std::string(base) + ".safetensors", std::string(base) + ".fp16.safetensors",
        std::string(base) + ".safetensors.index.json", std::string(base) + ".fp16.safetensors.index.json"})
    if (fs::is_regular_file(dir / name)) return (dir / name).string();
  for (const std::string& name : {std::string(base) + ".bin", std::string(base) + ".fp16.bin"})
    if (fs::exists(dir / name))
      error_throw("pickled PyTorch weights (.bin) are not supported", (dir / name).string(),
                  "convert them to safetensors (e.g. diffusers' save_pretrained(safe_serialization=True))");
  error_throw(fmt::format("no {}.safetensors in {}/", base, component), dir.string(),
              "download the safetensors weights of the diffusers folder");
}

double tensor_std(const SafetensorsFile& f, const std::string& name) {
  const Tensor t = f.tensor(name);
  const int64_t n = t.numel();
  if (n < 2) return 0.0;
  std::vector<double> v(static_cast<size_t>(n));
  const uint8_t* p = static_cast<const uint8_t*>(t.data());
  if (!t.is_contiguous()) return 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (t.type() == DType::F32) { float x; std::memcpy(&x, p + 4 * i, 4); v[i] = x; }
    else if (t.type() == DType::F16) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); v[i] = f16_to_f32(h); }
    else if (t.type() == DType::BF16) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); v[i] = bf16_to_f32(h); }
    else return 0.0;
  }
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(n);
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / static_cast<double>(n - 1));  // torch.std: unbiased
}

// Mapped file pages and the resident set: a component built from a mapped file reads (to convert
// or pack) every page of its weights, and those pages would stay in this process's resident set
// for as long as any view keeps the mapping alive (packed layers keep one of their source weight),
// i.e. the component's copies + the file part. MADV_DONTNEED drops them from the page tables: the
// mapping is private and read-only, so a page touched again (even one being read at that moment)
// is refaulted unchanged from the page cache. Safe at any time, so it also runs during the load.

// The page-aligned address span of the component's tensors in the mapping (pages of other
// components inside it are harmless to drop too).
std::pair<uintptr_t, uintptr_t> mapped_span(const SafetensorsFile& f, std::string_view prefix) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (const TensorInfo& ti : f.tensor_infos()) {
    if (!starts_with(ti.name, prefix)) continue;
    const std::span<const uint8_t> bytes = f.tensor_bytes(ti);
    if (bytes.empty()) continue;
    lo = std::min(lo, reinterpret_cast<uintptr_t>(bytes.data()) & ~(page - 1));
    hi = std::max(hi, (reinterpret_cast<uintptr_t>(bytes.data()) + bytes.size() + page - 1) & ~(page - 1));
  }
  return lo < hi ? std::pair{lo, hi} : std::pair<uintptr_t, uintptr_t>{0, 0};
}

// While a component loads (the object's lifetime), the pages it has read are dropped every 20 ms,
// and once more at the end: the transient peak is the component's copies plus the pages read in the
// last 20 ms, not plus the whole file part it came from. Off for --no-mmap (heap memory would be
// zeroed by MADV_DONTNEED).
class MappedPagesTrimmer {
 public:
  MappedPagesTrimmer(const SafetensorsFile& f, std::string_view prefix, bool enabled) {
    if (!enabled) return;
    span_ = mapped_span(f, prefix);
    if (span_.second <= span_.first) return;
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      while (!cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stop_; }))
        ::madvise(reinterpret_cast<void*>(span_.first), span_.second - span_.first, MADV_DONTNEED);
    });
  }
  ~MappedPagesTrimmer() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
    ::madvise(reinterpret_cast<void*>(span_.first), span_.second - span_.first, MADV_DONTNEED);
  }
  MappedPagesTrimmer(const MappedPagesTrimmer&) = delete;
  MappedPagesTrimmer& operator=(const MappedPagesTrimmer&) = delete;

 private:
  std::pair<uintptr_t, uintptr_t> span_{0, 0};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace

void sd_file_kind_check(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) error_throw("cannot open the model", path, "check the path (a .safetensors file or a diffusers folder)");
  unsigned char b[16] = {};
  f.read(reinterpret_cast<char*>(b), sizeof b);
  const auto got = f.gcount();
  const std::string ext = fs::path(path).extension().string();
  if (got >= 4 && std::memcmp(b, "GGUF", 4) == 0)
    error_throw("GGUF image models are not supported (yet)", path,
                "use the original .safetensors checkpoint (or a diffusers folder)");
  const bool zip = got >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
  const bool pickle = got >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5;
  if (zip || pickle || ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin")
    error_throw(fmt::format("pickled PyTorch checkpoints ({}) are not supported", ext.empty() ? "pickle" : ext), path,
                "loading pickles can run arbitrary code; use the .safetensors version of the model");
  if (got < 9 || b[8] != '{')
    error_throw("not a safetensors file", path, "pass a .safetensors checkpoint or a diffusers folder");
}

SdModelInfo sd_detect_single_file(const std::vector<TensorInfo>& ts, const std::string& where) {
  foreign_check(ts, where);
  SdModelInfo info;
  info.layout = KeyLayout::CompVis;
  const TensorInfo* conv_in = info_find(ts, std::string(kUnetPrefix) + "input_blocks.0.0.weight");
  if (!conv_in) {
    if (info_find(ts, "encoder.conv_in.weight") || info_find(ts, "decoder.conv_in.weight"))
      error_throw("this is a VAE file, not a full checkpoint", where,
                  "pass the full SD checkpoint with -m (separate VAE files are not supported yet)");
    if (info_find(ts, "conv_in.weight") && info_find(ts, "down_blocks.0.resnets.0.conv1.weight"))
      error_throw("this is a diffusers UNet file, not a single-file checkpoint", where,
                  "pass the diffusers folder (the one holding model_index.json) with -m");
    error_throw(fmt::format("not a Stable Diffusion checkpoint: no tensor '{}input_blocks.0.0.weight'", kUnetPrefix),
                where, "pass an SD 1.x / 2.x .safetensors checkpoint (CompVis key names) or a diffusers folder");
  }
  if (conv_in->shape.size() != 4)
    error_throw(fmt::format("tensor '{}' has shape rank {}, expected 4", conv_in->name, conv_in->shape.size()), where);
  info.unet_in_channels = conv_in->shape[1];
  if (info.unet_in_channels != 4 && info.unet_in_channels != 9)
    error_throw(fmt::format("UNet with {} input channels is not supported", info.unet_in_channels), where,
                "4 (text-to-image) or 9 (inpainting) channels are; depth / instruct-pix2pix models are not yet");
  info.inpainting = info.unet_in_channels == 9;

  // Context width from the first cross-attention.
  int64_t ctx = 0;
  for (const TensorInfo& t : ts)
    if (starts_with(t.name, kUnetPrefix) && contains(t.name, ".attn2.to_k.weight") && t.shape.size() == 2) {
      ctx = t.shape[1];
      break;
    }
  if (ctx == 0)
    error_throw("the UNet has no cross-attention (no '*.attn2.to_k.weight')", where,
                "this is not a text-conditioned Stable Diffusion UNet");
  if (ctx == 2048 || ctx == 1280) unsupported("SDXL", where, fmt::format("a cross-attention context of {}", ctx));
  // A class / image embedding: SDXL's size conditioning, or SD 2.x unCLIP's image embedding.
  for (const TensorInfo& t : ts)
    if (starts_with(t.name, kUnetPrefix) && contains(t.name, ".label_emb."))
      unsupported(ctx == 1024 ? "SD 2.x unCLIP" : "SDXL", where, fmt::format("tensor '{}'", t.name));
  info.context_dim = ctx;

  const TensorInfo* hf = info_find(ts, std::string(kClipHfPrefix) + "text_model.embeddings.token_embedding.weight");
  const TensorInfo* oc = info_find(ts, std::string(kClipOpenPrefix) + "token_embedding.weight");
  if (hf && hf->shape.size() == 2) {
    info.family = SdFamily::Sd1;
    info.text_names = ClipKeyNames::HuggingFace;
    info.text_width = hf->shape[1];
  } else if (oc && oc->shape.size() == 2) {
    info.family = SdFamily::Sd2;
    info.text_names = ClipKeyNames::OpenClip;
    info.text_width = oc->shape[1];
    info.clip_skip_default = 2;  // ldm's FrozenOpenCLIPEmbedder(layer="penultimate")
  } else if (info_find(ts, std::string(kClipHfPrefix) + "embeddings.token_embedding.weight")) {
    error_throw("old-style text encoder keys (cond_stage_model.transformer.embeddings.*) are not supported", where,
                "re-save the checkpoint with current key names (cond_stage_model.transformer.text_model.*)");
  } else {
    error_throw("the checkpoint has no text encoder (cond_stage_model.transformer.text_model.* or "
                "cond_stage_model.model.*)",
                where, "pass a full checkpoint: UNet, VAE and text encoder in one file");
  }
  if (info.text_width != ctx)
    error_throw(fmt::format("text encoder width {} does not match the UNet's context {}", info.text_width, ctx),
                where, "the checkpoint mixes parts of different models");
  if (!info_find(ts, std::string(kVaePrefix) + "decoder.conv_in.weight"))
    error_throw("the checkpoint has no VAE (first_stage_model.decoder.*)", where,
                "pass a full checkpoint: UNet, VAE and text encoder in one file");
  return info;
}

bool sd_v_prediction_guess(const SafetensorsFile& file) {
  const std::string key = std::string(kUnetPrefix) + "output_blocks.11.1.transformer_blocks.0.norm1.bias";
  if (!file.find(key)) return false;
  return tensor_std(file, key) > 0.09;
}

std::string sd_tokenizer_find(const std::string& model_path, const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path))
      error_throw("the CLIP vocabulary file does not exist", explicit_path,
                  "pass bpe_simple_vocab_16e6.txt.gz or a tokenizer folder (vocab.json + merges.txt)");
    return explicit_path;
  }
  if (const char* env = std::getenv("AIGC_CLIP_VOCAB"); env && *env) {
    if (!fs::exists(env))
      error_throw("$AIGC_CLIP_VOCAB names a file that does not exist", env, "fix or unset AIGC_CLIP_VOCAB");
    return env;
  }
  std::vector<fs::path> dirs;
  fs::path model_dir = fs::absolute(fs::path(model_path)).parent_path();
  dirs.push_back(model_dir);
  for (fs::path d = model_dir; !d.empty(); d = d.parent_path()) {
    dirs.push_back(d / "shared" / "tokenizers" / "clip");
    if (d == d.parent_path()) break;
  }
  dirs.push_back(fs::current_path() / ".." / "shared" / "tokenizers" / "clip");
  std::vector<std::string> looked;
  for (const fs::path& d : dirs)
    for (const char* name : {"bpe_simple_vocab_16e6.txt.gz", "bpe_simple_vocab_16e6.txt"}) {
      const fs::path p = d / name;
      if (fs::is_regular_file(p)) return p.string();
      if (looked.size() < 4) looked.push_back(p.string());
    }
  error_throw("no CLIP tokenizer vocabulary found", fmt::format("looked at {}, ...", fmt::join(looked, ", ")),
              "pass --clip-vocab FILE (CLIP's bpe_simple_vocab_16e6.txt.gz) or set $AIGC_CLIP_VOCAB");
}

// ---- SdModel ----------------------------------------------------------------------------------------

struct SdModel::Impl {
  std::string path;
  SdModelOptions opt;
  SdModelInfo info;
  bool folder = false;
  // Diffusers: each component's weights file.
  std::string unet_file, vae_file, text_file;
  UNetConfig heads;
  int64_t text_heads = 0;
  ClipActivation text_activation = ClipActivation::Auto;  // diffusers: text_encoder/config.json hidden_act
  std::optional<ClipTokenizer> tokenizer;
  std::optional<ClipTextModel> text;
  std::optional<UNet> unet;
  std::optional<Vae> vae;
  bool vae_has_encoder = false;

  // Opened per component load and dropped after it, so that the mapping of the whole file is not
  // held while one component runs (loaded components keep what they still need through the
  // tensors' owners).
  std::shared_ptr<const SafetensorsFile> file_open(const std::string& file) const {
    return std::make_shared<const SafetensorsFile>(SafetensorsFile::open(file, opt.file));
  }

  void open_single() {
    const bool index = path.size() > 11 && path.substr(path.size() - 11) == ".index.json";  // sharded
    if (!index) sd_file_kind_check(path);
    const auto f = file_open(path);
    info = sd_detect_single_file(f->tensor_infos(), path);
    if (info.family == SdFamily::Sd2) {
      info.prediction = sd_v_prediction_guess(*f) ? Prediction::V : Prediction::Epsilon;
      info.prediction_detected = true;
    } else {
      info.prediction_detected = true;  // SD 1.x is always eps
    }
  }

  void open_folder() {
    folder = true;
    const fs::path dir(path);
    const fs::path index = dir / "model_index.json";
    if (!fs::is_regular_file(index))
      error_throw("the folder has no model_index.json", path,
                  "pass a diffusers Stable Diffusion folder or a single .safetensors checkpoint");
    const nlohmann::json mi = json_read(index.string());
    const std::string cls = mi.is_object() && mi.contains("_class_name") && mi["_class_name"].is_string()
                                ? mi["_class_name"].get<std::string>()
                                : std::string();
    if (contains(cls, "XL")) unsupported("SDXL", path, fmt::format("model_index.json's _class_name '{}'", cls));
    if (contains(cls, "StableDiffusion3")) unsupported("Stable Diffusion 3", path, fmt::format("_class_name '{}'", cls));
    if (contains(cls, "Flux")) unsupported("Flux", path, fmt::format("_class_name '{}'", cls));
    if (!cls.empty() && !starts_with(cls, "StableDiffusion"))
      error_throw(fmt::format("'{}' is not a Stable Diffusion pipeline", cls), index.string(),
                  "only StableDiffusion(Inpaint/Img2Img)Pipeline folders (SD 1.x / 2.x) are supported");
    if (fs::is_directory(dir / "transformer") && !fs::is_directory(dir / "unet"))
      unsupported("a transformer-based model (SD3 / Flux)", path, "its transformer/ folder");

    info.layout = KeyLayout::Diffusers;
    unet_file = diffusers_weights_find(dir, "unet", "diffusion_pytorch_model");
    vae_file = diffusers_weights_find(dir, "vae", "diffusion_pytorch_model");
    text_file = diffusers_weights_find(dir, "text_encoder", "model");

    const auto uf = file_open(unet_file);
    foreign_check(uf->tensor_infos(), unet_file);
    const TensorInfo* conv_in = uf->find("conv_in.weight");
    if (!conv_in || conv_in->shape.size() != 4)
      error_throw("the UNet has no 'conv_in.weight' of rank 4", unet_file, "the unet/ weights are damaged");
    info.unet_in_channels = conv_in->shape[1];
    if (info.unet_in_channels != 4 && info.unet_in_channels != 9)
      error_throw(fmt::format("UNet with {} input channels is not supported", info.unet_in_channels), unet_file,
                  "4 (text-to-image) or 9 (inpainting) channels are");
    info.inpainting = info.unet_in_channels == 9;
    for (const TensorInfo& t : uf->tensor_infos())
      if (contains(t.name, ".attn2.to_k.weight") && t.shape.size() == 2) {
        info.context_dim = t.shape[1];
        break;
      }
    if (info.context_dim == 2048 || info.context_dim == 1280)
      unsupported("SDXL", path, fmt::format("a cross-attention context of {}", info.context_dim));
    const auto tf = file_open(text_file);
    const TensorInfo* emb = tf->find("text_model.embeddings.token_embedding.weight");
    if (!emb || emb->shape.size() != 2)
      error_throw("the text encoder has no 'text_model.embeddings.token_embedding.weight'", text_file,
                  "the text_encoder/ weights are damaged or not a CLIP text model");
    info.text_width = emb->shape[1];
    info.text_names = ClipKeyNames::HuggingFace;

    // unet/config.json: heads (diffusers' "attention_head_dim" is the number of heads), proj kind.
    bool linear_proj = false;
    heads = UNetConfig{};
    const fs::path ucfg = dir / "unet" / "config.json";
    if (fs::is_regular_file(ucfg)) {
      const nlohmann::json c = json_read(ucfg.string());
      linear_proj = c.value("use_linear_projection", false);
      std::vector<int64_t> blocks = {320, 640, 1280, 1280};
      if (c.contains("block_out_channels") && c["block_out_channels"].is_array())
        blocks = c["block_out_channels"].get<std::vector<int64_t>>();
      nlohmann::json h = c.contains("num_attention_heads") && !c["num_attention_heads"].is_null()
                             ? c["num_attention_heads"]
                             : (c.contains("attention_head_dim") ? c["attention_head_dim"] : nlohmann::json(8));
      if (h.is_number_integer()) {
        heads.num_heads = h.get<int64_t>();
        heads.num_head_channels = -1;
      } else if (h.is_array() && !h.empty() && h[0].is_number_integer() && h[0].get<int64_t>() > 0 && !blocks.empty()) {
        heads.num_head_channels = blocks[0] / h[0].get<int64_t>();
      }
    }
    const bool sd2 = info.context_dim == 1024 || (info.context_dim != 768 && linear_proj);
    info.family = sd2 ? SdFamily::Sd2 : SdFamily::Sd1;
    if (!fs::is_regular_file(ucfg)) {
      if (sd2) heads.num_head_channels = 64;
    }
    // text_encoder/config.json: heads.
    const fs::path tcfg = dir / "text_encoder" / "config.json";
    if (fs::is_regular_file(tcfg)) {
      const nlohmann::json c = json_read(tcfg.string());
      if (c.contains("num_attention_heads") && c["num_attention_heads"].is_number_integer())
        text_heads = c["num_attention_heads"].get<int64_t>();
      const std::string act = c.contains("hidden_act") && c["hidden_act"].is_string() ? c["hidden_act"].get<std::string>()
                                                                                       : std::string();
      if (act == "quick_gelu") text_activation = ClipActivation::QuickGelu;
      else if (act == "gelu") text_activation = ClipActivation::Gelu;
    }
    // The diffusers SD 2.x text encoder already ends at the penultimate layer: clip skip 1.
    info.clip_skip_default = 1;

    const fs::path scfg = dir / "scheduler" / "scheduler_config.json";
    if (fs::is_regular_file(scfg)) {
      const nlohmann::json c = json_read(scfg.string());
      const std::string pt = c.value("prediction_type", std::string("epsilon"));
      if (pt == "v_prediction") info.prediction = Prediction::V;
      else if (pt == "epsilon") info.prediction = Prediction::Epsilon;
      else
        error_throw(fmt::format("prediction_type '{}' is not supported", pt), scfg.string(),
                    "epsilon and v_prediction are");
      info.prediction_detected = true;
      const std::string sp = c.value("timestep_spacing", std::string("leading"));
      info.spacing = sp == "trailing" ? TimestepSpacing::Trailing
                     : sp == "linspace" ? TimestepSpacing::Linspace
                                        : TimestepSpacing::Leading;
    }
    const fs::path tok = dir / "tokenizer";
    if (opt.clip_vocab.empty() && fs::is_regular_file(tok / "vocab.json") && fs::is_regular_file(tok / "merges.txt"))
      opt.clip_vocab = tok.string();
  }

  void open() {
    if (fs::is_directory(path)) {
      try {
        open_folder();
      } catch (const nlohmann::json::exception& e) {  // a config value of the wrong JSON type
        error_throw(fmt::format("unexpected value in a config file: {}", e.what()), path,
                    "the diffusers folder's config.json files are damaged");
      }
    }
    else if (!fs::exists(path))
      error_throw("the model does not exist", path, "pass a .safetensors checkpoint or a diffusers folder with -m");
    else open_single();
    if (!folder) {
      heads = UNetConfig{};
      if (info.family == SdFamily::Sd2) heads.num_head_channels = 64;
      else heads.num_heads = 8;
    }
    if (opt.unet_heads) {
      heads.num_heads = opt.unet_heads->num_heads;
      heads.num_head_channels = opt.unet_heads->num_head_channels;
    }
    if (opt.text_heads > 0) text_heads = opt.text_heads;
    if (opt.prediction) {
      info.prediction = *opt.prediction;
      info.prediction_detected = true;
    }
    info.name = fs::path(path).filename().string();
    if (info.name.empty()) info.name = fs::path(path).parent_path().filename().string();
    if (!folder && info.name.size() > 12 && info.name.substr(info.name.size() - 12) == ".safetensors")
      info.name.resize(info.name.size() - 12);
    info.description = fmt::format("SD {} ({}{}), {}{}", info.family == SdFamily::Sd1 ? "1.x" : "2.x",
                                   info.prediction == Prediction::V ? "v-prediction" : "eps",
                                   opt.prediction ? ", as asked" : "",
                                   folder ? "diffusers folder" : "single file", info.inpainting ? ", inpainting" : "");
  }

  std::string prefix_of(const char* single) const { return folder ? std::string() : std::string(single); }
};

SdModel::SdModel() : impl_(std::make_unique<Impl>()) {}
SdModel::SdModel(SdModel&&) noexcept = default;
SdModel& SdModel::operator=(SdModel&&) noexcept = default;
SdModel::~SdModel() = default;

SdModel SdModel::open(const std::string& path, const SdModelOptions& options) {
  SdModel m;
  m.impl_->path = path;
  m.impl_->opt = options;
  m.impl_->open();
  log_info("model {}: {}", path, m.impl_->info.description);
  return m;
}

const SdModelInfo& SdModel::info() const { return impl_->info; }
const SdModelOptions& SdModel::options() const { return impl_->opt; }

const ClipTokenizer& SdModel::tokenizer() {
  Impl& m = *impl_;
  if (!m.tokenizer) {
    const std::string p = sd_tokenizer_find(m.path, m.opt.clip_vocab);
    log_info("tokenizer: {}", p);
    m.tokenizer.emplace(ClipTokenizer::load(p));
  }
  return *m.tokenizer;
}

ClipTextModel& SdModel::text_encoder() {
  Impl& m = *impl_;
  if (!m.text) {
    const auto f = m.file_open(m.folder ? m.text_file : m.path);
    const std::string prefix =
        m.folder ? std::string() : (m.info.text_names == ClipKeyNames::OpenClip ? kClipOpenPrefix : kClipHfPrefix);
    WeightSource w(f, prefix, "text encoder");
    MappedPagesTrimmer trim(*f, prefix, m.opt.file.use_mmap);
    m.text.emplace(ClipTextModel::load(w, m.info.text_names, m.opt.precision, m.text_heads, m.text_activation));
  }
  return *m.text;
}

UNet& SdModel::unet() {
  Impl& m = *impl_;
  if (!m.unet) {
    const auto f = m.file_open(m.folder ? m.unet_file : m.path);
    WeightSource w(f, m.prefix_of(kUnetPrefix), "UNet");
    MappedPagesTrimmer trim(*f, m.prefix_of(kUnetPrefix), m.opt.file.use_mmap);
    m.unet.emplace(UNet::load(w, m.info.layout, m.heads, m.opt.precision, m.opt.unet_type));
    // The load's temporaries (f32 / bf16 copies of each weight before packing) left holes in the
    // heap between the packed weights: ~70 MB resident for SD 1.5 until trimmed.
    ::malloc_trim(0);
  }
  return *m.unet;
}

Vae& SdModel::vae(bool with_encoder) {
  Impl& m = *impl_;
  if (m.vae && with_encoder && !m.vae_has_encoder) m.vae.reset();
  if (!m.vae) {
    const auto f = m.file_open(m.folder ? m.vae_file : m.path);
    WeightSource w(f, m.prefix_of(kVaePrefix), "VAE");
    MappedPagesTrimmer trim(*f, m.prefix_of(kVaePrefix), m.opt.file.use_mmap);
    m.vae.emplace(Vae::load(w, m.info.layout, m.opt.precision, with_encoder));
    m.vae_has_encoder = with_encoder;
  }
  return *m.vae;
}

// malloc_trim: glibc keeps freed blocks below its (growing) mmap threshold in the heap; a released
// component's hundreds of MB would otherwise stay in the resident set.
void SdModel::text_encoder_release() {
  impl_->text.reset();
  ::malloc_trim(0);
}
// The convolutions' per-thread staging (sized by the released component's largest layer) goes too.
void SdModel::unet_release() {
  impl_->unet.reset();
  ops::PackedConv2d::staging_release();
  ::malloc_trim(0);
}
void SdModel::vae_release() {
  impl_->vae.reset();
  ops::PackedConv2d::staging_release();
  ::malloc_trim(0);
}

}  // namespace aigc::image
