"""PyTorch twin of Stable Diffusion's UNet (ldm openaimodel.UNetModel, the SD 1.x / 2.x subset), in
plain torch, written from the architecture's description (not copied). Attribute names follow ldm's
so that state_dict() keys are exactly the CompVis checkpoint keys after "model.diffusion_model.".

  m = tiny_sd15_unet()                       # random weights (seeded), SD 1.5 layout, reduced widths
  eps = m(x, timesteps, context)             # x [B, 4, H, W], timesteps [B], context [B, T, 64]
  diffusers_sd = unet_to_diffusers(m.state_dict())

Semantics (ldm): sinusoidal timestep embedding (cos first) -> time_embed Linear-SiLU-Linear;
ResBlock = GroupNorm(32, eps 1e-5)-SiLU-conv3x3, + Linear(SiLU(emb)) per channel,
GroupNorm-SiLU-(Dropout)-conv3x3, + skip (1x1 conv when channels change);
SpatialTransformer = GroupNorm(32, eps 1e-6), proj_in (1x1 conv, or Linear for SD 2.x),
BasicTransformerBlock x depth (LayerNorm -> self-attention, LayerNorm -> cross-attention on the
context, LayerNorm -> GEGLU feed-forward, each residual), proj_out, + input;
Downsample = conv3x3 stride 2 pad 1; Upsample = nearest x2 then conv3x3; output blocks take the
concatenation [h, skip]; out = GroupNorm-SiLU-conv3x3.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(timesteps, dim, max_period=10000):
    """ldm's embedding: [cos(t f_i), sin(t f_i)], f_i = max_period^(-i / half), in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def norm32(channels, eps=1e-5):
    return nn.GroupNorm(32, channels, eps=eps)


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context, out_size=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, Upsample):
                x = layer(x, out_size)
            else:
                x = layer(x)
        return x


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, out_channels):
        super().__init__()
        self.in_layers = nn.Sequential(norm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(norm32(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, out_size=None):
        # out_size: the next skip's size, for latents that are not multiples of 8 (odd sizes halve
        # rounding up on the way down); as ComfyUI's and diffusers' UNets do. None: exactly 2x.
        if out_size is None:
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.conv(F.interpolate(x, size=out_size, mode="nearest"))


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        B, Tq, _ = q.shape
        split = lambda t: t.reshape(B, t.shape[1], self.heads, -1).permute(0, 2, 1, 3)  # [B, H, T, D]
        q, k, v = split(q), split(k), split(v)
        w = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * self.scale, dim=-1)
        o = torch.einsum("bhij,bhjd->bhid", w, v).permute(0, 2, 1, 3).reshape(B, Tq, -1)
        return self.to_out(o)


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, channels, heads, dim_head, depth, context_dim, use_linear):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = norm32(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)])
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x, context):
        B, C, H, W = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(B, H * W, -1)
        if self.use_linear:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2)
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


class UNetModel(nn.Module):
    def __init__(self, in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4),
                 num_res_blocks=2, attention_levels=(0, 1, 2), transformer_depth=1, context_dim=768,
                 num_heads=8, num_head_channels=-1, use_linear_in_transformer=False):
        super().__init__()
        self.model_channels = model_channels
        emb_dim = model_channels * 4

        def heads_of(ch):
            if num_head_channels > 0:
                return ch // num_head_channels, num_head_channels
            return num_heads, ch // num_heads

        def attn(ch):
            h, d = heads_of(ch)
            return SpatialTransformer(ch, h, d, transformer_depth, context_dim, use_linear_in_transformer)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans = [model_channels]
        ch = model_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if level in attention_levels:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, emb_dim, ch), attn(ch), ResBlock(ch, emb_dim, ch))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb_dim, model_channels * mult)]
                ch = model_channels * mult
                if level in attention_levels:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(norm32(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x, timesteps, context):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = block(h, emb, context, tuple(hs[-1].shape[-2:]) if hs else None)
        return self.out(h)


# The tiny models of sd_tiny.md: every key of the real model, reduced widths.
def tiny_sd15_unet(seed=0, in_channels=4):
    torch.manual_seed(seed)
    return UNetModel(in_channels=in_channels, model_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
                     attention_levels=(0, 1, 2), transformer_depth=1, context_dim=64, num_heads=8).eval()


def tiny_sd21_unet(seed=1):
    torch.manual_seed(seed)
    return UNetModel(model_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_levels=(0, 1, 2),
                     transformer_depth=1, context_dim=64, num_head_channels=8,
                     use_linear_in_transformer=True).eval()


def tiny_sd15_inpaint_unet(seed=2):
    return tiny_sd15_unet(seed=seed, in_channels=9)


# CompVis -> diffusers key names (UNet2DConditionModel), from the facts of diffusers' conversion
# script: input_blocks.0.0 = conv_in; input_blocks.i (i >= 1) is down level (i-1) // (n+1), slot
# (i-1) % (n+1): slots < n are resnets/attentions, slot n the downsampler; output_blocks.i is up
# level i // (n+1), slot i % (n+1), with the upsampler at the end of every level but the last;
# resnet parts in_layers.0/2, emb_layers.1, out_layers.0/3, skip_connection ->
# norm1/conv1, time_emb_proj, norm2/conv2, conv_shortcut; transformer parts keep their names.
_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _resnet_rest(rest):
    for old, new in _RESNET.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    raise KeyError(rest)


def unet_to_diffusers(sd):
    # Res blocks per level: the input blocks before the first downsampler, minus conv_in.
    first_down = min(int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.") and ".op." in k)
    n = first_down - 1
    top = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
           "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}
    out = {}
    for key, t in sd.items():
        parts = key.split(".")
        new = None
        for old, rep in top.items():
            if key.startswith(old + "."):
                new = rep + key[len(old):]
        if new is None and parts[0] == "input_blocks":
            i, j, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
            level, slot = (i - 1) // (n + 1), (i - 1) % (n + 1)
            if slot == n:
                new = f"down_blocks.{level}.downsamplers.0.conv." + rest[len("op."):]
            elif j == 0:
                new = f"down_blocks.{level}.resnets.{slot}." + _resnet_rest(rest)
            else:
                new = f"down_blocks.{level}.attentions.{slot}." + rest
        elif new is None and parts[0] == "middle_block":
            j, rest = int(parts[1]), ".".join(parts[2:])
            new = {0: "mid_block.resnets.0.", 1: "mid_block.attentions.0.", 2: "mid_block.resnets.1."}[j] + \
                (rest if j == 1 else _resnet_rest(rest))
        elif new is None and parts[0] == "output_blocks":
            i, j, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
            level, slot = i // (n + 1), i % (n + 1)
            if rest.startswith("conv."):  # Upsample (index 1 or 2 of the block)
                new = f"up_blocks.{level}.upsamplers.0.conv." + rest[len("conv."):]
            elif j == 0:
                new = f"up_blocks.{level}.resnets.{slot}." + _resnet_rest(rest)
            else:
                new = f"up_blocks.{level}.attentions.{slot}." + rest
        if new is None:
            raise KeyError(key)
        out[new] = t
    return out
