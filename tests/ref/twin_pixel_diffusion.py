#!/usr/bin/env python3
"""Twin for pixel-diffusion inference (src/image/pixel_diffusion.h; tests/unit/test_pixel_diffusion.cpp).

A random tiny checkpoint in the real file layout (image/pixel_diffusion_file.h: UnetTrainer parameters
as F32 tensors, config / vocab / training JSON as safetensors metadata), then whole generations run
in torch float64 from the published algorithms:
  model     twin_train_image_unet.forward (the UNet the trainer's own twin defines), its output
            taken before the loss; timestep embedding [sin(t f_i), cos(t f_i)], f_i = exp(-ln(1e4) i / half)
            at the sampler's continuous t, rounded to f32 as the C++ computes it in double.
  schedule  DDPM linear betas (1e-4 .. 0.02, 1000 steps), torch.cumprod -> sigmas; k-diffusion's
            DiscreteSchedule and samplers (twin_samplers.py's sigma_to_t, sigmas_normal, run_euler,
            run_dpmpp_2m, pointed at this schedule), CompVisDenoiser scalings, guidance
            eps = u + cfg (c - u), u from the empty caption (ids [1, 0, ...]) or a negative prompt.
  noise     image b of a run with seed s starts from NoiseRng(s + b) (twin_samplers.rng_normals:
            mt19937_64 + Box-Muller), rounded to f32.
  img2img   int(steps * strength) steps from index steps - int(steps * strength), x = init + sigma z.
  mask      after each step x = m x + (1 - m) (init + sigma_next z) (pixel space).
  image     clamp((x + 1) / 2, 0, 1).
  v         the same parameters in a checkpoint saying "prediction": "v": the UNet output is v
            (Salimans & Ho 2022). k-diffusion's CompVisVDenoiser: D = x / (sigma^2 + 1) - sigma /
            sqrt(sigma^2 + 1) v (guidance on v); DDIM (diffusers DDIMScheduler, eta 0, "leading"
            timesteps + 1) in DDPM space from x = z: x0 = sqrt(abar) x - sqrt(1 - abar) v, eps =
            sqrt(abar) v + sqrt(1 - abar) x (twin_samplers.x0_eps).
Writes OUT_DIR/pixel_diffusion_tiny.safetensors, OUT_DIR/pixel_diffusion_tiny_v.safetensors (v-prediction),
OUT_DIR/pixel_diffusion_shapes16.safetensors (the shapes vocabulary at 16 px, for `aigc eval image`)
and OUT_DIR/pixel_diffusion.bin:
  case{c}_xstart [B, 3, S, S] the sampler's start, case{c}_x{i} after step i, case{c}_image [B, 3, S, S]; init [1, 3, 8, 8] in [0, 1],
  mask [1, 1, 8, 8]; the cases are listed in CASES (the C++ test runs the same ones);
  vcase{c}_x{i}, vcase{c}_image for VCASES on the v checkpoint, vcase0_den0 [B, 3, S, S] the guided D of
  v case 0's first step (what the preview after step 1 shows).
"""
import json
import math
import os
import sys

import numpy as np
import torch

import refdump
import st_write
import twin_samplers as ks
import twin_train_image_unet as tu

torch.set_num_threads(1)
D = torch.float64
S, CN, G, TD, TC, CC, H = 8, 8, 2, 8, 5, 6, 2
VOCAB = ["<pad>", "<empty>", "a", "two", "red", "blue", "circle", "circles", "on", "background", "letter", "K"]
BETA0, BETA1, T = 1e-4, 0.02, 1000

# sampler, steps, cfg, prompt ids, negative ids, seed, batch, size, strength (0: txt2img), mask
CASES = [
    ("euler", 3, 4.0, [3, 4, 7, 0, 0], [1, 0, 0, 0, 0], 7, 2, 8, 0.0, False),         # "two red circles"
    ("dpm++2m", 3, 3.0, [2, 5, 6, 0, 0], [4, 0, 0, 0, 0], 11, 1, 12, 0.0, False),     # "a blue circle", neg "red"
    ("euler", 4, 4.0, [2, 4, 10, 11, 0], [1, 0, 0, 0, 0], 5, 1, 8, 0.5, False),      # img2img, 2 of 4 steps
    ("dpm++2m", 3, 2.0, [2, 4, 6, 8, 5], [1, 0, 0, 0, 0], 3, 1, 8, 1.0, True),        # inpainting (mask blend)
]

