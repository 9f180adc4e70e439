// Stable Diffusion's text conditioning, as AUTOMATIC1111's webui computes it
// (modules/sd_hijack_clip.py, "Original" emphasis):
//   1. the prompt is split into 77-id chunks with per-token weights (ClipTokenizer::tokenize_for_sd:
//      A1111 weights "(word:1.3)", "[word]", BREAK, the comma rule);
//   2. each chunk is encoded on its own (ClipTextModel, clip_skip, final layer norm): z [77, W];
//   3. z[t] *= weight[t], then z *= mean(z before) / mean(z after) (the mean over the whole chunk,
//      so emphasis shifts the balance between tokens without changing the overall level);
//   4. the chunks are concatenated along the sequence: context [1, 77 * chunks, W], what the UNet's
//      cross-attention reads.
// Classifier-free guidance in one UNet batch needs the prompt and the negative prompt with the
// same length: sd_conditioning_cfg pads the one with fewer chunks with chunks of the EMPTY prompt's
// conditioning (A1111's pad_cond with cond_stage_model_empty_prompt), then stacks [cond; uncond].
// Note: A1111 pads only with its option "Pad prompt/negative prompt" (pad_cond_uncond, off by
// default; "changes seeds"): by default, when the lengths differ, it runs the UNet on cond and
// uncond separately, each at its own length (cross-attention takes any T). To reproduce that, use
// sd_conditioning_encode for each side (and sd_conditioning_repeat for a batch) and two UNet calls.
//
//   SdConditioningOptions opt;                     // SD 1.x: EOS padding, clip_skip 1
//   opt.tokenize.pad_id = 0; opt.clip_skip = 2;    // SD 2.x single-file checkpoint
//   Tensor c = sd_conditioning_encode(model, tok, "a (red:1.3) cat", opt);        // [1, 77, W]
//   Tensor cfg = sd_conditioning_cfg(model, tok, prompt, negative, opt, 2);        // [4, 77 * n, W]
//
// SD 2.x in the diffusers layout: its text_encoder has the last layer already removed, so the
// penultimate layer is clip_skip 1 there (clip_skip 2 on the single-file checkpoint).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "core/tensor.h"
#include "image/clip_text_model.h"
#include "image/clip_tokenizer.h"

namespace aigc::image {

struct SdConditioningOptions {
  SdTokenizeOptions tokenize;  // pad_id: -1 (EOS) for SD 1.x, 0 for SD 2.x; comma rule; weighting
  int clip_skip = 1;           // 1: last layer; 2: penultimate (SD 2.x single-file, A1111 "CLIP skip 2")
};

// Encodes chunks (each 77 ids and 77 weights) as one batch and applies the weights (steps 2-4):
// [1, 77 * chunks.size(), W]. Throws aigc::Error for an empty list, a chunk that is not 77 long,
// or ids the model rejects.
Tensor sd_conditioning_from_chunks(ClipTextModel& model, std::span<const ClipChunk> chunks, int clip_skip);

// Prompt -> [1, 77 * chunks, W].
Tensor sd_conditioning_encode(ClipTextModel& model, const ClipTokenizer& tok, std::string_view prompt,
                              const SdConditioningOptions& opt = {});

// Prompt and negative prompt, padded to the same chunk count with the empty prompt's chunks, each
// repeated `batch` times: [2 * batch, 77 * chunks, W], rows 0..batch-1 the prompt (cond), rows
// batch..2*batch-1 the negative prompt (uncond), the order Denoiser's ModelFn uses. All chunks go
// through the text encoder as one batch.
Tensor sd_conditioning_cfg(ClipTextModel& model, const ClipTokenizer& tok, std::string_view prompt,
                           std::string_view negative, const SdConditioningOptions& opt = {}, int64_t batch = 1);

// [1, T, W] (or [n, T, W]) -> [batch * n, T, W]: each row repeated `batch` times in a block, i.e.
// for n = 2 the result is [r0 x batch; r1 x batch] (cond rows, then uncond rows).
Tensor sd_conditioning_repeat(const Tensor& cond, int64_t batch);

}  // namespace aigc::image
