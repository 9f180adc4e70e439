// aigc eval image -m FILE: prompt adherence of a pixel-diffusion model trained on the shapes data set
// (train/shapes_dataset.h). N captions of the data set's grammar, drawn with a held-out data seed,
// one generated image each (image i with seed + i); the deterministic checker (shapes_check) decides
// whether each image matches its caption. Prints the match rate overall and per attribute (colour,
// shape, count, background; glyph accuracy separately), and images/s. --real runs the checker on
// the data set's own images instead: the checker's ceiling, the reference for the model's figure.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/builtin_models.h"
#include "cli/commands.h"
#include "core/error.h"
#include "formats/image.h"
#include "image/pixel_diffusion.h"
#include "image/sampler.h"
#include "train/shapes_dataset.h"

namespace aigc::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct EvalArgs {
  std::string model;
  int count = 200;
  uint64_t data_seed = 1000003;  // training runs use small seeds (default 1): a different stream
  bool glyphs = false, no_glyphs = false;
  std::string sampler = "dpm++2m";
  int steps = 25;
  float cfg_scale = 4.0f;
  uint64_t seed = 1;
  int batch_size = 8;
  int size = 0;  // --real only: 0 = the model's size, else 32
  bool json = false, real = false, quiet = false;
  std::string grid;
  int grid_count = 16;
};

struct Tally {
  int n = 0, match = 0, colour = 0, background = 0;
  int shapes = 0, shape = 0, count = 0, shapes_match = 0;  // over shape captions
  int glyphs = 0, glyph = 0, glyphs_match = 0;             // over digit / letter captions

  void add(const train::ShapesCaption& want, const train::ShapesCheck& r) {
    ++n;
    match += r.match(), colour += r.colour, background += r.background;
    if (want.glyph) {
      ++glyphs, glyph += r.shape, glyphs_match += r.match();
    } else {
      ++shapes, shape += r.shape, count += r.count, shapes_match += r.match();
    }
  }
};

double rate(int k, int n) { return n > 0 ? static_cast<double>(k) / n : 0.0; }

// f32 [1, 3, S, S] in [0, 1] -> RGB bytes [S, S, 3] (the checker's and PNG's rounding).
std::vector<uint8_t> rgb_bytes(const Tensor& img) {
  const int64_t S = img.size(2), n = S * S;
  std::vector<uint8_t> out(static_cast<size_t>(n * 3));
  const float* p = img.ptr<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c)
      out[static_cast<size_t>(i * 3 + c)] =
          static_cast<uint8_t>(std::lround(std::clamp(p[c * n + i], 0.0f, 1.0f) * 255.0f));
  return out;
}

// The first `count` images in a square grid, each nearest-upscaled x4, 2 px white gaps.
void grid_write(const std::string& path, const std::vector<std::vector<uint8_t>>& images, int size, int count) {
  const int n = std::min<int>(count, static_cast<int>(images.size()));
  if (n <= 0) return;
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n)))), rows = (n + cols - 1) / cols;
  const int cell = size * 4, gap = 2, W = cols * cell + (cols + 1) * gap, H = rows * cell + (rows + 1) * gap;
  Tensor g = Tensor::empty(DType::F32, {1, 3, H, W});
  float* d = g.ptr<float>();
  std::fill_n(d, g.numel(), 1.0f);
  const int64_t plane = int64_t{H} * W;
  for (int k = 0; k < n; ++k) {
    const int x0 = gap + (k % cols) * (cell + gap), y0 = gap + (k / cols) * (cell + gap);
    const std::vector<uint8_t>& rgb = images[static_cast<size_t>(k)];
    for (int y = 0; y < cell; ++y)
      for (int x = 0; x < cell; ++x)
        for (int c = 0; c < 3; ++c)
          d[c * plane + int64_t{y0 + y} * W + x0 + x] =
              rgb[static_cast<size_t>(((y / 4) * size + x / 4) * 3 + c)] / 255.0f;
  }
  image_write_png(path, g);
}

