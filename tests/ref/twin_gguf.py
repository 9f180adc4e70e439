#!/usr/bin/env python3
"""GGUF twin: writes GGUF files with plain `struct`, from the spec (ggml docs/gguf.md), with no gguf
package, so that the C++ reader and writer are checked against an independent implementation.

Usage: twin_gguf.py OUT_DIR. Writes
  gguf_twin.gguf     GGUF v3: one value of every metadata type, arrays of every element type (incl.
                     strings and nested arrays), general.alignment = 64, tensors f32 / f16 / q8_0
  gguf_twin_v2.gguf  the same content as GGUF v2 (v2 and v3 share the layout)
  gguf_twin.json     what the files hold: metadata (key, type, value) in file order, tensor infos
                     (PyTorch-order shape, ggml type, offset from the file start, byte size)
  gguf_twin.bin      refdump: each tensor's values (q8_0: raw block bytes [rows, row_bytes]) and
                     "t.q8_0.f32", the q8_0 tensor dequantised (x = f16 scale * int8)

Layout (little endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; kvs (string key, u32 type,
value); tensor infos (string name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64
offset from the data section); zero padding to the alignment; tensor data, each tensor padded to the
alignment (the last one too). string = u64 length + bytes; array = u32 elem type, u64 count, items.
"""
import json
import os
import struct
import sys

import numpy as np

import refdump

ALIGNMENT = 64

# Metadata value type ids (spec: enum gguf_metadata_value_type).
T = {"uint8": 0, "int8": 1, "uint16": 2, "int16": 3, "uint32": 4, "int32": 5, "float32": 6, "bool": 7,
     "string": 8, "array": 9, "uint64": 10, "int64": 11, "float64": 12}
FMT = {"uint8": "<B", "int8": "<b", "uint16": "<H", "int16": "<h", "uint32": "<I", "int32": "<i",
       "float32": "<f", "uint64": "<Q", "int64": "<q", "float64": "<d"}
# ggml tensor type ids and (block elements, block bytes).
GGML = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q8_0": (8, 32, 34)}


def f32(x):
    """A float32 value as the Python float it equals exactly (so JSON carries it without loss)."""
    return float(np.float32(x))


def arr(elem, items):
    return {"type": "array", "elem": elem, "value": items}


def enc_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def enc_value(typ, value, elem=None):
    if typ in FMT:
        return struct.pack(FMT[typ], value)
    if typ == "bool":
        return bytes([1 if value else 0])
    if typ == "string":
        return enc_string(value)
    assert typ == "array"
    out = struct.pack("<IQ", T[elem], len(value))
    for item in value:
        if elem == "array":
            out += enc_value("array", item["value"], item["elem"])
        else:
            out += enc_value(elem, item)
    return out


def metadata():
    m = [
        ("general.architecture", {"type": "string", "value": "aigc-twin"}),
        ("general.alignment", {"type": "uint32", "value": ALIGNMENT}),
        ("twin.uint8", {"type": "uint8", "value": 200}),
        ("twin.int8", {"type": "int8", "value": -100}),
        ("twin.uint16", {"type": "uint16", "value": 60000}),
        ("twin.int16", {"type": "int16", "value": -30000}),
        ("twin.uint32", {"type": "uint32", "value": 4000000000}),
        ("twin.int32", {"type": "int32", "value": -2000000000}),
        ("twin.float32", {"type": "float32", "value": f32(0.1)}),
        ("twin.bool_true", {"type": "bool", "value": True}),
        ("twin.bool_false", {"type": "bool", "value": False}),
        ("twin.string", {"type": "string", "value": "h\u00e9llo, GGUF \u2713\n\"quoted\""}),
        ("twin.string_empty", {"type": "string", "value": ""}),
        ("twin.uint64", {"type": "uint64", "value": 2**63 + 5}),
        ("twin.int64", {"type": "int64", "value": -(2**62) - 7}),
        ("twin.float64", {"type": "float64", "value": 3.141592653589793}),
        ("twin.arr_uint8", arr("uint8", [0, 1, 255])),
        ("twin.arr_int8", arr("int8", [-128, 0, 127])),
        ("twin.arr_uint16", arr("uint16", [0, 65535])),
        ("twin.arr_int16", arr("int16", [-32768, 5, 32767])),
        ("twin.arr_uint32", arr("uint32", [1, 4294967295])),
        ("twin.arr_int32", arr("int32", [-1, 0, 7, -2147483648])),
        ("twin.arr_float32", arr("float32", [f32(0.5), f32(-1.25), f32(3e-5), f32(1e30)])),
        ("twin.arr_bool", arr("bool", [True, False, True])),
        ("twin.arr_string", arr("string", ["<unk>", "", "\u00fcn\u00efcode", "\u2581the"])),
        ("twin.arr_uint64", arr("uint64", [0, 2**64 - 1])),
        ("twin.arr_int64", arr("int64", [-(2**63), 2**63 - 1])),
        ("twin.arr_float64", arr("float64", [2.5, -1e-300])),
        ("twin.arr_empty", arr("int64", [])),
        ("twin.arr_nested", arr("array", [
            arr("uint16", [1, 2, 3]),
            arr("string", ["x", "yz"]),
            arr("float64", []),
            arr("array", [arr("bool", [True]), arr("bool", [False, True])]),
        ])),
    ]
    return m


