#include "image/sd_pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "image/generate_shared.h"
#include "image/image_resize.h"
#include "image/image_size.h"
#include "image/noise.h"
#include "image/noise_schedule.h"
#include "image/sd_conditioning.h"
#include "image/taesd.h"

namespace aigc::image {

namespace {

constexpr float kLatentScale = 0.18215f;  // SD 1.x / 2.x VAE scaling factor

// The UNet as the samplers' ModelFn: cond and uncond as one batch of 2B, extra input channels
// (inpainting: mask and masked-image latent) appended to each.
class UnetFn {
 public:
  UnetFn(UNet& unet, const Tensor& cond, const Tensor& uncond, int64_t B, const Tensor* extra)
      : unet_(unet), B_(B), extra_(extra) {
    ctx_c_ = batch_repeat(cond, B);
    if (uncond.defined() && uncond.numel() > 0) {
      AIGC_ASSERT(uncond.same_shape(cond));
      const size_t n = static_cast<size_t>(cond.numel());
      ctx_cu_ = Tensor::empty(DType::F32, {2 * B, cond.size(1), cond.size(2)});
      for (int64_t b = 0; b < 2 * B; ++b)
        std::memcpy(ctx_cu_.ptr<float>() + b * n, (b < B ? cond : uncond).ptr<float>(), n * sizeof(float));
    }
  }

  void operator()(const Tensor& x_in, double t, Tensor& cond, Tensor* uncond) {
    const int64_t B = B_, C = x_in.size(1), h = x_in.size(2), w = x_in.size(3);
    AIGC_ASSERT(x_in.size(0) == B && x_in.is_contiguous());
    const int64_t nb = uncond ? 2 * B : B;
    const int64_t ce = extra_ ? extra_->size(1) : 0;
    if (!in_.defined() || in_.size(0) != nb) {
      in_ = Tensor::empty(DType::F32, {nb, C + ce, h, w});
      out_ = Tensor::empty(DType::F32, {nb, unet_.config().out_channels, h, w});
      AIGC_CHECK(unet_.config().in_channels == C + ce, "the UNet takes {} input channels, the pipeline gives {}",
                 unet_.config().in_channels, C + ce);
      AIGC_CHECK(unet_.config().out_channels == C, "the UNet gives {} output channels, the latent has {}",
                 unet_.config().out_channels, C);
    }
    const int64_t plane = h * w;
    for (int64_t b = 0; b < nb; ++b) {
      float* dst = in_.ptr<float>() + b * (C + ce) * plane;
      std::memcpy(dst, x_in.ptr<float>() + (b % B) * C * plane, static_cast<size_t>(C * plane) * sizeof(float));
      if (ce)
        std::memcpy(dst + C * plane, extra_->ptr<float>() + (b % B) * ce * plane,
                    static_cast<size_t>(ce * plane) * sizeof(float));
    }
    ts_.assign(static_cast<size_t>(nb), static_cast<float>(t));
    unet_.forward(in_, ts_, uncond ? ctx_cu_ : ctx_c_, out_);
    const size_t n = static_cast<size_t>(B * C * plane);
    std::memcpy(cond.ptr<float>(), out_.ptr<float>(), n * sizeof(float));
    if (uncond) std::memcpy(uncond->ptr<float>(), out_.ptr<float>() + n, n * sizeof(float));
  }