void eval_run(const EvalArgs& a) {
  if (a.count < 1 || a.count > 100000) error_throw(fmt::format("count must be 1 to 100000, got {}", a.count), "--count");
  if (a.glyphs && a.no_glyphs) error_throw("--glyphs and --no-glyphs together", "--glyphs", "pass one of them");
  if (a.grid_count < 1) error_throw("grid count must be >= 1", "--grid-count");

  std::optional<image::PixelDiffusion> model;
  std::string path = a.model;
  if (!a.real || !a.model.empty()) {
    if (path.empty()) path = builtin_image_model_path();
    if (!image::pixel_diffusion_file_is(path))
      error_throw("not an aigc pixel-diffusion model", path,
                  "aigc eval image measures models made by `aigc train image` on the shapes data set");
    model.emplace(image::PixelDiffusion::open(path));
  }
  const int S = model ? model->image_size() : (a.size > 0 ? a.size : 32);
  if (S < 16) error_throw(fmt::format("the shapes data set needs images of 16 px or more, the model draws {}", S), path);

  // Glyph captions if the model was trained with them (aigc.training "glyphs"), or as told.
  bool glyphs = false;
  const char* glyph_source = "default";
  if (model) {
    const nlohmann::json t = nlohmann::json::parse(model->config().training_json, nullptr, false);
    if (t.is_object() && t.contains("glyphs") && t["glyphs"].is_boolean()) {
      glyphs = t["glyphs"].get<bool>();
      glyph_source = "the model's training record";
    }
  }
  if (a.glyphs || a.no_glyphs) glyphs = a.glyphs, glyph_source = "the command line";

  std::vector<std::string> captions;
  std::vector<train::ShapesCaption> specs;
  std::vector<std::vector<uint8_t>> rgb;
  for (int i = 0; i < a.count; ++i) {
    train::ShapesSample s = train::shapes_sample(a.data_seed, i, S, glyphs);
    captions.push_back(s.caption);
    specs.push_back(s.spec);
    if (a.real) rgb.push_back(std::move(s.rgb));
  }

  const auto t0 = Clock::now();
  if (!a.real) {
    image::SdGenerateParams p;
    p.width = p.height = S;
    p.sample.sampler = image::sampler_kind_parse(a.sampler);
    p.sample.steps = a.steps;
    p.sample.cfg_scale = a.cfg_scale;
    p.seed = a.seed;
    p.batch_size = std::clamp(a.batch_size, 1, 64);
    int done = 0;
    const std::vector<Tensor> images = image::pixel_diffusion_generate_each(
        *model, captions, p, [&](const image::SdProgress& pr) {
          if (a.quiet || pr.stage != image::SdProgress::Stage::Sample || pr.step != pr.steps) return;
          done = std::min(a.count, (pr.batch + 1) * p.batch_size);
          std::fprintf(stderr, "aigc: eval %d/%d images\n", done, a.count);
        });
    for (const Tensor& img : images) rgb.push_back(rgb_bytes(img));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  Tally t;
  for (size_t i = 0; i < rgb.size(); ++i) t.add(specs[i], train::shapes_check(rgb[i], S, specs[i]));
  if (!a.grid.empty()) grid_write(a.grid, rgb, S, a.grid_count);

  const std::string what = a.real ? std::string("the data set's own images (the checker's ceiling)") : path;
  if (a.json) {
    nlohmann::json j = {{"model", a.real ? std::string() : path},
                        {"real", a.real},
                        {"captions", t.n},
                        {"data_seed", a.data_seed},
                        {"glyphs", glyphs},
                        {"size", S},
                        {"match", rate(t.match, t.n)},
                        {"colour", rate(t.colour, t.n)},
                        {"background", rate(t.background, t.n)},
                        {"shape_captions", t.shapes},
                        {"shape", rate(t.shape, t.shapes)},
                        {"count", rate(t.count, t.shapes)},
                        {"shapes_match", rate(t.shapes_match, t.shapes)},
                        {"glyph_captions", t.glyphs},
                        {"glyph", rate(t.glyph, t.glyphs)},
 {"glyphs_match", rate(t.glyphs_match, t.glyphs)}};
    if (!a.real) {
      j["sampling"] = {{"sampler", a.sampler}, {"steps", a.steps}, {"cfg_scale", a.cfg_scale}, {"seed", a.seed}};
      j["seconds"] = seconds;
      j["images_per_s"] = seconds > 0 ? t.n / seconds : 0.0;
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("aigc eval image: %s\n", what.c_str());
  std::printf("  %d captions of the shapes grammar, data seed %llu, glyphs %s (%s), %dx%d\n", t.n,
              static_cast<unsigned long long>(a.data_seed), glyphs ? "on" : "off", glyph_source, S, S);
  if (!a.real)
    std::printf("  sampler %s, %d steps, cfg %g, seeds %llu..\n", a.sampler.c_str(), a.steps, a.cfg_scale,
                static_cast<unsigned long long>(a.seed));
  std::printf("  match       %5.1f %%  (%d/%d: colour, shape, count and background all right)\n", 100 * rate(t.match, t.n),
              t.match, t.n);
  std::printf("  colour      %5.1f %%\n", 100 * rate(t.colour, t.n));
  std::printf("  background  %5.1f %%  (a caption without one always matches)\n", 100 * rate(t.background, t.n));
  std::printf("  shape       %5.1f %%  (of %d shape captions; they match %.1f %%)\n", 100 * rate(t.shape, t.shapes),
              t.shapes, 100 * rate(t.shapes_match, t.shapes));
  std::printf("  count       %5.1f %%\n", 100 * rate(t.count, t.shapes));
  if (t.glyphs > 0)
    std::printf("  glyph       %5.1f %%  (of %d digit/letter captions; they match %.1f %%)\n",
                100 * rate(t.glyph, t.glyphs), t.glyphs, 100 * rate(t.glyphs_match, t.glyphs));
  if (!a.real) std::printf("  speed       %.2f images/s (%.1f s)\n", seconds > 0 ? t.n / seconds : 0.0, seconds);
  if (!a.grid.empty()) std::printf("  grid        %s\n", a.grid.c_str());
}

}  // namespace

void command_eval_register(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "Measure models: prompt adherence of an image model");
  eval->require_subcommand(1);
  auto* cmd = eval->add_subcommand(
      "image",
      "Prompt adherence of an aigc pixel-diffusion model trained on the shapes data set: captions drawn with a "
      "held-out data seed, one image each, checked by the data set's deterministic checker (colour, shape, count, "
      "background, glyph)");
  cmd->fallthrough();
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("-m,--model", a->model, "Pixel-diffusion model (default: the built-in shapes.safetensors)")
      ->type_name("FILE");
  cmd->add_option("-n,--count", a->count, "Captions (one image each)")->default_val(200);
  cmd->add_option("--data-seed", a->data_seed, "Data set seed of the captions (held out from training's)")
      ->default_val(1000003);
  cmd->add_flag("--glyphs", a->glyphs, "Include digit/letter captions (default: as the model was trained, if recorded)");
  cmd->add_flag("--no-glyphs", a->no_glyphs, "Shape captions only");
  cmd->add_option("--sampler", a->sampler, "euler, euler_a, heun, dpm++2m, dpm++2m_karras, ddim, ddpm")
      ->default_val("dpm++2m");
  cmd->add_option("--steps", a->steps, "Sampling steps")->default_val(25);
  cmd->add_option("--cfg-scale", a->cfg_scale, "Classifier-free guidance scale")->default_val(4.0f);
  cmd->add_option("-s,--seed", a->seed, "Seed of image 0 (image i has seed + i)")->default_val(1);
  cmd->add_option("--batch-size", a->batch_size, "Images per model batch")->default_val(8);
  cmd->add_flag("--real", a->real, "Check the data set's own images instead (the checker's ceiling); no model needed");
  cmd->add_option("--size", a->size, "--real without a model: image size")->default_val(0);
  cmd->add_flag("--json", a->json, "Print one JSON object instead of the table");
  cmd->add_option("--grid", a->grid, "Save the first images as a grid PNG (each x4, nearest)")->type_name("FILE.png");
  cmd->add_option("--grid-count", a->grid_count, "Images in the grid (16 = 4x4, 64 = 8x8)")->default_val(16);
  cmd->add_flag("-q,--quiet", a->quiet, "No progress on stderr");
  cmd->callback([a]() { eval_run(*a); });
}

}  // namespace aigc::cli
