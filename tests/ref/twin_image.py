#!/usr/bin/env python3
"""Image twin (no torch: PIL, numpy, zlib): small image files and the pixels they hold, for
tests/unit/test_image.cpp; the PNG/JPEG/BMP files double as fuzz seeds (scripts/fuzz).

Usage: twin_image.py OUT_DIR. Writes image_*.{png,jpg,bmp} and image_twin.bin (refdump):
  <name>.want     f32 [1, 3, H, W], the pixels in [0, 1] as PIL decodes them (convert("RGB"): alpha
                  dropped, grey replicated); the 16-bit PNG is written by hand (zlib + struct) and its
                  values are v / 65535
  text.<i>.chunk  u8: the exact tEXt / iTXt chunk (length, type, data, zlib.crc32) that
                  image_encode_png must emit for text case i (keys and texts listed in the test)
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

import refdump

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(5)
H, W = 7, 13  # odd sizes
d = {}


def planar(a):  # [H, W, 3] uint8/uint16 -> f32 [1, 3, H, W] in [0, 1]
    scale = 65535.0 if a.dtype == np.uint16 else 255.0
    return (a.astype(np.float32) / scale).transpose(2, 0, 1)[None].copy()


def pil_want(path):
    return planar(np.asarray(Image.open(path).convert("RGB")))


rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
Image.fromarray(rgb).save(os.path.join(out, "image_rgb.png"))
d["rgb_png.want"] = pil_want(os.path.join(out, "image_rgb.png"))

rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
Image.fromarray(rgba, "RGBA").save(os.path.join(out, "image_rgba.png"))
d["rgba_png.want"] = pil_want(os.path.join(out, "image_rgba.png"))

grey = rng.integers(0, 256, (H, W), dtype=np.uint8)
Image.fromarray(grey, "L").save(os.path.join(out, "image_grey.png"))
d["grey_png.want"] = pil_want(os.path.join(out, "image_grey.png"))

# Palette PNGs (paint programs write them: sketches), one with transparency (tRNS; dropped, as
# convert("RGB") drops it), and grey + alpha.
pal = Image.fromarray(rgb).quantize(colors=37)
pal.save(os.path.join(out, "image_palette.png"))
d["palette_png.want"] = pil_want(os.path.join(out, "image_palette.png"))
pal.save(os.path.join(out, "image_palette_trns.png"), transparency=5)
d["palette_trns_png.want"] = pil_want(os.path.join(out, "image_palette_trns.png"))
Image.fromarray(np.stack([grey, 255 - grey], -1), "LA").save(os.path.join(out, "image_grey_alpha.png"))
d["grey_alpha_png.want"] = pil_want(os.path.join(out, "image_grey_alpha.png"))

Image.fromarray(rgb).save(os.path.join(out, "image_rgb.bmp"))
d["rgb_bmp.want"] = pil_want(os.path.join(out, "image_rgb.bmp"))
# palette (8-bit indices) and 1-bit BMPs: rows padded to 4 bytes, the palette before the pixels
pal.save(os.path.join(out, "image_palette.bmp"))
d["palette_bmp.want"] = pil_want(os.path.join(out, "image_palette.bmp"))
Image.fromarray(rgb).convert("1").save(os.path.join(out, "image_1bit.bmp"))
d["1bit_bmp.want"] = pil_want(os.path.join(out, "image_1bit.bmp"))

# JPEG (the engine decodes with libjpeg-turbo, as PIL does: the same pixels): smooth content 4:4:4;
# a noisy one with 4:2:0 chroma (what cameras and the web write: fancy upsampling must match), odd
# size; the same progressive; a grey one. CMYK must be refused.
yy, xx = np.mgrid[0:16, 0:24]
smooth = np.stack([xx * 10, yy * 15, 128 + 60 * np.sin(xx / 4.0)], -1).clip(0, 255).astype(np.uint8)
Image.fromarray(smooth).save(os.path.join(out, "image_smooth.jpg"), quality=95, subsampling=0)
d["smooth_jpg.want"] = pil_want(os.path.join(out, "image_smooth.jpg"))
yy, xx = np.mgrid[0:37, 0:53]
photo = (np.stack([xx * 4, yy * 6, 200 - xx * 2], -1) + rng.integers(-40, 40, (37, 53, 3))).clip(0, 255).astype(np.uint8)
Image.fromarray(photo).save(os.path.join(out, "image_photo420.jpg"), quality=80, subsampling=2)
d["photo420_jpg.want"] = pil_want(os.path.join(out, "image_photo420.jpg"))
Image.fromarray(photo).save(os.path.join(out, "image_progressive.jpg"), quality=80, progressive=True)
d["progressive_jpg.want"] = pil_want(os.path.join(out, "image_progressive.jpg"))
Image.fromarray(photo[:, :, 1]).save(os.path.join(out, "image_grey.jpg"), quality=90)
d["grey_jpg.want"] = pil_want(os.path.join(out, "image_grey.jpg"))
Image.fromarray(photo).convert("CMYK").save(os.path.join(out, "image_cmyk.jpg"), quality=90)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# 16-bit RGB PNG by hand: signature, IHDR (bit depth 16, colour type 2), one IDAT (filter 0 rows), IEND.
rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint16)
raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(H))
png16 = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)) +
         chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
with open(os.path.join(out, "image_rgb16.png"), "wb") as f:
    f.write(png16)
d["rgb16_png.want"] = planar(rgb16)

# Text chunks the writer must produce (must match tests/unit/test_image.cpp's kTexts).
texts = [("parameters", "a cat, Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42"),
         ("Comment", ""),
         ("prompt", "caf\u00e9 \u2615")]
for i, (k, v) in enumerate(texts):
    vb = v.encode("utf-8")
    if all(c < 0x80 for c in vb):
        c = chunk(b"tEXt", k.encode("latin-1") + b"\0" + vb)
    else:  # iTXt: keyword, NUL, compression flag 0, method 0, language "", NUL, translated "", NUL, text
        c = chunk(b"iTXt", k.encode("latin-1") + b"\0\0\0\0\0" + vb)
    d[f"text.{i}.chunk"] = np.frombuffer(c, dtype=np.uint8)
refdump.write(os.path.join(out, "image_twin.bin"), d)
