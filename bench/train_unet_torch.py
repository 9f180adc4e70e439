#!/usr/bin/env python3
"""PyTorch side of `aigc bench train --model unet`: the same text-conditioned UNet (src/train/unet_tiny.h;
the formulas of tests/ref/twin_train_image_unet.py, f32), the same training step (forward, MSE on the
noise, backward, clip_grad_norm_ 1.0, AdamW betas 0.9/0.95 weight decay 0.1), timed the same way:
one untimed warm-up step, then the mean over --steps steps, per thread count.

  /usr/bin/python3 bench/train_unet_torch.py --threads-list 1,2
  build/aigc bench train --model unet --threads-list 1,2      # the engine, same defaults

Each thread count runs in a child process with OMP_NUM_THREADS (and OpenBLAS's, first on the library
path when installed: torch's CPU convolutions and GEMMs) set to it, like bench/train_gpt_torch.py.
The caption ids are random words of the shapes vocabulary (8 tokens, vocabulary --vocab).
"""
import argparse
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--image", type=int, default=32)
ap.add_argument("--ch", type=int, default=32)
ap.add_argument("--groups", type=int, default=8)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--text-dim", type=int, default=32)
ap.add_argument("--t-dim", type=int, default=32)
ap.add_argument("--vocab", type=int, default=58)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--threads-list", default="1,2")
ap.add_argument("--blas", choices=["openblas", "system"], default="openblas")
ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
args = ap.parse_args()
OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
S, C, G, H, CC, TD, VT, B = args.image, args.ch, args.groups, args.heads, args.text_dim, args.t_dim, args.vocab, args.batch
TC, EPS = 8, 1e-5
NAME = f"unet S{S} c{C} G{G} H{H} text{CC} t{TD}"

if not args.child:
    print("| model | params | batch | threads | ms/step | images/s |\n|---|---|---|---|---|---|", flush=True)
    for nt in [int(t) for t in args.threads_list.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(nt), OPENBLAS_NUM_THREADS=str(nt))
        blas = "system libblas"
        if args.blas == "openblas" and os.path.exists(os.path.join(OPENBLAS_DIR, "libblas.so.3")):
            env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + ":" + env.get("LD_LIBRARY_PATH", "")
            blas = "OpenBLAS"
        argv = [f"--{k.replace('_', '-')}={getattr(args, k)}"
                for k in ("image", "ch", "groups", "heads", "text_dim", "t_dim", "vocab", "batch", "steps")]
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--threads-list", str(nt), "--child", "1"],
                       env=env, check=True)
    print(f"(torch {torch.__version__}, GEMM via {blas})")
    sys.exit(0)


def param_shapes():
    s = {"text.tok": (VT, CC), "text.pos": (TC, CC), "text.ln.g": (CC,), "text.ln.b": (CC,),
         "time.w1": (C, TD), "time.b1": (C,), "time.w2": (C, C), "time.b2": (C,), "in.w": (C, 3, 3, 3), "in.b": (C,),
         "down.w": (C, C, 3, 3), "down.b": (C,), "up.w": (C, C, 3, 3), "up.b": (C,),
         "attn.gn.g": (C,), "attn.gn.b": (C,), "attn.ln1.g": (C,), "attn.ln1.b": (C,), "attn.q": (C, C),
         "attn.k": (C, C), "attn.v": (C, C), "attn.o.w": (C, C), "attn.o.b": (C,), "attn.ln2.g": (C,),
         "attn.ln2.b": (C,), "attn.cq": (C, C), "attn.ck": (C, CC), "attn.cv": (C, CC), "attn.co.w": (C, C),
         "attn.co.b": (C,), "out.gn.g": (C,), "out.gn.b": (C,), "out.w": (3, C, 3, 3), "out.b": (3,)}
    for i, cin in ((0, C), (1, C), (2, 2 * C)):
        n = f"res{i}."
        s.update({n + "gn1.g": (cin,), n + "gn1.b": (cin,), n + "conv1.w": (C, cin, 3, 3), n + "conv1.b": (C,),
                  n + "emb.w": (C, C), n + "emb.b": (C,), n + "gn2.g": (C,), n + "gn2.b": (C,),
                  n + "conv2.w": (C, C, 3, 3), n + "conv2.b": (C,)})
        if cin != C:
            s.update({n + "skip.w": (C, cin, 1, 1), n + "skip.b": (C,)})
    return s


