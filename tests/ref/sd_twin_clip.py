"""PyTorch twins of Stable Diffusion's text encoders, with the checkpoint key names as module names
(state_dict() keys + "cond_stage_model." ARE the single-file checkpoint keys). Plain torch only;
written from the published architectures (OpenAI CLIP / Hugging Face CLIPTextModel, OpenCLIP,
ldm's FrozenCLIPEmbedder / FrozenOpenCLIPEmbedder), not copied.

  FrozenCLIPEmbedder      SD 1.x: .transformer = CLIPTextModel (HF names: text_model.embeddings.*,
                          text_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1,
                          mlp.fc1, mlp.fc2, layer_norm2}, text_model.final_layer_norm), quick_gelu.
  FrozenOpenCLIPEmbedder  SD 2.x: .model = OpenCLIP text tower (token_embedding, positional_embedding,
                          transformer.resblocks.N.{ln_1, attn (nn.MultiheadAttention: in_proj_weight
                          stacks q, k, v), ln_2, mlp.c_fc, mlp.c_proj}, ln_final, text_projection,
                          logit_scale), exact GELU. text_projection / logit_scale are unused by SD.
Both: forward(ids [B, T], clip_skip) = final layer norm of the output of layer L - (clip_skip - 1),
causal self-attention, pre-LN blocks (ldm "penultimate" = clip_skip 2; A1111's CLIP skip).

  tiny_sd15_text(), tiny_sd21_text()   the tiny random models of sd_tiny.md (fixed seeds; every
                                       parameter rounded to f16 so f16 files hold them exactly)
  clip_to_diffusers(sd)                SD 1.x state dict -> diffusers text_encoder/ names
  openclip_to_diffusers(sd)            SD 2.x state dict -> diffusers text_encoder/ names (HF names,
                                       in_proj split into q/k/v, last layer dropped, projection gone)
  conditioning(model, chunks, clip_skip)  A1111 weighted conditioning of (ids, weights) chunks
"""
import collections
import math

import torch
import torch.nn as nn

VOCAB, POSITIONS = 49408, 77


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


# ---- Hugging Face CLIPTextModel names (SD 1.x) ---------------------------------------------------

class CLIPAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):  # x [B, T, W]
        b, t, w = x.shape
        d = w // self.heads

        def split(y):
            return y.view(b, t, self.heads, d).transpose(1, 2)  # [B, H, T, D]
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        s = q @ k.transpose(-1, -2) / math.sqrt(d)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        s = s.masked_fill(mask, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(b, t, w))


class CLIPMLP(nn.Module):
    def __init__(self, width, mlp, act):
        super().__init__()
        self.act = act
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, width, heads, mlp, act):
        super().__init__()
        self.self_attn = CLIPAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = CLIPMLP(width, mlp, act)
        self.layer_norm2 = nn.LayerNorm(width, eps=1e-5)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, width, layers, heads, mlp, act):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(width, heads, mlp, act) for _ in range(layers)])


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, vocab, positions, width):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = nn.Embedding(positions, width)
        # Stored in SD 1.x checkpoints (int64 [1, 77]); ignored by the C++ loader.
        self.register_buffer("position_ids", torch.arange(positions).unsqueeze(0))


class CLIPTextTransformer(nn.Module):
    def __init__(self, vocab, positions, width, layers, heads, mlp, act):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(vocab, positions, width)
        self.encoder = CLIPEncoder(width, layers, heads, mlp, act)
        self.final_layer_norm = nn.LayerNorm(width, eps=1e-5)


class CLIPTextModel(nn.Module):
    def __init__(self, vocab=VOCAB, positions=POSITIONS, width=768, layers=12, heads=12, mlp=3072, act=quick_gelu):
        super().__init__()
        self.text_model = CLIPTextTransformer(vocab, positions, width, layers, heads, mlp, act)

    def forward(self, ids, clip_skip=1):
        tm = self.text_model
        t = ids.shape[1]
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding(torch.arange(t))
        hidden = [x]  # HF's hidden_states: the embeddings, then every layer's output
        for layer in tm.encoder.layers:
            hidden.append(layer(hidden[-1]))
        return tm.final_layer_norm(hidden[-clip_skip])


class FrozenCLIPEmbedder(nn.Module):
    """ldm.modules.encoders.modules.FrozenCLIPEmbedder: the keys under cond_stage_model."""

    def __init__(self, **kw):
        super().__init__()
        self.transformer = CLIPTextModel(**kw)

    def forward(self, ids, clip_skip=1):
        return self.transformer(ids, clip_skip)


# ---- OpenCLIP names (SD 2.x) ---------------------------------------------------------------------

