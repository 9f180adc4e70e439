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
Option levels / ch1 / ch2 (c1 = ch1 or c, c2 = ch2 or c1): res1 is c -> c1 and "attn." works at c1, up is c1 -> c;
with levels 2, between m2 and up: m3 = res3(down2(m2)) (stride 2, c1 -> c2); m4 = attn2(m3) (the "attn." formulas
at c2); m5 = res4(m4); u2 = up2(nearest_x2(m5)) (c2 -> c1); h = res5(cat[u2, m2], cin=2c1) replaces m2 in up.
Every res block's emb maps silu(e) (width c) to its output channels.
Writes OUT_DIR/train_image_unet.bin (levels 1, c1 = c) and OUT_DIR/train_image_unet_l2.bin (levels 2, c != c1 !=
c2; its config has 3 more entries: levels, ch1, ch2): config i32 [B, S, c, G, Td, Vt, Tc, Cc, H], hparams f32 [lr_max,
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
# The first case's sizes; twin_pixel_diffusion.py sets these module globals and calls param_shapes()
# and forward() without a Cfg (levels 1).
B, S, Cn, G, TD, VT, TC, CC, H = 2, 8, 8, 2, 8, 12, 5, 6, 2
EPS = 1e-5
LR_MAX, LR_MIN, WARMUP, TOTAL = 1e-2, 1e-3, 3, 10
WD, CLIP, B1, B2, ADAM_EPS = 0.1, 1.0, 0.9, 0.95, 1e-8


class Cfg:
    def __init__(self, B, S, Cn, G, TD, VT, TC, CC, H, levels=1, ch1=0, ch2=0):
        self.B, self.S, self.Cn, self.G, self.TD, self.VT, self.TC, self.CC, self.H = B, S, Cn, G, TD, VT, TC, CC, H
        self.levels, self.ch1, self.ch2 = levels, ch1, ch2
        self.C1 = ch1 or Cn
        self.C2 = ch2 or self.C1


def res_shapes(c, n, cin, cout):
    s = {n + "gn1.g": (cin,), n + "gn1.b": (cin,), n + "conv1.w": (cout, cin, 3, 3), n + "conv1.b": (cout,),
         n + "emb.w": (cout, c.Cn), n + "emb.b": (cout,), n + "gn2.g": (cout,), n + "gn2.b": (cout,),
         n + "conv2.w": (cout, cout, 3, 3), n + "conv2.b": (cout,)}
    if cin != cout:
        s.update({n + "skip.w": (cout, cin, 1, 1), n + "skip.b": (cout,)})
    return s


def attn_shapes(c, n, ch):
    return {n + "gn.g": (ch,), n + "gn.b": (ch,), n + "ln1.g": (ch,), n + "ln1.b": (ch,),
            n + "q": (ch, ch), n + "k": (ch, ch), n + "v": (ch, ch), n + "o.w": (ch, ch), n + "o.b": (ch,),
            n + "ln2.g": (ch,), n + "ln2.b": (ch,), n + "cq": (ch, ch), n + "ck": (ch, c.CC),
            n + "cv": (ch, c.CC), n + "co.w": (ch, ch), n + "co.b": (ch,)}


def default_cfg():
    return Cfg(B, S, Cn, G, TD, VT, TC, CC, H)


def param_shapes(c=None):
    c = c or default_cfg()
    Cn, C1, C2 = c.Cn, c.C1, c.C2
    s = {"text.tok": (c.VT, c.CC), "text.pos": (c.TC, c.CC), "text.ln.g": (c.CC,), "text.ln.b": (c.CC,),
         "time.w1": (Cn, c.TD), "time.b1": (Cn,), "time.w2": (Cn, Cn), "time.b2": (Cn,),
         "in.w": (Cn, 3, 3, 3), "in.b": (Cn,)}
    s.update(res_shapes(c, "res0.", Cn, Cn))
    s.update({"down.w": (Cn, Cn, 3, 3), "down.b": (Cn,)})
    s.update(res_shapes(c, "res1.", Cn, C1))
    s.update(attn_shapes(c, "attn.", C1))
    if c.levels == 2:
        s.update({"down2.w": (C1, C1, 3, 3), "down2.b": (C1,)})
        s.update(res_shapes(c, "res3.", C1, C2))
        s.update(attn_shapes(c, "attn2.", C2))
        s.update(res_shapes(c, "res4.", C2, C2))
        s.update({"up2.w": (C1, C2, 3, 3), "up2.b": (C1,)})
        s.update(res_shapes(c, "res5.", 2 * C1, C1))
    s.update({"up.w": (Cn, C1, 3, 3), "up.b": (Cn,)})
    s.update(res_shapes(c, "res2.", 2 * Cn, Cn))
    s.update({"out.gn.g": (Cn,), "out.gn.b": (Cn,), "out.w": (3, Cn, 3, 3), "out.b": (3,)})
    return s


def mha(c, q, k, v):
    b, tq, ch = q.shape
    tk = k.shape[1]
    H = c.H
    d = ch // H
    qh = q.view(b, tq, H, d).transpose(1, 2)
    kh = k.view(b, tk, H, d).transpose(1, 2)
    vh = v.view(b, tk, H, d).transpose(1, 2)
    p = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), -1)
    return (p @ vh).transpose(1, 2).reshape(b, tq, H * d)


