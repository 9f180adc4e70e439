"""Reference dumps written by the PyTorch twins and read by tests/common/refdump.cpp.

Format (little endian):
  magic  b"AIGCREF\\0" (8 bytes), u32 version (=1), u32 tensor count
  per tensor: u32 name length, name (utf-8), u32 dtype, u32 ndim, i64 dims[ndim], raw data
  dtype: 0 f32, 1 f16, 2 bf16 (raw u16 bits), 3 i32, 4 u8 (raw bytes, e.g. quantised blocks)
Dims are PyTorch order (outermost first); data is C-contiguous.
"""
import struct

import numpy as np

MAGIC = b"AIGCREF\0"
VERSION = 1
_CODES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 3, np.dtype(np.uint8): 4}


def to_numpy(t):
    """torch tensor or numpy array -> (numpy array, dtype code)."""
    try:
        import torch
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                return t.view(torch.int16).numpy().view(np.uint16), 2
            t = t.numpy()
    except ImportError:
        pass
    a = np.ascontiguousarray(t)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    if a.dtype == np.int64:
        a = a.astype(np.int32)
    return a, _CODES[a.dtype]


def write(path, tensors):
    """tensors: dict name -> torch tensor or numpy array (insertion order kept)."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<II", VERSION, len(tensors)))
        for name, t in tensors.items():
            a, code = to_numpy(t)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", code, a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.tobytes())
