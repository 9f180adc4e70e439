#!/usr/bin/env python3
"""Twin for linear_panel, the bf16 prefill GEMM (tests/unit/test_linear_panel.cpp).

For every weight type the panel path takes (f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K,
q6_K) and a few shapes with M >= 16 rows: random weight bytes (quantised types: twin_quant's GGML-rule
quantisers for q8_0/q4_0, twin_kquants' random blocks for the others; both dequantise them from the
layout description, not from our C++), random activations, and the expected outputs, by PyTorch in
float64:
  y_bf16 = F.linear(bf16(x), bf16(dequant(w)), b)   what a bf16 linear computes (PyTorch's bf16
                                                     matmul: each operand rounded to nearest-even
                                                     bf16, exact products, a sum)
  y_f32  = F.linear(x, dequant(w), b)                the unrounded result

Writes OUT_DIR/linear_panel.bin: c{i}_x f32 [M, K], c{i}_b f32 [N] (cases with bias), and per type t
c{i}_{t}_w u8 [N, row bytes], c{i}_{t}_y_bf16, c{i}_{t}_y_f32 f32 [M, N].
"""
import sys

import numpy as np
import torch

import refdump
from twin_kquants import TYPES as KTYPES, deq_row, random_blocks
from twin_quant import quantize_q4_0, quantize_q8_0

# (M, K, N, bias): odd M and N; K a multiple of 256 (the K-quants' block).
CASES = [(16, 256, 33, True), (17, 512, 65, False), (40, 768, 7, True)]
TYPE_NAMES = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_K", "q5_K", "q6_K"]


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


def weights(t, n, k, rng):
    """-> (raw bytes u8 [n, row bytes], dequantised float64 torch [n, k])."""
    if t in ("f16", "bf16"):
        w = torch.from_numpy((rng.standard_normal((n, k)) * k ** -0.5).astype(np.float32))
        w = w.to(torch.float16 if t == "f16" else torch.bfloat16)
        raw = w.view(torch.int16).numpy().view(np.uint8).reshape(n, -1)
        return raw, w.to(torch.float64)
    if t in ("q8_0", "q4_0"):
        quant = quantize_q8_0 if t == "q8_0" else quantize_q4_0
        rows = [quant((rng.standard_normal(k) * k ** -0.5).astype(np.float32)) for _ in range(n)]
        return np.stack([r[0] for r in rows]), torch.from_numpy(np.stack([r[1] for r in rows])).double()
    bs = KTYPES[t][0]
    raw = np.stack([random_blocks(t, k // bs, rng, weights=True) for _ in range(n)])
    return raw, torch.from_numpy(np.stack([deq_row(t, r) for r in raw])).double()


def main(out_dir):
    torch.set_num_threads(1)
    rng = np.random.default_rng(20261129)
    data = {}
    for c, (M, K, N, has_b) in enumerate(CASES):
        x = rng.standard_normal((M, K)).astype(np.float32)
        x[1, 5] = 9.0  # an activation outlier
        xt = torch.from_numpy(x).double()
        data[f"c{c}_x"] = x
        b = None
        if has_b:
            b = rng.standard_normal(N).astype(np.float32)
            data[f"c{c}_b"] = b
            b = torch.from_numpy(b).double()
        for t in TYPE_NAMES:
            raw, wd = weights(t, N, K, rng)
            data[f"c{c}_{t}_w"] = raw
            data[f"c{c}_{t}_y_bf16"] = torch.nn.functional.linear(bf16(xt), bf16(wd), b).float()
            data[f"c{c}_{t}_y_f32"] = torch.nn.functional.linear(xt, wd, b).float()
    refdump.write(f"{out_dir}/linear_panel.bin", data)


if __name__ == "__main__":
    main(sys.argv[1])
