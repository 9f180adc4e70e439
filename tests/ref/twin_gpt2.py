#!/usr/bin/env python3
"""Twin for the GPT-2 model (src/text/model_gpt2, gpt2_context; tests/unit/test_model_gpt2.cpp).

Builds tiny random-weight GPT-2 models, writes each as a GGUF file with plain `struct` (twin_llama's
writer, from the GGUF spec), and computes expected logits with a straightforward PyTorch forward in
float64, written from the GPT-2 architecture (Radford et al. 2019; HF GPT2Model):
  x = wte[tokens] + wpe[positions]
  per block (pre-LN): h = LN(x); [q | k | v] = h @ c_attn.W + c_attn.b (HF Conv1D: W is [in, out]);
    causal softmax attention per head, scale 1/sqrt(D); x += a @ c_proj.W + c_proj.b;
    h = LN(x); x += gelu_tanh(h @ c_fc.W + c_fc.b) @ mlp.c_proj.W + mlp.c_proj.b
  logits = LN_f(x) @ wte^T (tied; the "f32" model has a separate classifier)
  LN(v) = (v - mean) / sqrt(biased var + eps) * g + b;
  gelu_tanh(v) = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))).
The weights are drawn in HF's Conv1D layout [in, out]; the GGUF gets them transposed to [out, in]
(PyTorch order), as llama.cpp's converter writes them, so the engine's linear layers must read them
as [out, in] to reproduce the HF-form result.

Quantised file (q8_0): every 2-d weight except position_embd (token_embd, which is also the tied
classifier, included) is quantised by twin_quant's GGML-rule quantiser; the expected logits use the
dequantised weights, and the input rows of every linear layer are quantised to Q8_0 first, as GGML
does (twin_llama.q8_act).

Writes, per model NAME: OUT_DIR/gpt2_NAME.gguf and OUT_DIR/gpt2_NAME.bin (refdump) with
  prompt i32 [P], prefill_logits f32 [P, V], gen i32 [S+1], decode_logits f32 [S, V],
  margin f32 [S+1] (as twin_llama.py documents); OUT_DIR/gpt2_NAME_f16kv.bin the same with keys
  and values rounded to f16 (an f16 KV cache).
"""
import math
import os
import sys

import numpy as np
import torch

import refdump
from twin_llama import encode_weight, gguf_write, greedy_dump, q8_act

torch.set_num_threads(1)

# name: weight type, tied classifier
MODELS = {
    "f32": dict(wtype="f32", tied=False),
    "tied_f16": dict(wtype="f16", tied=True),
    "q8_0": dict(wtype="q8_0", tied=True),
}
HP = dict(n_embd=64, n_layer=2, n_head=4, n_ff=256, n_vocab=96, n_ctx=16, eps=1e-5)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(w, hp, quant, tokens, kv_f16=False):
    """Full-sequence forward, logits [T, V]. w holds HF-layout Conv1D weights [in, out]. kv_f16:
    keys and values rounded to f16, as an f16 KV cache stores them."""
    H, C = hp["n_head"], hp["n_embd"]
    D = C // H
    T = len(tokens)

    def conv1d(x, name):  # HF Conv1D: x @ W + b
        return (q8_act(x) if quant else x) @ w[name + ".w"] + w[name + ".b"]

    x = w["wte"][torch.tensor(tokens)] + w["wpe"][:T]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(hp["n_layer"]):
        p = f"h.{l}."
        h = layer_norm(x, w[p + "ln_1.g"], w[p + "ln_1.b"], hp["eps"])
        qkv = conv1d(h, p + "attn.c_attn")
        q, k, v = (t.reshape(T, H, D) for t in qkv.split(C, dim=-1))
        if kv_f16:
            k, v = k.to(torch.float16).to(torch.float64), v.to(torch.float16).to(torch.float64)
        s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, C)
        x = x + conv1d(a, p + "attn.c_proj")
        h = layer_norm(x, w[p + "ln_2.g"], w[p + "ln_2.b"], hp["eps"])
        x = x + conv1d(gelu_tanh(conv1d(h, p + "mlp.c_fc")), p + "mlp.c_proj")
    h = layer_norm(x, w["ln_f.g"], w["ln_f.b"], hp["eps"])
    cls = w["wte"] if w.get("lm_head") is None else w["lm_head"]  # [V, C]
    return (q8_act(h) if quant else h) @ cls.T


