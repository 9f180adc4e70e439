// How a Stable Diffusion checkpoint names its tensors.
//   CompVis    the original single-file checkpoints (ldm / Stability "sgm" code), what most users
//              download: "model.diffusion_model.*" (UNet), "first_stage_model.*" (VAE),
//              "cond_stage_model.transformer.text_model.*" (SD 1.x, Hugging Face CLIP names) or
//              "cond_stage_model.model.*" (SD 2.x, OpenCLIP names). The WeightSource carries the
//              prefix; component loaders see the names after it.
//   Diffusers  the diffusers folder layout: unet/, vae/, text_encoder/ each with a
//              diffusion_pytorch_model.safetensors or model.safetensors, diffusers / transformers names.
#pragma once

namespace aigc::image {

enum class KeyLayout { CompVis, Diffusers };

}  // namespace aigc::image
