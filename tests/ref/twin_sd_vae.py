#!/usr/bin/env python3
"""SD VAE twin: the tiny KL autoencoder of tests/ref/sd_twin_vae.py (ldm names), its checkpoints in the
real key layouts, and its outputs in float32, for tests/unit/test_vae.cpp.

Usage: twin_sd_vae.py OUT_DIR. Writes:
  sd_vae_tiny.safetensors              CompVis single-file keys ("first_stage_model." prefix), f32
  sd_vae_tiny_diffusers.safetensors    diffusers vae/ keys, attention to_q/to_k/to_v/to_out.0 as Linear [C, C]
  sd_vae_tiny_diffusers_old.safetensors  diffusers keys with the older query/key/value/proj_attn names,
                                       attention weights kept conv-shaped [C, C, 1, 1] (as some
                                       converted files store them), stored as F16
  (the weights are rounded to f16-exact values first, so all three files hold the same model)
  sd_vae_tiny.bin   refdump:
    latent_a [2, 4, 8, 8] -> decoded_a [2, 3, 64, 64]; latent_b [1, 4, 8, 16] -> decoded_b [1, 3, 64, 128]
    image [1, 3, 64, 64] in [-1, 1] -> mean, logvar [1, 4, 8, 8] (logvar clamped as ldm does)
    latent_t [1, 4, 12, 20] -> decoded_t (whole) and tiled_t: tiled decode with 8x8-latent tiles
      overlapping by 4 (the blending described in tiled_decode below), and tiled_t_dense: overlap 6,
      so up to four tiles cover a pixel along an axis (the normalisation by the weight sums matters)
    latent_s [1, 4, 1, 3] -> decoded_s; image_s [1, 3, 8, 8] -> mean_s, logvar_s (the smallest sizes)
    decoded_a_bf16emu: decoded_a with every conv's weight and input rounded to bf16 (what a bf16
      convolution computes, up to summation order), to size the bf16 tolerance
"""
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import refdump
from sd_twin_vae import tiny_vae, vae_to_diffusers

