"""Stable Diffusion's KL autoencoder (ldm AutoencoderKL) in plain torch, written from its description,
with the ldm attribute names so that state_dict() keys ARE the CompVis checkpoint keys (without the
"first_stage_model." prefix), plus the mapping to diffusers' AutoencoderKL names.

  vae = tiny_vae()                       # ch 32, ch_mult [1, 2, 4, 4], 2 res blocks, z 4, random weights
  mean, logvar = vae.encode(image)       # image [B, 3, H, W] in [-1, 1] -> [B, 4, H/8, W/8] each
  image = vae.decode(latent)             # latent [B, 4, h, w] (unscaled) -> [B, 3, 8h, 8w]
  sd = vae_to_diffusers(vae.state_dict(), attention_names="new")   # or "old" (query/key/value/proj_attn)

Architecture (ldm/modules/diffusionmodules/model.py, facts only):
  Normalize      GroupNorm(32, C, eps=1e-6, affine)
  ResnetBlock    x + conv2(silu(norm2(conv1(silu(norm1(x)))))), x through a 1x1 nin_shortcut when the
                 channel count changes
  AttnBlock      single head over the H*W positions: q, k, v, proj_out are 1x1 convs on norm(x),
                 softmax(q^T k / sqrt(C)), x + proj_out(v attn^T)
  Downsample     pad (left 0, right 1, top 0, bottom 1) with zeros, conv 3x3 stride 2 padding 0
  Upsample       nearest x2, conv 3x3 padding 1
  Encoder        conv_in, down[L].block[M] (+ down[L].downsample except the last level), mid.block_1,
                 mid.attn_1, mid.block_2, norm_out, silu, conv_out -> 2 z (mean and logvar)
  Decoder        conv_in, mid, up[L] for L from the last level down to 0 (num_res_blocks + 1 blocks,
                 up[L].upsample except L = 0), norm_out, silu, conv_out -> 3
  AutoencoderKL  encode: quant_conv(encoder(x)) split into mean, logvar (clamped to [-30, 20]);
                 decode: decoder(post_quant_conv(z))
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def normalize(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = normalize(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = normalize(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = normalize(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).permute(0, 2, 1)  # [B, T, C]
        k = self.k(n).reshape(b, c, h * w)                   # [B, C, T]
        v = self.v(n).reshape(b, c, h * w)                   # [B, C, T]
        attn = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)  # [B, Tq, Tk]
        o = torch.bmm(v, attn.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(o)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = ResnetBlock(c, c)
        self.attn_1 = AttnBlock(c)
        self.block_2 = ResnetBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, in_channels=3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(cin, ch * m))
                cin = ch * m
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(cin)
            self.down.append(level)
        self.mid = Mid(cin)
        self.norm_out = normalize(cin)
        self.conv_out = nn.Conv2d(cin, 2 * z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for b in level.block:
                h = b(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, out_channels=3):
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = Mid(cin)
        levels = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(cin, ch * ch_mult[i]))
                cin = ch * ch_mult[i]
            if i != 0:
                level.upsample = Upsample(cin)
            levels[i] = level
        self.up = nn.ModuleList(levels)  # up[0] is the full-resolution level; up[-1] runs first
        self.norm_out = normalize(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for b in level.block:
                h = b(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def encode(self, x):
        mean, logvar = torch.chunk(self.quant_conv(self.encoder(x)), 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


def tiny_vae(seed=0):
    """The tiny VAE all SD tests share: ch 32, ch_mult [1, 2, 4, 4], 2 res blocks, z 4. Conv weights keep
    PyTorch's default init (activations stay O(1)); every bias and GroupNorm affine parameter is
    randomised too, so that no parameter is a no-op (ldm leaves them at 0 / 1)."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(ch=32, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if ".norm" in name or name.startswith("norm"):  # GroupNorm affine: around (1, 0)
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.05)
    return vae.eval()


def vae_to_diffusers(sd, attention_names="new"):
    """CompVis (ldm) VAE keys -> diffusers AutoencoderKL keys. attention_names "new": to_q/to_k/to_v/
    to_out.0, "old": query/key/value/proj_attn; the attention weights become Linear [C, C] either way."""
    assert attention_names in ("new", "old")
    attn = {"q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0", "norm": "group_norm"}
    if attention_names == "old":
        attn.update(q="query", k="key", v="value", proj_out="proj_attn")
    n_up = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.up."))
    out = {}
    for key, t in sd.items():
        parts = key.split(".")
        part, rest = parts[0], parts[1:]
        if part in ("encoder", "decoder"):
            if rest[0] in ("down", "up"):
                level = int(rest[1])
                if rest[0] == "up":
                    level = n_up - 1 - level  # diffusers numbers decoder levels top-down (in run order)
                kind = "down_blocks" if rest[0] == "down" else "up_blocks"
                if rest[2] == "block":
                    new = [kind, str(level), "resnets", rest[3]] + rest[4:]
                else:  # downsample.conv / upsample.conv
                    sampler = "downsamplers" if rest[2] == "downsample" else "upsamplers"
                    new = [kind, str(level), sampler, "0"] + rest[3:]
            elif rest[0] == "mid":
                if rest[1].startswith("block_"):
                    new = ["mid_block", "resnets", str(int(rest[1][6:]) - 1)] + rest[2:]
                else:  # attn_1
                    new = ["mid_block", "attentions", "0", attn[rest[2]]] + rest[3:]
                    if rest[2] != "norm" and t.dim() == 4:
                        t = t.reshape(t.shape[0], t.shape[1])
            elif rest[0] == "norm_out":
                new = ["conv_norm_out"] + rest[1:]
            else:
                new = rest
            new = [part] + new
            new = ["conv_shortcut" if p == "nin_shortcut" else p for p in new]
            out[".".join(new)] = t
        else:  # quant_conv, post_quant_conv
            out[key] = t
    return out
