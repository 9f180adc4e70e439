#!/usr/bin/env python3
"""Twin for the GPT trainer (src/train/gpt, autograd, adamw; tests/unit/test_train_gpt.cpp), in the
style of llm.c's test_gpt2: a tiny Llama-architecture model written from the architecture in
float64 PyTorch, its parameters, one batch, the loss, the gradient of EVERY parameter (torch
autograd), and the losses of 10 steps of torch.optim.AdamW with clip_grad_norm_ and a cosine
schedule with linear warm-up.

Model (x [N, C], N = B*T, D = C/H, G kv heads):
  x = E[tokens]; per layer: h = rmsnorm(x) * g_attn; q, k = rope(h Wq^T), rope(h Wk^T); v = h Wv^T;
  causal softmax attention (scale 1/sqrt(D), query head h reads kv head h // (H/G)); x += a Wo^T;
  h = rmsnorm(x) * g_ffn; x += (silu(h Wg^T) * h Wu^T) Wd^T;
  logits = (rmsnorm(x) * g_out) Wout^T; loss = mean cross-entropy of the next token.
  rmsnorm(v) = v / sqrt(mean(v^2) + eps). RoPE is the interleaved-pair form that "llama" GGUF files
  use: pairs (2i, 2i+1) rotated by pos * base^(-2i/D).
AdamW: weight decay on the matrices only (torch param groups), betas (0.9, 0.95), eps 1e-8;
lr(step) = lr_max * (step+1)/warmup during warm-up, then lr_min + (lr_max-lr_min)/2 (1 + cos(pi p)),
p = (step - warmup) / (total - warmup).

Writes OUT_DIR/train_gpt.bin: config i32 [V, C, L, H, G, F, B, T], hparams f32 [lr_max, lr_min,
warmup, total, weight_decay, clip, beta1, beta2, eps, rms_eps, rope_base], tokens i32 [B, T+1],
p.NAME (each parameter), loss f32 [1], g.NAME (each gradient), losses f32 [10] (loss at step i,
before update i), norms f32 [10] (global gradient norm before clipping at step i).
"""
import math
import os
import sys

import numpy as np
import torch

import refdump

torch.set_num_threads(1)

V, C, L, H, G, F, B, T = 48, 32, 2, 4, 2, 64, 2, 8
D = C // H
EPS, BASE = 1e-5, 10000.0
LR_MAX, LR_MIN, WARMUP, TOTAL = 2e-2, 2e-3, 3, 10
WD, CLIP, B1, B2, ADAM_EPS = 0.1, 1.0, 0.9, 0.95, 1e-8


def rmsnorm(x, g):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * g


def rope_pairs(x, heads):
    """x [B*T, heads*D]; interleaved pairs (2i, 2i+1) rotated by t * base^(-2i/D)."""
    xv = x.view(B, T, heads, D // 2, 2)
    inv = BASE ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)          # [D/2]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]      # [T, D/2]
    c, s = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    a, b = xv[..., 0], xv[..., 1]
    return torch.stack([a * c - b * s, a * s + b * c], -1).reshape(B * T, heads * D)


def forward(p, tokens):
    inp, tgt = tokens[:, :T].reshape(-1), tokens[:, 1:].reshape(-1)
    x = p["token_embd.weight"][inp]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(L):
        n = f"blk.{l}."
        h = rmsnorm(x, p[n + "attn_norm.weight"])
        q = rope_pairs(h @ p[n + "attn_q.weight"].T, H).view(B, T, H, D).transpose(1, 2)
        k = rope_pairs(h @ p[n + "attn_k.weight"].T, G).view(B, T, G, D).transpose(1, 2)
        v = (h @ p[n + "attn_v.weight"].T).view(B, T, G, D).transpose(1, 2)
        k = k.repeat_interleave(H // G, dim=1)
        v = v.repeat_interleave(H // G, dim=1)
        s = q @ k.transpose(-1, -2) / math.sqrt(D) + mask
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B * T, H * D)
        x = x + a @ p[n + "attn_output.weight"].T
        h = rmsnorm(x, p[n + "ffn_norm.weight"])
        x = x + (torch.nn.functional.silu(h @ p[n + "ffn_gate.weight"].T) * (h @ p[n + "ffn_up.weight"].T)) @ p[n + "ffn_down.weight"].T
    logits = rmsnorm(x, p["output_norm.weight"]) @ p["output.weight"].T
    return torch.nn.functional.cross_entropy(logits, tgt)


def lr_at(step):
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    prog = min(1.0, (step - WARMUP) / max(1, TOTAL - WARMUP))
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * prog))


def main(out_dir):
    g = torch.Generator().manual_seed(20261129)

    def randn(*shape, std):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(torch.float32).to(torch.float64)

    shapes = {"token_embd.weight": (V, C)}
    for l in range(L):
        n = f"blk.{l}."
        shapes.update({n + "attn_norm.weight": (C,), n + "attn_q.weight": (H * D, C), n + "attn_k.weight": (G * D, C),
                       n + "attn_v.weight": (G * D, C), n + "attn_output.weight": (C, H * D), n + "ffn_norm.weight": (C,),
                       n + "ffn_gate.weight": (F, C), n + "ffn_up.weight": (F, C), n + "ffn_down.weight": (C, F)})
    shapes.update({"output_norm.weight": (C,), "output.weight": (V, C)})
    p = {}
    for name, shp in shapes.items():
        if len(shp) == 1:
            p[name] = 1 + randn(*shp, std=0.1)
        else:
            p[name] = randn(*shp, std=0.5 if name == "token_embd.weight" else shp[1] ** -0.5)
        p[name].requires_grad_(True)
    tokens = torch.randint(0, V, (B, T + 1), generator=g)

    dump = {"config": np.array([V, C, L, H, G, F, B, T], dtype=np.int32),
            "hparams": np.array([LR_MAX, LR_MIN, WARMUP, TOTAL, WD, CLIP, B1, B2, ADAM_EPS, EPS, BASE], dtype=np.float32),
            "tokens": tokens.to(torch.int32)}
    for name in shapes:
        dump["p." + name] = p[name].detach().clone()  # the optimiser updates p in place
    loss = forward(p, tokens)
    loss.backward()
    dump["loss"] = loss.detach().reshape(1)
    for name in shapes:
        dump["g." + name] = p[name].grad.detach().clone()

    decay = [p[n] for n in shapes if len(shapes[n]) == 2]
    no_decay = [p[n] for n in shapes if len(shapes[n]) == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR_MAX, betas=(B1, B2), eps=ADAM_EPS)
    losses, norms = [], []
    for step in range(10):
        opt.zero_grad()
        loss = forward(p, tokens)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(p.values()), CLIP)))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.step()
        losses.append(float(loss))
    dump["losses"] = np.array(losses, dtype=np.float32)
    dump["norms"] = np.array(norms, dtype=np.float32)
    refdump.write(os.path.join(out_dir, "train_gpt.bin"), dump)


if __name__ == "__main__":
    main(sys.argv[1])
