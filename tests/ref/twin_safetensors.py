#!/usr/bin/env python3
"""safetensors twin: writes safetensors files with plain json + struct, from the format's spec (not
the safetensors package), and the values they must hold, for tests/unit/test_safetensors.cpp.

Usage: twin_safetensors.py OUT_DIR. Writes:
  safetensors_single.safetensors         F32, F16, BF16, I32, a 0-d and an empty tensor, __metadata__
  safetensors_sharded/                   model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
                                         (shard 2's header is padded so that its F32 data is misaligned)
  safetensors_twin.bin                   refdump: the expected values of all tensors above
  safetensors_taef2.bin, safetensors_taef2.txt
                                         from shared/models/taesd/taef2_decoder.pth (only when shared exists):
                                         a few tensors' values (f32, exact upcast of the stored f16) and, for
                                         every tensor in state_dict order, "name dtype shape sum abs_sum"
"""
import json
import os
import struct
import sys

import torch

import refdump

torch.set_num_threads(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)

ST_NAME = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32"}


def raw(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def st_write(path, tensors, data_order, metadata=None, data_start_mod8=0):
    """tensors: dict name -> tensor (dict order = JSON key order); data_order: order of the bytes."""
    offsets, blob = {}, b""
    for name in data_order:
        b = raw(tensors[name])
        offsets[name] = [len(blob), len(blob) + len(b)]
        blob += b
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        header[name] = {"dtype": ST_NAME[t.dtype], "shape": list(t.shape), "data_offsets": offsets[name]}
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    # Trailing spaces are allowed; the reference writer pads to a multiple of 8 (data_start_mod8=0).
    text += b" " * ((data_start_mod8 - 8 - len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(blob)
    return 8 + len(text)


g = torch.Generator().manual_seed(1234)
single = {
    "w.f16": torch.randn(17, generator=g).to(torch.float16),
    "w.f32": torch.randn(3, 5, generator=g),
    "ids.i32": torch.randint(-1000, 1000, (7,), generator=g, dtype=torch.int32),
    "scalar": torch.tensor(3.25),
    "w.bf16": torch.randn(2, 3, 4, generator=g).to(torch.bfloat16),
    "empty": torch.zeros(0, 3),
}
st_write(os.path.join(out, "safetensors_single.safetensors"), single,
         ["w.f32", "scalar", "ids.i32", "empty", "w.bf16", "w.f16"],
         metadata={"format": "pt", "note": "twin \u00fcnicode \u2713"})

shard_dir = os.path.join(out, "safetensors_sharded")
os.makedirs(shard_dir, exist_ok=True)
shard1 = {"layer.0.weight": torch.randn(4, 6, generator=g), "layer.0.bias": torch.randn(4, generator=g).to(torch.float16)}
shard2 = {"layer.1.weight": torch.randn(2, 4, generator=g), "head": torch.randn(3, 2, generator=g).to(torch.bfloat16)}
st_write(os.path.join(shard_dir, "model-00001-of-00002.safetensors"), shard1, list(shard1), metadata={"format": "pt"})
# Shard 2's data starts at 2 mod 8, so its F32 tensor is misaligned and the reader's copy path is used.
st_write(os.path.join(shard_dir, "model-00002-of-00002.safetensors"), shard2, list(shard2), data_start_mod8=2)
weight_map = {name: "model-00001-of-00002.safetensors" for name in shard1}
weight_map.update({name: "model-00002-of-00002.safetensors" for name in shard2})
total = sum(t.numel() * t.element_size() for t in list(shard1.values()) + list(shard2.values()))
with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

expected = dict(single)
expected.update(shard1)
expected.update(shard2)
expected = {k: (v.float() if v.dtype == torch.float16 else v) for k, v in expected.items()}
refdump.write(os.path.join(out, "safetensors_twin.bin"), expected)

# Real data: the TAEF2 decoder as PyTorch loads it.
here = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("AIGC_SHARED") or os.path.join(here, "..", "..", "..", "shared")
pth = os.path.join(shared, "models", "taesd", "taef2_decoder.pth")
if not os.path.exists(pth):
    print(f"twin_safetensors: {pth} absent; skipping the TAEF2 reference")
    sys.exit(0)
sd = torch.load(pth, map_location="cpu")
few = ["1.weight", "1.bias", "3.pool.0.weight", "3.pool.1.weight", "3.pool.1.bias", "12.weight", "19.weight", "19.bias"]
# float() is an exact upcast of the stored f16 (or a no-op for f32).
refdump.write(os.path.join(out, "safetensors_taef2.bin"), {k: sd[k].float() for k in few})
with open(os.path.join(out, "safetensors_taef2.txt"), "w") as f:
    for name, t in sd.items():
        v = t.double()
        shape = ",".join(str(d) for d in t.shape)
        f.write(f"{name} {str(t.dtype).replace('torch.', '')} {shape} {v.sum().item()!r} {v.abs().sum().item()!r}\n")