def build(name, cfg, seed, out_dir):
    rng = np.random.default_rng(seed)
    hp = HP
    C, F, V, H, L, P = hp["n_embd"], hp["n_ff"], hp["n_vocab"], hp["n_head"], hp["n_layer"], hp["n_ctx"]
    wtype = cfg["wtype"]
    quant = wtype == "q8_0"

    def rand(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w, tensors = {}, []

    def put_matrix(gguf_name, m_out_in, wt):
        """m_out_in: float32 [out, in] as the GGUF stores it; returns the dequantised [out, in] float64."""
        raw, deq = encode_weight(m_out_in, wt)
        tensors.append((gguf_name, wt, list(m_out_in.shape), raw.tobytes()))
        return torch.from_numpy(deq)

    def put_vector(gguf_name, v):
        tensors.append((gguf_name, "f32", [len(v)], v.tobytes()))
        return torch.from_numpy(v.astype(np.float64))

    w["wte"] = put_matrix("token_embd.weight", rand(V, C, scale=1.0), wtype)
    pos_type = "f16" if wtype == "f16" else "f32"
    w["wpe"] = put_matrix("position_embd.weight", rand(P, C, scale=0.3), pos_type)
    for l in range(L):
        p, b = f"h.{l}.", f"blk.{l}."
        w[p + "ln_1.g"] = put_vector(b + "attn_norm.weight", (1 + 0.1 * rng.standard_normal(C)).astype(np.float32))
        w[p + "ln_1.b"] = put_vector(b + "attn_norm.bias", rand(C, scale=0.1))
        # HF Conv1D weights [in, out]; the GGUF stores W^T [out, in].
        for hf, gg, n_in, n_out in (("attn.c_attn", "attn_qkv", C, 3 * C), ("attn.c_proj", "attn_output", C, C),
                                    ("mlp.c_fc", "ffn_up", C, F), ("mlp.c_proj", "ffn_down", F, C)):
            conv = rand(n_in, n_out, scale=n_in ** -0.5)
            w[p + hf + ".w"] = put_matrix(b + gg + ".weight", np.ascontiguousarray(conv.T), wtype).T
            w[p + hf + ".b"] = put_vector(b + gg + ".bias", rand(n_out, scale=0.2))
            if hf == "attn.c_proj":  # ffn_norm comes after attn_output in the file; order is free
                w[p + "ln_2.g"] = put_vector(b + "ffn_norm.weight", (1 + 0.1 * rng.standard_normal(C)).astype(np.float32))
                w[p + "ln_2.b"] = put_vector(b + "ffn_norm.bias", rand(C, scale=0.1))
    w["ln_f.g"] = put_vector("output_norm.weight", (1 + 0.1 * rng.standard_normal(C)).astype(np.float32))
    w["ln_f.b"] = put_vector("output_norm.bias", rand(C, scale=0.1))
    w["lm_head"] = None if cfg["tied"] else put_matrix("output.weight", rand(V, C, scale=C ** -0.5 * 3), wtype)

    kvs = [("general.architecture", "str", "gpt2"), ("general.name", "str", f"twin gpt2 {name}"),
           ("gpt2.context_length", "u32", P), ("gpt2.embedding_length", "u32", C),
           ("gpt2.block_count", "u32", L), ("gpt2.feed_forward_length", "u32", F),
           ("gpt2.attention.head_count", "u32", H), ("gpt2.attention.layer_norm_epsilon", "f32", hp["eps"]),
           ("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.tokens", "str[]", [f"t{i}" for i in range(V)])]
    gguf_write(os.path.join(out_dir, f"gpt2_{name}.gguf"), kvs, tensors)

    prompt = [int(t) for t in rng.integers(0, V, 7)]
    # the model as it is, and with an f16 KV cache (gpt2_NAME_f16kv.bin)
    for kv_f16, suffix in ((False, ""), (True, "_f16kv")):
        greedy_dump(os.path.join(out_dir, f"gpt2_{name}{suffix}.bin"), prompt,
                    lambda toks: forward(w, hp, quant, toks, kv_f16))


def main(out_dir):
    for i, (name, cfg) in enumerate(MODELS.items()):
        build(name, cfg, 4321 + i, out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
