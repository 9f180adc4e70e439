#!/usr/bin/env python3
"""Twin for the image backward kernels of src/train/backward_image.h (tests/unit/test_train_image_ops.cpp).

Random f32 inputs and an upstream gradient dy per op; expected outputs and gradients come from
torch.autograd in float64 (y = op(inputs); y.backward(dy)). Odd sizes throughout.
  conv2d:     x [2, 3, 7, 9], w [5, 3, 3, 3], b [5], stride 1, pad 1
  conv2d_s2:  same x, w [4, 3, 3, 3], b [4], stride 2, pad 1 (-> [2, 4, 4, 5])
  conv2d_1x1: x [3, 5, 3, 1], w [7, 5, 1, 1], b [7], stride 1, pad 0
  group_norm: x [2, 6, 5, 3], 3 groups, eps 1e-5, gamma/beta [6]
  layer_norm: x [7, 13], eps 1e-5, gamma/beta [13]
  upsample:   x [2, 3, 3, 5] -> nearest x2 [2, 3, 6, 10]
  concat:     a [2, 3, 4, 5], b [2, 2, 4, 5] along dim 1
  add_channel: x [2, 3, 4, 5] + e [2, 3][:, :, None, None]
  transpose12: x [2, 3, 7] -> [2, 7, 3]
  mha:        self-attention B=2, T=5, H=3, D=4 (q/k/v [B, T, H*D]), scale 1/sqrt(D), no mask
  mha_cross:  B=2, Tq=7, Tk=4, H=2, D=3
  bias:       y = linear(x [2, 5, 7], w [3, 7], b [3]); db only (dy [2, 5, 3])
  mse:        pred/target [3, 5, 7], mean; dloss 1.3
Writes OUT_DIR/train_image_ops.bin with entries OP.NAME.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

import refdump

torch.set_num_threads(1)
g = torch.Generator().manual_seed(1234)


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(torch.float32).to(torch.float64)


def leaf(t):
    return t.clone().requires_grad_(True)


def main(out_dir):
    d = {}
    for name, (xs, ws, stride, pad) in (("conv2d", ((2, 3, 7, 9), (5, 3, 3, 3), 1, 1)),
                                        ("conv2d_s2", ((2, 3, 7, 9), (4, 3, 3, 3), 2, 1)),
                                        ("conv2d_1x1", ((3, 5, 3, 1), (7, 5, 1, 1), 1, 0))):
        x, w, b = leaf(rnd(*xs)), leaf(rnd(*ws, scale=0.3)), leaf(rnd(ws[0]))
        y = F.conv2d(x, w, b, stride=stride, padding=pad)
        dy = rnd(*y.shape)
        y.backward(dy)
        d.update({name + ".x": x, name + ".w": w, name + ".b": b, name + ".dy": dy, name + ".y": y,
                  name + ".dx": x.grad, name + ".dw": w.grad, name + ".db": b.grad})

    x, gm, bt = leaf(rnd(2, 6, 5, 3, scale=2.0) + 0.5), leaf(1 + rnd(6, scale=0.3)), leaf(rnd(6))
    y = F.group_norm(x, 3, gm, bt, eps=1e-5)
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"group_norm.x": x, "group_norm.gamma": gm, "group_norm.beta": bt, "group_norm.dy": dy,
              "group_norm.y": y, "group_norm.dx": x.grad, "group_norm.dgamma": gm.grad, "group_norm.dbeta": bt.grad})

    x, gm, bt = leaf(rnd(7, 13, scale=2.0) - 0.7), leaf(1 + rnd(13, scale=0.3)), leaf(rnd(13))
    y = F.layer_norm(x, (13,), gm, bt, eps=1e-5)
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"layer_norm.x": x, "layer_norm.gamma": gm, "layer_norm.beta": bt, "layer_norm.dy": dy,
              "layer_norm.y": y, "layer_norm.dx": x.grad, "layer_norm.dgamma": gm.grad, "layer_norm.dbeta": bt.grad})

    x = leaf(rnd(2, 3, 3, 5))
    y = F.interpolate(x, scale_factor=2, mode="nearest")
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"upsample.x": x, "upsample.dy": dy, "upsample.y": y, "upsample.dx": x.grad})

    a, b = leaf(rnd(2, 3, 4, 5)), leaf(rnd(2, 2, 4, 5))
    y = torch.cat([a, b], 1)
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"concat.a": a, "concat.b": b, "concat.dy": dy, "concat.y": y, "concat.da": a.grad, "concat.db": b.grad})

    x, e = leaf(rnd(2, 3, 4, 5)), leaf(rnd(2, 3))
    y = x + e[:, :, None, None]
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"add_channel.x": x, "add_channel.e": e, "add_channel.dy": dy, "add_channel.y": y,
              "add_channel.dx": x.grad, "add_channel.de": e.grad})

    x = leaf(rnd(2, 3, 7))
    y = x.transpose(1, 2).contiguous()
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"transpose12.x": x, "transpose12.dy": dy, "transpose12.y": y, "transpose12.dx": x.grad})

    for name, (B, Tq, Tk, H, D) in (("mha", (2, 5, 5, 3, 4)), ("mha_cross", (2, 7, 4, 2, 3))):
        q, k, v = leaf(rnd(B, Tq, H * D)), leaf(rnd(B, Tk, H * D)), leaf(rnd(B, Tk, H * D))
        qh = q.view(B, Tq, H, D).transpose(1, 2)
        kh = k.view(B, Tk, H, D).transpose(1, 2)
        vh = v.view(B, Tk, H, D).transpose(1, 2)
        p = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(D), -1)  # [B, H, Tq, Tk]
        y = (p @ vh).transpose(1, 2).reshape(B, Tq, H * D)
        dy = rnd(*y.shape)
        y.backward(dy)
        d.update({name + ".q": q, name + ".k": k, name + ".v": v, name + ".dy": dy, name + ".y": y,
                  name + ".probs": p, name + ".dq": q.grad, name + ".dk": k.grad, name + ".dv": v.grad})

    x, w, b = leaf(rnd(2, 5, 7)), leaf(rnd(3, 7)), leaf(rnd(3))
    y = F.linear(x, w, b)
    dy = rnd(*y.shape)
    y.backward(dy)
    d.update({"bias.dy": dy, "bias.db": b.grad})

    pred, tgt = leaf(rnd(3, 5, 7)), rnd(3, 5, 7)
    loss = F.mse_loss(pred, tgt)
    (loss * 1.3).backward()
    d.update({"mse.pred": pred, "mse.target": tgt, "mse.loss": loss.detach().reshape(1), "mse.dpred": pred.grad})

    refdump.write(os.path.join(out_dir, "train_image_ops.bin"),
                  {k: (v.detach().to(torch.float32) if torch.is_tensor(v) and v.is_floating_point() else v)
                   for k, v in d.items()})


if __name__ == "__main__":
    main(sys.argv[1])