def mha(q, k, v):
    b, tq, _ = q.shape
    tk, d = k.shape[1], C // H
    qh, kh, vh = (t.view(b, -1, H, d).transpose(1, 2) for t in (q, k, v))
    p = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), -1)
    return (p @ vh).transpose(1, 2).reshape(b, tq, H * d)


def res(p, n, x, e, cin):
    r = F.conv2d(F.silu(F.group_norm(x, G, p[n + "gn1.g"], p[n + "gn1.b"], EPS)), p[n + "conv1.w"], p[n + "conv1.b"], padding=1)
    r = r + F.linear(F.silu(e), p[n + "emb.w"], p[n + "emb.b"])[:, :, None, None]
    r = F.conv2d(F.silu(F.group_norm(r, G, p[n + "gn2.g"], p[n + "gn2.b"], EPS)), p[n + "conv2.w"], p[n + "conv2.b"], padding=1)
    return r + (F.conv2d(x, p[n + "skip.w"], p[n + "skip.b"]) if cin != C else x)


def forward(p, x, temb, ids, noise):
    ctx = F.layer_norm(p["text.tok"][ids] + p["text.pos"][None], (CC,), p["text.ln.g"], p["text.ln.b"], EPS)
    e = F.linear(F.silu(F.linear(temb, p["time.w1"], p["time.b1"])), p["time.w2"], p["time.b2"])
    h1 = res(p, "res0.", F.conv2d(x, p["in.w"], p["in.b"], padding=1), e, C)
    m = res(p, "res1.", F.conv2d(h1, p["down.w"], p["down.b"], stride=2, padding=1), e, C)
    s2 = m.shape[2] * m.shape[3]
    t = F.group_norm(m, G, p["attn.gn.g"], p["attn.gn.b"], EPS).view(B, C, s2).transpose(1, 2)
    l1 = F.layer_norm(t, (C,), p["attn.ln1.g"], p["attn.ln1.b"], EPS)
    t = t + F.linear(mha(l1 @ p["attn.q"].T, l1 @ p["attn.k"].T, l1 @ p["attn.v"].T), p["attn.o.w"], p["attn.o.b"])
    l2 = F.layer_norm(t, (C,), p["attn.ln2.g"], p["attn.ln2.b"], EPS)
    t = t + F.linear(mha(l2 @ p["attn.cq"].T, ctx @ p["attn.ck"].T, ctx @ p["attn.cv"].T), p["attn.co.w"], p["attn.co.b"])
    m2 = m + t.transpose(1, 2).reshape(m.shape)
    u = F.conv2d(F.interpolate(m2, scale_factor=2, mode="nearest"), p["up.w"], p["up.b"], padding=1)
    h2 = res(p, "res2.", torch.cat([u, h1], 1), e, 2 * C)
    out = F.conv2d(F.silu(F.group_norm(h2, G, p["out.gn.g"], p["out.gn.b"], EPS)), p["out.w"], p["out.b"], padding=1)
    return F.mse_loss(out, noise)


for nt in [int(t) for t in args.threads_list.split(",")]:
    torch.set_num_threads(nt)
    torch.manual_seed(1)
    params = {}
    for name, shp in param_shapes().items():
        if len(shp) == 1:
            init = torch.ones(shp) if name.endswith(".g") else torch.zeros(shp)
        else:
            init = torch.randn(shp) * (1.0 if name.startswith("text.") else math.prod(shp[1:]) ** -0.5)
        params[name] = torch.nn.Parameter(init)
    opt = torch.optim.AdamW(params.values(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x, noise = torch.randn(B, 3, S, S), torch.randn(B, 3, S, S)
    temb, ids = torch.randn(B, TD), torch.randint(0, VT, (B, TC))

    def step():
        opt.zero_grad(set_to_none=False)
        forward(params, x, temb, ids, noise).backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sec = (time.perf_counter() - t0) / args.steps
    n = sum(p.numel() for p in params.values())
    print(f"| torch {NAME} | {n / 1e6:.3f}M | {B} | {nt} | {sec * 1e3:.1f} | {B / sec:.1f} |", flush=True)
