#!/usr/bin/python3
"""A random-weight Stable Diffusion 1.5 checkpoint of full size, for `aigc bench image`.

    /usr/bin/python3 bench/make_sd15.py [OUT] [--tiny] [--sd2] [--dtype f16|f32|bf16] [--list]

Writes OUT (default bench-models/sd15-random-f16.safetensors, git-ignored; about 2.1 GB) as one
safetensors file with the exact key names and shapes of v1-5-pruned-emaonly.safetensors (CompVis /
ldm names): UNet under model.diffusion_model. (openaimodel.UNetModel: model_channels 320,
channel_mult 1,2,4,4, 2 res blocks, attention at the first three levels, 1x1-conv proj_in/out,
context 768), VAE under first_stage_model. (AutoencoderKL: ch 128, ch_mult 1,2,4,4, z 4), CLIP
ViT-L/14's text model under cond_stage_model.transformer.text_model. (Hugging Face names, 12
layers, width 768, with the int64 position_ids buffer real files carry), and the DDPM schedule
buffers (betas, alphas_cumprod, ...; f32 [1000]) at the top level. The key list is generated here
from the architecture (numpy only, no torch needed); `--list` prints "name shape" lines instead of
writing (tests compare the --tiny list with the PyTorch twins' state_dict keys).

Weights: N(0, 1/fan_in) (so activations stay O(1) through the depth), GroupNorm/LayerNorm weights
1 and biases 0, other biases N(0, 0.01); seed 0. `--sd2` gives SD 2.1's layout instead (OpenCLIP
ViT-H text model under cond_stage_model.model., 23+1 layers, width 1024; linear proj_in/out;
context 1024). `--tiny` uses the test models' reduced widths (tests/ref: model channels 32, text
width 64, 2 layers (3 for SD2), VAE ch 32, vocab 49408).
Existing files are overwritten. Run the full size once: it writes about 2 GB.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

FULL = dict(mc=320, mult=[1, 2, 4, 4], attn=[1, 1, 1, 0], nres=2, vae_ch=128, vocab=49408, pos=77)
SD15 = dict(FULL, ctx=768, text_width=768, text_layers=12, text_mlp=3072)
SD21 = dict(FULL, ctx=1024, text_width=1024, text_layers=24, text_mlp=4096)
TINY15 = dict(SD15, mc=32, ctx=64, text_width=64, text_layers=2, text_mlp=256, vae_ch=32)
TINY21 = dict(SD21, mc=32, ctx=64, text_width=64, text_layers=3, text_mlp=256, vae_ch=32)


def unet_keys(c, sd2, in_ch=4):
    """(name, shape, kind) of ldm's UNetModel, kind in {w, norm_w, norm_b, b}."""
    k = []
    mc, ctx, temb = c["mc"], c["ctx"], c["mc"] * 4

    def lin(name, o, i, bias=True):
        k.append((name + ".weight", [o, i], "w"))
        if bias:
            k.append((name + ".bias", [o], "b"))

    def conv(name, o, i, ks):
        k.append((name + ".weight", [o, i, ks, ks], "w"))
        k.append((name + ".bias", [o], "b"))

    def norm(name, ch):
        k.append((name + ".weight", [ch], "norm_w"))
        k.append((name + ".bias", [ch], "norm_b"))

    def res(p, cin, cout):
        norm(p + "in_layers.0", cin)
        conv(p + "in_layers.2", cout, cin, 3)
        lin(p + "emb_layers.1", cout, temb)
        norm(p + "out_layers.0", cout)
        conv(p + "out_layers.3", cout, cout, 3)
        if cin != cout:
            conv(p + "skip_connection", cout, cin, 1)

    def st(p, ch):
        norm(p + "norm", ch)
        if sd2:
            lin(p + "proj_in", ch, ch)
        else:
            conv(p + "proj_in", ch, ch, 1)
        b = p + "transformer_blocks.0."
        for a, kv in (("attn1", ch), ("attn2", ctx)):
            lin(b + a + ".to_q", ch, ch, bias=False)
            lin(b + a + ".to_k", ch, kv, bias=False)
            lin(b + a + ".to_v", ch, kv, bias=False)
            lin(b + a + ".to_out.0", ch, ch)
        lin(b + "ff.net.0.proj", ch * 8, ch)
        lin(b + "ff.net.2", ch, ch * 4)
        for n in ("norm1", "norm2", "norm3"):
            norm(b + n, ch)
        if sd2:
            lin(p + "proj_out", ch, ch)
        else:
            conv(p + "proj_out", ch, ch, 1)

    lin("time_embed.0", temb, mc)
    lin("time_embed.2", temb, temb)
    conv("input_blocks.0.0", mc, in_ch, 3)
    skips, ch, i = [mc], mc, 1
    levels = len(c["mult"])
    for l, m in enumerate(c["mult"]):
        for _ in range(c["nres"]):
            res(f"input_blocks.{i}.0.", ch, mc * m)
            ch = mc * m
            if c["attn"][l]:
                st(f"input_blocks.{i}.1.", ch)
            skips.append(ch)
            i += 1
        if l + 1 < levels:
            conv(f"input_blocks.{i}.0.op", ch, ch, 3)
            skips.append(ch)
            i += 1
    res("middle_block.0.", ch, ch)
    st("middle_block.1.", ch)
    res("middle_block.2.", ch, ch)
    i = 0
    for l in reversed(range(levels)):
        m = c["mult"][l]
        for r in range(c["nres"] + 1):
            res(f"output_blocks.{i}.0.", ch + skips.pop(), mc * m)
            ch = mc * m
            j = 1
            if c["attn"][l]:
                st(f"output_blocks.{i}.1.", ch)
                j = 2
            if l > 0 and r == c["nres"]:
                conv(f"output_blocks.{i}.{j}.conv", ch, ch, 3)
            i += 1
    norm("out.0", mc)
    conv("out.2", 4, mc, 3)
    return k


