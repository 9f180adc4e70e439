#include "image/sd_parameters.h"

#include "image/sd_model.h"
#include "image/sd_pipeline.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace aigc::image {

namespace {

bool needs_quote(std::string_view v) {
  return v.find(',') != std::string_view::npos || v.find(':') != std::string_view::npos ||
         v.find('"') != std::string_view::npos || v.find('\n') != std::string_view::npos;
}

std::string quote(std::string_view v) {
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\', q += c;
    else if (c == '\n') q += "\\n";
    else q += c;
  }
  return q + "\"";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "Key: value, Key2: "quoted, value", ..." -> pairs. Returns false when the line is not of that form.
bool fields_parse(std::string_view line, std::vector<std::pair<std::string, std::string>>& out) {
  std::vector<std::pair<std::string, std::string>> f;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const size_t colon = line.find(':', i);
    if (colon == std::string_view::npos) return false;
    std::string key(trim(line.substr(i, colon - i)));
    if (key.empty() || key.find(',') != std::string::npos) return false;
    i = colon + 1;
    while (i < line.size() && line[i] == ' ') ++i;
    std::string value;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        const char c = line[i++];
        if (c == '\\' && i < line.size()) {
          const char e = line[i++];
          value += e == 'n' ? '\n' : e;
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return false;
      while (i < line.size() && line[i] != ',') ++i;
    } else {
      const size_t comma = line.find(',', i);
      const size_t end = comma == std::string_view::npos ? line.size() : comma;
      value = std::string(trim(line.substr(i, end - i)));
      i = end;
    }
    if (i < line.size() && line[i] == ',') ++i;
    f.emplace_back(std::move(key), std::move(value));
  }
  if (f.empty()) return false;
  out = std::move(f);
  return true;
}

}  // namespace

const std::string* SdParameters::field(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

std::string sd_parameters_format(const SdParameters& p) {
  std::string s = p.prompt;
  if (!p.negative_prompt.empty()) s += "\nNegative prompt: " + p.negative_prompt;
  s += "\n";
  for (size_t i = 0; i < p.fields.size(); ++i) {
    const auto& [k, v] = p.fields[i];
    s += (i ? ", " : "") + k + ": " + (needs_quote(v) ? quote(v) : v);
  }
  return s;
}

SdParameters sd_parameters_parse(std::string_view text) {
  SdParameters p;
  std::vector<std::string_view> lines;
  for (size_t i = 0;;) {
    const size_t nl = text.find('\n', i);
    lines.push_back(text.substr(i, nl == std::string_view::npos ? std::string_view::npos : nl - i));
    if (nl == std::string_view::npos) break;
    i = nl + 1;
  }
  // The last line holds the fields when it parses as such and has a "Steps" key (webui's test).
  if (!lines.empty()) {
    std::vector<std::pair<std::string, std::string>> f;
    if (fields_parse(lines.back(), f)) {
      bool steps = false;
      for (const auto& kv : f) steps = steps || kv.first == "Steps";
      if (steps) {
        p.fields = std::move(f);
        lines.pop_back();
      }
    }
  }
  bool negative = false;
  std::vector<std::string_view> pos, neg;
  for (std::string_view l : lines) {
    if (!negative && l.substr(0, 17) == "Negative prompt: ") {
      negative = true;
      neg.push_back(l.substr(17));
    } else {
      (negative ? neg : pos).push_back(l);
    }
  }
  p.prompt = fmt::format("{}", fmt::join(pos, "\n"));
  p.negative_prompt = fmt::format("{}", fmt::join(neg, "\n"));
  p.prompt = std::string(trim(p.prompt));
  p.negative_prompt = std::string(trim(p.negative_prompt));
  return p;
}

std::string_view sd_sampler_a1111_name(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::Euler: return "Euler";
    case SamplerKind::EulerAncestral: return "Euler a";
    case SamplerKind::Heun: return "Heun";
    case SamplerKind::Dpmpp2m: return "DPM++ 2M";
    case SamplerKind::Dpmpp2mKarras: return "DPM++ 2M Karras";
    case SamplerKind::Ddim: return "DDIM";
    case SamplerKind::Ddpm: return "DDPM";
    case SamplerKind::Lcm: return "LCM";
  }
  return "Euler a";
}

namespace {
std::string param_number(double v) { return fmt::format("{:g}", v); }
}  // namespace

SdParameters sd_parameters_of(const SdGenerateParams& p, const SdModelInfo& info, uint64_t seed, int batch_pos) {
  SdParameters s;
  s.prompt = p.prompt;
  s.negative_prompt = p.negative_prompt;
  auto add = [&](const char* k, std::string v) { s.fields.emplace_back(k, std::move(v)); };
  add("Steps", std::to_string(p.sample.steps));
  add("Sampler", std::string(sd_sampler_a1111_name(p.sample.sampler)));
  switch (p.sample.schedule) {
    case SigmaSchedule::Default: break;
    case SigmaSchedule::Normal: add("Schedule type", "Normal"); break;
    case SigmaSchedule::Karras: add("Schedule type", "Karras"); break;
    case SigmaSchedule::Trailing: add("Schedule type", "SGM Uniform"); break;
  }
  add("CFG scale", param_number(p.sample.cfg_scale));
  add("Seed", std::to_string(seed));
  add("Size", fmt::format("{}x{}", p.width, p.height));
  add("Model", info.name);
  if (p.init_image.defined()) add("Denoising strength", param_number(p.strength));
  if (p.mask.defined()) add("Mask", "yes");
  if (p.sample.sampler == SamplerKind::Ddim && p.sample.eta > 0) add("Eta", param_number(p.sample.eta));
  const int clip_skip = p.clip_skip > 0 ? p.clip_skip : info.clip_skip_default;
  if (clip_skip != 1) add("Clip skip", std::to_string(clip_skip));
  if (p.hires_scale > 1) {
    if (!p.init_image.defined()) add("Denoising strength", param_number(p.hires_strength));
    add("Hires upscale", std::to_string(p.hires_scale));
    add("Hires steps", std::to_string(p.hires_steps > 0 ? p.hires_steps : p.sample.steps));
    add("Hires upscaler", p.hires_nearest ? "Latent (nearest)" : "Latent");
  }
  if (p.batch_size > 1) {
    add("Batch size", std::to_string(p.batch_size));
    add("Batch pos", std::to_string(batch_pos));
  }
  if (info.prediction == Prediction::V) add("Prediction", "v");
  if (p.taesd && p.taesd_final) add("VAE", "TAESD");
  add("Version", "aigc " AIGC_VERSION);
  return s;
}

}  // namespace aigc::image
