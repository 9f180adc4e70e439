#!/usr/bin/env python3
"""Twin for the tiny text-conditioned UNet trainer (src/train/unet_tiny.h; tests/unit/test_train_image_unet.cpp),
in the style of llm.c's test_gpt2: parameters, one batch, the loss, the gradient of EVERY parameter
(float64 torch autograd), and the losses of 10 steps of torch.optim.AdamW with clip_grad_norm_ and the
cosine schedule with linear warm-up.
Model (c channels, G groups, eps 1e-5 everywhere; gn = group_norm, ln = layer_norm):
  text:  ctx = ln(tok[ids] + pos[0..Tc-1])                                  [B, Tc, Cc]
  time:  e = w2 silu(w1 temb + b1) + b2                                     [B, c]
  res(x, cin): r = conv1(silu(gn1(x))) + (emb.w silu(e) + emb.b)[:, :, None, None]
               r = conv2(silu(gn2(r))); out = r + (skip(x) if cin != c else x)   (3x3 convs pad 1; skip 1x1)
  h0 = in(x_t); h1 = res0(h0); d = down(h1) (3x3, stride 2, pad 1); m = res1(d)
  attention on m's tokens [B, S'^2, c]: t = gn(m) as tokens; t += o(mha(q(ln1 t), k(ln1 t), v(ln1 t)));
  t += co(mha(cq(ln2 t), ck(ctx), cv(ctx))); m2 = m + t back to NCHW    (heads H, scale 1/sqrt(c/H))
  u = up(nearest_x2(m2)); h2 = res2(cat[u, h1], cin=2c); out = conv_out(silu(gn(h2)))
  loss = mean((out - noise)^2)
Writes OUT_DIR/train_image_unet.bin: config i32 [B, S, c, G, Td, Vt, Tc, Cc, H], hparams f32 [lr_max,
lr_min, warmup, total, weight_decay, clip, beta1, beta2, eps], x [B, 3, S, S], temb [B, Td], ids i32
[B, Tc], noise [B, 3, S, S], p.NAME, loss [1], g.NAME, losses [10], norms [10]; tsteps [B] (the
timesteps temb embeds), alphas_cumprod [1000] (linear betas 1e-4..0.02, torch.cumprod).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import refdump

torch.set_num_threads(1)
B, S, Cn, G, TD, VT, TC, CC, H = 2, 8, 8, 2, 8, 12, 5, 6, 2
EPS = 1e-5
LR_MAX, LR_MIN, WARMUP, TOTAL = 1e-2, 1e-3, 3, 10
WD, CLIP, B1, B2, ADAM_EPS = 0.1, 1.0, 0.9, 0.95, 1e-8


def param_shapes():
    s = {"text.tok": (VT, CC), "text.pos": (TC, CC), "text.ln.g": (CC,), "text.ln.b": (CC,),
         "time.w1": (Cn, TD), "time.b1": (Cn,), "time.w2": (Cn, Cn), "time.b2": (Cn,),
         "in.w": (Cn, 3, 3, 3), "in.b": (Cn,)}
    for i, cin in ((0, Cn), (1, Cn), (2, 2 * Cn)):
        n = f"res{i}."
        s.update({n + "gn1.g": (cin,), n + "gn1.b": (cin,), n + "conv1.w": (Cn, cin, 3, 3), n + "conv1.b": (Cn,),
                  n + "emb.w": (Cn, Cn), n + "emb.b": (Cn,), n + "gn2.g": (Cn,), n + "gn2.b": (Cn,),
                  n + "conv2.w": (Cn, Cn, 3, 3), n + "conv2.b": (Cn,)})
        if cin != Cn:
            s.update({n + "skip.w": (Cn, cin, 1, 1), n + "skip.b": (Cn,)})
        if i == 0:
            s.update({"down.w": (Cn, Cn, 3, 3), "down.b": (Cn,)})
        if i == 1:
            s.update({"attn.gn.g": (Cn,), "attn.gn.b": (Cn,), "attn.ln1.g": (Cn,), "attn.ln1.b": (Cn,),
                      "attn.q": (Cn, Cn), "attn.k": (Cn, Cn), "attn.v": (Cn, Cn), "attn.o.w": (Cn, Cn), "attn.o.b": (Cn,),
                      "attn.ln2.g": (Cn,), "attn.ln2.b": (Cn,), "attn.cq": (Cn, Cn), "attn.ck": (Cn, CC),
                      "attn.cv": (Cn, CC), "attn.co.w": (Cn, Cn), "attn.co.b": (Cn,),
                      "up.w": (Cn, Cn, 3, 3), "up.b": (Cn,)})
    s.update({"out.gn.g": (Cn,), "out.gn.b": (Cn,), "out.w": (3, Cn, 3, 3), "out.b": (3,)})
    return s


def mha(q, k, v):
    b, tq, _ = q.shape
    tk = k.shape[1]
    d = Cn // H
    qh = q.view(b, tq, H, d).transpose(1, 2)
    kh = k.view(b, tk, H, d).transpose(1, 2)
    vh = v.view(b, tk, H, d).transpose(1, 2)
    p = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), -1)
    return (p @ vh).transpose(1, 2).reshape(b, tq, H * d)


def res(p, n, x, e, cin):
    r = F.conv2d(F.silu(F.group_norm(x, G, p[n + "gn1.g"], p[n + "gn1.b"], EPS)), p[n + "conv1.w"], p[n + "conv1.b"], padding=1)
    r = r + F.linear(F.silu(e), p[n + "emb.w"], p[n + "emb.b"])[:, :, None, None]
    r = F.conv2d(F.silu(F.group_norm(r, G, p[n + "gn2.g"], p[n + "gn2.b"], EPS)), p[n + "conv2.w"], p[n + "conv2.b"], padding=1)
    skip = F.conv2d(x, p[n + "skip.w"], p[n + "skip.b"]) if cin != Cn else x
    return r + skip


def forward(p, x, temb, ids, noise):
    ctx = F.layer_norm(p["text.tok"][ids] + p["text.pos"][None], (CC,), p["text.ln.g"], p["text.ln.b"], EPS)
    e = F.linear(F.silu(F.linear(temb, p["time.w1"], p["time.b1"])), p["time.w2"], p["time.b2"])
    h0 = F.conv2d(x, p["in.w"], p["in.b"], padding=1)
    h1 = res(p, "res0.", h0, e, Cn)
    d = F.conv2d(h1, p["down.w"], p["down.b"], stride=2, padding=1)
    m = res(p, "res1.", d, e, Cn)
    s2 = m.shape[2] * m.shape[3]
    t = F.group_norm(m, G, p["attn.gn.g"], p["attn.gn.b"], EPS).view(B, Cn, s2).transpose(1, 2)
    l1 = F.layer_norm(t, (Cn,), p["attn.ln1.g"], p["attn.ln1.b"], EPS)
    t = t + F.linear(mha(l1 @ p["attn.q"].T, l1 @ p["attn.k"].T, l1 @ p["attn.v"].T), p["attn.o.w"], p["attn.o.b"])
    l2 = F.layer_norm(t, (Cn,), p["attn.ln2.g"], p["attn.ln2.b"], EPS)
    t = t + F.linear(mha(l2 @ p["attn.cq"].T, ctx @ p["attn.ck"].T, ctx @ p["attn.cv"].T), p["attn.co.w"], p["attn.co.b"])
    m2 = m + t.transpose(1, 2).reshape(m.shape)
    u = F.conv2d(F.interpolate(m2, scale_factor=2, mode="nearest"), p["up.w"], p["up.b"], padding=1)
    h2 = res(p, "res2.", torch.cat([u, h1], 1), e, 2 * Cn)
    out = F.conv2d(F.silu(F.group_norm(h2, G, p["out.gn.g"], p["out.gn.b"], EPS)), p["out.w"], p["out.b"], padding=1)
    return F.mse_loss(out, noise)


def lr_at(step):
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    prog = min(1.0, (step - WARMUP) / max(1, TOTAL - WARMUP))
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * prog))


def main(out_dir):
    g = torch.Generator().manual_seed(4242)

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(torch.float32).to(torch.float64)

    shapes = param_shapes()
    p = {}
    for name, shp in shapes.items():
        if len(shp) == 1:
            p[name] = (1 + randn(*shp, std=0.1)) if name.endswith(".g") else randn(*shp, std=0.1)
        else:
            fan_in = int(np.prod(shp[1:]))
            p[name] = randn(*shp, std=1.0 if name.startswith("text.") else fan_in ** -0.5)
        p[name].requires_grad_(True)
    x, noise = randn(B, 3, S, S), randn(B, 3, S, S)
    tsteps = torch.tensor([17.0, 503.0], dtype=torch.float64)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(TD // 2, dtype=torch.float64) / (TD // 2))
    ang = tsteps[:, None] * freqs[None]
    temb = torch.cat([ang.sin(), ang.cos()], 1).to(torch.float32).to(torch.float64)
    ids = torch.randint(0, VT, (B, TC), generator=g)
    dump = {"config": np.array([B, S, Cn, G, TD, VT, TC, CC, H], dtype=np.int32),
            "hparams": np.array([LR_MAX, LR_MIN, WARMUP, TOTAL, WD, CLIP, B1, B2, ADAM_EPS], dtype=np.float32),
            "x": x, "temb": temb, "ids": ids.to(torch.int32), "noise": noise}
    for name in shapes:
        dump["p." + name] = p[name].detach().clone()
    loss = forward(p, x, temb, ids, noise)
    loss.backward()
    dump["loss"] = loss.detach().reshape(1)
    for name in shapes:
        dump["g." + name] = p[name].grad.detach().clone()
    decay = [p[n] for n in shapes if len(shapes[n]) >= 2]
    no_decay = [p[n] for n in shapes if len(shapes[n]) == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR_MAX, betas=(B1, B2), eps=ADAM_EPS)
    losses, norms = [], []
    for step in range(10):
        opt.zero_grad()
        loss = forward(p, x, temb, ids, noise)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(p.values()), CLIP)))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.step()
        losses.append(float(loss))
    dump["losses"] = np.array(losses, dtype=np.float32)
    dump["norms"] = np.array(norms, dtype=np.float32)
    # DDPM linear schedule (as diffusers' DDPMScheduler "linear"): alphas_cumprod over 1000 steps
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    dump["alphas_cumprod"] = torch.cumprod(1.0 - betas, 0)
    dump["tsteps"] = tsteps
    refdump.write(os.path.join(out_dir, "train_image_unet.bin"),
                  {k: (v.detach().to(torch.float32) if torch.is_tensor(v) and v.is_floating_point() else v)
                   for k, v in dump.items()})
    print("losses", [round(l, 4) for l in losses])


if __name__ == "__main__":
    main(sys.argv[1])