 private:
  UNet& unet_;
  int64_t B_;
  const Tensor* extra_;
  Tensor ctx_c_, ctx_cu_, in_, out_;
  std::vector<float> ts_;
};

void clamp01(Tensor& t) {
  float* p = t.ptr<float>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = std::clamp(p[i], 0.0f, 1.0f);
}

Tensor image_slice(const Tensor& batch, int64_t b) {
  const Tensor v = batch.slice(0, b, 1);
  Tensor out = Tensor::empty(DType::F32, v.shape());
  std::memcpy(out.ptr<float>(), v.data(), static_cast<size_t>(out.numel()) * sizeof(float));
  return out;
}

void params_check(const SdModel& model, const SdGenerateParams& p) {
  sd_size_check(p.width, p.height);
  generate_params_check(p);
  if (p.hires_scale > 1) {
    sd_size_check(p.width * p.hires_scale, p.height * p.hires_scale);
    if (p.mask.defined() || model.info().inpainting)
      error_throw("hires fix is not supported with inpainting", "--hires-scale",
                  "inpaint at the final size instead");
  }
}

}  // namespace

void sd_size_check(int width, int height) {
  image_size_check(width, height);
  for (const auto& [v, flag] : {std::pair{width, "--width"}, std::pair{height, "--height"}})
    if (v % kSdSizeMultiple != 0) {
      const int down = v / kSdSizeMultiple * kSdSizeMultiple, up = down + kSdSizeMultiple;
      error_throw(fmt::format("image {} must be a multiple of {} for the SD UNet, got {}", flag + 2, kSdSizeMultiple, v),
                  flag, down > 0 ? fmt::format("use {} or {}", down, up) : fmt::format("use {}", up));
    }
}

Tensor sd_latent_preview(const Tensor& latent) {
  AIGC_ASSERT(latent.ndim() == 4 && latent.size(1) == 4 && latent.is_contiguous() && latent.type() == DType::F32);
  // SD 1.x / 2.x latent channels -> RGB in [-1, 1], a least-squares fit (ComfyUI's latent_rgb_factors).
  static const float k[4][3] = {{0.3512f, 0.2297f, 0.3227f},
                                {0.3250f, 0.4974f, 0.2350f},
                                {-0.2829f, 0.1762f, 0.2721f},
                                {-0.2120f, -0.2616f, -0.7177f}};
  const int64_t B = latent.size(0), n = latent.size(2) * latent.size(3);
  Tensor out = Tensor::empty(DType::F32, {B, 3, latent.size(2), latent.size(3)});
  const float* x = latent.ptr<float>();
  float* o = out.ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int c = 0; c < 3; ++c)
      for (int64_t i = 0; i < n; ++i) {
        float v = 0;
        for (int l = 0; l < 4; ++l) v += k[l][c] * x[(b * 4 + l) * n + i];
        o[(b * 3 + c) * n + i] = std::clamp((v + 1.0f) * 0.5f, 0.0f, 1.0f);
      }
  return out;
}

