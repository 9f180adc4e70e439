#!/usr/bin/env python3
"""PyTorch side of `aigc bench train --model unet`: the same text-conditioned UNet (src/train/unet_tiny.h;
the formulas of tests/ref/twin_train_image_unet.py, f32), the same training step (forward, MSE on the
noise, backward, clip_grad_norm_ 1.0, AdamW betas 0.9/0.95 weight decay 0.1), timed the same way:
one untimed warm-up step, then the mean over --steps steps, per thread count.

  /usr/bin/python3 bench/train_unet_torch.py --threads-list 1,2
  build/aigc bench train --model unet --threads-list 1,2      # the engine, same defaults

The model is the twin's own code (tests/ref/twin_train_image_unet.py: param_shapes, forward), its
sizes set to these. Each thread count runs in a child process (bench/torch_children.py), like
bench/train_gpt_torch.py. The caption ids are random words of the shapes vocabulary (8 tokens).
"""
import argparse
import math
import os
import sys
import time

import torch

from torch_children import children_run, common_args_add

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import twin_train_image_unet as twin  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--image", type=int, default=32)
ap.add_argument("--ch", type=int, default=32)
ap.add_argument("--groups", type=int, default=8)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--text-dim", type=int, default=32)
ap.add_argument("--t-dim", type=int, default=32)
ap.add_argument("--vocab", type=int, default=58)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--levels", type=int, default=1)
ap.add_argument("--ch1", type=int, default=0)
ap.add_argument("--ch2", type=int, default=0)
common_args_add(ap)
args = ap.parse_args()
S, C, G, H, CC, TD, VT, B = args.image, args.ch, args.groups, args.heads, args.text_dim, args.t_dim, args.vocab, args.batch
CFG = twin.Cfg(B, S, C, G, TD, VT, 8, CC, H, args.levels, args.ch1, args.ch2)
WIDTHS = f"{C}/{CFG.C1}/{CFG.C2}" if args.levels == 2 else (f"{C}/{CFG.C1}" if CFG.C1 != C else f"{C}")
NAME = f"unet S{S} c{WIDTHS} G{G} H{H} text{CC} t{TD}"

if not args.child:
    children_run(__file__, [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
                            ("image", "ch", "levels", "ch1", "ch2", "groups", "heads", "text_dim", "t_dim", "vocab", "batch",
                             "steps")],
                 args.threads_list, args.blas, "| model | params | batch | threads | ms/step | images/s |\n|---|---|---|---|---|---|")
    sys.exit(0)


for nt in [int(t) for t in args.threads_list.split(",")]:
    torch.set_num_threads(nt)
    torch.manual_seed(1)
    params = {}
    for name, shp in twin.param_shapes(CFG).items():
        if len(shp) == 1:
            init = torch.ones(shp) if name.endswith(".g") else torch.zeros(shp)
        else:
            init = torch.randn(shp) * (1.0 if name.startswith("text.") else math.prod(shp[1:]) ** -0.5)
        params[name] = torch.nn.Parameter(init)
    opt = torch.optim.AdamW(params.values(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x, noise = torch.randn(B, 3, S, S), torch.randn(B, 3, S, S)
    temb, ids = torch.randn(B, TD), torch.randint(0, VT, (B, CFG.TC))

    def step():
        opt.zero_grad(set_to_none=False)
        twin.forward(params, x, temb, ids, noise, CFG).backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sec = (time.perf_counter() - t0) / args.steps
    n = sum(p.numel() for p in params.values())
    print(f"| torch {NAME} | {n / 1e6:.3f}M | {B} | {nt} | {sec * 1e3:.1f} | {B / sec:.1f} |", flush=True)
