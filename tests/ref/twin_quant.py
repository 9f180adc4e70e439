#!/usr/bin/env python3
"""Twin for Q8_0 / Q4_0 quantisation and the quantised linear (tests/unit/test_quant.cpp).

Written from the GGML block layout description alone (not from our C++):
  Q8_0 block (34 bytes): f16 d (little endian), then 32 x int8 q;      x ~= d * q
  Q4_0 block (18 bytes): f16 d, then 16 bytes; byte j holds element j in its low nibble and
                         element j + 16 in its high nibble;            x ~= d * (nibble - 8)
GGML's reference rounding, all arithmetic in f32 (numpy float32 ops round like C floats):
  Q8_0: amax = max|x|, d = amax / 127, id = 1/d (0 if d == 0), q = roundf(x * id) (half away
        from zero); the f32 d is used for q, the f16 d is stored.
  Q4_0: max = the element of largest magnitude, sign kept (first one on ties), d = max / -8,
        id = 1/d (0 if d == 0), q = min(15, (int8)(x * id + 8.5)) with a truncating cast.

Writes OUT_DIR/quant.bin:
  rows            f32 [R, 256]   test rows (special blocks described below)
  rows_q8_0       u8  [R, 8*34]  expected Q8_0 bytes of each row
  rows_q8_0_deq   f32 [R, 256]   their dequantised values (f32(f16 d) * q)
  rows_q4_0       u8  [R, 8*18]
  rows_q4_0_deq   f32 [R, 256]
and for each linear case c (M, K, N below):
  lin{c}_x f32 [M, K], lin{c}_w_q8_0 u8 [N, K/32*34], lin{c}_w_q4_0 u8 [N, K/32*18],
  lin{c}_y_q8_0 / lin{c}_y_q4_0 f32 [M, N] = x · dequant(w)^T computed by torch in float64.
"""
import sys

import numpy as np
import torch

import refdump

QK = 32
LINEAR_CASES = [(1, 32, 33), (2, 64, 65), (5, 256, 127), (1, 4096, 33), (5, 4096, 65)]


def round_half_away(v):
    """roundf on float32 values: exact in float64 (|v| + 0.5 has no rounding there)."""
    a = np.abs(v.astype(np.float64))
    return (np.sign(v) * np.floor(a + 0.5)).astype(np.int64)


def quantize_q8_0(x):
    """x: f32 [n] -> (bytes u8 [n/32*34], dequantised f32 [n])."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, QK)
    out, deq = bytearray(), []
    for xb in x:
        amax = np.max(np.abs(xb))
        d = np.float32(amax) / np.float32(127)
        idv = np.float32(1) / d if d != 0 else np.float32(0)
        q = round_half_away((xb * idv).astype(np.float32))
        assert q.min() >= -128 and q.max() <= 127
        d16 = np.float16(d)  # numpy rounds to nearest even, like GGML_FP32_TO_FP16
        out += d16.tobytes() + q.astype(np.int8).tobytes()
        deq.append(np.float32(d16) * q.astype(np.float32))
    return np.frombuffer(bytes(out), dtype=np.uint8), np.concatenate(deq).astype(np.float32)


def quantize_q4_0(x):
    """x: f32 [n] -> (bytes u8 [n/32*18], dequantised f32 [n])."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, QK)
    out, deq = bytearray(), []
    for xb in x:
        mx = xb[np.argmax(np.abs(xb))]  # argmax: first index on ties, as GGML's strict '<'
        d = np.float32(mx) / np.float32(-8)
        idv = np.float32(1) / d if d != 0 else np.float32(0)
        v = (xb * idv).astype(np.float32) + np.float32(8.5)  # two f32 roundings, no fma
        q = np.minimum(15, np.trunc(v.astype(np.float64)).astype(np.int64))
        assert q.min() >= 0
        d16 = np.float16(d)
        packed = (q[:16] | (q[16:] << 4)).astype(np.uint8)
        out += d16.tobytes() + packed.tobytes()
        deq.append(np.float32(d16) * (q - 8).astype(np.float32))
    return np.frombuffer(bytes(out), dtype=np.uint8), np.concatenate(deq).astype(np.float32)


