#!/usr/bin/env python3
"""Twin for the Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K block layouts (tests/unit/test_quant_more.cpp).

Written from the GGML block layout description (ggml-common.h block structs, little endian),
not from our C++. Dequantisation, all arithmetic in f32 in the order GGML writes it:
  Q4_1 (20 B): f16 d, f16 m, qs[16]; byte j: element j low nibble, element j+16 high nibble;
               x = q*d + m
  Q5_0 (22 B): f16 d, qh[4], qs[16]; q = nibble | (bit e of u32 qh) << 4 for element e;
               x = (q - 16)*d
  Q5_1 (24 B): f16 d, f16 m, qh[4], qs[16]; x = q*d + m
  Q4_K (144 B): f16 d, f16 dmin, scales[12], qs[128]; 8 sub-blocks of 32 with 6-bit (sc, mn):
               j < 4: sc = s[j] & 63, mn = s[j+4] & 63;
               j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, mn = (s[j+4] >> 4) | (s[j] >> 6) << 4.
               Chunk c (64 elements) uses qs[32c:32c+32]: low nibbles = sub-block 2c, high = 2c+1.
               x = (d*sc)*q - (dmin*mn)
  Q5_K (176 B): f16 d, f16 dmin, scales[12], qh[32], qs[128]; as Q4_K, plus 16 if bit 2c (low
               half of chunk c) or bit 2c+1 (high half) of qh[l] is set, l = position in the 32.
  Q6_K (210 B): ql[128], qh[64], int8 scales[16], f16 d; half h (128 elements) uses ql[64h:],
               qh[32h:], scales[8h:]; for l < 32 the four elements l, l+32, l+64, l+96 take
               (ql[l] & 15, ql[l+32] & 15, ql[l] >> 4, ql[l+32] >> 4) as low bits and qh[l] bit
               pairs (0-1, 2-3, 4-5, 6-7) as high bits; q in [0, 63]; x = (d*sc[e/16])*(q - 32).
Quantisation (GGML's reference rules, f32 arithmetic):
  Q4_1 / Q5_1: mn, mx = block min, max; d = (mx - mn)/15 (31); id = 1/d (0 if d == 0);
               q = trunc((x - mn)*id + 0.5), Q4_1 capped at 15; d and m = mn stored as f16.
  Q5_0: max = element of largest magnitude (sign kept, first on ties); d = max / -16;
        q = min(31, trunc(x*id + 16.5)).

Writes OUT_DIR/kquants.bin:
  {t}_raw  u8 [R, nb*bytes]  random blocks (random bytes, sane f16 scales)   t in the six types
  {t}_deq  f32 [R, n]        their dequantised values
  rows     f32 [R, 256]      (twin_quant's special rows) and rows_{t} u8, rows_{t}_deq f32 for
                             t in q4_1, q5_0, q5_1: expected quantiser bytes and their values
  lin{c}_x f32 [M, K], lin{c}_w_{t} u8 [N, row bytes] random blocks, lin{c}_y_{t} f32 [M, N] =
           x · dequant(w)^T by torch in float64
"""
import sys

import numpy as np
import torch

import refdump
from twin_quant import special_rows

F32 = np.float32
TYPES = {  # name: (block elements, block bytes)
    "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24),
    "q4_K": (256, 144), "q5_K": (256, 176), "q6_K": (256, 210),
}
# M > 1: short prompts, several activation rows per pass over a weight row (8 a pass up to K = 3072,
# 4 above, and the rest; N > 64: two tiles of weight rows)
LINEAR_CASES = [(1, 256, 33), (3, 512, 17), (1, 2048, 65), (3, 768, 31), (20, 512, 70), (9, 3328, 19)]


def f16_at(b, off):
    return F32(np.frombuffer(bytes(b[off:off + 2]), dtype=np.float16)[0])


def f16_put(b, off, v):
    b[off:off + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)


def nibbles(qs):
    qs = np.asarray(qs, dtype=np.int64)
    return qs & 15, qs >> 4


