#!/usr/bin/python3
"""Random-weight Llama GGUF files of TinyLlama-1.1B's shape, for `aigc bench text`.

    /usr/bin/python3 bench/make_tinyllama.py [OUT_DIR] [--aigc build/aigc] [--types f16,q8_0,q4_0]

Writes OUT_DIR/tinyllama-1.1b-random-f16.gguf (numpy only: GGUF v3 written here, weights
~N(0, 0.02) as f16, norms 1.0 as f32, seed 0), then -q8_0.gguf and -q4_0.gguf with
`aigc quantize` (llama.cpp's rules: the q4_0 file's output.weight becomes q6_K). Existing files
are kept (delete them to remake). OUT_DIR defaults to bench-models/ (git-ignored; the f16 file is
about 2.2 GB).

The header is TinyLlama's (general.architecture llama and every llama.* key llama.cpp writes for
it, a 32000-token SPM vocabulary of dummy pieces with the real special and byte tokens), so the file
is complete for any GGUF reader; only the weights are random. `--tiny` writes a model of the same
structure but 64 wide with 2 layers and a 512-token vocabulary, to try the script quickly;
`--qwen05` one of Qwen2.5-0.5B's shape (as a Llama: no attention biases, untied output), whose
896-wide rows make llama.cpp's K-quant mixes fall back to Q5_0 / Q5_1 / Q8_0 (`--types q4_K_M`).
"""
import argparse
import os
import struct
import subprocess
import sys

import numpy as np

# TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json).
TINYLLAMA = dict(n_vocab=32000, n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_ctx=2048)
TINY = dict(n_vocab=512, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=160, n_ctx=256)
# Qwen2.5-0.5B's shape (its config.json) as a Llama (no attention biases, untied output): rows of
# 896, not a multiple of 256, so llama.cpp's K-quant mixes give most matrices Q5_0 / Q8_0.
QWEN05 = dict(n_vocab=151936, n_embd=896, n_layer=24, n_head=14, n_head_kv=2, n_ff=4864, n_ctx=32768)

