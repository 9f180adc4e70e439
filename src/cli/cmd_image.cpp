// aigc image -m MODEL -p PROMPT -o out.png: Stable Diffusion 1.x / 2.x image generation (txt2img,
// img2img, inpainting, hires fix) into PNG files carrying A1111's "parameters" text chunk.
// Progress goes to stderr: a bar redrawn in place on a terminal, plain lines otherwise.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "backend/cpu/precision.h"
#include "cli/builtin_models.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "formats/image.h"
#include "image/image_size.h"
#include "image/pixel_diffusion.h"
#include "image/sampler.h"
#include "image/sd_model.h"
#include "image/sd_parameters.h"
#include "image/sd_pipeline.h"
#include "image/taesd.h"

namespace aigc::cli {

namespace {

using namespace aigc::image;
using Clock = std::chrono::steady_clock;

struct ImageArgs {
  std::string model, prompt, negative_prompt, output = "output.png";
  int steps = 20;
  std::string sampler = "euler_a";
  std::string schedule = "default";
  float cfg_scale = 7.0f;
  double eta = 0.0;
  int64_t seed = -1;
  int width = 512, height = 512;
  int batch_count = 1, batch_size = 1;
  std::string init_img, mask;
  double strength = 0.75;
  int hires_scale = 1, hires_steps = 0;
  double hires_strength = 0.5;
  std::string hires_upscaler = "bilinear";
  std::string taesd;
  bool taesd_preview_only = false;
  int preview_every = 0;
  std::string preview_file;
  int clip_skip = 0;
  std::string prediction;  // "" = detected
  std::string precision = "bf16";
  std::string unet_type = "default";
  std::string clip_vocab;
  bool no_mmap = false;
  bool keep_loaded = false;
  bool quiet = false;
  bool width_set = false, height_set = false;  // -W / -H given (else a pixel-diffusion model's own size)
};

SigmaSchedule schedule_parse(const std::string& s) {
  if (s == "default") return SigmaSchedule::Default;
  if (s == "normal") return SigmaSchedule::Normal;
  if (s == "karras") return SigmaSchedule::Karras;
  if (s == "trailing") return SigmaSchedule::Trailing;
  error_throw(fmt::format("unknown schedule '{}'", s), "--schedule", "one of: default, normal, karras, trailing");
}

// Progress on stderr: one line redrawn with \r on a terminal, else a line per report (every step).
class ProgressBar {
 public:
  explicit ProgressBar(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {}

  void operator()(const SdProgress& pr) {
    if (quiet_) return;
    using S = SdProgress::Stage;
    if (pr.stage != S::Sample && pr.stage != S::Hires) {
      end_line();
      const char* what = pr.stage == S::TextEncode    ? "encoding the prompt"
                         : pr.stage == S::ImageEncode ? "encoding the init image"
                         : pr.stage == S::Load        ? "loading the UNet"
                                                      : "decoding";
      if (pr.stage == S::Decode)
        std::fprintf(stderr, "aigc: %s (batch %d/%d)\n", what, pr.batch + 1, pr.batch_count);
      else
        std::fprintf(stderr, "aigc: %s\n", what);
      return;
    }
    const auto now = Clock::now();
    if (pr.step == 0) {  // a pass starts: rates count from here
      t0_ = now;
      return;
    }
    const double el = std::chrono::duration<double>(now - t0_).count();
    const double rate = el > 0 ? pr.step / el : 0.0;
    const double eta = rate > 0 ? (pr.steps - pr.step) / rate : 0.0;
    const char* name = pr.stage == S::Hires ? "hires" : "step";
    const std::string batch =
        pr.batch_count > 1 ? fmt::format("batch {}/{} ", pr.batch + 1, pr.batch_count) : std::string();
    const std::string speed = rate >= 1.0 || rate == 0.0 ? fmt::format("{:.2f} it/s", rate)
                                                         : fmt::format("{:.2f} s/it", 1.0 / rate);
    if (tty_) {
      const int width = 30, fill = pr.steps > 0 ? pr.step * width / pr.steps : 0;
      std::fprintf(stderr, "\r%s%s %d/%d [%s%s] %s, ETA %.0f s  ", batch.c_str(), name, pr.step, pr.steps,
                   std::string(static_cast<size_t>(fill), '#').c_str(),
                   std::string(static_cast<size_t>(width - fill), '.').c_str(), speed.c_str(), eta);
      open_ = true;
      if (pr.step == pr.steps) end_line();
    } else {
      std::fprintf(stderr, "aigc: %s%s %d/%d, %s, ETA %.0f s\n", batch.c_str(), name, pr.step, pr.steps,
                   speed.c_str(), eta);
    }
    std::fflush(stderr);
  }
  void end_line() {
    if (open_) std::fputc('\n', stderr);
    open_ = false;
  }

 private:
  bool quiet_, tty_;
  bool open_ = false;
  Clock::time_point t0_ = Clock::now();
};

std::string output_path(const std::string& out, size_t i, size_t n) {
  if (n == 1) return out;
  const std::filesystem::path p(out);
  const std::string ext = p.has_extension() ? p.extension().string() : ".png";
  return (p.parent_path() / (p.stem().string() + fmt::format("-{}", i) + ext)).string();
}


// The generation parameters of the command line (shared by SD and pixel-diffusion models).
SdGenerateParams generate_params_of(const ImageArgs& a) {
  SdGenerateParams p;
  p.prompt = a.prompt;
  p.negative_prompt = a.negative_prompt;
  p.width = a.width;
  p.height = a.height;
  p.sample.sampler = sampler_kind_parse(a.sampler);
  p.sample.schedule = schedule_parse(a.schedule);
  p.sample.steps = a.steps;
  p.sample.cfg_scale = a.cfg_scale;
  p.sample.eta = a.eta;
  if (a.seed < 0) p.seed = std::random_device{}() & 0xffffffffu;
  else p.seed = static_cast<uint64_t>(a.seed);
  p.batch_count = a.batch_count;
  p.batch_size = a.batch_size;
  p.clip_skip = a.clip_skip;
  p.strength = a.strength;
  p.hires_scale = a.hires_scale;
  p.hires_steps = a.hires_steps;
  p.hires_strength = a.hires_strength;
  if (a.hires_upscaler != "bilinear" && a.hires_upscaler != "nearest")
    error_throw(fmt::format("unknown hires upscaler '{}'", a.hires_upscaler), "--hires-upscaler", "bilinear or nearest");
  p.hires_nearest = a.hires_upscaler == "nearest";
  p.preview_every = a.preview_every;
  p.release_components = !a.keep_loaded;
  if (!a.init_img.empty()) p.init_image = image_read(a.init_img);
  if (!a.mask.empty()) {
    if (a.init_img.empty()) error_throw("--mask needs --init-img", "--mask", "pass the image to inpaint with --init-img");
    p.mask = image_read(a.mask);
  }
  return p;
}

// Writes each preview (the first image of the batch) to --preview-file or OUTPUT-preview.png.
SdPreviewFn preview_writer(const ImageArgs& a) {
  if (a.preview_every <= 0) return {};
  const std::string path = !a.preview_file.empty()
                               ? a.preview_file
                               : (std::filesystem::path(a.output).parent_path() /
                                  (std::filesystem::path(a.output).stem().string() + "-preview.png"))
                                     .string();
  return [path](int, int, const Tensor& rgb) { image_write_png(path, rgb.slice(0, 0, 1)); };
}

// The PNGs, each with its A1111 parameters chunk.
void images_write(const ImageArgs& a, const SdGenerateParams& p, const SdModelInfo& info,
                  const std::vector<Tensor>& images, Clock::time_point t_start) {
  for (size_t i = 0; i < images.size(); ++i) {
    const uint64_t seed = p.seed + i;
    const SdParameters params = sd_parameters_of(p, info, seed, static_cast<int>(i % p.batch_size));
    const std::string path = output_path(a.output, i, images.size());
    image_write_png(path, images[i], {{"parameters", sd_parameters_format(params)}});
    if (!a.quiet) std::fprintf(stderr, "aigc: wrote %s (seed %llu)\n", path.c_str(), static_cast<unsigned long long>(seed));
  }
  if (!a.quiet)
    std::fprintf(stderr, "aigc: %zu image(s) in %.1f s\n", images.size(),
                 std::chrono::duration<double>(Clock::now() - t_start).count());
}

// aigc's own pixel-diffusion model (image/pixel_diffusion.h): -W/-H default to its training size.
void pixel_image_run(const ImageArgs& a, const std::string& path) {
  if (a.output.empty()) error_throw("no output file", "-o", "pass -o out.png");
  if (!a.taesd.empty()) error_throw("--taesd does not apply to pixel-diffusion models (they draw pixels)", "--taesd");
  if (!a.prediction.empty())
    error_throw("a pixel-diffusion checkpoint says what its model predicts (eps or v)", "--prediction", "drop --prediction");
  const auto t_start = Clock::now();
  PixelDiffusion model = PixelDiffusion::open(path);
  SdGenerateParams p = generate_params_of(a);
  const int side = a.width_set ? a.width : a.height_set ? a.height : model.image_size();
  p.width = a.width_set ? a.width : side;
  p.height = a.height_set ? a.height : side;
  pixel_size_check(p.width, p.height);
  if (!a.quiet) std::fprintf(stderr, "aigc: model %s: %s\n", path.c_str(), model.info().description.c_str());
  if (!a.quiet && a.seed < 0) std::fprintf(stderr, "aigc: seed %llu\n", static_cast<unsigned long long>(p.seed));
  ProgressBar bar(a.quiet);
  const std::vector<Tensor> images =
      pixel_diffusion_generate(model, p, [&](const SdProgress& pr) { bar(pr); }, preview_writer(a));
  bar.end_line();
  images_write(a, p, model.info(), images, t_start);
}

void image_run(const ImageArgs& a) {
  // No -m: the built-in image model. aigc's own models are recognised by their metadata.
  const std::string model_path = a.model.empty() ? builtin_image_model_path() : a.model;
  if (pixel_diffusion_file_is(model_path)) return pixel_image_run(a, model_path);
  // Cheap checks first: a bad size or an unreadable image fails before the model loads.
  sd_size_check(a.width, a.height);
  if (a.output.empty()) error_throw("no output file", "-o", "pass -o out.png");
  SdGenerateParams p = generate_params_of(a);
  std::optional<Taesd> taesd;
  if (!a.taesd.empty()) {
    taesd.emplace(Taesd::load(a.taesd));
    if (taesd->kind() != TaesdKind::Decoder || taesd->latent_channels() != 4)
      error_throw("not a TAESD decoder for SD latents (4 channels)", a.taesd,
                  "pass taesd_decoder.safetensors (madebyollin/taesd)");
    p.taesd = &*taesd;
    p.taesd_final = !a.taesd_preview_only;
  }

  SdModelOptions mo;
  mo.precision = ops::precision_parse(a.precision);
  mo.unet_type = unet_weight_type_parse(a.unet_type);
  mo.file.use_mmap = !a.no_mmap;
  mo.clip_vocab = a.clip_vocab;
  if (a.prediction == "eps") mo.prediction = Prediction::Epsilon;
  else if (a.prediction == "v") mo.prediction = Prediction::V;
  else if (!a.prediction.empty())
    error_throw(fmt::format("unknown prediction '{}'", a.prediction), "--prediction", "eps or v");
  const auto t_start = Clock::now();
  SdModel model = SdModel::open(model_path, mo);
  if (!a.quiet) std::fprintf(stderr, "aigc: model %s: %s\n", model_path.c_str(), model.info().description.c_str());
  if (!a.quiet && a.seed < 0) std::fprintf(stderr, "aigc: seed %llu\n", static_cast<unsigned long long>(p.seed));

  ProgressBar bar(a.quiet);
  const std::vector<Tensor> images = sd_generate(model, p, [&](const SdProgress& pr) { bar(pr); }, preview_writer(a));
  bar.end_line();
  images_write(a, p, model.info(), images, t_start);
}

}  // namespace

void command_image_register(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "image",
      "Generate images with Stable Diffusion 1.x / 2.x (txt2img, img2img with --init-img, inpainting with --mask, "
      "sketch-to-image = img2img from a drawing, hires fix with --hires-scale). Writes PNGs with the generation "
      "parameters in A1111's 'parameters' text chunk.");
  cmd->fallthrough();
  auto a = std::make_shared<ImageArgs>();
  cmd->add_option("-m,--model", a->model,
                  "SD 1.x / 2.x checkpoint (a .safetensors file with CompVis keys, or a diffusers folder), or an "
                  "aigc pixel-diffusion model (`aigc train image`); default: the built-in shapes.safetensors")
      ->type_name("PATH");
  cmd->add_option("-p,--prompt", a->prompt, "Prompt; A1111 weights (word:1.2), [word], BREAK")->required();
  cmd->add_option("-n,--negative-prompt", a->negative_prompt, "Negative prompt (the uncond of guidance)")
      ->default_val("");
  cmd->add_option("-o,--output", a->output,
                  "Output PNG; several images: NAME-0.png, NAME-1.png, ... (image i has seed + i)")
      ->default_val("output.png")
      ->type_name("FILE");
  cmd->add_option("--steps", a->steps, "Sampling steps")->default_val(20);
  cmd->add_option("--sampler", a->sampler, "euler, euler_a, heun, dpm++2m, dpm++2m_karras, ddim, ddpm, lcm")
      ->default_val("euler_a");
  cmd->add_option("--schedule", a->schedule,
                  "Sigma schedule of the k-diffusion samplers: default (normal; karras for dpm++2m_karras), normal, "
                  "karras, trailing (SD-Turbo)")
      ->default_val("default");
  cmd->add_option("--cfg-scale", a->cfg_scale, "Classifier-free guidance scale; 1 = no guidance (SD-Turbo, LCM)")
      ->default_val(7.0f);
  cmd->add_option("--eta", a->eta, "DDIM eta (0 = deterministic)")->default_val(0.0);
  cmd->add_option("-s,--seed", a->seed, "Seed; -1 = random (printed)")->default_val(-1);
  cmd->add_option("-W,--width", a->width, "Width in pixels, a multiple of 8 (pixel-diffusion models: even, default their own size)")->default_val(512);
  cmd->add_option("-H,--height", a->height, "Height in pixels, a multiple of 8")->default_val(512);
  cmd->add_option("--batch-count", a->batch_count, "Batches to generate one after another")->default_val(1);
  cmd->add_option("--batch-size", a->batch_size, "Images per batch (one UNet call)")->default_val(1);
  cmd->add_option("--init-img", a->init_img,
                  "img2img: start from this image (PNG/JPEG/BMP; resized to cover W x H and centre-cropped); a "
                  "drawing gives sketch-to-image")
      ->type_name("FILE");
  cmd->add_option("--strength", a->strength, "img2img / inpainting: how much to change the init image, (0, 1]")
      ->default_val(0.75);
  cmd->add_option("--mask", a->mask, "Inpainting mask for --init-img: white = repaint, black = keep")
      ->type_name("FILE");
  cmd->add_option("--hires-scale", a->hires_scale, "Hires fix: upscale the latent by this factor and run a second "
                                                   "img2img pass (1 = off)")
      ->default_val(1);
  cmd->add_option("--hires-steps", a->hires_steps, "Hires fix: steps of the second pass (0 = --steps)")->default_val(0);
  cmd->add_option("--hires-strength", a->hires_strength, "Hires fix: strength of the second pass")->default_val(0.5);
  cmd->add_option("--hires-upscaler", a->hires_upscaler, "Hires fix latent upscaler: bilinear or nearest")
      ->default_val("bilinear");
  cmd->add_option("--taesd", a->taesd, "TAESD decoder (taesd_decoder.safetensors): fast final decode and previews")
      ->type_name("FILE");
  cmd->add_flag("--taesd-preview-only", a->taesd_preview_only, "Use --taesd for previews only, the VAE for the image");
  cmd->add_option("--preview-every", a->preview_every, "Write a preview image every N steps (0 = off)")->default_val(0);
  cmd->add_option("--preview-file", a->preview_file, "Preview image path (default: OUTPUT-preview.png)")
      ->type_name("FILE");
  cmd->add_option("--clip-skip", a->clip_skip,
                  "Text encoder layer from the end (A1111 numbering; 0 = the model's: 1 for SD 1.x, 2 for SD 2.x)")
      ->default_val(0);
  cmd->add_option("--prediction", a->prediction, "Override the detected prediction type: eps or v")
      ->type_name("eps|v");
  cmd->add_option("--precision", a->precision, "Compute precision of the big layers: f32 or bf16")->default_val("bf16");
  cmd->add_option("--unet-type", a->unet_type,
                  "How the UNet keeps its weights: default (the checkpoint's f16/bf16/f32, packed in the --precision "
                  "type: 1.6 GiB for SD 1.5 in bf16) or q8_0 (Q8_0 blocks, about half the memory, a little slower)")
      ->default_val("default")
      ->type_name("default|q8_0");
  cmd->add_option("--clip-vocab", a->clip_vocab,
                  "CLIP tokenizer: bpe_simple_vocab_16e6.txt.gz or a folder with vocab.json + merges.txt (default: the "
                  "diffusers folder's tokenizer/, $AIGC_CLIP_VOCAB, next to the model, or ../shared/tokenizers/clip)")
      ->type_name("FILE");
  cmd->add_flag("--no-mmap", a->no_mmap, "Read the model into memory instead of mapping it");
  cmd->add_flag("--keep-loaded", a->keep_loaded,
                "Keep every component in memory (default: free the text encoder and UNet once done)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress on stderr");
  cmd->callback([a, cmd]() {
    a->width_set = cmd->count("--width") > 0;
    a->height_set = cmd->count("--height") > 0;
    image_run(*a);
  });
}

}  // namespace aigc::cli