torch.set_num_threads(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def st_write(path, sd, dtype=torch.float32):
    """Minimal safetensors writer (spec: u64 header length, JSON header, raw little-endian data)."""
    header, blob = {}, b""
    for k, v in sd.items():
        a = v.detach().contiguous().to(dtype).numpy().tobytes()
        name = {torch.float32: "F32", torch.float16: "F16"}[dtype]
        header[k] = {"dtype": name, "shape": list(v.shape), "data_offsets": [len(blob), len(blob) + len(a)]}
        blob += a
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


def tiles_1d(n, tile, overlap):
    """Tile starts along one latent axis: stride tile - overlap from 0, the last tile aligned to the end."""
    if n <= tile:
        return [0], n
    starts, s = [], 0
    while s + tile < n:
        starts.append(s)
        s += tile - overlap
    starts.append(n - tile)
    return starts, tile


def ramp_weights(starts, tile, scale):
    """Per tile, the blending weight of each of its pixels along one axis: 1 inside, a linear ramp
    (p + 0.5) / L over the L pixels it shares with the previous tile and (L - 0.5 - p') / L over those
    it shares with the next one."""
    ws = []
    for i, s in enumerate(starts):
        a, b = s * scale, (s + tile) * scale
        w = torch.ones(b - a, dtype=torch.float64)
        p = torch.arange(a, b, dtype=torch.float64)
        if i > 0:
            L = (starts[i - 1] + tile) * scale - a
            if L > 0:
                w = torch.minimum(w, (p - a + 0.5) / L)
        if i + 1 < len(starts):
            L = b - starts[i + 1] * scale
            if L > 0:
                w = torch.minimum(w, (b - p - 0.5) / L)
        ws.append(w)
    return ws


def tiled_decode(vae, z, tile, overlap):
    B, _, h, w = z.shape
    sy, th = tiles_1d(h, tile, overlap)
    sx, tw = tiles_1d(w, tile, overlap)
    wy, wx = ramp_weights(sy, th, 8), ramp_weights(sx, tw, 8)
    acc = torch.zeros(B, 3, 8 * h, 8 * w, dtype=torch.float64)
    sum_y, sum_x = torch.zeros(8 * h, dtype=torch.float64), torch.zeros(8 * w, dtype=torch.float64)
    for i, y0 in enumerate(sy):
        sum_y[8 * y0:8 * (y0 + th)] += wy[i]
    for j, x0 in enumerate(sx):
        sum_x[8 * x0:8 * (x0 + tw)] += wx[j]
    for i, y0 in enumerate(sy):
        for j, x0 in enumerate(sx):
            img = vae.decode(z[:, :, y0:y0 + th, x0:x0 + tw]).double()
            acc[:, :, 8 * y0:8 * (y0 + th), 8 * x0:8 * (x0 + tw)] += img * (wy[i][:, None] * wx[j][None, :])
    return (acc / (sum_y[:, None] * sum_x[None, :])).float()


def bf16(t):
    return t.to(torch.bfloat16).float()


class Bf16Conv:
    """Context: every nn.Conv2d rounds its weight and input to bf16 (f32 accumulation)."""

    def __enter__(self):
        self.orig = nn.Conv2d.forward

        def fwd(m, x):
            return F.conv2d(bf16(x), bf16(m.weight), m.bias, m.stride, m.padding)
        nn.Conv2d.forward = fwd

    def __exit__(self, *a):
        nn.Conv2d.forward = self.orig


with torch.no_grad():
    vae = tiny_vae(seed=1234)
    for p in vae.parameters():  # f16-exact values, so that the f16 file below holds the same model
        p.copy_(p.half().float())
    sd = vae.state_dict()
    st_write(os.path.join(out, "sd_vae_tiny.safetensors"), {"first_stage_model." + k: v for k, v in sd.items()})
    st_write(os.path.join(out, "sd_vae_tiny_diffusers.safetensors"), vae_to_diffusers(sd, "new"))
    old = vae_to_diffusers(sd, "old")
    for k in list(old):  # conv-shaped attention weights
        if ".attentions.0." in k and k.endswith("weight") and old[k].dim() == 2:
            old[k] = old[k].reshape(*old[k].shape, 1, 1)
    st_write(os.path.join(out, "sd_vae_tiny_diffusers_old.safetensors"), old, torch.float16)

    g = torch.Generator().manual_seed(7)
    latent_a = torch.randn(2, 4, 8, 8, generator=g)
    latent_b = torch.randn(1, 4, 8, 16, generator=g)
    latent_t = torch.randn(1, 4, 12, 20, generator=g)
    # A smooth image with some texture, in [-1, 1].
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    image = torch.stack([xx, yy, torch.cos(3 * xx * yy)]).unsqueeze(0)
    image = (0.8 * image + 0.2 * (2 * torch.rand(1, 3, 64, 64, generator=g) - 1)).clamp(-1, 1)
    latent_s = torch.randn(1, 4, 1, 3, generator=g)  # smallest sizes: attention over 3 positions,
    image_s = 2 * torch.rand(1, 3, 8, 8, generator=g) - 1  # and an 8 x 8 image (1 x 1 at the bottom)
    mean_s, logvar_s = vae.encode(image_s)
    decoded_a = vae.decode(latent_a)
    mean, logvar = vae.encode(image)
    with Bf16Conv():
        decoded_a_bf16emu = vae.decode(latent_a)
    print(f"twin_sd_vae: decoded std {decoded_a.std():.3f} max {decoded_a.abs().max():.3f}; mean std "
          f"{mean.std():.3f}; logvar [{logvar.min():.2f}, {logvar.max():.2f}]; bf16 emulation max |diff| "
          f"{(decoded_a_bf16emu - decoded_a).abs().max():.4f}")
    refdump.write(os.path.join(out, "sd_vae_tiny.bin"), {
        "latent_a": latent_a, "decoded_a": decoded_a, "decoded_a_bf16emu": decoded_a_bf16emu,
        "latent_b": latent_b, "decoded_b": vae.decode(latent_b),
        "image": image, "mean": mean, "logvar": logvar,
        "latent_s": latent_s, "decoded_s": vae.decode(latent_s), "image_s": image_s, "mean_s": mean_s,
        "logvar_s": logvar_s,
        "latent_t": latent_t, "decoded_t": vae.decode(latent_t), "tiled_t": tiled_decode(vae, latent_t, 8, 4),
        "tiled_t_dense": tiled_decode(vae, latent_t, 8, 6)})
