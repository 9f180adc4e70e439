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
