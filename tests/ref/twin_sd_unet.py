#!/usr/bin/env python3
"""Stable Diffusion UNet twin: tiny random-weight UNets (sd_tiny.md) in both key layouts, with
inputs and the outputs PyTorch computes, for tests/unit/test_unet.cpp.

Usage: twin_sd_unet.py OUT_DIR. Writes, for NAME in sd15, sd21, sd15_inpaint:
  sd_unet_NAME_compvis.safetensors     single-file CompVis keys ("model.diffusion_model." + ldm name)
  sd_unet_NAME_diffusers.safetensors   the diffusers unet/ file (UNet2DConditionModel names)
  sd_unet_NAME.bin                     refdump: x [2, C, 8, 8], timesteps [2], context [2, 77, 64], out;
                                       x_wide [1, C, 8, 16], timesteps_wide [1], context_wide [1, 77, 64],
                                       out_wide; sd15 also x_big [2, 4, 32, 32] (+ timesteps_big, context_big, out_big)
                                       and context_long [2, 154, 64] (+ x_long, timesteps_long, out_long)
sd15 and sd15_inpaint are stored in f32; sd21 in f16 (as real checkpoints are), its torch model
running on the f16-rounded weights in f32 so that the expected values are exact for the file.
  sd_unet_sd15_q8.bin                  sd15 with its weights through a Q8_0 round trip (emit_q8_0)
  sd_unet_temb.bin                     timestep_embedding: timesteps [5], emb_320 [5, 320], emb_32 [5, 32]
"""
import json
import os
import struct
import sys

import torch

import refdump
import sd_twin_unet as tw

torch.set_num_threads(1)
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)

_ST = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def st_write(path, tensors):
    """Minimal safetensors writer (format spec: u64 header size, JSON header, raw little-endian data)."""
    header, blob = {}, bytearray()
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _ST[t.dtype], "shape": list(t.shape), "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(bytes(blob))


def emit(name, model, dtype):
    if dtype != torch.float32:  # the model computes with the weights as the file stores them
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).float())
    sd = {k: v.to(dtype) for k, v in model.state_dict().items()}
    st_write(os.path.join(out_dir, f"sd_unet_{name}_compvis.safetensors"),
             {"model.diffusion_model." + k: v for k, v in sd.items()})
    st_write(os.path.join(out_dir, f"sd_unet_{name}_diffusers.safetensors"), tw.unet_to_diffusers(sd))
    in_ch = model.input_blocks[0][0].in_channels
    g = torch.Generator().manual_seed(42)
    x = torch.randn(2, in_ch, 8, 8, generator=g)
    t = torch.tensor([981.0, 17.0])
    ctx = torch.randn(2, 77, 64, generator=g)
    x_wide = torch.randn(1, in_ch, 8, 16, generator=g)
    t_wide = torch.tensor([500.0])
    ctx_wide = torch.randn(1, 77, 64, generator=g)
    big = {}
    if name == "sd15":  # 32x32: 1024 tokens at level 0, attention over many key blocks
        x_big = torch.randn(2, in_ch, 32, 32, generator=g)
        with torch.no_grad():
            big = {"x_big": x_big, "timesteps_big": t, "context_big": ctx, "out_big": model(x_big, t, ctx)}
        x_odd = torch.randn(1, in_ch, 9, 10, generator=g)  # a 72x80 image: levels 9x10, 5x5, 3x3, 2x2
        with torch.no_grad():
            big.update({"x_odd": x_odd, "timesteps_odd": t_wide, "context_odd": ctx_wide,
                        "out_odd": model(x_odd, t_wide, ctx_wide)})
        ctx_long = torch.randn(2, 154, 64, generator=g)  # a prompt of two 77-token chunks
        with torch.no_grad():
            big.update({"x_long": x, "timesteps_long": t, "context_long": ctx_long, "out_long": model(x, t, ctx_long)})
    with torch.no_grad():
        y = model(x, t, ctx)
        y_wide = model(x_wide, t_wide, ctx_wide)
    # Random weights in every layer (ldm zero-initialises some): the output must stay O(1).
    assert 0.05 < y.std().item() < 20 and torch.isfinite(y).all(), (name, y.std().item())
    refdump.write(os.path.join(out_dir, f"sd_unet_{name}.bin"),
                  {"x": x, "timesteps": t, "context": ctx, "out": y,
                   "x_wide": x_wide, "timesteps_wide": t_wide, "context_wide": ctx_wide, "out_wide": y_wide, **big})


emit("sd15", tw.tiny_sd15_unet(), torch.float32)
emit("sd21", tw.tiny_sd21_unet(), torch.float16)
emit("sd15_inpaint", tw.tiny_sd15_inpaint_unet(), torch.float32)

def emit_q8_0():
    """sd_unet_sd15_q8.bin: the tiny SD 1.5 UNet with the weights aigc's --unet-type q8_0 quantises
    (conv kernels whose C*k*k, linear weights whose K is a multiple of 32: all but conv_in's 4*9)
    replaced by their Q8_0 round trip, computed by twin_quant's independent quantiser row by row
    ([O, C*k*k] / [N, K], GGML's layout), on the sd15 dump's inputs; out_f32 is the unquantised
    model's output (for the size of the quantisation's effect)."""
    import numpy as np
    import twin_quant
    model = tw.tiny_sd15_unet()  # the same seed as emit("sd15"): the weights of sd_unet_sd15_*.safetensors
    g = torch.Generator().manual_seed(42)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([981.0, 17.0])
    ctx = torch.randn(2, 77, 64, generator=g)
    with torch.no_grad():
        out_f32 = model(x, t, ctx)
        def round_trip(rows):
            """twin_quant.quantize_q8_0's arithmetic on all blocks at once (checked against it below)."""
            xb = rows.astype(np.float32).reshape(-1, twin_quant.QK)
            d = (np.max(np.abs(xb), axis=1) / np.float32(127)).astype(np.float32)
            idv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
            q = twin_quant.round_half_away((xb * idv[:, None]).astype(np.float32))
            deq = d.astype(np.float16).astype(np.float32)[:, None] * q.astype(np.float32)
            return deq.astype(np.float32).reshape(rows.shape)

        n_q = 0
        for name, p in model.named_parameters():
            if not name.endswith("weight") or p.dim() not in (2, 4):
                continue
            rows = p.detach().reshape(p.shape[0], -1).numpy()
            if rows.shape[1] % twin_quant.QK:
                continue
            deq = round_trip(rows)
            for r in (0, rows.shape[0] - 1):
                assert np.array_equal(deq[r], twin_quant.quantize_q8_0(rows[r])[1]), name
            p.copy_(torch.from_numpy(deq).reshape(p.shape))
            n_q += 1
        assert n_q > 100, n_q
        out = model(x, t, ctx)
    refdump.write(os.path.join(out_dir, "sd_unet_sd15_q8.bin"),
                  {"x": x, "timesteps": t, "context": ctx, "out": out, "out_f32": out_f32})


emit_q8_0()

ts = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0])
refdump.write(os.path.join(out_dir, "sd_unet_temb.bin"),
              {"timesteps": ts, "emb_320": tw.timestep_embedding(ts, 320), "emb_32": tw.timestep_embedding(ts, 32)})
