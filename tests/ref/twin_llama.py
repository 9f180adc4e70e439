#!/usr/bin/env python3
"""Twin for the Llama-family model (src/text/model_llama, llama_context; tests/unit/test_model_llama.cpp).

Builds tiny random-weight models, writes each as a GGUF file with plain `struct` (from the GGUF spec,
not from our writer), and computes expected logits with a straightforward PyTorch forward pass in
float64, written from the architecture:
  x = E[tokens]; per layer: h = rmsnorm(x) * g_attn; q, k, v = h Wq^T (+b), h Wk^T (+b), h Wv^T (+b);
  rope(q, k); grouped-query causal softmax attention (scale 1/sqrt(D)); x += attn Wo^T;
  h = rmsnorm(x) * g_ffn; x += (silu(h Wg^T) * h Wu^T) Wd^T; logits = (rmsnorm(x) * g_out) Wout^T,
  rmsnorm(v) = v / sqrt(mean(v^2) + eps).
The reference is the Hugging Face form: "llama" models are defined with rotate_half (NeoX) RoPE on
HF-layout Q/K weights, and the GGUF stores Q and K rows permuted the way llama.cpp's HF converter
does (w.reshape(H, 2, D/2, K).swapaxes(1, 2)), so the engine's interleaved-pair ("normal") rope must
reproduce the HF result: this checks the permutation fact, not just our own convention. "qwen2"
models are stored unpermuted and use NeoX rope in the engine too.

Quantised files (q8_0, q4_0): every 2-d weight (token_embd and output too) is quantised by
twin_quant's GGML-rule quantisers; the expected logits use the dequantised weights. A linear layer with
quantised weights computes as GGML does: its input rows are first quantised to Q8_0 (per block of 32:
d = amax/127 in f32, q = round-half-away(x/d), value f32(f16(d)) * q), so the twin does the same
(q8_act) and the comparison can stay tight.

Each expected value is computed by re-running the whole sequence (no cache): prefill logits for all
prompt positions, then 5 greedy decode steps (token = argmax of the previous logits).

The panel models (PANEL_MODELS) have a prompt of 24 tokens (f16) or 96 (q4_0: a prompt of up to 80
stays on the integer decode kernels), so the engine runs their prompt's linears
as bf16 GEMMs (ops::linear_panel); for them the twin evaluates prompt and decode steps on a KV cache
and rounds the operands of every linear that the engine sends to the panel GEMM to bf16
(forward_cached).

Writes, per model NAME: OUT_DIR/llama_NAME.gguf and OUT_DIR/llama_NAME.bin (refdump) with
  prompt i32 [P], prefill_logits f32 [P, V], gen i32 [S+1] (gen[0] = argmax of the last prefill
  row, gen[s+1] = argmax of decode_logits[s]), decode_logits f32 [S, V] (logits after feeding
  gen[s]), margin f32 [S+1] (top-1 minus top-2 logit of each greedy choice); and, for the
  non-panel models, OUT_DIR/llama_NAME_f16kv.bin: the same with keys (after rope) and values
  rounded to f16, as an f16 KV cache (--cache-type-k/v f16) holds them.
"""
import os
import struct
import sys

import numpy as np
import torch

import refdump
from twin_quant import quantize_q4_0, quantize_q8_0, round_half_away

torch.set_num_threads(1)

GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}
ALIGN = 32
DECODE_STEPS = 5