def res(c, p, n, x, e):
    G = c.G
    r = F.conv2d(F.silu(F.group_norm(x, G, p[n + "gn1.g"], p[n + "gn1.b"], EPS)), p[n + "conv1.w"], p[n + "conv1.b"], padding=1)
    r = r + F.linear(F.silu(e), p[n + "emb.w"], p[n + "emb.b"])[:, :, None, None]
    r = F.conv2d(F.silu(F.group_norm(r, G, p[n + "gn2.g"], p[n + "gn2.b"], EPS)), p[n + "conv2.w"], p[n + "conv2.b"], padding=1)
    skip = F.conv2d(x, p[n + "skip.w"], p[n + "skip.b"]) if (n + "skip.w") in p else x
    return r + skip


def attn(c, p, n, m, ctx):
    b, ch = m.shape[0], m.shape[1]
    s2 = m.shape[2] * m.shape[3]
    t = F.group_norm(m, c.G, p[n + "gn.g"], p[n + "gn.b"], EPS).view(b, ch, s2).transpose(1, 2)
    l1 = F.layer_norm(t, (ch,), p[n + "ln1.g"], p[n + "ln1.b"], EPS)
    t = t + F.linear(mha(c, l1 @ p[n + "q"].T, l1 @ p[n + "k"].T, l1 @ p[n + "v"].T), p[n + "o.w"], p[n + "o.b"])
    l2 = F.layer_norm(t, (ch,), p[n + "ln2.g"], p[n + "ln2.b"], EPS)
    t = t + F.linear(mha(c, l2 @ p[n + "cq"].T, ctx @ p[n + "ck"].T, ctx @ p[n + "cv"].T), p[n + "co.w"], p[n + "co.b"])
    return m + t.transpose(1, 2).reshape(m.shape)


def forward(p, x, temb, ids, noise, c=None):
    c = c or default_cfg()
    ctx = F.layer_norm(p["text.tok"][ids] + p["text.pos"][None], (c.CC,), p["text.ln.g"], p["text.ln.b"], EPS)
    e = F.linear(F.silu(F.linear(temb, p["time.w1"], p["time.b1"])), p["time.w2"], p["time.b2"])
    h0 = F.conv2d(x, p["in.w"], p["in.b"], padding=1)
    h1 = res(c, p, "res0.", h0, e)
    d = F.conv2d(h1, p["down.w"], p["down.b"], stride=2, padding=1)
    m = res(c, p, "res1.", d, e)
    h = attn(c, p, "attn.", m, ctx)
    if c.levels == 2:
        d2 = F.conv2d(h, p["down2.w"], p["down2.b"], stride=2, padding=1)
        m3 = res(c, p, "res3.", d2, e)
        m5 = res(c, p, "res4.", attn(c, p, "attn2.", m3, ctx), e)
        u2 = F.conv2d(F.interpolate(m5, scale_factor=2, mode="nearest"), p["up2.w"], p["up2.b"], padding=1)
        h = res(c, p, "res5.", torch.cat([u2, h], 1), e)
    u = F.conv2d(F.interpolate(h, scale_factor=2, mode="nearest"), p["up.w"], p["up.b"], padding=1)
    h2 = res(c, p, "res2.", torch.cat([u, h1], 1), e)
    out = F.conv2d(F.silu(F.group_norm(h2, c.G, p["out.gn.g"], p["out.gn.b"], EPS)), p["out.w"], p["out.b"], padding=1)
    return F.mse_loss(out, noise)


def lr_at(step):
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    prog = min(1.0, (step - WARMUP) / max(1, TOTAL - WARMUP))
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * prog))


def run(c, path):
    B, S, TD, VT, TC = c.B, c.S, c.TD, c.VT, c.TC
    g = torch.Generator().manual_seed(4242)

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(torch.float32).to(torch.float64)

    shapes = param_shapes(c)
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
    config = [B, S, c.Cn, c.G, TD, VT, TC, c.CC, c.H]
    if c.levels != 1 or c.ch1 or c.ch2:
        config += [c.levels, c.ch1, c.ch2]
    dump = {"config": np.array(config, dtype=np.int32),
            "hparams": np.array([LR_MAX, LR_MIN, WARMUP, TOTAL, WD, CLIP, B1, B2, ADAM_EPS], dtype=np.float32),
            "x": x, "temb": temb, "ids": ids.to(torch.int32), "noise": noise}
    for name in shapes:
        dump["p." + name] = p[name].detach().clone()
    loss = forward(p, x, temb, ids, noise, c)
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
        loss = forward(p, x, temb, ids, noise, c)
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
    refdump.write(path, {k: (v.detach().to(torch.float32) if torch.is_tensor(v) and v.is_floating_point() else v)
                         for k, v in dump.items()})
    print(os.path.basename(path), "losses", [round(l, 4) for l in losses])


def main(out_dir):
    run(default_cfg(), os.path.join(out_dir, "train_image_unet.bin"))
    # two levels, a different width at each resolution: 8 -> 4 -> 2 px, 4 -> 8 -> 12 channels
    run(Cfg(2, 8, 4, 2, 8, 12, 5, 6, 2, levels=2, ch1=8, ch2=12), os.path.join(out_dir, "train_image_unet_l2.bin"))


if __name__ == "__main__":
    main(sys.argv[1])