# GGUF value types and GGML tensor types (ggml.h / gguf spec).
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1
ALIGN = 32


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == T_STRING:
        return out + gguf_string(value)
    if vtype == T_ARRAY:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        if etype == T_STRING:
            return out + b"".join(gguf_string(s) for s in items)
        fmt = {T_INT32: "<i", T_FLOAT32: "<f", T_UINT32: "<I"}[etype]
        return out + np.asarray(items, dtype=np.dtype(fmt)).tobytes()
    fmt = {T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?"}[vtype]
    return out + struct.pack(fmt, value)


def spm_vocab(n_vocab):
    """llama's SPM layout: <unk> <s> </s>, the 256 byte tokens, then pieces (dummy, all distinct)."""
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, control, byte
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = list(letters)
    while len(tokens) < n_vocab:
        for w in words:
            for piece in ("\u2581" + w, w):
                if len(tokens) < n_vocab:
                    tokens.append(piece)
                    types.append(1)
        words = [w + c for w in words for c in letters]
    scores = [0.0] * 259 + [-float(i) for i in range(n_vocab - 259)]
    return tokens[:n_vocab], scores[:n_vocab], types[:n_vocab]


def tensor_list(hp):
    """(name, PyTorch-order shape, ggml type) in llama.cpp's order."""
    C, F, V = hp["n_embd"], hp["n_ff"], hp["n_vocab"]
    D = C // hp["n_head"]
    KV = hp["n_head_kv"] * D
    t = [("token_embd.weight", (V, C), GGML_F16)]
    for i in range(hp["n_layer"]):
        p = "blk.%d." % i
        t += [
            (p + "attn_norm.weight", (C,), GGML_F32),
            (p + "attn_q.weight", (C, C), GGML_F16),
            (p + "attn_k.weight", (KV, C), GGML_F16),
            (p + "attn_v.weight", (KV, C), GGML_F16),
            (p + "attn_output.weight", (C, C), GGML_F16),
            (p + "ffn_norm.weight", (C,), GGML_F32),
            (p + "ffn_gate.weight", (F, C), GGML_F16),
            (p + "ffn_up.weight", (F, C), GGML_F16),
            (p + "ffn_down.weight", (C, F), GGML_F16),
        ]
    t += [("output_norm.weight", (C,), GGML_F32), ("output.weight", (V, C), GGML_F16)]
    return t


def write_f16_model(path, hp, name):
    C = hp["n_embd"]
    tokens, scores, types = spm_vocab(hp["n_vocab"])
    kvs = [
        gguf_kv("general.architecture", T_STRING, "llama"),
        gguf_kv("general.name", T_STRING, name),
        gguf_kv("general.file_type", T_UINT32, 1),  # LLAMA_FTYPE_MOSTLY_F16
        gguf_kv("llama.vocab_size", T_UINT32, hp["n_vocab"]),
        gguf_kv("llama.context_length", T_UINT32, hp["n_ctx"]),
        gguf_kv("llama.embedding_length", T_UINT32, C),
        gguf_kv("llama.block_count", T_UINT32, hp["n_layer"]),
        gguf_kv("llama.feed_forward_length", T_UINT32, hp["n_ff"]),
        gguf_kv("llama.rope.dimension_count", T_UINT32, C // hp["n_head"]),
        gguf_kv("llama.attention.head_count", T_UINT32, hp["n_head"]),
        gguf_kv("llama.attention.head_count_kv", T_UINT32, hp["n_head_kv"]),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-5),
        gguf_kv("llama.rope.freq_base", T_FLOAT32, 10000.0),
        gguf_kv("tokenizer.ggml.model", T_STRING, "llama"),
        gguf_kv("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens)),
        gguf_kv("tokenizer.ggml.scores", T_ARRAY, (T_FLOAT32, scores)),
        gguf_kv("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, types)),
        gguf_kv("tokenizer.ggml.bos_token_id", T_UINT32, 1),
        gguf_kv("tokenizer.ggml.eos_token_id", T_UINT32, 2),
        gguf_kv("tokenizer.ggml.unknown_token_id", T_UINT32, 0),
        gguf_kv("tokenizer.ggml.add_bos_token", T_BOOL, True),
        gguf_kv("tokenizer.ggml.add_eos_token", T_BOOL, False),
    ]
    tensors = tensor_list(hp)
    infos, offset = [], 0
    for tname, shape, gtype in tensors:
        nbytes = int(np.prod(shape)) * (2 if gtype == GGML_F16 else 4)
        dims = list(reversed(shape))  # ggml order: innermost first
        infos.append(gguf_string(tname) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims)
                     + struct.pack("<IQ", gtype, offset))
        offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(infos)
    head += b"\0" * (-len(head) % ALIGN)

    rng = np.random.default_rng(0)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        for tname, shape, gtype in tensors:
            nbytes = 0
            if gtype == GGML_F32:
                b = np.ones(shape, dtype=np.float32).tobytes()
                f.write(b)
                nbytes = len(b)
            else:
                rows_per_chunk = max(1, (1 << 24) // shape[-1])  # ~16M values at a time
                for r0 in range(0, shape[0], rows_per_chunk):
                    r1 = min(shape[0], r0 + rows_per_chunk)
                    chunk = rng.standard_normal((r1 - r0, shape[-1]), dtype=np.float32) * np.float32(0.02)
                    b = chunk.astype(np.float16).tobytes()
                    f.write(b)
                    nbytes += len(b)
            f.write(b"\0" * (-nbytes % ALIGN))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?", default="bench-models")
    ap.add_argument("--aigc", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "aigc"),
                    help="the aigc binary, for quantize (default: build/aigc)")
    ap.add_argument("--types", default="f16,q8_0,q4_0", help="which files to make")
    ap.add_argument("--tiny", action="store_true", help="a 64-wide, 2-layer model of the same structure (quick check)")
    ap.add_argument("--qwen05", action="store_true",
                    help="Qwen2.5-0.5B's shape instead (896 wide, 24 layers, vocabulary 151936; as a Llama)")
    args = ap.parse_args()
    hp = TINY if args.tiny else QWEN05 if args.qwen05 else TINYLLAMA
    stem = "tinyllama-tiny-random" if args.tiny else "qwen2.5-0.5b-shape-random" if args.qwen05 else "tinyllama-1.1b-random"
    os.makedirs(args.out_dir, exist_ok=True)
    f16 = os.path.join(args.out_dir, stem + "-f16.gguf")
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    if not os.path.exists(f16):
        print("writing %s" % f16, file=sys.stderr)
        name = "tiny random llama" if args.tiny else "Qwen2.5-0.5B shape, random weights" if args.qwen05 \
            else "TinyLlama-1.1B shape, random weights"
        write_f16_model(f16, hp, name)
    for t in types:
        if t == "f16":
            continue
        out = os.path.join(args.out_dir, "%s-%s.gguf" % (stem, t))
        if os.path.exists(out):
            continue
        print("writing %s (aigc quantize)" % out, file=sys.stderr)
        subprocess.run([args.aigc, "quantize", f16, out, "--type", t], check=True)
    for t in types:
        print(os.path.join(args.out_dir, "%s-%s.gguf" % (stem, t)))


if __name__ == "__main__":
    main()
