#!/usr/bin/env python3
"""Twin for the llama2.c import (src/formats/llama2c, tests/unit/test_model_llama.cpp, Stories260K).

Reads ../shared/models/stories260K/stories260K.bin (or $AIGC_SHARED/...) with numpy following the
layout in FORMAT.md there, and runs the forward pass in PyTorch (float64) the way llama2.c's run.c
defines it: RMSNorm (eps 1e-5), rotary embedding on adjacent pairs (2i, 2i+1) of each head with
theta = pos * 10000^(-2i/head_size) (written here with complex numbers, Meta's form), grouped-query
causal attention, SwiGLU FFN, classifier shared with the embedding unless vocab_size < 0.
Greedy decoding from BOS (token 1) for STEPS tokens; each step recomputes the whole sequence.

Writes OUT_DIR/stories260k.bin: tokens i32 [STEPS + 1] (BOS, then the greedy tokens) and logits
f32 [STEPS, V] (logits[i]: after tokens[0..i], from which tokens[i + 1] = argmax), margin f32
[STEPS] (top-1 minus top-2 logit). Writes nothing when the shared folder is absent (the C++ test
then skips).
"""
import os
import sys

import numpy as np
import torch

import refdump

torch.set_num_threads(1)
STEPS = 80


def shared_dir():
    env = os.environ.get("AIGC_SHARED")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")


def load(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = np.frombuffer(raw[:28], dtype="<i4")
    shared = vocab > 0
    vocab = abs(int(vocab))
    head = dim // n_heads
    kv_dim = dim * n_kv // n_heads
    f = np.frombuffer(raw[28:], dtype="<f4").astype(np.float64)
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        t = torch.from_numpy(f[at:at + n].reshape(shape).copy())
        at += n
        return t

    w = dict(emb=take(vocab, dim), rms_att=take(n_layers, dim), wq=take(n_layers, dim, dim),
             wk=take(n_layers, kv_dim, dim), wv=take(n_layers, kv_dim, dim), wo=take(n_layers, dim, dim),
             rms_ffn=take(n_layers, dim), w1=take(n_layers, hidden, dim), w2=take(n_layers, dim, hidden),
             w3=take(n_layers, hidden, dim), rms_final=take(dim))
    at += seq_len * head  # legacy cos/sin tables
    w["wcls"] = w["emb"] if shared else take(vocab, dim)
    assert at == len(f), "file size does not match the header"
    cfg = dict(dim=int(dim), n_layers=int(n_layers), n_heads=int(n_heads), n_kv=int(n_kv), head=int(head))
    return cfg, w


def rmsnorm(x, g):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g


def rope_complex(x, pos, head):
    """x [T, H, head]: adjacent pairs as complex numbers times e^(i theta)."""
    i = torch.arange(head // 2, dtype=torch.float64)
    theta = pos.to(torch.float64)[:, None] * 10000.0 ** (-2 * i / head)[None, :]  # [T, head/2]
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], head // 2, 2).contiguous())
    return torch.view_as_real(xc * torch.polar(torch.ones_like(theta), theta)[:, None, :]).reshape(x.shape)


def forward(cfg, w, tokens):
    T, H, KV, D = len(tokens), cfg["n_heads"], cfg["n_kv"], cfg["head"]
    pos = torch.arange(T)
    x = w["emb"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["n_layers"]):
        h = rmsnorm(x, w["rms_att"][l])
        q = rope_complex((h @ w["wq"][l].T).view(T, H, D), pos, D)
        k = rope_complex((h @ w["wk"][l].T).view(T, KV, D), pos, D)
        v = (h @ w["wv"][l].T).view(T, KV, D)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / np.sqrt(D) + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, H * D)
        x = x + a @ w["wo"][l].T
        h = rmsnorm(x, w["rms_ffn"][l])
        x = x + (torch.nn.functional.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)) @ w["w2"][l].T
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def main(out_dir):
    path = os.path.join(shared_dir(), "models", "stories260K", "stories260K.bin")
    if not os.path.exists(path):
        print(f"twin_stories260k: {path} is absent; nothing written")
        return
    cfg, w = load(path)
    tokens, logits, margins = [1], [], []
    with torch.no_grad():
        for _ in range(STEPS):
            l = forward(cfg, w, tokens)[-1]
            logits.append(l)
            top = torch.sort(l, descending=True).values
            margins.append(float(top[0] - top[1]))
            tokens.append(int(l.argmax()))
    refdump.write(os.path.join(out_dir, "stories260k.bin"), {
        "tokens": np.array(tokens, dtype=np.int32),
        "logits": torch.stack(logits).to(torch.float32),
        "margin": np.array(margins, dtype=np.float32),
    })


if __name__ == "__main__":
    main(sys.argv[1])