def deq_block(t, b):
    """One block's bytes (u8 array) -> f32 values, f32 arithmetic in GGML's order."""
    b = np.asarray(b, dtype=np.uint8)
    if t in ("q4_1", "q5_1"):
        d, m = f16_at(b, 0), f16_at(b, 2)
        if t == "q4_1":
            lo, hi = nibbles(b[4:20])
        else:
            qh = int.from_bytes(bytes(b[4:8]), "little")
            lo, hi = nibbles(b[8:24])
            lo = lo | np.array([((qh >> j) & 1) << 4 for j in range(16)])
            hi = hi | np.array([((qh >> (j + 16)) & 1) << 4 for j in range(16)])
        q = np.concatenate([lo, hi]).astype(F32)
        return (q * d).astype(F32) + m
    if t == "q5_0":
        d = f16_at(b, 0)
        qh = int.from_bytes(bytes(b[2:6]), "little")
        lo, hi = nibbles(b[6:22])
        lo = lo | np.array([((qh >> j) & 1) << 4 for j in range(16)])
        hi = hi | np.array([((qh >> (j + 16)) & 1) << 4 for j in range(16)])
        return (np.concatenate([lo, hi]) - 16).astype(F32) * d
    if t in ("q4_K", "q5_K"):
        d, dmin = f16_at(b, 0), f16_at(b, 2)
        s = b[4:16].astype(np.int64)
        sc = [s[j] & 63 if j < 4 else (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4) for j in range(8)]
        mn = [s[j + 4] & 63 if j < 4 else (s[j + 4] >> 4) | ((s[j] >> 6) << 4) for j in range(8)]
        if t == "q4_K":
            qs, qh = b[16:144], None
        else:
            qh, qs = b[16:48].astype(np.int64), b[48:176]
        out = []
        for c in range(4):
            lo, hi = nibbles(qs[32 * c:32 * c + 32])
            if qh is not None:
                lo = lo + ((qh >> (2 * c)) & 1) * 16
                hi = hi + ((qh >> (2 * c + 1)) & 1) * 16
            for sub, q in ((2 * c, lo), (2 * c + 1, hi)):
                d1, m1 = F32(d * F32(sc[sub])), F32(dmin * F32(mn[sub]))
                out.append((d1 * q.astype(F32)).astype(F32) - m1)
        return np.concatenate(out).astype(F32)
    if t == "q6_K":
        ql, qh = b[0:128].astype(np.int64), b[128:192].astype(np.int64)
        sc = b[192:208].view(np.int8).astype(F32)
        d = f16_at(b, 208)
        y = np.zeros(256, dtype=F32)
        for h in range(2):
            L, H = ql[64 * h:64 * h + 64], qh[32 * h:32 * h + 32]
            quads = [(L[:32] & 15) | ((H & 3) << 4), (L[32:] & 15) | (((H >> 2) & 3) << 4),
                     (L[:32] >> 4) | (((H >> 4) & 3) << 4), (L[32:] >> 4) | (((H >> 6) & 3) << 4)]
            for k, q in enumerate(quads):
                for l in range(32):
                    e = 128 * h + 32 * k + l
                    y[e] = F32(d * sc[e // 16]) * F32(q[l] - 32)
        return y
    raise ValueError(t)


def deq_row(t, raw):
    bs, nbytes = TYPES[t]
    return np.concatenate([deq_block(t, raw[i:i + nbytes]) for i in range(0, len(raw), nbytes)])


def random_blocks(t, nb, rng, weights=False):
    """nb random blocks of type t: random bytes, then sane f16 scale fields.

    weights=False: scales of any sign over several decades (layout test); every 5th block has
    a zero scale. weights=True: magnitudes like real weights (|w| about 0.01..0.1)."""
    bs, nbytes = TYPES[t]
    raw = rng.integers(0, 256, size=(nb, nbytes), dtype=np.int64).astype(np.uint8)
    for i in range(nb):
        b = raw[i]
        def scale(lo, hi, signed=True):
            v = rng.uniform(lo, hi) * (rng.choice([-1, 1]) if signed else 1)
            return 0.0 if (not weights and i % 5 == 4) else v
        if weights:
            step = {"q4_1": 0.01, "q5_0": 0.005, "q5_1": 0.005, "q4_K": 2e-4, "q5_K": 1e-4, "q6_K": 1e-4}[t]
            if t in ("q4_1", "q5_1"):
                f16_put(b, 0, rng.uniform(0.5, 1.5) * step)
                f16_put(b, 2, -rng.uniform(0.5, 1.5) * step * (8 if t == "q4_1" else 16))
            elif t == "q5_0":
                f16_put(b, 0, rng.uniform(-1.5, 1.5) * step)
            elif t in ("q4_K", "q5_K"):
                f16_put(b, 0, rng.uniform(0.5, 1.5) * step)
                f16_put(b, 2, rng.uniform(0.5, 1.5) * step * (8 if t == "q4_K" else 16))
            else:
                f16_put(b, 208, rng.uniform(-1.5, 1.5) * step)
        else:
            mag = lambda: 10.0 ** rng.uniform(-5, 2)
            if t in ("q4_1", "q5_1", "q4_K", "q5_K"):
                f16_put(b, 0, scale(0, mag()))
                f16_put(b, 2, scale(0, mag()))
            elif t == "q5_0":
                f16_put(b, 0, scale(0, mag()))
            else:
                f16_put(b, 208, scale(0, mag()))
    return raw.reshape(-1)


def trunc_f32(v):
    return np.trunc(np.asarray(v, dtype=np.float64)).astype(np.int64)


def quantize(t, row):
    """GGML reference quantiser for q4_1 / q5_0 / q5_1: row f32 [n] -> bytes u8."""
    out = bytearray()
    for xb in np.asarray(row, dtype=F32).reshape(-1, 32):
        if t in ("q4_1", "q5_1"):
            mn, mx = F32(xb.min()), F32(xb.max())
            d = F32(mx - mn) / F32(15 if t == "q4_1" else 31)
            idv = F32(1) / d if d != 0 else F32(0)
            v = ((xb - mn).astype(F32) * idv).astype(F32) + F32(0.5)
            q = trunc_f32(v)
            if t == "q4_1":
                q = np.minimum(15, q)
            with np.errstate(over="ignore"):  # d or m beyond the f16 range becomes inf, as in GGML
                head = np.float16(d).tobytes() + np.float16(mn).tobytes()
        else:
            mx = xb[np.argmax(np.abs(xb))]
            d = F32(mx) / F32(-16)
            idv = F32(1) / d if d != 0 else F32(0)
            v = (xb * idv).astype(F32) + F32(16.5)
            q = np.minimum(31, trunc_f32(v))
            head = np.float16(d).tobytes()
        assert q.min() >= 0 and q.max() <= 31
        qs = ((q[:16] & 15) | ((q[16:] & 15) << 4)).astype(np.uint8).tobytes()
        if t == "q4_1":
            out += head + qs
        else:
            qh = sum(int((q[j] >> 4) & 1) << j for j in range(32))
            out += head + qh.to_bytes(4, "little") + qs
    return np.frombuffer(bytes(out), dtype=np.uint8)


def main(out_dir):
    torch.set_num_threads(1)
    rng = np.random.default_rng(20261130)
    data = {}
    for t, (bs, nbytes) in TYPES.items():
        nb = 5 if bs == 256 else 15  # odd block counts
        rows = [random_blocks(t, nb, rng) for _ in range(3)]
        data[f"{t}_raw"] = np.stack(rows)
        data[f"{t}_deq"] = np.stack([deq_row(t, r) for r in rows])

    rows = special_rows(rng)
    data["rows"] = rows
    for t in ("q4_1", "q5_0", "q5_1"):
        qb = [quantize(t, r) for r in rows]
        data[f"rows_{t}"] = np.stack(qb)
        data[f"rows_{t}_deq"] = np.stack([deq_row(t, b) for b in qb])

    for c, (M, K, N) in enumerate(LINEAR_CASES):
        x = rng.standard_normal((M, K)).astype(F32)
        x[0, 3] = 6.0  # an activation outlier
        data[f"lin{c}_x"] = x
        for t, (bs, nbytes) in TYPES.items():
            w = np.stack([random_blocks(t, K // bs, rng, weights=True) for _ in range(N)])
            wd = torch.from_numpy(np.stack([deq_row(t, r) for r in w])).double()
            data[f"lin{c}_w_{t}"] = w
            data[f"lin{c}_y_{t}"] = torch.nn.functional.linear(torch.from_numpy(x).double(), wd).float()

    refdump.write(f"{out_dir}/kquants.bin", data)


if __name__ == "__main__":
    main(sys.argv[1])
