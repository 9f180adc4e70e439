#!/usr/bin/env python3
"""PyTorch twin for linear, matmul and conv2d (tests/unit/test_ops_gemm.cpp).

Expected outputs are computed by PyTorch in float64 from the very inputs dumped (f32, or weights
already rounded to f16 / bf16), then stored as f32: the oracle's own rounding error is negligible
next to the tolerances the C++ test states.

Dumps:
  ops_gemm_linear: lin{i}_x [.., K] f32, lin{i}_w [N, K] f32, lin{i}_w16 (f16), lin{i}_wb (bf16),
    lin{i}_b [N] (absent: no bias), and
      lin{i}_y    = F.linear(x, w, b)
      lin{i}_y16  = F.linear(x, f32(w16), b)
      lin{i}_yb   = F.linear(x, f32(wb), b)             activations kept f32 (GEMV, reference)
      lin{i}_ybr  = F.linear(f32(bf16(x)), f32(wb), b)  activations rounded to bf16 as well (as
                                                        PyTorch's bf16 linear does; oneDNN path)
  ops_gemm_matmul: mm{i}_a, mm{i}_b (stored contiguous), mm{i}_mode int32 [3] = (transpose a,
    transpose b, permute a from [M, B, K]); the test builds those views; mm{i}_y = torch.matmul.
  ops_gemm_conv2d: cv{i}_x, cv{i}_w, cv{i}_w16 (f16), cv{i}_wb (bf16), cv{i}_b (optional),
    cv{i}_p int32 [2] = (stride, pad), cv{i}_y = F.conv2d, cv{i}_y16 / cv{i}_yb from rounded weights.
"""
import os
import sys

import torch
import torch.nn.functional as F

import refdump

torch.set_num_threads(1)
out_dir = sys.argv[1]
g = torch.Generator().manual_seed(1234)


def rand(*shape, scale=1.0):
    return (torch.rand(*shape, generator=g) * 2 - 1) * scale


def f64(t):
    return t.to(torch.float64)


# ---- linear: (x shape, N, bias). M = rows of x: 1 and 3 take the GEMV path, >4 oneDNN.
lin_cases = [
    ((1, 32), 33, True),
    ((3, 96), 65, False),
    ((4, 96), 257, True),
    ((17, 96), 257, True),
    ((64, 32), 33, False),
    ((2, 3, 96), 65, True),   # leading dims: M = 6
    ((1, 4096), 33, True),
    ((3, 4096), 33, False),
    ((70, 1024), 65, True),
    ((5, 4096), 33, True),
]
d = {}
for i, (xs, n, has_b) in enumerate(lin_cases):
    k = xs[-1]
    x = rand(*xs)
    w = rand(n, k, scale=1.0 / k ** 0.5)  # outputs O(1)
    b = rand(n) if has_b else None
    w16, wb = w.half(), w.bfloat16()
    bb = f64(b) if has_b else None
    d[f"lin{i}_x"] = x
    d[f"lin{i}_w"] = w
    d[f"lin{i}_w16"] = w16
    d[f"lin{i}_wb"] = wb
    if has_b:
        d[f"lin{i}_b"] = b
    d[f"lin{i}_y"] = F.linear(f64(x), f64(w), bb).float()
    d[f"lin{i}_y16"] = F.linear(f64(x), f64(w16), bb).float()
    d[f"lin{i}_yb"] = F.linear(f64(x), f64(wb), bb).float()
    d[f"lin{i}_ybr"] = F.linear(f64(x.bfloat16()), f64(wb), bb).float()
refdump.write(os.path.join(out_dir, "ops_gemm_linear.bin"), d)

# ---- matmul: (a shape as stored, b shape as stored, transpose a, transpose b, permute a)
mm_cases = [
    ((17, 96), (96, 33), 0, 0, 0),
    ((3, 17, 32), (3, 32, 65), 0, 0, 0),
    ((2, 13, 64), (2, 9, 64), 0, 1, 0),     # q · k^T: b is a transposed view of k [B, T, D]
    ((4, 1, 64), (4, 37, 64), 0, 1, 0),     # decode: one query row
    ((3, 33, 7), (3, 33, 65), 1, 0, 0),     # a is a transposed view
    ((5, 3, 32), (3, 32, 17), 0, 0, 1),     # a stored [M, B, K], used as [B, M, K]
    ((3, 65, 3), (1, 3, 33), 0, 0, 0),      # b batch 1 broadcast
]
d = {}
for i, (a_s, b_s, ta, tb, pa) in enumerate(mm_cases):
    a, b = rand(*a_s), rand(*b_s)
    av = a.transpose(-1, -2) if ta else a
    av = av.permute(1, 0, 2) if pa else av
    bv = b.transpose(-1, -2) if tb else b
    d[f"mm{i}_a"] = a
    d[f"mm{i}_b"] = b
    d[f"mm{i}_mode"] = torch.tensor([ta, tb, pa], dtype=torch.int32)
    d[f"mm{i}_y"] = torch.matmul(f64(av), f64(bv)).float()
refdump.write(os.path.join(out_dir, "ops_gemm_matmul.bin"), d)

# ---- conv2d: (N, C, H, W, O, k, stride, pad, bias)
cv_cases = [
    (1, 3, 7, 7, 4, 3, 1, 1, True),
    (2, 4, 13, 13, 8, 3, 2, 1, False),
    (1, 8, 13, 7, 33, 1, 1, 0, True),
    (1, 320, 7, 7, 8, 3, 1, 1, True),
    (2, 8, 9, 11, 16, 3, 2, 0, True),
    (1, 4, 13, 13, 320, 3, 1, 1, False),
    (1, 3, 7, 13, 5, 1, 2, 1, True),
]
d = {}
for i, (n, c, h, wd, o, k, s, p, has_b) in enumerate(cv_cases):
    x = rand(n, c, h, wd)
    w = rand(o, c, k, k, scale=1.0 / (c * k * k) ** 0.5)
    b = rand(o) if has_b else None
    w16, wb = w.half(), w.bfloat16()
    bb = f64(b) if has_b else None
    d[f"cv{i}_x"] = x
    d[f"cv{i}_w"] = w
    d[f"cv{i}_w16"] = w16
    d[f"cv{i}_wb"] = wb
    if has_b:
        d[f"cv{i}_b"] = b
    d[f"cv{i}_p"] = torch.tensor([s, p], dtype=torch.int32)
    d[f"cv{i}_y"] = F.conv2d(f64(x), f64(w), bb, stride=s, padding=p).float()
    d[f"cv{i}_y16"] = F.conv2d(f64(x), f64(w16), bb, stride=s, padding=p).float()
    d[f"cv{i}_yb"] = F.conv2d(f64(x), f64(wb), bb, stride=s, padding=p).float()
refdump.write(os.path.join(out_dir, "ops_gemm_conv2d.bin"), d)
