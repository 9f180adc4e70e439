// Reading and writing the pixel-diffusion checkpoint (see pixel_diffusion_file.h).
#include "image/pixel_diffusion_file.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <utility>
#include <vector>
#include <set>

#include "core/error.h"
#include "formats/safetensors.h"

namespace aigc::image {

namespace {

using nlohmann::json;

json config_json(const PixelDiffusionConfig& c) {
  const train::UnetConfig& u = c.unet;
  return json{{"image", u.image},       {"ch", u.ch},
              {"groups", u.groups},     {"t_dim", u.t_dim},
              {"text_vocab", u.text_vocab}, {"text_len", u.text_len},
              {"text_dim", u.text_dim}, {"heads", u.heads},
              {"levels", u.levels},     {"ch1", u.ch1},   {"ch2", u.ch2},
              {"eps", u.eps},
              {"schedule", {{"kind", "linear"}, {"beta_start", c.schedule.beta_start},
                            {"beta_end", c.schedule.beta_end}, {"steps", c.schedule.steps}}},
              {"prediction", train::diffusion_target_name(c.prediction)}};
}

int64_t int_field(const json& j, const char* key, int64_t lo, int64_t hi, const std::string& where) {
  if (!j.contains(key) || !j[key].is_number_integer())
    error_throw(fmt::format("pixel-diffusion config: \"{}\" missing or not an integer", key), where,
                "the file is damaged or was not written by `aigc train image`");
  const int64_t v = j[key].get<int64_t>();
  if (v < lo || v > hi)
    error_throw(fmt::format("pixel-diffusion config: \"{}\" = {} is outside [{}, {}]", key, v, lo, hi), where,
                "the file is damaged or was not written by `aigc train image`");
  return v;
}

// Fields added after the first files: absent means the first version's value.
int64_t int_field_or(const json& j, const char* key, int64_t absent, int64_t lo, int64_t hi, const std::string& where) {
  return j.contains(key) ? int_field(j, key, lo, hi, where) : absent;
}

double num_field(const json& j, const char* key, double lo, double hi, const std::string& where) {
  if (!j.contains(key) || !j[key].is_number())
    error_throw(fmt::format("pixel-diffusion config: \"{}\" missing or not a number", key), where,
                "the file is damaged or was not written by `aigc train image`");
  const double v = j[key].get<double>();
  if (!(v >= lo && v <= hi))
    error_throw(fmt::format("pixel-diffusion config: \"{}\" = {} is outside [{}, {}]", key, v, lo, hi), where,
                "the file is damaged or was not written by `aigc train image`");
  return v;
}

PixelDiffusionConfig config_parse(const SafetensorsFile& f, const std::string& where) {
  const auto& md = f.metadata();
  const auto cfg_it = md.find("aigc.config"), vocab_it = md.find("aigc.vocab");
  if (cfg_it == md.end() || vocab_it == md.end())
    error_throw("pixel-diffusion checkpoint without \"aigc.config\" or \"aigc.vocab\" metadata", where,
                "write it with `aigc train image`");
  const json j = json::parse(cfg_it->second, nullptr, false);
  const json v = json::parse(vocab_it->second, nullptr, false);
  if (j.is_discarded() || !j.is_object()) error_throw("\"aigc.config\" is not a JSON object", where, "the file is damaged");
  if (v.is_discarded() || !v.is_array()) error_throw("\"aigc.vocab\" is not a JSON array", where, "the file is damaged");
  PixelDiffusionConfig c;
  train::UnetConfig& u = c.unet;
  u.image = int_field(j, "image", 2, 4096, where);
  u.ch = int_field(j, "ch", 1, 4096, where);
  u.groups = int_field(j, "groups", 1, 4096, where);
  u.t_dim = int_field(j, "t_dim", 2, 65536, where);
  u.text_vocab = int_field(j, "text_vocab", 2, 1 << 20, where);
  u.text_len = int_field(j, "text_len", 1, 4096, where);
  u.text_dim = int_field(j, "text_dim", 1, 65536, where);
  u.heads = int_field(j, "heads", 1, 4096, where);
  u.eps = static_cast<float>(num_field(j, "eps", 1e-12, 1.0, where));
  u.levels = int_field_or(j, "levels", 1, 1, 2, where);
  u.ch1 = int_field_or(j, "ch1", 0, 0, 4096, where);
  u.ch2 = int_field_or(j, "ch2", 0, 0, 4096, where);
  const int64_t c1 = train::unet_ch1(u), c2 = train::unet_ch2(u), mult = train::unet_size_multiple(u);
  if (u.image % mult != 0 || u.ch % u.groups != 0 || c1 % u.groups != 0 || c2 % u.groups != 0 || c1 % u.heads != 0 ||
      c2 % u.heads != 0 || u.t_dim % 2 != 0 || (u.levels == 1 && u.ch2 != 0))
    error_throw(fmt::format("pixel-diffusion config: image {} must be a multiple of {}, ch {} / ch1 {} / ch2 {} "
                            "divisible by groups {}, ch1 and ch2 by heads {} (ch2 0 with levels 1), t_dim {} even",
                            u.image, mult, u.ch, c1, c2, u.groups, u.heads, u.t_dim),
                where, "the file is damaged");
  if (!j.contains("schedule") || !j["schedule"].is_object())
    error_throw("pixel-diffusion config: \"schedule\" missing", where, "the file is damaged");
  const json& s = j["schedule"];
  if (!s.contains("kind") || s["kind"] != "linear")
    error_throw("pixel-diffusion config: schedule kind is not \"linear\"", where,
                "only the DDPM linear-beta schedule is supported");
  c.schedule.beta_start = num_field(s, "beta_start", 1e-8, 0.5, where);
  c.schedule.beta_end = num_field(s, "beta_end", c.schedule.beta_start, 0.999, where);
  c.schedule.steps = int_field(s, "steps", 2, 100000, where);
  if (j.contains("prediction") && j["prediction"] != "epsilon" && j["prediction"] != "v")
    error_throw("pixel-diffusion config: \"prediction\" must be \"epsilon\" or \"v\"", where, "the file is damaged");
  if (j.contains("prediction") && j["prediction"] == "v") c.prediction = train::DiffusionTarget::V;
  for (const json& w : v) {
    if (!w.is_string()) error_throw("\"aigc.vocab\" holds a non-string", where, "the file is damaged");
    c.vocab.push_back(w.get<std::string>());
  }
  if (static_cast<int64_t>(c.vocab.size()) != u.text_vocab)
    error_throw(fmt::format("\"aigc.vocab\" has {} words but the config says text_vocab {}", c.vocab.size(), u.text_vocab),
                where, "the file is damaged");
  if (auto t = md.find("aigc.training"); t != md.end()) c.training_json = t->second;
  return c;
}

}  // namespace

bool pixel_diffusion_is(const SafetensorsFile& file) {
  const auto it = file.metadata().find("aigc.model");
  return it != file.metadata().end() && it->second == kPixelDiffusionModel;
}

PixelDiffusionFile pixel_diffusion_read(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  return pixel_diffusion_parse(f, path);
}

PixelDiffusionFile pixel_diffusion_parse(const SafetensorsFile& f, const std::string& path) {
  if (!pixel_diffusion_is(f))
    error_throw("not a pixel-diffusion checkpoint (no \"aigc.model\": \"pixel-diffusion\" metadata)", path,
                "write one with `aigc train image`");
  PixelDiffusionFile out;
  out.config = config_parse(f, path);
  // Before the graph is built (it allocates every parameter), the config's widths must match the
  // file's own tensors: a hostile config (ch 4096 in a small file) cannot make us allocate gigabytes.
  const train::UnetConfig& u = out.config.unet;
  const int64_t c1 = train::unet_ch1(u), c2 = train::unet_ch2(u);
  const std::pair<const char*, std::vector<int64_t>> sizing[] = {
      {"in.w", {u.ch, 3, 3, 3}},           {"res0.conv1.w", {u.ch, u.ch, 3, 3}}, {"time.w1", {u.ch, u.t_dim}},
      {"text.tok", {u.text_vocab, u.text_dim}}, {"text.pos", {u.text_len, u.text_dim}},
      {"res1.conv1.w", {c1, u.ch, 3, 3}},  {"res3.conv1.w", {c2, c1, 3, 3}}};
  for (const auto& [name, shape] : sizing) {
    if (u.levels == 1 && std::strcmp(name, "res3.conv1.w") == 0) continue;  // only with levels 2
    const TensorInfo* info = f.find(name);
    if (!info) error_throw(fmt::format("parameter \"{}\" missing", name), path, "the file is incomplete or damaged");
    if (info->shape != shape)
      error_throw(fmt::format("parameter \"{}\" is [{}] but the config needs [{}]", name, fmt::join(info->shape, ", "),
                              fmt::join(shape, ", ")),
                  path, "the file does not match its own config");
  }
  // The graph declares the names and shapes; parameters do not depend on the image size, so the
  // probe is built at the smallest one (2 x 2, 4 x 4 with levels 2; batch 1): cheap for any model.
  train::UnetConfig probe_cfg = u;
  probe_cfg.image = train::unet_size_multiple(u);
  train::UnetTrainer probe(probe_cfg, 1);
  std::set<std::string> expected;
  for (const train::Graph::ParamInfo& p : probe.graph().params()) {
    expected.insert(p.name);
    const TensorInfo* info = f.find(p.name);
    if (!info) error_throw(fmt::format("parameter \"{}\" missing", p.name), path, "the file is incomplete or damaged");
    const Tensor& want = probe.graph().value(p.var);
    Tensor t = f.tensor(p.name);
    if (t.type() != DType::F32 || !t.same_shape(want) || !t.is_contiguous())
      error_throw(fmt::format("parameter \"{}\" is {} but the config needs {}", p.name, t.shape_str(), want.shape_str()),
                  path, "the file does not match its own config");
    Tensor copy = Tensor::empty(DType::F32, want.shape());
    std::memcpy(copy.ptr<float>(), t.ptr<float>(), static_cast<size_t>(copy.numel()) * 4);
    out.params.emplace(p.name, std::move(copy));
  }
  for (const TensorInfo& i : f.tensor_infos())
    if (!expected.count(i.name))
      error_throw(fmt::format("unexpected tensor \"{}\"", i.name), path, "the file does not match its config");
  return out;
}

void pixel_diffusion_write(const std::string& path, const PixelDiffusionConfig& config, train::UnetTrainer& trainer) {
  std::map<std::string, Tensor> tensors;
  for (const train::Graph::ParamInfo& p : trainer.graph().params()) tensors.emplace(p.name, trainer.graph().value(p.var));
  AIGC_CHECK(static_cast<int64_t>(config.vocab.size()) == config.unet.text_vocab,
             "pixel_diffusion_write: vocab has {} words, text_vocab is {}", config.vocab.size(), config.unet.text_vocab);
  std::map<std::string, std::string> md{{"aigc.model", kPixelDiffusionModel},
                                        {"aigc.config", config_json(config).dump()},
                                        {"aigc.vocab", json(config.vocab).dump()},
                                        {"aigc.training", config.training_json}};
  safetensors_write(path, tensors, md);
}

void pixel_diffusion_params_load(const PixelDiffusionFile& file, train::UnetTrainer& trainer) {
  for (const train::Graph::ParamInfo& p : trainer.graph().params()) {
    const auto it = file.params.find(p.name);
    Tensor& dst = trainer.graph().value(p.var);
    AIGC_CHECK(it != file.params.end() && it->second.same_shape(dst),
               "pixel_diffusion_params_load: parameter {} missing or of another shape", p.name);
    std::memcpy(dst.ptr<float>(), it->second.ptr<float>(), static_cast<size_t>(p.numel) * 4);
  }
}

}  // namespace aigc::image