def special_rows(rng):
    """Rows of 8 blocks that exercise the rounding rules and edge cases."""
    rows = []
    # 0: random blocks at scales from tiny (f16-subnormal d) to large (Q4_0's d near the f16 max)
    scales = np.array([1e-6, 1e-3, 0.1, 1.0, 3.0, 100.0, 1e4, 5e5], dtype=np.float32)
    rows.append(np.concatenate([rng.uniform(-s, s, QK) for s in scales]))
    # 1: a zero block; a single large outlier; all equal; negative max; exact .5 ties for Q8_0
    b_zero = np.zeros(QK)
    b_outlier = rng.uniform(-0.01, 0.01, QK); b_outlier[7] = 50.0
    b_neg_outlier = rng.uniform(-0.01, 0.01, QK); b_neg_outlier[20] = -50.0
    b_equal = np.full(QK, 0.75)
    # amax 127 -> d = 1: x = k + 0.5 is an exact tie; GGML's roundf rounds it away from zero
    b_tie8 = np.array([127.0] + [k + 0.5 for k in range(-15, 15)] + [-0.5])
    # max -8 -> d = 1, id = 1 for Q4_0: x + 8.5 hits integers and .5 exactly
    b_tie4 = np.array([-8.0] + [k * 0.5 for k in range(-15, 16)])
    # two entries of equal magnitude, opposite signs: the first one sets Q4_0's sign
    b_pm = rng.uniform(-1, 1, QK); b_pm[3] = 2.0; b_pm[9] = -2.0
    b_mp = rng.uniform(-1, 1, QK); b_mp[3] = -2.0; b_mp[9] = 2.0
    rows.append(np.concatenate([b_zero, b_outlier, b_neg_outlier, b_equal, b_tie8, b_tie4, b_pm, b_mp]))
    # 2, 3: plain random rows, normal-ish like activations and weights
    rows.append(rng.standard_normal(8 * QK) * 2.0)
    rows.append(rng.uniform(-1, 1, 8 * QK))
    # 4: Q4_0 with d = +-1 and x one ulp off k + 0.5: x*id + 8.5 rounds to an integer in f32
    # (as GGML computes) but not in exact arithmetic, so the f32 rule is pinned down
    below = [np.nextafter(np.float32(k + 0.5), np.float32(-np.inf)) for k in range(-8, 8)]
    above = [np.nextafter(np.float32(k + 0.5), np.float32(np.inf)) for k in range(-8, 7)]
    b_near4 = np.array([-8.0] + below + above)
    rows.append(np.concatenate([b_near4, -b_near4, rng.uniform(-1, 1, 6 * QK)]))
    return np.stack(rows).astype(np.float32)


def main(out_dir):
    torch.set_num_threads(1)
    rng = np.random.default_rng(20261129)
    data = {}

    rows = special_rows(rng)
    data["rows"] = rows
    q8 = [quantize_q8_0(r) for r in rows]
    q4 = [quantize_q4_0(r) for r in rows]
    data["rows_q8_0"] = np.stack([b for b, _ in q8])
    data["rows_q8_0_deq"] = np.stack([v for _, v in q8])
    data["rows_q4_0"] = np.stack([b for b, _ in q4])
    data["rows_q4_0_deq"] = np.stack([v for _, v in q4])

    for c, (M, K, N) in enumerate(LINEAR_CASES):
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
        w[0, 5] = 1.5  # an outlier weight, as real checkpoints have
        data[f"lin{c}_x"] = x
        for name, quant in (("q8_0", quantize_q8_0), ("q4_0", quantize_q4_0)):
            qs = [quant(r) for r in w]
            data[f"lin{c}_w_{name}"] = np.stack([b for b, _ in qs])
            wd = torch.from_numpy(np.stack([v for _, v in qs])).double()
            y = torch.nn.functional.linear(torch.from_numpy(x).double(), wd)
            data[f"lin{c}_y_{name}"] = y.float()

    refdump.write(f"{out_dir}/quant.bin", data)


if __name__ == "__main__":
    main(sys.argv[1])
