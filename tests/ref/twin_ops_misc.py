#!/usr/bin/env python3
"""PyTorch twin of the non-GEMM CPU ops (src/backend/cpu: norm, softmax, attention, activation,
rope, upsample, concat, elementwise, embedding, copy). Writes OUT_DIR/ops_<area>.bin dumps that
tests/unit/test_ops_misc.cpp compares against.

Each case stores its inputs, its parameters (as small tensors, so the C++ test reads rather than
repeats them) and torch's output. Where float32 torch would itself add rounding noise comparable to
the tolerance (attention, RoPE angles), the expected value is computed in float64 and rounded once.
Usage: /usr/bin/python3 tests/ref/twin_ops_misc.py OUT_DIR
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import refdump

torch.set_num_threads(1)
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
g = torch.Generator().manual_seed(1234)


def randn(*shape, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=g) * scale + shift


def f32(*vals):
    return torch.tensor(vals, dtype=torch.float32)


def i32(*vals):
    return torch.tensor(vals, dtype=torch.int32)


# ---- norms --------------------------------------------------------------------------------
d = {}
for name, shape, groups, eps in [("gn_a", (2, 64, 9, 7), 32, 1e-5), ("gn_b", (1, 320, 5, 3), 32, 1e-6),
                                 ("gn_c", (3, 12, 17), 4, 1e-6), ("gn_d", (1, 8, 33, 1), 4, 1e-5)]:
    c = shape[1]
    x = randn(*shape, scale=2.0, shift=0.5)
    w, b = randn(c), randn(c)
    d[name + ".x"], d[name + ".gamma"], d[name + ".beta"] = x, w, b
    d[name + ".params"] = f32(groups, eps)
    d[name + ".y"] = F.group_norm(x, groups, w, b, eps)
for name, shape, affine, eps in [("ln_a", (3, 77), True, 1e-5), ("ln_b", (2, 5, 320), False, 1e-6),
                                 ("ln_c", (17, 33), True, 1e-5), ("ln_d", (1, 1), True, 1e-5)]:
    c = shape[-1]
    x = randn(*shape, scale=3.0, shift=-1.0)
    w, b = (randn(c), randn(c)) if affine else (None, None)
    d[name + ".x"] = x
    if affine:
        d[name + ".gamma"], d[name + ".beta"] = w, b
    d[name + ".params"] = f32(eps)
    d[name + ".y"] = F.layer_norm(x, (c,), w, b, eps)
for name, shape, eps, affine in [("rms_a", (5, 33), 1e-6, True), ("rms_b", (2, 3, 320), 1e-5, True),
                                 ("rms_c", (1, 17), 1e-5, True), ("rms_d", (3, 64), 1e-6, False)]:
    c = shape[-1]
    x = randn(*shape, scale=2.0)
    w = randn(c) if affine else torch.ones(c)
    d[name + ".x"], d[name + ".params"] = x, f32(eps)
    if affine:
        d[name + ".gamma"] = w
    # as llama's RMSNorm: x * rsqrt(mean(x^2) + eps) * weight
    d[name + ".y"] = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
refdump.write(os.path.join(out_dir, "ops_norm.bin"), d)


# ---- softmax ------------------------------------------------------------------------------
def causal_mask(tq, tk, q_offset, dtype=torch.float32):
    # key j > q_offset + i is masked
    return torch.triu(torch.full((tq, tk), float("-inf"), dtype=dtype), diagonal=q_offset + 1)


d = {}
for name, shape, causal, q_offset in [("sm_a", (3, 77), False, 0), ("sm_b", (2, 17, 17), True, 0),
                                      ("sm_c", (1, 3, 1, 10), True, 9), ("sm_d", (2, 5, 12), True, 4),
                                      ("sm_e", (4, 1), False, 0), ("sm_f", (2, 33, 320), False, 0)]:
    x = randn(*shape, scale=4.0)
    d[name + ".x"] = x
    d[name + ".params"] = f32(1.0 if causal else 0.0, q_offset)
    xm = x + causal_mask(shape[-2], shape[-1], q_offset) if causal else x
    d[name + ".y"] = torch.softmax(xm, dim=-1)
refdump.write(os.path.join(out_dir, "ops_softmax.bin"), d)


# ---- attention (torch 1.13 has no F.scaled_dot_product_attention: matmul + softmax) -------------
def attention(q, k, v, scale, causal, q_offset):
    hq, hkv = q.shape[1], k.shape[1]
    k = k.repeat_interleave(hq // hkv, dim=1)  # grouped KV heads, as HF repeat_kv
    v = v.repeat_interleave(hq // hkv, dim=1)
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        s = s + causal_mask(q.shape[2], k.shape[2], q_offset, torch.float64)
    return (torch.softmax(s, dim=-1) @ v.double()).float()


d = {}
# name, B, Hq, Hkv, Tq, Tk, D, Dv, causal, q_offset, scale (0: 1/sqrt(D)), q stored as [B, T, H, D]
for (name, B, Hq, Hkv, Tq, Tk, D, Dv, causal, q_offset, scale, bthd) in [
        ("att_self", 1, 4, 4, 33, 33, 64, 64, True, 0, 0.0, True),      # self, causal, strided views
        ("att_cross", 2, 8, 8, 65, 77, 40, 40, False, 0, 0.0, False),  # SD cross-attention: 77 text tokens
        ("att_gqa", 1, 8, 2, 17, 17, 64, 64, True, 0, 0.0, True),       # grouped KV heads
        ("att_decode", 1, 8, 2, 1, 10, 40, 40, True, 9, 0.0, False),    # one token with a KV cache
        ("att_chunk", 1, 2, 1, 5, 70, 64, 64, True, 65, 0.0, False),    # more keys than one key block
        ("att_scale", 1, 3, 3, 7, 130, 17, 17, False, 0, 0.2, False),  # explicit scale, odd D, Tk > 2 blocks
        ("att_dv", 2, 4, 2, 9, 3, 32, 48, False, 0, 0.0, False),         # value width != key width
        # decode with grouped KV heads (one task per kv head and query: heads as the kernel's rows)
        ("att_decode_long", 2, 8, 2, 1, 150, 64, 64, True, 149, 0.0, True),  # Tk > 2 key blocks, 4 heads/group
        ("att_decode_few", 1, 12, 3, 3, 100, 32, 48, True, 90, 0.0, False),  # 3 queries, keys past them masked
        ("att_decode_mqa", 1, 20, 1, 2, 70, 16, 16, False, 0, 0.0, False)]:  # one kv head: 20 heads in 3 slices
    q, k, v = randn(B, Hq, Tq, D), randn(B, Hkv, Tk, D), randn(B, Hkv, Tk, Dv)
    sc = scale if scale else 1.0 / np.sqrt(D)
    y = attention(q, k, v, sc, causal, q_offset)
    if bthd:  # the C++ test permutes these back to [B, H, T, D] views
        q, k, v, = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    d[name + ".q"], d[name + ".k"], d[name + ".v"], d[name + ".y"] = q, k, v, y
    d[name + ".params"] = f32(scale, 1.0 if causal else 0.0, q_offset, 1.0 if bthd else 0.0)
refdump.write(os.path.join(out_dir, "ops_attention.bin"), d)

# ---- activations --------------------------------------------------------------------------
d = {}
x = torch.cat([torch.linspace(-20, 20, 1001), randn(3 * 17 * 33 - 1001, scale=3.0)]).reshape(3, 17, 33)
d["act.x"] = x
d["act.gelu"] = F.gelu(x)
d["act.gelu_tanh"] = F.gelu(x, approximate="tanh")
d["act.silu"] = F.silu(x)
d["act.relu"] = F.relu(x)
d["act.tanh"] = torch.tanh(x)
refdump.write(os.path.join(out_dir, "ops_activation.bin"), d)


# ---- rope ---------------------------------------------------------------------------------
def rope_normal(x, pos, n, base, scale):
    """Meta llama apply_rotary_emb: pairs (2i, 2i+1) as complex numbers times e^(i theta)."""
    freqs = 1.0 / (base ** (torch.arange(0, n, 2, dtype=torch.float64)[: n // 2] / n))
    ang = torch.outer(pos.double() * scale, freqs)              # [T, n/2]
    cis = torch.polar(torch.ones_like(ang), ang)[:, None, :]    # [T, 1, n/2]
    xr = x[..., :n].double().reshape(*x.shape[:-1], n // 2, 2).contiguous()
    out = torch.view_as_real(torch.view_as_complex(xr) * cis).flatten(-2)
    return torch.cat([out, x[..., n:].double()], dim=-1).float()


def rope_neox(x, pos, n, base, scale):
    """HF Llama / GPT-NeoX: x * cos + rotate_half(x) * sin, pairs (i, i + n/2)."""
    freqs = 1.0 / (base ** (torch.arange(0, n, 2, dtype=torch.float64)[: n // 2] / n))
    ang = torch.outer(pos.double() * scale, freqs)
    emb = torch.cat([ang, ang], dim=-1)[:, None, :]             # [T, 1, n]
    xr = x[..., :n].double()
    rot = torch.cat([-xr[..., n // 2:], xr[..., : n // 2]], dim=-1)
    out = xr * emb.cos() + rot * emb.sin()
    return torch.cat([out, x[..., n:].double()], dim=-1).float()


d = {}
for name, shape, neox, n_dims, base, scale, pos in [
        ("rope_a", (7, 3, 64), False, 0, 10000.0, 1.0, list(range(7))),
        ("rope_b", (7, 3, 64), True, 0, 500000.0, 1.0, list(range(3, 10))),
        ("rope_c", (2, 5, 2, 40), False, 24, 10000.0, 0.25, list(range(100, 105))),
        ("rope_d", (5, 4, 96), True, 32, 500000.0, 1.0, [9, 10, 11, 1000, 4095]),
        ("rope_e", (1, 1, 2), False, 0, 10000.0, 1.0, [3])]:
    x = randn(*shape)
    n = n_dims or shape[-1]
    p = torch.tensor(pos, dtype=torch.int64)
    d[name + ".x"], d[name + ".pos"] = x, p
    d[name + ".params"] = f32(n_dims, base, scale, 1.0 if neox else 0.0)
    d[name + ".y"] = (rope_neox if neox else rope_normal)(x, p, n, base, scale)
refdump.write(os.path.join(out_dir, "ops_rope.bin"), d)

# ---- upsample, concat, add/mul, embedding, copy ----------------------------------------------
d = {}
for name, shape in [("up_a", (2, 3, 5, 7)), ("up_b", (1, 17, 1, 3))]:
    x = randn(*shape)
    d[name + ".x"], d[name + ".y"] = x, F.interpolate(x, scale_factor=2, mode="nearest")

for name, shapes, dim in [("cat_a", [(2, 3, 5), (2, 4, 5), (2, 1, 5)], 1),
                          ("cat_b", [(1, 4, 3, 3), (2, 4, 3, 3)], 0),
                          ("cat_c", [(3, 7), (3, 9), (3, 1)], -1),
                          ("cat_d", [(2, 320, 2, 3), (2, 33, 2, 3)], 1)]:
    xs = [randn(*s) for s in shapes]
    for i, x in enumerate(xs):
        d[f"{name}.x{i}"] = x
    d[name + ".params"] = f32(dim, len(xs))
    d[name + ".y"] = torch.cat(xs, dim=dim)

for name, sa, sb, op in [("bc_a", (2, 33, 5, 7), (33, 1, 1), "add"), ("bc_b", (17, 320), (320,), "mul"),
                         ("bc_c", (3, 17), (1,), "add"), ("bc_d", (2, 1, 7), (3, 1), "mul"),
                         ("bc_e", (77, 1), (2, 1, 5), "add"), ("bc_f", (3, 5), (3, 5), "mul")]:
    a, b = randn(*sa), randn(*sb)
    d[name + ".a"], d[name + ".b"] = a, b
    d[name + ".params"] = f32(1.0 if op == "mul" else 0.0)
    d[name + ".y"] = a * b if op == "mul" else a + b

ids = torch.tensor([0, 5, 49, 5, 17, 1, 33], dtype=torch.int64)
d["emb.ids"] = ids
t32 = randn(50, 17)
d["emb.f32_table"], d["emb.f32_y"] = t32, F.embedding(ids, t32)
t16 = randn(50, 77).half()  # the table rounded to f16; the op must return exactly those values
d["emb.f16_table"], d["emb.f16_y"] = t16, F.embedding(ids, t16.float())
tb16 = randn(50, 33).bfloat16()
d["emb.bf16_table"], d["emb.bf16_y"] = tb16, F.embedding(ids, tb16.float())
# Q8_0 / Q4_0 tables built block by block from chosen scales and integers (GGML layout: f16 scale,
# then 32 int8 / 16 bytes of nibbles, element j in the low nibble of byte j, j+16 in the high one).
rng = np.random.default_rng(7)
V, C = 50, 64
scales = (rng.uniform(0.01, 0.1, size=(V, C // 32))).astype(np.float16)
q8 = rng.integers(-127, 128, size=(V, C // 32, 32)).astype(np.int8)
blocks = np.zeros((V, C // 32, 34), dtype=np.uint8)
blocks[:, :, 0:2] = scales.view(np.uint8).reshape(V, C // 32, 2)
blocks[:, :, 2:] = q8.view(np.uint8)
d["emb.q8_0_table"] = blocks.reshape(V, -1)
d["emb.q8_0_y"] = torch.from_numpy((scales.astype(np.float32)[:, :, None] * q8).reshape(V, C))[ids]
q4 = rng.integers(0, 16, size=(V, C // 32, 32)).astype(np.uint8)
blocks = np.zeros((V, C // 32, 18), dtype=np.uint8)
blocks[:, :, 0:2] = scales.view(np.uint8).reshape(V, C // 32, 2)
blocks[:, :, 2:] = q4[:, :, :16] | (q4[:, :, 16:] << 4)
d["emb.q4_0_table"] = blocks.reshape(V, -1)
d["emb.q4_0_y"] = torch.from_numpy((scales.astype(np.float32)[:, :, None] * (q4.astype(np.float32) - 8))
                                   .reshape(V, C))[ids]

x = randn(3, 5, 7, 9)
d["copy.x"] = x
d["copy.p0213"] = x.permute(0, 2, 1, 3).contiguous()
d["copy.p3102"] = x.permute(3, 1, 0, 2).contiguous()
d["copy.t01"] = x[0].transpose(0, 1).contiguous()
# conversions: spread of magnitudes, f16 ties and subnormals, overflow to inf, signed zero
specials = f32(0.0, -0.0, 1.0 + 1.0 / 2048, 1.0 + 3.0 / 2048, 65504.0, 65519.0, 65520.0, 70000.0,
               -1e6, 5.960464477539063e-08, 2.9e-08, 1e-6, 1.00390625, 1.01171875, 3.0e38, -1e-40)
wide = torch.cat([specials, randn(33 * 17 - specials.numel()) * torch.exp(randn(33 * 17 - specials.numel(), scale=6.0))])
wide = wide.reshape(33, 17)
d["copy.wide"] = wide
d["copy.wide_f16"] = wide.half()
d["copy.wide_bf16"] = wide.bfloat16()
d["copy.wide_t_f16"] = wide.t().contiguous().half()  # transpose and convert in one copy
d["copy.wide_f16_f32"] = wide.half().float()  # and back: widening is exact
d["copy.wide_bf16_f32"] = wide.bfloat16().float()
refdump.write(os.path.join(out_dir, "ops_misc.bin"), d)