# name: arch, weight type, tied output, rope freq base, linear rope scaling factor, vocab via key
MODELS = {
    "f32": dict(arch="llama", wtype="f32", tied=False, base=10000.0, scale=1.0, vocab_key=True),
    "tied_f16": dict(arch="llama", wtype="f16", tied=True, base=10000.0, scale=1.0, vocab_key=False),
    "qwen2_f32": dict(arch="qwen2", wtype="f32", tied=False, base=1000000.0, scale=1.0, vocab_key=True),
    "theta500k_q8_0": dict(arch="llama", wtype="q8_0", tied=False, base=500000.0, scale=1.0, vocab_key=False),
    "q4_0_scaled": dict(arch="llama", wtype="q4_0", tied=True, base=10000.0, scale=2.0, vocab_key=True),
    # Llama 3.1 rope scaling: a rope_freqs.weight tensor [D/2]; HF's "llama3" rope_type divides
    # inv_freq[i] by a per-frequency factor (1 for short wavelengths .. `factor` for long ones),
    # llama.cpp's converter writes those factors and ggml_rope_ext divides theta_i by element i.
    # Random factors in [1, 8] here, so every index is checked.
    "llama31_f32": dict(arch="llama", wtype="f32", tied=False, base=500000.0, scale=1.0, vocab_key=True,
                        rope_freqs=True),
}
PANEL_MIN_ROWS = 16  # ops::kPanelMinRows (src/backend/cpu/linear_panel.h)
# Up to these rows Q4_0 and Q8_0 weights stay on the integer decode kernels, panel or not
# (ops::linear_quantized_prefers, src/backend/cpu/linear_quantized.cpp; the twins have no K-quants).
DECODE_MAX_ROWS = {"q4_0": 80, "q8_0": 40}
# Panel cases (prompts whose linears take the bf16 panel path): logits of the whole prompt in one
# pass, then decode steps on the cache, as forward_cached computes them.
PANEL_MODELS = {
    "panel_f16": dict(arch="llama", wtype="f16", tied=False, base=10000.0, scale=1.0, vocab_key=True, prompt=24),
    "panel_q4_0": dict(arch="llama", wtype="q4_0", tied=True, base=10000.0, scale=1.0, vocab_key=True, prompt=96),
}
HP = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=160, n_vocab=96, n_ctx=64, eps=1e-5)


# ---- GGUF (spec: ggml docs/gguf.md) ------------------------------------------------------------

def gg_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gg_kv(key, typ, value):
    out = gg_str(key)
    if typ == "u32":
        return out + struct.pack("<II", 4, value)
    if typ == "f32":
        return out + struct.pack("<If", 6, value)
    if typ == "str":
        return out + struct.pack("<I", 8) + gg_str(value)
    if typ == "str[]":
        return out + struct.pack("<IIQ", 9, 8, len(value)) + b"".join(gg_str(s) for s in value)
    raise ValueError(typ)


def gguf_write(path, kvs, tensors):
    """kvs: [(key, type, value)]; tensors: [(name, ggml type name, shape (PyTorch order), raw bytes)]."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    head += b"".join(gg_kv(*kv) for kv in kvs)
    infos, data = b"", b""
    for name, typ, shape, raw in tensors:
        infos += gg_str(name) + struct.pack("<I", len(shape))
        infos += b"".join(struct.pack("<Q", d) for d in reversed(shape))  # ne: innermost first
        infos += struct.pack("<IQ", GGML_TYPE[typ], len(data))
        data += raw + b"\0" * (-len(raw) % ALIGN)
    blob = head + infos
    blob += b"\0" * (-len(blob) % ALIGN)
    with open(path, "wb") as f:
        f.write(blob + data)


def encode_weight(w, wtype):
    """w: float32 numpy [N, K] -> (raw bytes per row as u8 [N, row_bytes], dequantised float64 [N, K])."""
    if wtype == "f32":
        return w.astype(np.float32).view(np.uint8).reshape(w.shape[0], -1), w.astype(np.float64)
    if wtype == "f16":
        h = w.astype(np.float16)
        return h.view(np.uint8).reshape(w.shape[0], -1), h.astype(np.float64)
    quant = {"q8_0": quantize_q8_0, "q4_0": quantize_q4_0}[wtype]
    rows, deqs = [], []
    for r in w:
        raw, deq = quant(r)
        rows.append(raw)
        deqs.append(deq)
    return np.stack(rows), np.stack(deqs).astype(np.float64)


def permute_qk(n_rows_heads, d):
    """Row order llama.cpp's HF converter writes Q/K in: within each head, (i, i + D/2) become
    adjacent rows (2i, 2i + 1). Returns the index array idx such that gguf_rows = hf_rows[idx]."""
    idx = np.arange(n_rows_heads * d).reshape(n_rows_heads, 2, d // 2).swapaxes(1, 2).reshape(-1)
    return idx


# ---- PyTorch reference (float64) -----------------------------------------------------------------

def rmsnorm(x, g, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * g


def rope_rotate_half(x, pos, base, scale, freq_factors=None):
    """x [T, H, D]; HF Llama's rotate_half form: pairs (i, i + D/2); freq_factors [D/2] divide
    inv_freq (HF's llama3 rope_type)."""
    d = x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    if freq_factors is not None:
        inv = inv / freq_factors
    ang = (pos.to(torch.float64) / scale)[:, None] * inv[None, :]  # [T, D/2]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def q8_act(x):
    """GGML's Q8_0 quantisation of activation rows x [T, K] (float64 in, float64 out)."""
    a = x.numpy().astype(np.float32).reshape(-1, 32)
    amax = np.abs(a).max(1, keepdims=True)
    d = amax / np.float32(127)
    idv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0).astype(np.float32)
    q = round_half_away((a * idv).astype(np.float32)).astype(np.float64)
    deq = np.float16(d).astype(np.float32).astype(np.float64) * q
    return torch.from_numpy(deq.reshape(x.shape))