def tensors(rng):
    """name -> (ggml type, PyTorch-order shape, raw bytes, refdump value)."""
    out = {}
    a = rng.standard_normal((3, 5)).astype(np.float32)
    out["t.f32"] = ("f32", [3, 5], a.tobytes(), a)
    b = rng.standard_normal((2, 3, 4)).astype(np.float16)
    out["t.f16"] = ("f16", [2, 3, 4], b.tobytes(), b)
    # q8_0 [2, 64]: 2 blocks per row; block = f16 scale d, then 32 int8 q; x = d * q.
    rows, cols = 2, 64
    raw = b""
    deq = np.zeros((rows, cols), np.float32)
    for r in range(rows):
        for blk in range(cols // 32):
            d = np.float16(rng.uniform(0.001, 0.05))
            q = rng.integers(-127, 128, size=32).astype(np.int8)
            raw += struct.pack("<e", float(d)) + q.tobytes()
            deq[r, blk * 32:(blk + 1) * 32] = np.float32(d) * q.astype(np.float32)
    out["t.q8_0"] = ("q8_0", [rows, cols], raw, np.frombuffer(raw, np.uint8).reshape(rows, -1).copy())
    out["t.q8_0.f32"] = (None, None, None, deq)  # refdump only
    c = rng.standard_normal(7).astype(np.float32)  # odd byte size: padding follows
    out["t.vec"] = ("f32", [7], c.tobytes(), c)
    d4 = rng.standard_normal((2, 1, 3, 2)).astype(np.float32)
    out["t.4d"] = ("f32", [2, 1, 3, 2], d4.tobytes(), d4)
    return out


def align(x):
    return (x + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def gguf_bytes(version, meta, tens):
    real = [(n, t) for n, t in tens.items() if t[0] is not None]
    out = b"GGUF" + struct.pack("<IQQ", version, len(real), len(meta))
    for key, v in meta:
        out += enc_string(key) + struct.pack("<I", T[v["type"]]) + enc_value(v["type"], v["value"], v.get("elem"))
    infos, offset = [], 0
    for name, (typ, shape, raw, _) in real:
        out += enc_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", n) for n in reversed(shape))  # GGML order: innermost first
        out += struct.pack("<IQ", GGML[typ][0], offset)
        infos.append((name, typ, shape, offset, len(raw)))
        offset += align(len(raw))
    data_start = align(len(out))
    out += b"\0" * (data_start - len(out))
    for name, (typ, shape, raw, _) in real:
        out += raw + b"\0" * (align(len(raw)) - len(raw))
    desc = [{"name": n, "type": t, "shape": s, "offset": data_start + o, "nbytes": nb} for n, t, s, o, nb in infos]
    return out, desc


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(1234)
    meta = metadata()
    tens = tensors(rng)
    v3, desc = gguf_bytes(3, meta, tens)
    v2, _ = gguf_bytes(2, meta, tens)
    with open(os.path.join(out_dir, "gguf_twin.gguf"), "wb") as f:
        f.write(v3)
    with open(os.path.join(out_dir, "gguf_twin_v2.gguf"), "wb") as f:
        f.write(v2)
    with open(os.path.join(out_dir, "gguf_twin.json"), "w") as f:
        json.dump({"version": 3, "alignment": ALIGNMENT, "file_bytes": len(v3),
                   "metadata": [{"key": k, **v} for k, v in meta], "tensors": desc}, f, indent=1)
    refdump.write(os.path.join(out_dir, "gguf_twin.bin"), {n: t[3] for n, t in tens.items()})


if __name__ == "__main__":
    main()