# v-prediction checkpoint: sampler, steps, cfg, prompt ids, negative ids, seed, batch, size
VCASES = [
    ("euler", 3, 4.0, [3, 4, 7, 0, 0], [1, 0, 0, 0, 0], 7, 2, 8),     # "two red circles"
    ("ddim", 3, 3.0, [2, 5, 6, 0, 0], [4, 0, 0, 0, 0], 11, 1, 8),     # "a blue circle", neg "red"
]


class _Head:
    """torch.nn.functional with mse_loss(out, target) -> out: the trainer twin's forward, stopped
    before its loss, gives the UNet output."""

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    @staticmethod
    def mse_loss(out, target):
        return out


# The shapes data set's caption words (train/shapes_dataset.cpp's grammar), for a 16 px checkpoint
# that `aigc eval image` can run (its adherence is ~0: the weights are random).
SHAPES_VOCAB = (["<pad>", "<empty>", "a", "two", "three", "red", "green", "blue", "yellow", "purple", "orange",
                 "white", "black", "gray", "circle", "circles", "square", "squares", "triangle", "triangles",
                 "digit", "letter"] + list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") + ["on", "background"])


def configure_twins(vocab=VOCAB, tc=TC):
    tu.Cn, tu.G, tu.TD, tu.VT, tu.TC, tu.CC, tu.H = CN, G, TD, len(vocab), tc, CC, H
    tu.F = _Head()
    betas = torch.linspace(BETA0, BETA1, T, dtype=D)
    ks.ac = torch.cumprod(1.0 - betas, 0)
    ks.sigmas_all = ((1 - ks.ac) / ks.ac) ** 0.5
    ks.log_sigmas = ks.sigmas_all.log()
    ks.T = T


def unet(p, x, t, ids):
    tu.B = x.shape[0]
    half = TD // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=D) / half)
    ang = float(t) * freqs
    temb = torch.cat([ang.sin(), ang.cos()]).to(torch.float32).to(D)[None].expand(x.shape[0], TD)
    return tu.forward(p, x, temb, ids, None)


def params_random(gen):
    p = {}
    for name, shp in tu.param_shapes().items():
        if len(shp) == 1:
            v = torch.randn(*shp, generator=gen, dtype=D) * 0.1
            p[name] = v + 1 if name.endswith(".g") else v
        else:
            fan_in = int(np.prod(shp[1:]))
            p[name] = torch.randn(*shp, generator=gen, dtype=D) * (1.0 if name.startswith("text.") else fan_in ** -0.5)
        p[name] = p[name].to(torch.float32).to(D)
    return p


def run_case(p, case, init, mask, out, c):
    sampler, steps, cfg, ids, neg, seed, B, size, strength, masked = case
    cond_ids = torch.tensor([ids] * B)
    both_ids = torch.tensor([ids] * B + [neg] * B)

    def den(x, sigma):
        sigma = float(sigma)
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        t = ks.sigma_to_t(sigma)
        if cfg == 1:
            e = unet(p, x * c_in, t, cond_ids)
        else:
            both = unet(p, torch.cat([x * c_in, x * c_in]), t, both_ids)
            e = both[B:] + cfg * (both[:B] - both[B:])
        return x - sigma * e

    z = torch.stack([torch.from_numpy(ks.rng_normals(seed + b, 3 * size * size)).to(torch.float32).to(D)
                     .reshape(3, size, size) for b in range(B)])
    sig = ks.sigmas_normal(steps)
    start = steps - int(steps * strength) if strength > 0 else 0
    sig = sig[start:]
    x0 = (init * 2 - 1).expand(B, 3, size, size) if strength > 0 else None
    x = (x0 if x0 is not None else 0) + z * sig[0]
    out[f"case{c}_xstart"] = x.clone()
    xs = []

    def rec(xn):
        if masked:
            i = len(xs) + 1
            keep = x0 + float(sig[i]) * z
            xn.copy_(mask * xn + (1 - mask) * keep)
        xs.append(xn.clone())

    run = {"euler": ks.run_euler, "dpm++2m": ks.run_dpmpp_2m}[sampler]
    run(den, x, sig, rec, None)
    for i, xi in enumerate(xs):
        out[f"case{c}_x{i}"] = xi
    out[f"case{c}_image"] = ((xs[-1] + 1) / 2).clamp(0, 1)


def guided_model(p, cfg, ids, neg, B):
    cond_ids = torch.tensor([ids] * B)
    both_ids = torch.tensor([ids] * B + [neg] * B)

    def m(x_in, t):
        if cfg == 1:
            return unet(p, x_in, t, cond_ids)
        both = unet(p, torch.cat([x_in, x_in]), t, both_ids)
        return both[B:] + cfg * (both[:B] - both[B:])
    return m


def run_vcase(p, case, out, c):
    sampler, steps, cfg, ids, neg, seed, B, size = case
    model = guided_model(p, cfg, ids, neg, B)
    z = torch.stack([torch.from_numpy(ks.rng_normals(seed + b, 3 * size * size)).to(torch.float32).to(D)
                     .reshape(3, size, size) for b in range(B)])
    xs = []
    if sampler == "euler":
        def den(x, sigma):
            sigma = float(sigma)
            s2 = sigma ** 2 + 1
            return x / s2 - sigma / s2 ** 0.5 * model(x / s2 ** 0.5, ks.sigma_to_t(sigma))
        sig = ks.sigmas_normal(steps)
        out[f"vcase{c}_den0"] = den(z * sig[0], sig[0])
        ks.run_euler(den, z * sig[0], sig, lambda xn: xs.append(xn.clone()), None)
    else:
        ks.run_ddim(model, "v", z, ks.timesteps(steps, "leading"), steps, 0.0, lambda xn: xs.append(xn.clone()), None)
    for i, xi in enumerate(xs):
        out[f"vcase{c}_x{i}"] = xi
    out[f"vcase{c}_image"] = ((xs[-1] + 1) / 2).clamp(0, 1)


def main(out_dir):
    configure_twins()
    gen = torch.Generator().manual_seed(777)
    p = params_random(gen)
    def checkpoint(name, params, image, vocab, tc, training, prediction="epsilon"):
        config = {"image": image, "ch": CN, "groups": G, "t_dim": TD, "text_vocab": len(vocab), "text_len": tc,
                  "text_dim": CC, "heads": H, "eps": 1e-5,
                  "schedule": {"kind": "linear", "beta_start": BETA0, "beta_end": BETA1, "steps": T},
                  "prediction": prediction}
        st_write.write(os.path.join(out_dir, name), {k: v.to(torch.float32) for k, v in params.items()},
                       metadata={"aigc.model": "pixel-diffusion", "aigc.config": json.dumps(config),
                                 "aigc.vocab": json.dumps(vocab), "aigc.training": json.dumps(training)})

    checkpoint("pixel_diffusion_tiny.safetensors", p, S, VOCAB, TC, {"glyphs": True})
    checkpoint("pixel_diffusion_tiny_v.safetensors", p, S, VOCAB, TC, {"glyphs": True}, "v")
    configure_twins(SHAPES_VOCAB, 8)
    checkpoint("pixel_diffusion_shapes16.safetensors", params_random(torch.Generator().manual_seed(778)), 16,
               SHAPES_VOCAB, 8, {"glyphs": False})
    configure_twins()
    init = torch.rand(1, 3, S, S, generator=gen, dtype=D).to(torch.float32).to(D)
    mask = torch.zeros(1, 1, S, S, dtype=D)
    mask[..., 2:6, 1:5] = 1.0
    mask[..., 0, :] = 0.5
    out = {"init": init, "mask": mask}
    for c, case in enumerate(CASES):
        run_case(p, case, init, mask, out, c)
    for c, case in enumerate(VCASES):
        run_vcase(p, case, out, c)
    refdump.write(os.path.join(out_dir, "pixel_diffusion.bin"), out)


if __name__ == "__main__":
    main(sys.argv[1])
