#!/usr/bin/env python3
"""SD pipeline twin, for tests/unit/test_sd_pipeline.cpp.

Usage: twin_sd_pipeline.py OUT_DIR. Writes:
  sd_resize.bin     image_resize_crop against PIL (Image.resize(BILINEAR, box=...) on mode "F"
                    planes: the crop-and-resize as one resample) and latent_upscale against
                    torch.nn.functional.interpolate (bilinear, align_corners=False; nearest).
  sd_pipe_*         (when the component twins sd_twin_clip / sd_twin_unet / sd_twin_vae are
                    importable) whole-pipeline references, see pipeline() below.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import refdump

torch.set_num_threads(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def pil_crop_resize(img, W, H):
    """img: [1, C, h, w] float -> [1, C, H, W], cover + centre crop, PIL bilinear per plane."""
    _, C, h, w = img.shape
    f = max(W / w, H / h)
    sx = sy = 1.0 / f
    offx, offy = (w - W * sx) / 2.0, (h - H * sy) / 2.0
    box = (offx, offy, offx + W * sx, offy + H * sy)
    planes = []
    for c in range(C):
        im = Image.fromarray(img[0, c].numpy().astype(np.float32), mode="F")
        planes.append(np.asarray(im.resize((W, H), Image.BILINEAR, box=box), dtype=np.float32))
    return torch.from_numpy(np.stack(planes)[None])


def resize():
    g = torch.Generator().manual_seed(7)
    d = {}
    big = torch.rand(1, 3, 45, 70, generator=g)          # down-scale, wider than tall: crops the sides
    d["big"] = big
    d["big_to_16x24"] = pil_crop_resize(big, 24, 16)
    small = torch.rand(1, 3, 5, 3, generator=g)          # up-scale, taller than wide: crops top/bottom
    d["small"] = small
    d["small_to_16x8"] = pil_crop_resize(small, 8, 16)
    mask = torch.rand(1, 1, 33, 17, generator=g)
    d["mask"] = mask
    d["mask_to_16x16"] = pil_crop_resize(mask, 16, 16)
    lat = torch.randn(2, 4, 3, 5, generator=g)
    d["latent"] = lat
    d["latent_up2_bilinear"] = F.interpolate(lat, scale_factor=2, mode="bilinear", align_corners=False)
    d["latent_up3_bilinear"] = F.interpolate(lat, scale_factor=3, mode="bilinear", align_corners=False)
    d["latent_up2_nearest"] = F.interpolate(lat, scale_factor=2, mode="nearest")
    refdump.write(os.path.join(out, "sd_resize.bin"), d)


resize()


# ---- whole pipeline -------------------------------------------------------------------------------
# The tiny models of sd_tiny.md (component twins sd_twin_clip / sd_twin_unet / sd_twin_vae) saved as
# ONE single-file checkpoint with CompVis keys, and the pipeline run on it in plain torch f32:
#   conditioning  fixed ids: "a photo of a cat" is CLIP's [320, 1125, 539, 320, 2368] (OpenAI's
#                 simple_tokenizer), negative prompt "" -> BOS EOS; SD 1.x pads with EOS (49407),
#                 SD 2.x with 0; all weights 1 (A1111's rescale is then the identity).
#   noise         NoiseRng(seed) normals (mt19937_64 + Box-Muller, src/image/noise.h), as f32.
#   sampler       k-diffusion sample_euler on sigmas_normal(steps), CompVisDenoiser (eps) or
#                 CompVisVDenoiser (v), CFG 7 on the model output, cond and uncond as separate
#                 UNet calls (the C++ side batches them: the same math).
#   img2img       init image [1, 3, 64, 64] in [0, 1] -> VAE posterior mean * 0.18215; steps 4,
#                 strength 0.5: sigmas[2:] (int(4 * 0.5) = 2 steps), x = init + sigma_2 * noise.
#   mask blend    (4-channel UNet) after each step x = m x + (1 - m)(init + sigma_next noise), m the
#                 8x8 cell mean of the mask; then the pixel composite m img + (1 - m) init.
#   inpainting    (9-channel UNet) input cat[x_in, m, masked-image latent], masked image = init in
#                 [-1, 1] with the mask >= 0.5 area set to 0; pixel composite at the end.
#   decode        vae.decode(x / 0.18215), (img + 1) / 2 clamped to [0, 1].
try:
    import sd_twin_clip
    import sd_twin_unet
    import sd_twin_vae
    import st_write
    HAVE_COMPONENTS = True
except ImportError as e:  # the component twins are merged separately
    print(f"twin_sd_pipeline: pipeline part skipped ({e})")
    HAVE_COMPONENTS = False

if HAVE_COMPONENTS:
    from twin_samplers import rng_normals, sigma_to_t, sigmas_normal

    SCALE = 0.18215
    PROMPT_IDS = [320, 1125, 539, 320, 2368]

    def chunk(ids, pad):
        ids = [49406] + ids + [49407]
        return torch.tensor([ids + [pad] * (77 - len(ids))])

    def noise_of(seed, shape):
        n = int(np.prod(shape))
        return torch.from_numpy(rng_normals(seed, n).astype(np.float32)).reshape(shape)

    def run(unet, ctx_c, ctx_u, x, sigmas, pred, cfg, extra=None, blend=None):
        """k-diffusion Euler from x (already at sigmas[0]); returns the latents after each step."""
        xs = []
        for i in range(len(sigmas) - 1):
            s, sn = float(sigmas[i]), float(sigmas[i + 1])
            c_in = 1.0 / (s * s + 1) ** 0.5
            x_in = (x.double() * c_in).float()
            t = torch.tensor([sigma_to_t(s)], dtype=torch.float32)
            inp = x_in if extra is None else torch.cat([x_in, extra], dim=1)
            with torch.no_grad():
                mc = unet(inp, t, ctx_c).double()
                mu = unet(inp, t, ctx_u).double()
            m = mu + cfg * (mc - mu)
            xd = x.double()
            if pred == "eps":
                D = xd - s * m
            else:
                D = xd / (s * s + 1) - s / (s * s + 1) ** 0.5 * m
            x = (xd + (xd - D) / s * (sn - s)).float()
            if blend is not None:
                mask_lat, init, noise = blend
                x = mask_lat * x + (1 - mask_lat) * (init + sn * noise)
            xs.append(x)
        return xs

    def decode(vae, x):
        with torch.no_grad():
            img = vae.decode(x / SCALE)
        return ((img + 1) * 0.5).clamp(0, 1)

    def encode(vae, img01):
        with torch.no_grad():
            mean, _ = vae.encode(img01 * 2 - 1)
        return mean * SCALE

    def checkpoint(text, unet, vae, path):
        """F16, as most checkpoints are: every module's parameters are rounded to f16 first (f16_exact)
        so the file holds exactly the model the twin runs."""
        sd = {}
        for prefix, m in (("cond_stage_model.", text), ("model.diffusion_model.", unet), ("first_stage_model.", vae)):
            for k, v in m.state_dict().items():
                sd[prefix + k] = v.half() if v.is_floating_point() else v
        st_write.write(path, sd, metadata={"format": "pt"})
        return sd

    def make_sd15_check(sd, sd2):
        """bench/make_sd15.py generates its key list from the architecture: at the tiny widths it must
        give exactly the twins' keys and shapes (so the full-size bench file has SD's exact layout)."""
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
        import make_sd15
        cfg = make_sd15.TINY21 if sd2 else make_sd15.TINY15
        want = {n: list(s) for n, s, _ in make_sd15.checkpoint_keys(cfg, sd2)
                if n.startswith(("model.", "first_stage_model.", "cond_stage_model."))}
        got = {n: list(t.shape) for n, t in sd.items()}
        if want != got:
            diff = [n for n in set(want) | set(got) if want.get(n) != got.get(n)]
            raise SystemExit(f"make_sd15.py keys differ from the twins' ({len(diff)}): {sorted(diff)[:6]}")

    def pipeline(name, text, unet, vae, pad, clip_skip, pred, seed):
        d = {}
        with torch.no_grad():
            ctx_c = text(chunk(PROMPT_IDS, pad), clip_skip)
            ctx_u = text(chunk([], pad), clip_skip)
        d["cond"], d["uncond"] = ctx_c, ctx_u
        sd = checkpoint(text, unet, vae, os.path.join(out, f"sd_pipe_{name}.safetensors"))
        make_sd15_check(sd, name == "sd21")
        # txt2img: 2 Euler steps, CFG 7.
        noise = noise_of(seed, (1, 4, 8, 8))
        sig = sigmas_normal(2)
        xs = run(unet, ctx_c, ctx_u, noise * float(sig[0]), sig, pred, 7.0)
        d["noise"], d["x1"], d["x2"] = noise, xs[0], xs[1]
        d["image"] = decode(vae, xs[1])
        return d, ctx_c, ctx_u

    def f16_exact(m):
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.half().float())
        return m

    def diffusers_folder(text, unet, vae, path, sd2=False):
        """The same SD 1.5 model as a diffusers folder (f16 safetensors, configs as diffusers writes
        the keys we read; the VAE attention with the older query/key/value names)."""
        import json
        for sub in ("unet", "vae", "text_encoder", "scheduler"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)
        half = lambda sd: {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        st_write.write(os.path.join(path, "unet", "diffusion_pytorch_model.safetensors"),
                       half(sd_twin_unet.unet_to_diffusers(unet.state_dict())))
        st_write.write(os.path.join(path, "vae", "diffusion_pytorch_model.safetensors"),
                       half(sd_twin_vae.vae_to_diffusers(vae.state_dict(), attention_names="old")))
        to_diffusers = sd_twin_clip.openclip_to_diffusers if sd2 else sd_twin_clip.clip_to_diffusers
        st_write.write(os.path.join(path, "text_encoder", "model.safetensors"), half(to_diffusers(text.state_dict())))
        cfgs = {
            "model_index.json": {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.21.0"},
            # diffusers' "attention_head_dim" is the head COUNT: SD 1.x 8 everywhere; SD 2.x lists
            # channels / 64 per level (here channels / 8, the tiny model's head width).
            "unet/config.json": {"_class_name": "UNet2DConditionModel",
                                 "attention_head_dim": [4, 8, 16, 16] if sd2 else 8,
                                 "block_out_channels": [32, 64, 128, 128], "cross_attention_dim": 64,
                                 "in_channels": 4, "use_linear_projection": sd2},
            "text_encoder/config.json": {"hidden_act": "gelu" if sd2 else "quick_gelu", "hidden_size": 64,
                                         "num_attention_heads": 1, "num_hidden_layers": 2},
            "scheduler/scheduler_config.json": {"_class_name": "PNDMScheduler",
                                                "prediction_type": "v_prediction" if sd2 else "epsilon",
                                                "timestep_spacing": "leading", "steps_offset": 1},
        }
        for name, c in cfgs.items():
            with open(os.path.join(path, name), "w") as f:
                json.dump(c, f)

    def main_pipeline():
        g = torch.Generator().manual_seed(11)
        text15, unet15, vae = (f16_exact(sd_twin_clip.tiny_sd15_text()), f16_exact(sd_twin_unet.tiny_sd15_unet()),
                               f16_exact(sd_twin_vae.tiny_vae()))
        d, ctx_c, ctx_u = pipeline("sd15", text15, unet15, vae, 49407, 1, "eps", 42)
        # A prompt of 100 tokens: two chunks (75 + 25); the negative prompt "" is padded to two chunks
        # with the empty prompt's conditioning so cond and uncond run as one UNet batch.
        with torch.no_grad():
            ids = PROMPT_IDS * 20
            long_c = torch.cat([text15(chunk(ids[:75], 49407), 1), text15(chunk(ids[75:], 49407), 1)], dim=1)
            long_u = torch.cat([ctx_u, ctx_u], dim=1)
        sig = sigmas_normal(2)
        noise = noise_of(42, (1, 4, 8, 8))
        xs = run(unet15, long_c, long_u, noise * float(sig[0]), sig, "eps", 7.0)
        d["long_image"] = decode(vae, xs[-1])
        # img2img and mask blending on the same checkpoint: 4 steps, strength 0.5 -> the last 2 run.
        init_img = torch.rand(1, 3, 64, 64, generator=g)
        mask = torch.zeros(1, 1, 64, 64)
        mask[:, :, 8:40, 16:64] = 1.0
        mask[:, :, 40:44, :] = 0.5  # a soft band
        d["init_image"], d["mask"] = init_img, mask
        init = encode(vae, init_img)
        d["init_latent"] = init
        sig = sigmas_normal(4)[2:]
        noise = noise_of(7, (1, 4, 8, 8))
        xs = run(unet15, ctx_c, ctx_u, init + float(sig[0]) * noise, sig, "eps", 7.0)
        d["img2img_image"] = decode(vae, xs[-1])
        mask_lat = F.avg_pool2d(mask, 8)
        xs = run(unet15, ctx_c, ctx_u, init + float(sig[0]) * noise, sig, "eps", 7.0, blend=(mask_lat, init, noise))
        d["blend_image"] = mask * decode(vae, xs[-1]) + (1 - mask) * init_img
        refdump.write(os.path.join(out, "sd_pipe_sd15.bin"), d)
        diffusers_folder(text15, unet15, vae, os.path.join(out, "sd_pipe_sd15_diffusers"))

        # SD 2.1 (OpenCLIP names, pad 0, penultimate layer), run as a v-prediction model.
        text21, unet21 = f16_exact(sd_twin_clip.tiny_sd21_text()), f16_exact(sd_twin_unet.tiny_sd21_unet())
        d, _, _ = pipeline("sd21", text21, unet21, vae, 0, 2, "v", 43)
        refdump.write(os.path.join(out, "sd_pipe_sd21.bin"), d)
        diffusers_folder(text21, unet21, vae, os.path.join(out, "sd_pipe_sd21_diffusers"), sd2=True)

        # 9-channel inpainting UNet: img2img strength 1 with the mask.
        unet9 = f16_exact(sd_twin_unet.tiny_sd15_inpaint_unet())
        d = {}
        checkpoint(text15, unet9, vae, os.path.join(out, "sd_pipe_inpaint.safetensors"))
        masked = init_img * 2 - 1
        masked = masked * (mask < 0.5)
        with torch.no_grad():
            masked_lat = vae.encode(masked)[0] * SCALE
        extra = torch.cat([F.avg_pool2d(mask, 8), masked_lat], dim=1)
        sig = sigmas_normal(2)
        noise = noise_of(5, (1, 4, 8, 8))
        xs = run(unet9, ctx_c, ctx_u, init + float(sig[0]) * noise, sig, "eps", 7.0, extra=extra)
        d["image"] = mask * decode(vae, xs[-1]) + (1 - mask) * init_img
        refdump.write(os.path.join(out, "sd_pipe_inpaint.bin"), d)

    main_pipeline()
