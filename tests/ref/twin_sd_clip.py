#!/usr/bin/env python3
"""Stable Diffusion text encoder twin (sd_twin_clip.py) for tests/unit/test_clip_text_model.cpp and
tests/unit/test_sd_conditioning.cpp.

Usage: twin_sd_clip.py OUT_DIR. Writes:
  sd_clip_tiny_sd15.safetensors            CompVis keys ("cond_stage_model.transformer.text_model.*"), f16
  sd_clip_tiny_sd15_diffusers.safetensors  diffusers text_encoder/ keys ("text_model.*"), f32
  sd_clip_tiny_sd21.safetensors            CompVis keys ("cond_stage_model.model.*", with text_projection
                                           and logit_scale), f16
  sd_clip_tiny_sd21_diffusers.safetensors  diffusers SD 2 text_encoder/ (HF names, last layer dropped), f16
  sd_clip.bin        ids [2, 77] (i32) and the hidden states [2, 77, 64] of both models for
                     clip_skip 1 and 2 (sd15_skip1, sd15_skip2, sd21_skip1, sd21_skip2)
  sd_clip_cond.bin   (only with ../shared's CLIP vocabulary) A1111 weighted conditioning, the prompt
                     tokenized by twin_clip_tokenizer.py's own tokenizer (not the C++ one):
                       w_ids / w_weights / w_sd15 [1, 77, 64] / w_sd21 [1, 77, 64] for "(red:1.3) cat, [blue] dog"
                       (SD 1.x: EOS padding, clip_skip 1; SD 2.x: padding 0, clip_skip 2)
                       cfg_sd15 [2, 77 * 3, 64]: a 3-chunk prompt and a 1-chunk negative prompt padded
                       with the empty prompt's conditioning (A1111 pad_cond), cond first
"""
import os
import sys

import torch

import refdump
import sd_twin_clip as tw
import st_write

torch.set_num_threads(1)
out = sys.argv[1]
os.makedirs(out, exist_ok=True)

sd15, sd21 = tw.tiny_sd15_text(), tw.tiny_sd21_text()
sd15_state = {"cond_stage_model." + k: v for k, v in sd15.state_dict().items()}
sd21_state = {"cond_stage_model." + k: v for k, v in sd21.state_dict().items()}


def half(sd):
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


st_write.write(os.path.join(out, "sd_clip_tiny_sd15.safetensors"), half(sd15_state), {"format": "pt"})
st_write.write(os.path.join(out, "sd_clip_tiny_sd15_diffusers.safetensors"), tw.clip_to_diffusers(sd15_state),
               {"format": "pt"})
st_write.write(os.path.join(out, "sd_clip_tiny_sd21.safetensors"), half(sd21_state), {"format": "pt"})
st_write.write(os.path.join(out, "sd_clip_tiny_sd21_diffusers.safetensors"),
               half(tw.openclip_to_diffusers(sd21_state)), {"format": "pt"})

# Fixed ids: a chunk as A1111 writes it (BOS, text, EOS, EOS padding) and one of random ids that
# include the extremes 0 and 49407.
g = torch.Generator().manual_seed(77)
row0 = [49406] + torch.randint(0, 49406, (12,), generator=g).tolist() + [49407] * 64
row1 = torch.randint(0, 49408, (77,), generator=g).tolist()
row1[3], row1[40] = 0, 49407
ids = torch.tensor([row0, row1])
dump = {"ids": ids.to(torch.int32)}
with torch.no_grad():
    for name, m in (("sd15", sd15), ("sd21", sd21)):
        for skip in (1, 2):
            h = m(ids, skip)
            dump[f"{name}_skip{skip}"] = h
            print(f"twin_sd_clip: {name} clip_skip {skip}: std {h.std().item():.3f}")
    # The diffusers SD 2 layout (HF names, gelu, one layer fewer) must be the same model at clip_skip 1.
    hf21 = tw.CLIPTextModel(width=64, layers=2, heads=1, mlp=256, act=torch.nn.functional.gelu)
    hf21.load_state_dict(tw.openclip_to_diffusers(sd21_state))
    assert torch.allclose(hf21(ids, 1), dump["sd21_skip2"], atol=1e-5)
refdump.write(os.path.join(out, "sd_clip.bin"), dump)

# ---- weighted conditioning with the real CLIP vocabulary -----------------------------------------
here = os.path.dirname(os.path.abspath(__file__))
shared = os.environ.get("AIGC_SHARED") or os.path.join(here, "..", "..", "..", "shared")
merges_path = os.path.join(shared, "tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz")
if not os.path.exists(merges_path):
    print(f"twin_sd_clip: {merges_path} absent; weighted conditioning skipped")
    sys.exit(0)
try:
    import twin_clip_tokenizer as tt  # exits when python3-regex is missing
except SystemExit:
    print("twin_sd_clip: python3-regex missing; weighted conditioning skipped")
    sys.exit(0)
import gzip  # noqa: E402

lines = gzip.open(merges_path).read().decode("utf-8").split("\n")
merges = [tuple(m.split()) for m in lines[1:tt.MERGES_MAX + 1]]
clip = tt.Clip(tt.clip_vocab(merges), merges)
EOS = clip.encoder["<|endoftext|>"]

PROMPT = "(red:1.3) cat, [blue] dog"
c15 = tt.tokenize_for_sd(clip, PROMPT, EOS, 20)
c21 = tt.tokenize_for_sd(clip, PROMPT, 0, 20)
assert len(c15) == 1 and len(c21) == 1
cond = {
    "w_ids": torch.tensor(c15[0][0], dtype=torch.int32),
    "w_ids_pad0": torch.tensor(c21[0][0], dtype=torch.int32),
    "w_weights": torch.tensor(c15[0][1], dtype=torch.float32),
    "w_sd15": tw.conditioning(sd15, c15, 1),
    "w_sd21": tw.conditioning(sd21, c21, 2),
}

# CFG pair: the negative prompt is padded with the empty prompt's conditioning to the prompt's chunk count.
NEGATIVE = "blurry, (low quality:1.2)"
pos = tw.conditioning(sd15, tt.tokenize_for_sd(clip, tt.LONG, EOS, 20), 1)
neg = tw.conditioning(sd15, tt.tokenize_for_sd(clip, NEGATIVE, EOS, 20), 1)
empty = tw.conditioning(sd15, tt.tokenize_for_sd(clip, "", EOS, 20), 1)
assert pos.shape[1] == 3 * 77 and neg.shape[1] == 77
neg = torch.cat([neg, empty.repeat(1, pos.shape[1] // 77 - 1, 1)], dim=1)
cond["cfg_sd15"] = torch.cat([pos, neg], dim=0)
refdump.write(os.path.join(out, "sd_clip_cond.bin"), cond)
with open(os.path.join(out, "sd_clip_cond_prompts.txt"), "w", encoding="utf-8") as f:
    f.write(tt.LONG + "\n" + NEGATIVE + "\n")