class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, mlp):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)  # in_proj_weight [3W, W], out_proj
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(collections.OrderedDict([
            ("c_fc", nn.Linear(width, mlp)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(mlp, width))]))

    def forward(self, x, mask):  # x [T, B, W] (sequence first, as OpenCLIP)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class OpenClipTransformer(nn.Module):
    def __init__(self, width, layers, heads, mlp):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp) for _ in range(layers)])


class OpenClipText(nn.Module):
    def __init__(self, vocab=VOCAB, positions=POSITIONS, width=1024, layers=24, heads=16, mlp=4096, embed=1024):
        super().__init__()
        self.transformer = OpenClipTransformer(width, layers, heads, mlp)
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(positions, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width ** -0.5)
        # -inf above the diagonal; not saved (persistent=False, as OpenCLIP)
        self.register_buffer("attn_mask", torch.full((positions, positions), float("-inf")).triu_(1),
                             persistent=False)

    def forward(self, ids, clip_skip=1):
        t = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:t]
        x = x.permute(1, 0, 2)
        mask = self.attn_mask[:t, :t]
        blocks = self.transformer.resblocks
        for i, r in enumerate(blocks):
            if i == len(blocks) - (clip_skip - 1):  # ldm: layer_idx 1 = "penultimate"
                break
            x = r(x, mask)
        return self.ln_final(x.permute(1, 0, 2))


class FrozenOpenCLIPEmbedder(nn.Module):
    """ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder (visual tower deleted)."""

    def __init__(self, **kw):
        super().__init__()
        self.model = OpenClipText(**kw)

    def forward(self, ids, clip_skip=1):
        return self.model(ids, clip_skip)


# ---- tiny models ---------------------------------------------------------------------------------

def _randomise(module, seed):
    """Random layer norms too (their default 1/0 would hide a swapped weight/bias), then every
    parameter rounded to f16 so an f16 checkpoint holds the model exactly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ("ln" in name or "layer_norm" in name) and p.dim() == 1:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1 and name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            p.copy_(p.half().float())
    return module.eval()


def tiny_sd15_text():
    torch.manual_seed(15)
    m = FrozenCLIPEmbedder(width=64, layers=2, heads=1, mlp=256, act=quick_gelu)
    return _randomise(m, 1015)


def tiny_sd21_text():
    torch.manual_seed(21)
    m = FrozenOpenCLIPEmbedder(width=64, layers=3, heads=1, mlp=256, embed=64)
    return _randomise(m, 1021)


def _strip(sd, prefix):
    out = {}
    for k, v in sd.items():
        if k.startswith("cond_stage_model."):
            k = k[len("cond_stage_model."):]
        if k.startswith(prefix):
            out[k[len(prefix):]] = v
    return out


def clip_to_diffusers(sd):
    """SD 1.x: diffusers' text_encoder/ holds the same CLIPTextModel names without the prefix."""
    return _strip(sd, "transformer.")


def openclip_to_diffusers(sd):
    """SD 2.x: OpenCLIP names -> CLIPTextModel names; the last layer is dropped (diffusers' SD 2
    text_encoder config has one layer fewer, as SD 2 conditions on the penultimate layer)."""
    sd = _strip(sd, "model.")
    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
    width = sd["token_embedding.weight"].shape[1]
    out = {
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.embeddings.position_ids": torch.arange(sd["positional_embedding"].shape[0]).unsqueeze(0),
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
    }
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    for i in range(n_layers - 1):
        src, dst = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for a, b in names.items():
            for p in ("weight", "bias"):
                out[f"{dst}{b}.{p}"] = sd[f"{src}{a}.{p}"]
        for p in ("weight", "bias"):
            q, k, v = sd[f"{src}attn.in_proj_{p}"].split(width, dim=0)
            out[f"{dst}self_attn.q_proj.{p}"] = q
            out[f"{dst}self_attn.k_proj.{p}"] = k
            out[f"{dst}self_attn.v_proj.{p}"] = v
    return out


# ---- A1111 weighted conditioning (modules/sd_hijack_clip.py process_tokens) ----------------------

def conditioning(model, chunks, clip_skip):
    """chunks: [(ids [77], weights [77])] -> [1, 77 * len(chunks), W]. Per chunk: z = encode(ids);
    z *= weights (per token); z *= mean(z before) / mean(z after)."""
    zs = []
    with torch.no_grad():
        for ids, weights in chunks:
            z = model(torch.tensor([ids]), clip_skip)
            w = torch.tensor(weights, dtype=torch.float32)
            original_mean = z.mean()
            z = z * w.reshape(1, -1, 1)
            z = z * (original_mean / z.mean())
            zs.append(z)
    return torch.cat(zs, dim=1)
