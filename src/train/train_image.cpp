// The image training loop (see train_image.h).
#include "train/train_image.h"


#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>

#include "core/error.h"
#include "formats/safetensors.h"
#include "image/pixel_diffusion_file.h"
#include "train/ema.h"
#include "train/glyph_font.h"
#include "train/loss_curve.h"
#include "train/shapes_dataset.h"
#include "train/train_loop.h"
#include "train/train_progress.h"

namespace aigc::train {

namespace {

using nlohmann::json;

// Mean loss over the fixed validation batches (the data seed, timesteps and noise never change).
float val_loss_eval(UnetTrainer& u, const TrainImageOptions& o, std::span<const float> ac) {
  double total = 0;
  const ImageBatchOptions vo{.seed = kImageValSeed, .glyphs = o.glyphs, .caption_dropout = 0.0f,
                             .prediction = o.prediction};
  for (int64_t nb = 0; nb < o.eval_batches; ++nb) {
    image_batch_fill(u, o.batch, nb, vo, ac);
    total += u.forward();
  }
  return static_cast<float>(total / static_cast<double>(o.eval_batches));
}

json curve_json(const std::vector<LossPoint>& c) {
  json a = json::array();
  for (const LossPoint& p : c) a.push_back({p.step, p.loss});
  return a;
}

std::vector<LossPoint> curve_parse(const json& a, const std::string& where) {
  std::vector<LossPoint> c;
  if (!a.is_array()) error_throw("loss history is not a JSON array", where, "the file is damaged");
  for (const json& p : a) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() || !p[1].is_number())
      error_throw("loss history entry is not [step, loss]", where, "the file is damaged");
    c.push_back({p[0].get<int64_t>(), p[1].get<float>()});
  }
  return c;
}

std::string data_description(const TrainImageOptions& o) {
  return fmt::format("aigc shapes data set (train/shapes_dataset.h), {}x{} px, seed {}: one to three circles, squares "
                     "or triangles of one of 6 colours on one of 9 backgrounds (named in half the captions){}; caption "
                     "dropout {}",
                     o.model.image, o.model.image, o.seed,
                     o.glyphs ? ", a quarter of the samples a digit or capital letter rendered from DejaVu Sans Bold" : "",
                     o.caption_dropout);
}

// While alive, the graph's parameters are the EMA's average (and the EMA holds the raw weights);
// null: nothing happens. Swapping is exact, so training continues bit for bit.
struct EmaSwapped {
  WeightEma* ema;
  Graph& g;
  EmaSwapped(WeightEma* e, Graph& graph) : ema(e), g(graph) {
    if (ema) ema->swap(g.params_flat());
  }
  ~EmaSwapped() {
    if (ema) ema->swap(g.params_flat());
  }
  EmaSwapped(const EmaSwapped&) = delete;
  EmaSwapped& operator=(const EmaSwapped&) = delete;
};

bool config_same(const UnetConfig& a, const UnetConfig& b) {
  return a.image == b.image && a.ch == b.ch && a.groups == b.groups && a.t_dim == b.t_dim &&
         a.text_vocab == b.text_vocab && a.text_len == b.text_len && a.text_dim == b.text_dim && a.heads == b.heads &&
         a.eps == b.eps && a.levels == b.levels && unet_ch1(a) == unet_ch1(b) && unet_ch2(a) == unet_ch2(b);
}

}  // namespace

