#!/usr/bin/env python3
"""TAESD twin: the TAESD architecture in torch, written from its description (madebyollin/taesd:
nn.Sequential of 3x3 convs, Blocks relu(conv-relu-conv-relu-conv + skip), Clamp tanh(x/3)*3,
nearest Upsample x2, stride-2 convs; TAEF2's mid blocks add x + pool(x), pool = 1x1 conv (n->4n) ->
GroupNorm(4) -> ReLU -> 1x1 conv (4n->n)), run in float32, for tests/unit/test_taesd.cpp.

Usage: twin_taesd.py OUT_DIR. Writes:
  taesd_tiny_{encoder,decoder}.safetensors  random weights, width 8, 4 latent channels (SD layout, no
                                            pool), f32; written with json + struct from the spec
  taesd_tiny.bin     inputs and outputs of those (batch 2, odd sizes)
  taesd_tinypool_{encoder,decoder}.safetensors, taesd_tinypool.bin
                     the same with TAEF2's pool mid blocks and 16 latent channels
  taesd_taef2.bin    (only when shared/models/taesd exists) the real TAEF2 encoder and decoder
                     (.pth, f16 weights upcast to f32) on a fixed latent [1, 32, 8, 8] and image
                     [1, 3, 64, 64]
"""
import json
import os
import struct
import sys

import torch
import torch.nn as nn

import refdump

torch.set_num_threads(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("AIGC_SHARED") or os.path.join(here, "..", "..", "..", "shared")


def conv3(a, b, **kw):
    return nn.Conv2d(a, b, 3, padding=1, **kw)


class SoftClamp(nn.Module):
    def forward(self, x):
        return 3 * torch.tanh(x / 3)


class ResBlock(nn.Module):
    def __init__(self, n, pool):
        super().__init__()
        self.conv = nn.Sequential(conv3(n, n), nn.ReLU(), conv3(n, n), nn.ReLU(), conv3(n, n))
        self.pool = None
        if pool:
            g = 4 * n
            self.pool = nn.Sequential(nn.Conv2d(n, g, 1, bias=False), nn.GroupNorm(4, g), nn.ReLU(),
                                      nn.Conv2d(g, n, 1, bias=False))

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


def encoder(latent, n=64, pool=False):
    layers = [conv3(3, n), ResBlock(n, False)]
    for stage in range(3):
        layers.append(conv3(n, n, stride=2, bias=False))
        layers += [ResBlock(n, pool and stage == 2) for _ in range(3)]
    layers.append(conv3(n, latent))
    return nn.Sequential(*layers)


def decoder(latent, n=64, pool=False):
    layers = [SoftClamp(), conv3(latent, n), nn.ReLU()]
    for stage in range(3):
        layers += [ResBlock(n, pool and stage == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), conv3(n, n, bias=False)]
    layers += [ResBlock(n, False), conv3(n, 3)]
    return nn.Sequential(*layers)


def st_write(path, sd):
    """Minimal safetensors writer (spec: u64 header length, JSON header, data)."""
    header, blob = {}, b""
    for k, v in sd.items():
        a = v.detach().contiguous().float().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [len(blob), len(blob) + len(a)]}
        blob += a
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


with torch.no_grad():
    # ---- tiny random model: the architecture without the shared data ----------------------------
    torch.manual_seed(1234)
    enc, dec = encoder(4, n=8), decoder(4, n=8)
    for m in (enc, dec):  # biases too, so every parameter matters; scaled to keep activations O(1)
        for p in m.parameters():
            p.normal_(0.0, 0.1 if p.dim() == 1 else 0.7 / (p[0].numel() ** 0.5))
    st_write(os.path.join(out, "taesd_tiny_encoder.safetensors"), enc.state_dict())
    st_write(os.path.join(out, "taesd_tiny_decoder.safetensors"), dec.state_dict())
    g = torch.Generator().manual_seed(7)
    latent = torch.randn(2, 4, 5, 7, generator=g) * 2.0
    image = torch.rand(2, 3, 37, 45, generator=g)
    refdump.write(os.path.join(out, "taesd_tiny.bin"), {
        "latent": latent, "decoded": dec(latent), "image": image, "encoded": enc(image)})

    # ---- tiny random model with TAEF2-style pool blocks and 16 latent channels -------------------
    enc, dec = encoder(16, n=8, pool=True), decoder(16, n=8, pool=True)
    for m in (enc, dec):
        for name, p in m.named_parameters():
            if ".pool.1." in name:  # GroupNorm affine: around (1, 0)
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape))
            else:
                p.normal_(0.0, 0.1 if p.dim() == 1 else 0.7 / (p[0].numel() ** 0.5))
    st_write(os.path.join(out, "taesd_tinypool_encoder.safetensors"), enc.state_dict())
    st_write(os.path.join(out, "taesd_tinypool_decoder.safetensors"), dec.state_dict())
    latent = torch.randn(1, 16, 6, 3, generator=g) * 2.0
    image = torch.rand(1, 3, 24, 17, generator=g)
    refdump.write(os.path.join(out, "taesd_tinypool.bin"), {
        "latent": latent, "decoded": dec(latent), "image": image, "encoded": enc(image)})

    # ---- real TAEF2 weights ----------------------------------------------------------------------
    d = os.path.join(shared, "models", "taesd")
    if not os.path.isfile(os.path.join(d, "taef2_decoder.pth")):
        print(f"twin_taesd: {d} absent, TAEF2 part skipped")
        sys.exit(0)
    enc, dec = encoder(32, pool=True), decoder(32, pool=True)
    for m, f in ((enc, "taef2_encoder.pth"), (dec, "taef2_decoder.pth")):
        sd = torch.load(os.path.join(d, f), map_location="cpu")
        m.load_state_dict({k: v.float() for k, v in sd.items()})  # strict: keys and shapes must match
    g = torch.Generator().manual_seed(42)
    latent = torch.randn(1, 32, 8, 8, generator=g)
    # A smooth image (gradients and a disc) rather than noise: closer to what the encoder was trained on.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    disc = (((yy - 0.5) ** 2 + (xx - 0.4) ** 2) < 0.06).float()
    image = torch.stack([xx, yy, 0.3 + 0.6 * disc]).unsqueeze(0)
    image = (image + 0.05 * torch.rand(1, 3, 64, 64, generator=g)).clamp(0, 1)
    refdump.write(os.path.join(out, "taesd_taef2.bin"), {
        "latent": latent, "decoded": dec(latent), "image": image, "encoded": enc(image)})