def forward(w, hp, cfg, tokens, kv_f16=False):
    """Full-sequence forward, logits [T, V]. kv_f16: keys (after rope) and values rounded to f16, as
    an f16 KV cache stores them."""
    H, Hkv, D = hp["n_head"], hp["n_head_kv"], hp["n_embd"] // hp["n_head"]
    T = len(tokens)
    pos = torch.arange(T)
    quant = cfg["wtype"] in ("q8_0", "q4_0")

    def lin(x, wt):
        return (q8_act(x) if quant else x) @ wt.T

    x = w["token_embd"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(hp["n_layer"]):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm"], hp["eps"])
        q = lin(h, w[p + "attn_q"])
        k = lin(h, w[p + "attn_k"])
        v = lin(h, w[p + "attn_v"])
        if cfg["arch"] == "qwen2":
            q, k, v = q + w[p + "attn_q.bias"], k + w[p + "attn_k.bias"], v + w[p + "attn_v.bias"]
        ff = w.get("rope_freqs")
        q = rope_rotate_half(q.view(T, H, D), pos, cfg["base"], cfg["scale"], ff)
        k = rope_rotate_half(k.view(T, Hkv, D), pos, cfg["base"], cfg["scale"], ff)
        v = v.view(T, Hkv, D)
        if kv_f16:
            k, v = k.to(torch.float16).to(torch.float64), v.to(torch.float16).to(torch.float64)
        k = k.repeat_interleave(H // Hkv, dim=1)  # query head h reads kv head h // (H / Hkv)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / np.sqrt(D) + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, H * D)
        x = x + lin(a, w[p + "attn_output"])
        h = rmsnorm(x, w[p + "ffn_norm"], hp["eps"])
        x = x + lin(torch.nn.functional.silu(lin(h, w[p + "ffn_gate"])) * lin(h, w[p + "ffn_up"]), w[p + "ffn_down"])
    out = w["token_embd"] if cfg["tied"] else w["output"]
    return lin(rmsnorm(x, w["output_norm"], hp["eps"]), out)


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


def forward_cached(w, hp, cfg, tokens, past):
    """The engine's order of work for the panel cases: `tokens` are evaluated in one pass on top of
    the cached keys/values `past` (per layer (k, v) [Tpast, Hkv, D], extended in place), and a
    linear that ops::linear sends to its bf16 panel GEMM (>= PANEL_MIN_ROWS rows, more than
    DECODE_MAX_ROWS for Q4_0 / Q8_0) computes as that GEMM does (x and w rounded to bf16, exact
    products: PyTorch's bf16 linear); the others keep the exact path (q8_act for quantised
    weights). Returns logits [T, V]."""
    H, Hkv, D = hp["n_head"], hp["n_head_kv"], hp["n_embd"] // hp["n_head"]
    T, P = len(tokens), (past[0][0].shape[0] if past else 0)
    pos = torch.arange(P, P + T)
    quant = cfg["wtype"] in ("q8_0", "q4_0")

    def lin(x, wt):
        if x.shape[0] >= PANEL_MIN_ROWS and x.shape[0] > DECODE_MAX_ROWS.get(cfg["wtype"], 0):
            return bf16(x) @ bf16(wt).T
        return (q8_act(x) if quant else x) @ wt.T

    x = w["token_embd"][torch.tensor(tokens)]
    mask = torch.full((T, P + T), float("-inf"), dtype=torch.float64).triu(P + 1)
    for l in range(hp["n_layer"]):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm"], hp["eps"])
        q = rope_rotate_half(lin(h, w[p + "attn_q"]).view(T, H, D), pos, cfg["base"], cfg["scale"])
        k = rope_rotate_half(lin(h, w[p + "attn_k"]).view(T, Hkv, D), pos, cfg["base"], cfg["scale"])
        v = lin(h, w[p + "attn_v"]).view(T, Hkv, D)
        if len(past) <= l:
            past.append((k, v))
        else:
            past[l] = (torch.cat([past[l][0], k]), torch.cat([past[l][1], v]))
        k, v = past[l]
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / np.sqrt(D) + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, H * D)
        x = x + lin(a, w[p + "attn_output"])
        h = rmsnorm(x, w[p + "ffn_norm"], hp["eps"])
        x = x + lin(torch.nn.functional.silu(lin(h, w[p + "ffn_gate"])) * lin(h, w[p + "ffn_up"]), w[p + "ffn_down"])
    out = w["token_embd"] if cfg["tied"] else w["output"]
    return lin(rmsnorm(x, w["output_norm"], hp["eps"]), out)


def top2_margin(row):
    s = torch.sort(row, descending=True).values
    return float(s[0] - s[1])


def greedy_dump(path, prompt, logits_of):
    """Runs logits_of(tokens) -> [T, V] on the prompt, then DECODE_STEPS greedy steps (each on the
    whole sequence so far), and writes the dump twin_logits_check reads."""
    with torch.no_grad():
        pre = logits_of(prompt)
        gen = [int(pre[-1].argmax())]
        margins = [top2_margin(pre[-1])]
        dec = []
        for _ in range(DECODE_STEPS):
            logits = logits_of(prompt + gen)[-1]
            dec.append(logits)
            gen.append(int(logits.argmax()))
            margins.append(top2_margin(logits))
    refdump.write(path, {
        "prompt": np.array(prompt, dtype=np.int32),
        "prefill_logits": pre.to(torch.float32),
        "gen": np.array(gen, dtype=np.int32),
        "decode_logits": torch.stack(dec).to(torch.float32),
        "margin": np.array(margins, dtype=np.float32),
    })


# ---- one model -----------------------------------------------------------------------------------

def build(name, cfg, seed, out_dir):
    rng = np.random.default_rng(seed)
    hp = dict(HP, n_ctx=128) if cfg.get("panel") else HP  # the panel prompt and its decode steps fit
    C, F, V, H, Hkv = hp["n_embd"], hp["n_ff"], hp["n_vocab"], hp["n_head"], hp["n_head_kv"]
    D = C // H
    arch = cfg["arch"]

    def rand(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # 2-d weights in HF layout (rows = output features); std 1/sqrt(K) keeps activations O(1).
    mats = {"token_embd": rand(V, C, scale=1.0)}
    for l in range(hp["n_layer"]):
        p = f"blk.{l}."
        mats[p + "attn_q"] = rand(H * D, C, scale=C ** -0.5)
        mats[p + "attn_k"] = rand(Hkv * D, C, scale=C ** -0.5)
        mats[p + "attn_v"] = rand(Hkv * D, C, scale=C ** -0.5)
        mats[p + "attn_output"] = rand(C, H * D, scale=(H * D) ** -0.5)
        mats[p + "ffn_gate"] = rand(F, C, scale=C ** -0.5)
        mats[p + "ffn_up"] = rand(F, C, scale=C ** -0.5)
        mats[p + "ffn_down"] = rand(C, F, scale=F ** -0.5)
    if not cfg["tied"]:
        mats["output"] = rand(V, C, scale=C ** -0.5 * 3)
    vecs = {}
    for l in range(hp["n_layer"]):
        vecs[f"blk.{l}.attn_norm"] = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
        vecs[f"blk.{l}.ffn_norm"] = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
        if arch == "qwen2":
            vecs[f"blk.{l}.attn_q.bias"] = rand(H * D, scale=0.5)
            vecs[f"blk.{l}.attn_k.bias"] = rand(Hkv * D, scale=0.5)
            vecs[f"blk.{l}.attn_v.bias"] = rand(Hkv * D, scale=0.5)
    vecs["output_norm"] = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    if cfg.get("rope_freqs"):
        vecs["rope_freqs"] = rng.uniform(1.0, 8.0, D // 2).astype(np.float32)

    w, tensors = {}, []
    gguf_name = {k: k + ".weight" for k in mats}
    for k, m in mats.items():
        raw, deq = encode_weight(m, cfg["wtype"])
        w[k] = torch.from_numpy(deq)
        if arch == "llama" and (k.endswith("attn_q") or k.endswith("attn_k")):
            heads = H if k.endswith("attn_q") else Hkv
            raw = raw[permute_qk(heads, D)]  # row-wise blocks: permuting rows commutes with quantising
        tensors.append((gguf_name[k], cfg["wtype"], list(m.shape), raw.tobytes()))
    for k, vv in vecs.items():
        w[k] = torch.from_numpy(vv.astype(np.float64))
        tensors.append((k if k.endswith(".bias") else k + ".weight", "f32", [len(vv)], vv.tobytes()))

    kvs = [("general.architecture", "str", arch), ("general.name", "str", f"twin {name}"),
           (f"{arch}.context_length", "u32", hp["n_ctx"]), (f"{arch}.embedding_length", "u32", C),
           (f"{arch}.block_count", "u32", hp["n_layer"]), (f"{arch}.feed_forward_length", "u32", F),
           (f"{arch}.attention.head_count", "u32", H), (f"{arch}.attention.head_count_kv", "u32", Hkv),
           (f"{arch}.attention.layer_norm_rms_epsilon", "f32", hp["eps"]),
           (f"{arch}.rope.freq_base", "f32", cfg["base"]), (f"{arch}.rope.dimension_count", "u32", D)]
    if cfg["scale"] != 1.0:
        kvs += [(f"{arch}.rope.scaling.type", "str", "linear"), (f"{arch}.rope.scaling.factor", "f32", cfg["scale"])]
    if cfg["vocab_key"]:
        kvs.append((f"{arch}.vocab_size", "u32", V))
    kvs += [("tokenizer.ggml.model", "str", "llama"), ("tokenizer.ggml.tokens", "str[]", [f"t{i}" for i in range(V)])]
    gguf_write(os.path.join(out_dir, f"llama_{name}.gguf"), kvs, tensors)

    if cfg.get("panel"):
        prompt = [int(t) for t in rng.integers(0, V, cfg["prompt"])]
        with torch.no_grad():
            past = []
            pre = forward_cached(w, hp, cfg, prompt, past)
            gen, margins, dec = [int(pre[-1].argmax())], [top2_margin(pre[-1])], []
            for _ in range(DECODE_STEPS):
                logits = forward_cached(w, hp, cfg, [gen[-1]], past)[-1]
                dec.append(logits)
                gen.append(int(logits.argmax()))
                margins.append(top2_margin(logits))
        refdump.write(os.path.join(out_dir, f"llama_{name}.bin"), {
            "prompt": np.array(prompt, dtype=np.int32), "prefill_logits": pre.to(torch.float32),
            "gen": np.array(gen, dtype=np.int32), "decode_logits": torch.stack(dec).to(torch.float32),
            "margin": np.array(margins, dtype=np.float32)})
        return
    prompt = [int(t) for t in rng.integers(0, V, 7)]
    # the model as it is, and with an f16 KV cache (llama_NAME_f16kv.bin)
    for kv_f16, suffix in ((False, ""), (True, "_f16kv")):
        greedy_dump(os.path.join(out_dir, f"llama_{name}{suffix}.bin"), prompt,
                    lambda toks: forward(w, hp, cfg, toks, kv_f16))


def main(out_dir):
    for i, (name, cfg) in enumerate(MODELS.items()):
        build(name, cfg, 1234 + i, out_dir)
    for i, (name, cfg) in enumerate(PANEL_MODELS.items()):
        build(name, dict(cfg, panel=True), 4321 + i, out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