TrainImageResult train_image_run(const TrainImageOptions& o) {
  AIGC_CHECK(o.steps > 0 && o.batch > 0, "train image: --steps and --batch must be positive");
  AIGC_CHECK(o.eval_every > 0 && o.save_every > 0 && o.eval_batches > 0,
             "train image: --eval-every, --save-every and --eval-batches must be positive");
  AIGC_CHECK(o.caption_dropout >= 0 && o.caption_dropout <= 1, "train image: --caption-dropout {} must be in [0, 1]",
             o.caption_dropout);
  AIGC_CHECK(o.model.image >= 16 && o.model.image <= 256 && o.model.image % 2 == 0,
             "train image: --image {} must be even and in [16, 256]", o.model.image);
  AIGC_CHECK(o.model.t_dim >= 2 && o.model.t_dim % 2 == 0, "train image: --t-dim {} must be even", o.model.t_dim);
  AIGC_CHECK(o.model.ch > 0 && o.model.groups > 0 && o.model.ch % o.model.groups == 0 && o.model.heads > 0 &&
                 o.model.ch % o.model.heads == 0 && o.model.text_dim > 0,
             "train image: --ch {} must be divisible by --groups {} and --heads {}; --text-dim {} positive", o.model.ch,
             o.model.groups, o.model.heads, o.model.text_dim);
  AIGC_CHECK(o.lr.lr_max > 0 && o.lr.lr_min >= 0 && o.lr.warmup >= 0, "train image: bad learning-rate schedule");
  AIGC_CHECK(o.ema >= 0 && o.ema < 1, "train image: --ema {} must be in [0, 1) (0: off; typical 0.999)", o.ema);
  if (o.glyphs) glyph_render('A', 16);  // a missing font fails now, with its hint, not mid-run

  image::PixelDiffusionConfig cfg;
  cfg.unet = o.model;
  cfg.unet.text_vocab = shapes_vocab_size();
  cfg.unet.text_len = kShapesCaptionTokens;
  cfg.schedule = o.schedule;
  cfg.vocab = shapes_vocab();
  cfg.prediction = o.prediction;
  const std::vector<float> ac = ddpm_alphas_cumprod(o.schedule);

  const std::string optim_path = o.out + ".optim";
  UnetTrainer unet(cfg.unet, o.batch);
  Graph& g = unet.graph();
  AdamW opt(g.params_flat().size(), o.adamw);
  opt.decay_mask_set(unet.decay_mask());
  std::optional<WeightEma> ema;  // o.ema > 0: the average of the weights (set up once they are known)
  std::vector<float> ema_loaded;  // resume: the saved average, if the checkpoint has one
  int64_t step0 = 0;
  double seconds_before = 0;  // training time of earlier runs (resume)
  std::vector<LossPoint> train_curve, val_curve;
  if (o.resume) {
    const image::PixelDiffusionFile file = image::pixel_diffusion_read(o.out);
    if (!config_same(file.config.unet, cfg.unet))
      error_throw("the checkpoint's model size differs from the options", o.out,
                  "resume with the same --image, --ch, --levels, --ch1, --ch2, --groups, --heads, --text-dim and --t-dim");
    if (file.config.prediction != o.prediction)
      error_throw(fmt::format("the checkpoint was trained with --prediction {}", diffusion_target_name(file.config.prediction)),
                  o.out, fmt::format("resume with --prediction {}", diffusion_target_name(file.config.prediction)));
    image::pixel_diffusion_params_load(file, unet);
    const SafetensorsFile st = SafetensorsFile::open(optim_path);
    const auto& md = st.metadata();
    const auto it = md.find("aigc.optim");
    if (it == md.end()) error_throw("no \"aigc.optim\" metadata", optim_path, "the optimiser state is damaged");
    const json j = json::parse(it->second, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer() ||
        !j.contains("adam_t") || !j["adam_t"].is_number_integer() || !j.contains("seconds") || !j["seconds"].is_number())
      error_throw("\"aigc.optim\" lacks step, adam_t or seconds", optim_path, "the optimiser state is damaged");
    step0 = j["step"].get<int64_t>();
    opt.t_set(j["adam_t"].get<int64_t>());
    seconds_before = j["seconds"].get<double>();
    train_curve = curve_parse(j.value("train", json::array()), optim_path);
    val_curve = curve_parse(j.value("val", json::array()), optim_path);
    const Tensor m = st.tensor("adam.m"), v = st.tensor("adam.v");
    if (m.type() != DType::F32 || v.type() != DType::F32 || m.numel() != static_cast<int64_t>(opt.m().size()) ||
        v.numel() != m.numel())
      error_throw(fmt::format("moments for {} parameters, the model has {}", m.numel(), opt.m().size()), optim_path,
                  "the optimiser state belongs to another model");
    std::memcpy(opt.m().data(), m.ptr<float>(), opt.m().size() * 4);
    std::memcpy(opt.v().data(), v.ptr<float>(), opt.v().size() * 4);
    // With EMA, OUT holds the average: the raw weights training continues from are in OUT.optim.
    for (const char* name : {"params", "ema"}) {
      if (!st.find(name)) continue;
      const Tensor t = st.tensor(name);
      if (t.type() != DType::F32 || t.numel() != static_cast<int64_t>(g.params_flat().size()))
        error_throw(fmt::format("\"{}\" holds {} values, the model has {} parameters", name, t.numel(),
                                g.params_flat().size()),
                    optim_path, "the optimiser state belongs to another model");
      if (std::strcmp(name, "params") == 0)
        std::memcpy(g.params_flat().data(), t.ptr<float>(), g.params_flat().size() * 4);
      else
        ema_loaded.assign(t.ptr<float>(), t.ptr<float>() + t.numel());
    }
    if (o.ema > 0 && ema_loaded.empty())
      std::fprintf(stderr, "the checkpoint has no EMA: the average starts from its weights now\n");
    if (step0 < 0 || step0 >= o.steps)
      error_throw(fmt::format("the checkpoint is already at step {} of --steps {}", step0, o.steps), o.out,
                  "raise --steps to train further");
    std::fprintf(stderr, "resuming %s at step %lld\n", o.out.c_str(), static_cast<long long>(step0));
  } else {
    unet.params_init(o.seed);
  }
  if (o.ema > 0) {
    ema.emplace(g.params_flat(), o.ema);
    if (!ema_loaded.empty()) std::copy(ema_loaded.begin(), ema_loaded.end(), ema->values().begin());
  }
  ema_loaded = {};
  const std::string widths = cfg.unet.levels == 2
                                 ? fmt::format("{}/{}/{}", cfg.unet.ch, train::unet_ch1(cfg.unet), train::unet_ch2(cfg.unet))
                                 : fmt::format("{}/{}", cfg.unet.ch, train::unet_ch1(cfg.unet));
  std::fprintf(stderr, "%s\n",
               fmt::format("model: {} parameters (image {}, levels {}, ch {}, groups {}, heads {}, text-dim {}, t-dim {}), "
                           "batch {}, {} MB of activations; data: shapes{}; target {}{}",
                           g.params_flat().size(), cfg.unet.image, cfg.unet.levels, widths, cfg.unet.groups,
                           cfg.unet.heads, cfg.unet.text_dim, cfg.unet.t_dim, o.batch, g.activation_bytes() >> 20,
                           o.glyphs ? " + glyphs" : "", diffusion_target_name(o.prediction),
                           o.ema > 0 ? fmt::format(", EMA {} (validation and OUT use the EMA weights)", o.ema) : "")
                   .c_str());

  TrainImageResult r;
  auto save = [&](int64_t step, double train_seconds) {
    cfg.training_json = json{{"trainer", "aigc train image"},
                             {"steps", step},
                             {"batch", o.batch},
                             {"seed", o.seed},
                             {"lr", o.lr.lr_max},
                             {"min_lr", o.lr.lr_min},
                             {"warmup", o.lr.warmup},
                             {"total_steps", o.steps},
                             {"weight_decay", o.adamw.weight_decay},
                             {"clip", o.adamw.grad_clip},
                             {"caption_dropout", o.caption_dropout},
                             {"prediction", diffusion_target_name(o.prediction)},
                             {"ema", o.ema},
                             {"glyphs", o.glyphs},
                             {"seconds", seconds_before + train_seconds},
                             {"train_loss", loss_tail_mean(train_curve, 50)},
                             {"val_loss", val_curve.empty() ? json(nullptr) : json(val_curve.back().loss)},
                             {"data", data_description(o)}}
                            .dump();
    {
      const EmaSwapped swapped(ema ? &*ema : nullptr, g);  // the model file holds the average
      image::pixel_diffusion_write(o.out, cfg, unet);
    }
    const json st{{"step", step},         {"adam_t", opt.t()},           {"seed", o.seed},
                  {"seconds", seconds_before + train_seconds}, {"train", curve_json(train_curve)},
                  {"val", curve_json(val_curve)}};
    const std::array<int64_t, 1> n{static_cast<int64_t>(opt.m().size())};
    std::map<std::string, Tensor> tensors{{"adam.m", Tensor::view_of(DType::F32, n, opt.m().data())},
                                          {"adam.v", Tensor::view_of(DType::F32, n, opt.v().data())}};
    if (ema) {
      tensors.emplace("params", Tensor::view_of(DType::F32, n, g.params_flat().data()));
      tensors.emplace("ema", Tensor::view_of(DType::F32, n, ema->values().data()));
    }
    safetensors_write(optim_path, tensors, {{"aigc.optim", st.dump()}});
  };

  const ImageBatchOptions bo{
      .seed = o.seed, .glyphs = o.glyphs, .caption_dropout = o.caption_dropout, .prediction = o.prediction};
  TrainLoopOptions lo;
  lo.command = "aigc train image";
  lo.step0 = step0, lo.steps = o.steps, lo.eval_every = o.eval_every, lo.save_every = o.save_every;
  lo.max_seconds = o.max_seconds;
  lo.items_per_step = o.batch, lo.rate_unit = "samples/s", lo.rate_decimals = 1;
  lo.progress_window = 50, lo.result_window = 50;
  lo.curve_path = o.curve.empty() ? o.out + ".png" : o.curve, lo.curve_smooth = 20;
  TrainLoopCallbacks cb;
  cb.step = [&](int64_t step) {
    image_batch_fill(unet, o.batch, step, bo, ac);
    const float loss = unet.forward_backward();
    const float lr = lr_cosine(step, o.lr);
    const float norm = opt.step(g.params_flat(), g.grads_flat(), lr);
    if (ema) ema->update(g.params_flat(), step);
    return TrainStep{loss, lr, norm};
  };
  cb.validate = [&] {
    const EmaSwapped swapped(ema ? &*ema : nullptr, g);
    return val_loss_eval(unet, o, ac);
  };
  cb.validation_note = [&](float) { return std::string(ema ? " (EMA weights)" : ""); };
  cb.save = save;
  const TrainLoopResult run = train_loop_run(lo, cb, train_curve, val_curve);
  r.steps_done = run.steps_done;
  r.train_loss = run.train_loss;
  r.val_loss = run.val_loss;
  r.seconds = run.seconds;
  r.samples_per_second = run.items_per_second;
  std::fprintf(stderr,
               "saved %s (+ %s), loss curve %s; %lld steps in %s, %.1f samples/s; train loss %.4f, validation loss %.4f\n",
               o.out.c_str(), optim_path.c_str(), lo.curve_path.c_str(), static_cast<long long>(run.steps_done - step0),
               duration_str(r.seconds).c_str(), r.samples_per_second, r.train_loss, r.val_loss);
  return r;
}

}  // namespace aigc::train
