// ClipTextModel: the CLIP text transformer Stable Diffusion conditions on.
//   SD 1.x: OpenAI CLIP ViT-L/14 text model (width 768, 12 layers, 12 heads, quick_gelu), keys in
//           Hugging Face transformers' CLIPTextModel names ("text_model.embeddings.token_embedding.weight",
//           "text_model.encoder.layers.N.self_attn.q_proj.weight", ..., "text_model.final_layer_norm.*")
//           both in single-file checkpoints (prefix "cond_stage_model.transformer.") and in diffusers
//           folders (text_encoder/, prefix "").
//   SD 2.x: OpenCLIP ViT-H/14 text model (width 1024, 24 layers, 16 heads, gelu). Single-file keys in
//           open_clip names (prefix "cond_stage_model.model."): "token_embedding.weight",
//           "positional_embedding", "transformer.resblocks.N.attn.in_proj_weight" (q, k, v stacked),
//           "attn.out_proj", "ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj", "ln_final", "text_projection";
//           diffusers folders hold it converted to CLIPTextModel names (23 layers: the last one is
//           dropped since SD 2.x uses the penultimate layer).
// Causal self-attention over the 77 positions, pre-LN blocks, final layer norm applied to the
// output of the layer chosen by clip_skip (as ldm's FrozenOpenCLIPEmbedder "penultimate" and
// A1111's CLIP skip do).
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "backend/cpu/precision.h"
#include "core/tensor.h"
#include "image/sd_key_layout.h"
#include "image/weight_source.h"

namespace aigc::image {

enum class ClipKeyNames { HuggingFace, OpenClip };

// The MLP activation. Auto: as load() describes (quick_gelu for HuggingFace names unless width is
// 1024, exact GELU for OpenClip names). A diffusers text_encoder/config.json states it as
// "hidden_act" ("quick_gelu" or "gelu"): pass that when known (tiny test models need it).
enum class ClipActivation { Auto, QuickGelu, Gelu };

struct ClipTextConfig {
  int64_t vocab = 49408;
  int64_t positions = 77;
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t mlp = 3072;
  bool quick_gelu = true;  // x * sigmoid(1.702 x) (OpenAI CLIP); false: exact GELU (OpenCLIP ViT-H)
  float eps = 1e-5f;
};

class ClipTextModel {
 public:
  // Dimensions are read from the tensor shapes; heads = width / 64 (true of every CLIP text model
  // SD uses) unless heads_override > 0; quick_gelu for HuggingFace names unless width == 1024
  // (SD 2.x), false for OpenClip. Throws aigc::Error for missing, mis-shaped or unknown tensors.
  // Ignored on purpose: "text_model.embeddings.position_ids" (a buffer, sometimes stored damaged
  // as floats; positions are always 0..T-1 here), OpenCLIP's "text_projection" and "logit_scale"
  // (used for CLIP's image-text score, not by SD's conditioning).
  static ClipTextModel load(const WeightSource& w, ClipKeyNames names, ops::Precision precision,
                            int64_t heads_override = 0, ClipActivation activation = ClipActivation::Auto);
  ClipTextModel(ClipTextModel&&) noexcept;
  ClipTextModel& operator=(ClipTextModel&&) noexcept;
  ~ClipTextModel();

  const ClipTextConfig& config() const;
  // ids: batch x positions token ids (row-major) -> hidden [batch, positions, width].
  // clip_skip 1: the last layer's output; 2: the one before it (SD 2.x); then final_layer_norm.
  // (A diffusers SD 2.x text_encoder has its last layer already dropped: use clip_skip 1 there for
  // what clip_skip 2 gives on the single-file checkpoint.)
  // Also accepted: fewer than `positions` ids per row (T = ids.size() / batch, 1 <= T <= positions;
  // the mask is causal, so the first T outputs do not change). hidden: f32 [batch, T, width],
  // contiguous; an undefined Tensor is allocated here. Throws aigc::Error for an id outside the
  // vocabulary, a clip_skip outside 1..layers or a wrongly shaped `hidden`. Reuses internal buffers
  // (grown on demand): not for concurrent use.
  void encode(std::span<const int32_t> ids, int64_t batch, int clip_skip, Tensor& hidden);
  Tensor encode(std::span<const int32_t> ids, int64_t batch, int clip_skip);

 private:
  ClipTextModel();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The naming of the text encoder under w's prefix: HuggingFace when
// "[text_model.]embeddings.token_embedding.weight" exists, OpenClip when "token_embedding.weight"
// does (so "cond_stage_model." + "transformer." or "model." tells SD 1.x from 2.x in a single file).
// Throws aigc::Error when neither is there.
ClipKeyNames clip_key_names_detect(const WeightSource& w);

}  // namespace aigc::image
