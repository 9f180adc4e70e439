#!/usr/bin/env python3
"""PyTorch side of `aigc bench train`: the same Llama-architecture GPT (same shapes, f32, rms_norm,
interleaved-pair rope, causal attention with materialised scores, SwiGLU, untied output), the same
training step (forward, cross-entropy, backward, clip_grad_norm_, AdamW), timed the same way:
one untimed warm-up step, then the mean over --steps steps, per thread count.

  /usr/bin/python3 bench/train_gpt_torch.py --threads-list 1,2
  build/aigc bench train --threads-list 1,2          # the engine, same defaults

Each thread count runs in a child process (bench/torch_children.py: OpenBLAS first on the library
path when installed, --blas system keeps Debian's alternative; OMP/OPENBLAS threads set to it).
"""
import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F

from torch_children import children_run, common_args_add

ap = argparse.ArgumentParser()
ap.add_argument("--vocab", type=int, default=2048)
ap.add_argument("--embd", type=int, default=192)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=6)
ap.add_argument("--ff", type=int, default=512)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--ctx", type=int, default=128)
common_args_add(ap)
args = ap.parse_args()

if not args.child:
    children_run(__file__, [f"--{k}={getattr(args, k)}" for k in ("vocab", "embd", "layers", "heads", "ff", "batch", "ctx", "steps")],
                 args.threads_list, args.blas, "| model | params | B x T | threads | ms/step | tokens/s |\n|---|---|---|---|---|---|")
    sys.exit(0)

V, C, L, H, FF, B, T = args.vocab, args.embd, args.layers, args.heads, args.ff, args.batch, args.ctx
D = C // H


class Gpt(torch.nn.Module):
    def __init__(self):
        super().__init__()
        p = torch.nn.Parameter
        self.emb = p(torch.randn(V, C) * 0.02)
        self.blocks = torch.nn.ParameterList()
        for _ in range(L):
            for shape in [(C,), (C, C), (C, C), (C, C), (C, C), (C,), (FF, C), (FF, C), (C, FF)]:
                self.blocks.append(p(torch.ones(shape) if len(shape) == 1 else torch.randn(shape) * 0.02))
        self.out_norm = p(torch.ones(C))
        self.out = p(torch.randn(V, C) * 0.02)
        inv = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
        ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos()[None, :, None, :])
        self.register_buffer("sin", ang.sin()[None, :, None, :])
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

    @staticmethod
    def rms(x, g):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g

    def rope(self, x):  # x [B, T, H, D], pairs (2i, 2i+1)
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * self.cos - b * self.sin, a * self.sin + b * self.cos], -1).flatten(-2)

    def forward(self, idx, tgt):
        x = self.emb[idx]  # [B, T, C]
        for l in range(L):
            an, wq, wk, wv, wo, fn, wg, wu, wd = self.blocks[9 * l: 9 * l + 9]
            h = self.rms(x, an)
            q = self.rope((h @ wq.T).view(B, T, H, D)).transpose(1, 2)
            k = self.rope((h @ wk.T).view(B, T, H, D)).transpose(1, 2)
            v = (h @ wv.T).view(B, T, H, D).transpose(1, 2)
            s = q @ k.transpose(-1, -2) / math.sqrt(D) + self.mask
            a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
            x = x + a @ wo.T
            h = self.rms(x, fn)
            x = x + (F.silu(h @ wg.T) * (h @ wu.T)) @ wd.T
        logits = self.rms(x, self.out_norm) @ self.out.T
        return F.cross_entropy(logits.view(-1, V), tgt.view(-1))


for nt in [int(t) for t in args.threads_list.split(",")]:
    torch.set_num_threads(nt)
    torch.manual_seed(1)
    model = Gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    idx = torch.randint(0, V, (B, T + 1))
    inp, tgt = idx[:, :T].contiguous(), idx[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=False)
        model(inp, tgt).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sec = (time.perf_counter() - t0) / args.steps
    n = sum(p.numel() for p in model.parameters())
    print(f"| torch llama V{V} C{C} L{L} H{H} F{FF} | {n / 1e6:.2f}M | {B} x {T} | {nt} | {sec * 1e3:.1f} | {B * T / sec:.0f} |",
          flush=True)