std::vector<Tensor> sd_generate(SdModel& model, const SdGenerateParams& p, const SdProgressFn& progress,
                                const SdPreviewFn& preview) {
  params_check(model, p);
  const SdModelInfo& info = model.info();
  const int64_t B = p.batch_size;
  auto report = [&](SdProgress::Stage stage, int batch = 0, int step = 0, int steps = 0) {
    if (progress) progress(SdProgress{stage, batch, p.batch_count, step, steps});
  };

  SampleParams sp = p.sample;
  sp.prediction = info.prediction;
  if (!p.sample_spacing_set) sp.spacing = info.spacing;
  const bool guided = sp.cfg_scale != 1.0f;
  const NoiseSchedule sched = NoiseSchedule::sd();
  const bool img2img = p.init_image.defined();
  // The plans (and their checks of steps, cfg, strength) before anything is loaded.
  SampleParams s1 = sp;
  s1.strength = p.strength;
  const SamplerPlan plan = sampler_plan(sched, s1, img2img);
  SampleParams s2 = sp;
  s2.steps = p.hires_steps > 0 ? p.hires_steps : sp.steps;
  s2.strength = p.hires_strength;
  const SamplerPlan plan2 = p.hires_scale > 1 ? sampler_plan(sched, s2, true) : SamplerPlan{};

  // 1. Prompts -> conditioning.
  report(SdProgress::Stage::TextEncode);
  int clip_skip = p.clip_skip > 0 ? p.clip_skip : info.clip_skip_default;
  if (p.clip_skip > 0 && info.layout == KeyLayout::Diffusers && info.family == SdFamily::Sd2)
    clip_skip = std::max(1, clip_skip - 1);  // the diffusers SD 2.x encoder has its last layer dropped
  Tensor cond, uncond;  // [1, 77 * chunks, width] each, equal lengths
  {
    const ClipTokenizer& tok = model.tokenizer();
    ClipTextModel& te = model.text_encoder();
    SdConditioningOptions co;
    co.tokenize.pad_id = info.family == SdFamily::Sd2 ? 0 : -1;  // OpenCLIP pads with 0, CLIP ViT-L with EOS
    co.clip_skip = clip_skip;
    if (guided) {
      // Padded to the same chunk count with the empty prompt's chunks: [cond; uncond].
      const Tensor both = sd_conditioning_cfg(te, tok, p.prompt, p.negative_prompt, co, 1);
      cond = both.slice(0, 0, 1);
      uncond = both.slice(0, 1, 1);
    } else {
      cond = sd_conditioning_encode(te, tok, p.prompt, co);
    }
    if (p.release_components) model.text_encoder_release();
  }

  // 2. Init image, mask -> latents (VAE encoder).
  const int W = p.width, H = p.height;
  const int64_t h = H / kLatentFactor, w = W / kLatentFactor;
  Tensor init_img, mask_px, mask_lat, init_lat, extra;  // extra: [B, 5, h, w] for 9-channel UNets
  if (img2img) init_img = image_resize_crop(p.init_image, W, H);  // [1, 3, H, W] in [0, 1]
  if (p.mask.defined()) {
    Tensor m = image_resize_crop(p.mask, W, H);
    mask_px = m.size(1) == 3 ? image_to_gray(m) : m;  // [1, 1, H, W]
    clamp01(mask_px);
    mask_lat = mask_to_latent(mask_px);                // [1, 1, h, w]
  }
  if (img2img || info.inpainting) {
    report(SdProgress::Stage::ImageEncode);
    Vae& vae = model.vae(true);
    auto encode = [&](const Tensor& img01) {  // [1, 3, H, W] in [0, 1] -> posterior mean * 0.18215
      Tensor x = Tensor::empty(DType::F32, img01.shape());
      for (int64_t i = 0; i < x.numel(); ++i) x.ptr<float>()[i] = img01.ptr<float>()[i] * 2.0f - 1.0f;
      Tensor mean, logvar;
      mean = Tensor::empty(DType::F32, {1, kLatentChannels, h, w});
      logvar = Tensor::empty(DType::F32, {1, kLatentChannels, h, w});
      vae.encode(x, mean, logvar);
      for (int64_t i = 0; i < mean.numel(); ++i) mean.ptr<float>()[i] *= kLatentScale;
      return mean;
    };
    if (img2img) init_lat = encode(init_img);
    if (info.inpainting) {
      // Masked image: the repaint area (mask >= 0.5) set to 0 in [-1, 1], i.e. 0.5 here.
      Tensor masked = Tensor::empty(DType::F32, {1, 3, H, W});
      const int64_t n = int64_t{H} * W;
      for (int c = 0; c < 3; ++c)
        for (int64_t i = 0; i < n; ++i) {
          const bool repaint = !mask_px.defined() || mask_px.ptr<float>()[i] >= 0.5f;
          masked.ptr<float>()[c * n + i] = repaint || !img2img ? 0.5f : init_img.ptr<float>()[c * n + i];
        }
      const Tensor masked_lat = encode(masked);
      Tensor e = Tensor::empty(DType::F32, {1, 5, h, w});
      for (int64_t i = 0; i < h * w; ++i) e.ptr<float>()[i] = mask_lat.defined() ? mask_lat.ptr<float>()[i] : 1.0f;
      std::memcpy(e.ptr<float>() + h * w, masked_lat.ptr<float>(), static_cast<size_t>(4 * h * w) * sizeof(float));
      extra = batch_repeat(e, B);
    }
    if (p.release_components) model.vae_release();
  }
  const bool blend = img2img && mask_lat.defined() && !info.inpainting;

  // 3. Sampling, every batch (UNet loaded once).
  report(SdProgress::Stage::Load);
  UNet& unet = model.unet();
  std::vector<Tensor> latents;
  const Tensor init_b = init_lat.defined() ? batch_repeat(init_lat, B) : Tensor();
  for (int k = 0; k < p.batch_count; ++k) {
    SeededNoise rng(p.seed + static_cast<uint64_t>(k) * static_cast<uint64_t>(B), static_cast<int>(B));
    Tensor noise = Tensor::empty(DType::F32, {B, kLatentChannels, h, w});
    rng.noise_fill(noise);
    UnetFn fn(unet, cond, uncond, B, extra.defined() ? &extra : nullptr);
    ModelFn mf = [&fn](const Tensor& x, double t, Tensor& c, Tensor* u) { fn(x, t, c, u); };
    auto on_step = [&](SdProgress::Stage stage, const SamplerPlan& pl) {
      return [&, stage](int step, const Tensor& x) {
        if (blend && stage == SdProgress::Stage::Sample) mask_blend(x, mask_lat, init_b, noise, pl, step, sched);
        report(stage, k, step + 1, pl.steps());
        if (preview && p.preview_every > 0 && (step + 1) % p.preview_every == 0 && step + 1 < pl.steps()) {
          Tensor rgb;
          if (p.taesd) {
            rgb = p.taesd->decode(x);
            clamp01(rgb);
          } else {
            rgb = sd_latent_preview(x);
          }
          preview(k, step + 1, rgb);
        }
      };
    };
    report(SdProgress::Stage::Sample, k, 0, plan.steps());  // sampling starts (timing base)
    Tensor lat = sampler_run(mf, sched, s1, noise, img2img ? &init_b : nullptr, rng,
                             on_step(SdProgress::Stage::Sample, plan));
    if (p.hires_scale > 1) {
      Tensor up = latent_upscale(lat, p.hires_scale, p.hires_nearest);
      Tensor noise2 = Tensor::empty(DType::F32, up.shape());
      rng.noise_fill(noise2);
      UnetFn fn2(unet, cond, uncond, B, nullptr);
      ModelFn mf2 = [&fn2](const Tensor& x, double t, Tensor& c, Tensor* u) { fn2(x, t, c, u); };
      report(SdProgress::Stage::Hires, k, 0, plan2.steps());
      lat = sampler_run(mf2, sched, s2, noise2, &up, rng, on_step(SdProgress::Stage::Hires, plan2));
    }
    latents.push_back(std::move(lat));
  }
  if (p.release_components) model.unet_release();
  if (p.latents_out) *p.latents_out = latents;

  // 4. Decode.
  std::vector<Tensor> images;
  const bool use_taesd = p.taesd && p.taesd_final;
  Vae* vae = use_taesd ? nullptr : &model.vae(false);
  for (int k = 0; k < p.batch_count; ++k) {
    report(SdProgress::Stage::Decode, k);
    const Tensor& lat = latents[static_cast<size_t>(k)];
    Tensor img;
    if (use_taesd) {
      img = p.taesd->decode(lat);
    } else {
      Tensor z = Tensor::empty(DType::F32, lat.shape());
      for (int64_t i = 0; i < z.numel(); ++i) z.ptr<float>()[i] = lat.ptr<float>()[i] / kLatentScale;
      img = Tensor::empty(DType::F32, {lat.size(0), 3, lat.size(2) * kLatentFactor, lat.size(3) * kLatentFactor});
      vae->decode(z, img);
      for (int64_t i = 0; i < img.numel(); ++i) img.ptr<float>()[i] = (img.ptr<float>()[i] + 1.0f) * 0.5f;
    }
    clamp01(img);
    for (int64_t b = 0; b < lat.size(0); ++b) {
      Tensor one = image_slice(img, b);
      if (mask_px.defined()) {  // pixel composite: keep the init image outside the mask
        const int64_t n = int64_t{H} * W;
        for (int c = 0; c < 3; ++c)
          for (int64_t i = 0; i < n; ++i) {
            const float m = mask_px.ptr<float>()[i];
            float& o = one.ptr<float>()[c * n + i];
            o = m * o + (1.0f - m) * init_img.ptr<float>()[c * n + i];
          }
      }
      images.push_back(std::move(one));
    }
  }
  if (p.release_components && vae) model.vae_release();
  return images;
}

}  // namespace aigc::image
