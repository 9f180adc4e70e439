#!/usr/bin/env python3
"""Twin for the backward kernels of src/train/backward.h (tests/unit/test_autograd.cpp).

For each op, random f32 inputs and an upstream gradient dy; the expected output and input
gradients come from torch.autograd in float64 (y = op(inputs); y.backward(dy)). Shapes are odd on
purpose (rows 7, features 5/13/19, vocabulary 11) so no kernel can rely on a SIMD width.
  linear:   x [7, 13], w [5, 13]; y = x w^T
  rms_norm: x [7, 19], g [19], eps 1e-5; y = x / sqrt(mean(x^2) + eps) * g
  rope:     x [B=2, T=5, H=3, D=6], normal (pairs 2i, 2i+1) and neox (pairs i, i+3), base 10000,
            positions 0..T-1; theta_i = t * base^(-2i/D)
  attention: B=2, T=5, H=4, G=2, D=3 (attention_long: T=21, D=5); q [B*T, H*D], k/v [B*T, G*D], causal, scale 1/sqrt(D),
            query head h reads kv head h // 2
  silu, mul, add: [7, 13]
  embedding: table [11, 6], ids [9] with repeats
  cross_entropy: logits [7, 11], targets [7]; mean over rows; dloss = 1.7
Writes OUT_DIR/train_ops.bin with entries OP.NAME.
"""
import math
import os
import sys

import numpy as np
import torch

import refdump

torch.set_num_threads(1)
g = torch.Generator().manual_seed(77)


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(torch.float32).to(torch.float64)


def leaf(t):
    return t.clone().requires_grad_(True)


def rope(x, neox):
    B, T, H, D = x.shape
    half = D // 2
    inv = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]  # [T, D/2]
    c, s = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    if neox:
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * c - b * s, a * s + b * c], -1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], -1).reshape(x.shape)


def main(out_dir):
    d = {}

    x, w, dy = leaf(rnd(7, 13)), leaf(rnd(5, 13)), rnd(7, 5)
    y = x @ w.T
    y.backward(dy)
    d.update({"linear.x": x, "linear.w": w, "linear.dy": dy, "linear.y": y, "linear.dx": x.grad, "linear.dw": w.grad})

    x, gm, dy = leaf(rnd(7, 19, scale=2.0)), leaf(1 + rnd(19, scale=0.3)), rnd(7, 19)
    y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * gm
    y.backward(dy)
    d.update({"rms_norm.x": x, "rms_norm.g": gm, "rms_norm.dy": dy, "rms_norm.y": y, "rms_norm.dx": x.grad,
              "rms_norm.dg": gm.grad})

    for neox in (False, True):
        name = "rope_neox" if neox else "rope"
        x, dy = leaf(rnd(2, 5, 3, 6)), rnd(2, 5, 3, 6)
        y = rope(x, neox)
        y.backward(dy)
        d.update({name + ".x": x, name + ".dy": dy, name + ".y": y, name + ".dx": x.grad})

    # T = 5: the fast kernels' loop path; T = 21 (> kAttentionLoopMaxT): their matmul path.
    for name, (B, T, H, G, D) in (("attention", (2, 5, 4, 2, 3)), ("attention_long", (2, 21, 4, 2, 5))):
        q, k, v = leaf(rnd(B * T, H * D)), leaf(rnd(B * T, G * D)), leaf(rnd(B * T, G * D))
        dy = rnd(B * T, H * D)
        qh = q.view(B, T, H, D).transpose(1, 2)
        kh = k.view(B, T, G, D).transpose(1, 2).repeat_interleave(H // G, dim=1)
        vh = v.view(B, T, G, D).transpose(1, 2).repeat_interleave(H // G, dim=1)
        s = qh @ kh.transpose(-1, -2) / math.sqrt(D) + torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        p = torch.softmax(s, -1)
        y = (p @ vh).transpose(1, 2).reshape(B * T, H * D)
        y.backward(dy)
        d.update({name + ".q": q, name + ".k": k, name + ".v": v, name + ".dy": dy, name + ".y": y,
                  name + ".probs": p, name + ".dq": q.grad, name + ".dk": k.grad, name + ".dv": v.grad})

    x, dy = leaf(rnd(7, 13, scale=3.0)), rnd(7, 13)
    y = torch.nn.functional.silu(x)
    y.backward(dy)
    d.update({"silu.x": x, "silu.dy": dy, "silu.y": y, "silu.dx": x.grad})

    a, b, dy = leaf(rnd(7, 13)), leaf(rnd(7, 13)), rnd(7, 13)
    y = a * b
    y.backward(dy)
    d.update({"mul.a": a, "mul.b": b, "mul.dy": dy, "mul.y": y, "mul.da": a.grad, "mul.db": b.grad})

    table, dy = leaf(rnd(11, 6)), rnd(9, 6)
    ids = torch.tensor([3, 0, 10, 3, 7, 3, 1, 10, 5])
    y = table[ids]
    y.backward(dy)
    d.update({"embedding.table": table, "embedding.ids": ids.to(torch.int32), "embedding.dy": dy,
              "embedding.y": y, "embedding.dtable": table.grad})

    logits, tgt = leaf(rnd(7, 11, scale=3.0)), torch.tensor([0, 10, 4, 4, 2, 9, 6])
    loss = torch.nn.functional.cross_entropy(logits, tgt)
    (loss * 1.7).backward()
    d.update({"cross_entropy.logits": logits, "cross_entropy.targets": tgt.to(torch.int32),
              "cross_entropy.loss": loss.detach().reshape(1), "cross_entropy.dlogits": logits.grad})

    refdump.write(os.path.join(out_dir, "train_ops.bin"), {k: (v.detach() if torch.is_tensor(v) else v) for k, v in d.items()})


if __name__ == "__main__":
    main(sys.argv[1])