def vae_keys(c):
    k = []
    ch, mult = c["vae_ch"], c["mult"]

    def conv(name, o, i, ks):
        k.append((name + ".weight", [o, i, ks, ks], "w"))
        k.append((name + ".bias", [o], "b"))

    def norm(name, n):
        k.append((name + ".weight", [n], "norm_w"))
        k.append((name + ".bias", [n], "norm_b"))

    def res(p, cin, cout):
        norm(p + "norm1", cin)
        conv(p + "conv1", cout, cin, 3)
        norm(p + "norm2", cout)
        conv(p + "conv2", cout, cout, 3)
        if cin != cout:
            conv(p + "nin_shortcut", cout, cin, 1)

    def mid(p, n):
        res(p + "mid.block_1.", n, n)
        norm(p + "mid.attn_1.norm", n)
        for x in ("q", "k", "v", "proj_out"):
            conv(p + "mid.attn_1." + x, n, n, 1)
        res(p + "mid.block_2.", n, n)

    conv("encoder.conv_in", ch, 3, 3)
    cur = ch
    for l, m in enumerate(mult):
        for b in range(2):
            res(f"encoder.down.{l}.block.{b}.", cur, ch * m)
            cur = ch * m
        if l + 1 < len(mult):
            conv(f"encoder.down.{l}.downsample.conv", cur, cur, 3)
    mid("encoder.", cur)
    norm("encoder.norm_out", cur)
    conv("encoder.conv_out", 8, cur, 3)
    cur = ch * mult[-1]
    conv("decoder.conv_in", cur, 4, 3)
    mid("decoder.", cur)
    for l in reversed(range(len(mult))):
        for b in range(3):
            res(f"decoder.up.{l}.block.{b}.", cur, ch * mult[l])
            cur = ch * mult[l]
        if l > 0:
            conv(f"decoder.up.{l}.upsample.conv", cur, cur, 3)
    norm("decoder.norm_out", cur)
    conv("decoder.conv_out", 3, cur, 3)
    conv("quant_conv", 8, 8, 1)
    conv("post_quant_conv", 4, 4, 1)
    return k


def clip_hf_keys(c):
    k, w, m = [], c["text_width"], c["text_mlp"]

    def lin(name, o, i):
        k.append((name + ".weight", [o, i], "w"))
        k.append((name + ".bias", [o], "b"))

    def norm(name):
        k.append((name + ".weight", [w], "norm_w"))
        k.append((name + ".bias", [w], "norm_b"))

    k.append(("text_model.embeddings.token_embedding.weight", [c["vocab"], w], "emb"))
    k.append(("text_model.embeddings.position_embedding.weight", [c["pos"], w], "emb"))
    k.append(("text_model.embeddings.position_ids", [1, c["pos"]], "ids"))
    for n in range(c["text_layers"]):
        p = f"text_model.encoder.layers.{n}."
        for x in ("q_proj", "k_proj", "v_proj", "out_proj"):
            lin(p + "self_attn." + x, w, w)
        norm(p + "layer_norm1")
        lin(p + "mlp.fc1", m, w)
        lin(p + "mlp.fc2", w, m)
        norm(p + "layer_norm2")
    norm("text_model.final_layer_norm")
    return k


def clip_openclip_keys(c):
    k, w, m = [], c["text_width"], c["text_mlp"]

    def lin(name, o, i):
        k.append((name + ".weight", [o, i], "w"))
        k.append((name + ".bias", [o], "b"))

    def norm(name):
        k.append((name + ".weight", [w], "norm_w"))
        k.append((name + ".bias", [w], "norm_b"))

    k.append(("positional_embedding", [c["pos"], w], "emb"))
    k.append(("text_projection", [w, w], "w"))
    k.append(("logit_scale", [], "b"))
    k.append(("token_embedding.weight", [c["vocab"], w], "emb"))
    for n in range(c["text_layers"]):
        p = f"transformer.resblocks.{n}."
        k.append((p + "attn.in_proj_weight", [3 * w, w], "w"))
        k.append((p + "attn.in_proj_bias", [3 * w], "b"))
        lin(p + "attn.out_proj", w, w)
        norm(p + "ln_1")
        lin(p + "mlp.c_fc", m, w)
        lin(p + "mlp.c_proj", w, m)
        norm(p + "ln_2")
    norm("ln_final")
    return k


def checkpoint_keys(c, sd2):
    keys = [("model.diffusion_model." + n, s, t) for n, s, t in unet_keys(c, sd2)]
    keys += [("first_stage_model." + n, s, t) for n, s, t in vae_keys(c)]
    if sd2:
        keys += [("cond_stage_model.model." + n, s, t) for n, s, t in clip_openclip_keys(c)]
    else:
        keys += [("cond_stage_model.transformer." + n, s, t) for n, s, t in clip_hf_keys(c)]
    for n in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
              "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
              "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
              "posterior_mean_coef1", "posterior_mean_coef2"):
        keys.append((n, [1000], "sched"))
    return keys


def schedule_buffers():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    a = np.cumprod(1.0 - betas)
    a_prev = np.append(1.0, a[:-1])
    pv = betas * (1.0 - a_prev) / (1.0 - a)
    return {
        "betas": betas, "alphas_cumprod": a, "alphas_cumprod_prev": a_prev, "sqrt_alphas_cumprod": np.sqrt(a),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1 - a), "log_one_minus_alphas_cumprod": np.log(1 - a),
        "sqrt_recip_alphas_cumprod": np.sqrt(1 / a), "sqrt_recipm1_alphas_cumprod": np.sqrt(1 / a - 1),
        "posterior_variance": pv, "posterior_log_variance_clipped": np.log(np.maximum(pv, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(a_prev) / (1 - a),
        "posterior_mean_coef2": (1 - a_prev) * np.sqrt(1 - betas) / (1 - a),
    }


NP = {"f16": np.float16, "f32": np.float32}
ST = {"f16": "F16", "f32": "F32", "bf16": "BF16"}


def values(rng, shape, kind):
    n = int(np.prod(shape)) if shape else 1
    if kind == "norm_w":
        return np.ones(shape, np.float32)
    if kind == "norm_b":
        return np.zeros(shape, np.float32)
    if kind == "b":
        return (rng.standard_normal(n, dtype=np.float32) * 0.01).reshape(shape)
    if kind == "emb":
        return (rng.standard_normal(n, dtype=np.float32) * 0.02).reshape(shape)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(n, dtype=np.float32) / np.sqrt(fan_in)).reshape(shape)


def encode(a, dtype):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "bf16":  # round to nearest even
        u = a.view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    return a.astype(NP[dtype]).tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--sd2", action="store_true")
    ap.add_argument("--dtype", default="f16", choices=["f16", "f32", "bf16"])
    ap.add_argument("--list", action="store_true", help="print 'name shape' lines, write nothing")
    args = ap.parse_args()
    c = (TINY21 if args.sd2 else TINY15) if args.tiny else (SD21 if args.sd2 else SD15)
    keys = checkpoint_keys(c, args.sd2)
    if args.list:
        for n, s, _ in keys:
            print(n, "x".join(map(str, s)) if s else "scalar")
        return
    out = args.out or os.path.join("bench-models", "sd{}-random{}-{}.safetensors".format(
        "21" if args.sd2 else "15", "-tiny" if args.tiny else "", args.dtype))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    sched = schedule_buffers()

    def entry(n, s, t):
        if t == "ids":
            return "I64", 8
        if t == "sched":
            return "F32", 4
        return ST[args.dtype], 2 if args.dtype != "f32" else 4

    header, off = {"__metadata__": {"format": "pt", "note": "random weights (bench/make_sd15.py)"}}, 0
    # Largest element size first keeps every tensor aligned.
    order = sorted(keys, key=lambda k: -entry(*k)[1])
    for n, s, t in order:
        dt, es = entry(n, s, t)
        size = es * (int(np.prod(s)) if s else 1)
        header[n] = {"dtype": dt, "shape": s, "data_offsets": [off, off + size]}
        off += size
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    rng = np.random.default_rng(0)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for n, s, t in order:
            if t == "ids":
                f.write(np.arange(c["pos"], dtype=np.int64).reshape(s).tobytes())
            elif t == "sched":
                f.write(sched[n].astype(np.float32).tobytes())
            else:
                f.write(encode(values(rng, s, t), args.dtype))
    os.replace(tmp, out)
    params = sum(int(np.prod(s)) if s else 1 for n, s, t in keys)
    print(f"wrote {out}: {len(keys)} tensors, {params / 1e6:.1f} M parameters, {os.path.getsize(out) / 2**30:.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
