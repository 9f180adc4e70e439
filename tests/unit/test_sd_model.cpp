// SdModel::open on synthetic checkpoints: only names and shapes matter for detection, so each file
// holds a handful of tiny tensors with the real key names of SD 1.x / 2.x / SDXL / SD3 / Flux (as in
// the CompVis and diffusers layouts), and the messages for what is not supported.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

#include "core/error.h"
#include "formats/safetensors.h"
#include "image/sd_model.h"

namespace {

using namespace aigc;
using namespace aigc::image;
namespace fs = std::filesystem;

std::string tmp_path(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("sd_model_" + std::to_string(getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

Tensor filled(std::initializer_list<int64_t> shape, float scale = 0.01f, uint32_t seed = 1) {
  Tensor t = Tensor::empty(DType::F32, shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.ptr<float>()[i] = scale * d(rng);
  return t;
}

using Tensors = std::map<std::string, Tensor>;

// The keys detection looks at in an SD single file, with reduced sizes.
Tensors sd_single(bool sd2, int64_t in_ch = 4, int64_t ctx = 0) {
  if (ctx == 0) ctx = sd2 ? 1024 : 768;
  Tensors t;
  t["model.diffusion_model.input_blocks.0.0.weight"] = filled({8, in_ch, 3, 3});
  t["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = filled({8, ctx});
  t["model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"] = filled({64});
  t["first_stage_model.decoder.conv_in.weight"] = filled({8, 4, 3, 3});
  if (sd2) t["cond_stage_model.model.token_embedding.weight"] = filled({3, ctx});
  else t["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = filled({3, ctx});
  return t;
}

std::string write(const std::string& name, const Tensors& t) {
  const std::string p = tmp_path(name);
  safetensors_write(p, t);
  return p;
}

std::string open_error(const std::string& path, const SdModelOptions& opt = {}) {
  try {
    SdModel::open(path, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(SdModel, DetectsSd1SingleFile) {
  const SdModel m = SdModel::open(write("sd1.safetensors", sd_single(false)));
  EXPECT_EQ(m.info().family, SdFamily::Sd1);
  EXPECT_EQ(m.info().layout, KeyLayout::CompVis);
  EXPECT_EQ(m.info().prediction, Prediction::Epsilon);
  EXPECT_FALSE(m.info().inpainting);
  EXPECT_EQ(m.info().context_dim, 768);
  EXPECT_EQ(m.info().text_names, ClipKeyNames::HuggingFace);
  EXPECT_EQ(m.info().clip_skip_default, 1);
  EXPECT_EQ(m.info().name, "sd1");
  EXPECT_NE(m.info().description.find("SD 1.x"), std::string::npos) << m.info().description;
}

TEST(SdModel, DetectsSd2AndVPredictionByNormBiasStd) {
  // ComfyUI's rule: std(norm1.bias of output_blocks.11.1) > 0.09 means a v-prediction (768-v) model.
  Tensors t = sd_single(true);
  t["model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"] = filled({64}, 0.2f);
  const SdModel v = SdModel::open(write("sd2v.safetensors", t));
  EXPECT_EQ(v.info().family, SdFamily::Sd2);
  EXPECT_EQ(v.info().prediction, Prediction::V);
  EXPECT_EQ(v.info().text_names, ClipKeyNames::OpenClip);
  EXPECT_EQ(v.info().clip_skip_default, 2);

  t["model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"] = filled({64}, 0.02f);
  const SdModel eps = SdModel::open(write("sd2eps.safetensors", t));
  EXPECT_EQ(eps.info().prediction, Prediction::Epsilon);  // SD 2.x base / SD-Turbo

  SdModelOptions opt;
  opt.prediction = Prediction::V;
  EXPECT_EQ(SdModel::open(write("sd2eps2.safetensors", t), opt).info().prediction, Prediction::V);
}

TEST(SdModel, Sd2FamilyFromOpenClipNamesAtReducedWidth) {
  // The tiny test models have context 64: the text encoder's key names decide the family.
  const SdModel m = SdModel::open(write("sd2tiny.safetensors", sd_single(true, 4, 64)));
  EXPECT_EQ(m.info().family, SdFamily::Sd2);
  EXPECT_EQ(m.info().context_dim, 64);
}

TEST(SdModel, DetectsInpainting) {
  const SdModel m = SdModel::open(write("inpaint.safetensors", sd_single(false, 9)));
  EXPECT_TRUE(m.info().inpainting);
  EXPECT_EQ(m.info().unet_in_channels, 9);
  EXPECT_NE(open_error(write("depth.safetensors", sd_single(false, 5))).find("5 input channels"), std::string::npos);
}

TEST(SdModel, RefusesSdxlSd3FluxByName) {
  Tensors xl = sd_single(false, 4, 2048);
  xl["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = filled({3, 768});
  std::string e = open_error(write("xl.safetensors", xl));
  EXPECT_NE(e.find("SDXL is not supported (yet)"), std::string::npos) << e;
  EXPECT_NE(e.find("conditioner.embedders"), std::string::npos) << e;  // says what it saw

  Tensors xl2 = sd_single(false, 4, 2048);  // no conditioner: label_emb / context 2048 still give it away
  xl2["model.diffusion_model.label_emb.0.0.weight"] = filled({8, 16});
  e = open_error(write("xl2.safetensors", xl2));
  EXPECT_NE(e.find("SDXL"), std::string::npos) << e;

  Tensors unclip = sd_single(true);  // SD 2.1 unCLIP: an image embedding through label_emb
  unclip["model.diffusion_model.label_emb.0.0.weight"] = filled({8, 16});
  e = open_error(write("unclip.safetensors", unclip));
  EXPECT_NE(e.find("SD 2.x unCLIP is not supported"), std::string::npos) << e;

  const Tensors sd3 = {{"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight", filled({6, 2})}};
  e = open_error(write("sd3.safetensors", sd3));
  EXPECT_NE(e.find("Stable Diffusion 3 is not supported"), std::string::npos) << e;

  const Tensors flux = {{"double_blocks.0.img_attn.qkv.weight", filled({6, 2})}};
  e = open_error(write("flux.safetensors", flux));
  EXPECT_NE(e.find("Flux is not supported"), std::string::npos) << e;
}

TEST(SdModel, RefusesPicklesAndGguf) {
  const std::string ckpt = tmp_path("model.ckpt");
  std::ofstream(ckpt, std::ios::binary) << std::string("PK\x03\x04rest of a zip", 18);
  std::string e = open_error(ckpt);
  EXPECT_NE(e.find("pickled PyTorch checkpoints (.ckpt) are not supported"), std::string::npos) << e;

  const std::string pt = tmp_path("legacy.safetensors");  // a pickle, whatever its name says
  std::ofstream(pt, std::ios::binary) << std::string("\x80\x02}q\x00.", 6);
  e = open_error(pt);
  EXPECT_NE(e.find("pickle"), std::string::npos) << e;

  const std::string gguf = tmp_path("sd.gguf");
  std::ofstream(gguf, std::ios::binary) << std::string("GGUF\x03\x00\x00\x00", 8);
  e = open_error(gguf);
  EXPECT_NE(e.find("GGUF image models are not supported"), std::string::npos) << e;
}

TEST(SdModel, PartialAndWrongCheckpoints) {
  EXPECT_NE(open_error(tmp_path("nothing_here.safetensors")).find("does not exist"), std::string::npos);

  Tensors no_vae = sd_single(false);
  no_vae.erase("first_stage_model.decoder.conv_in.weight");
  EXPECT_NE(open_error(write("novae.safetensors", no_vae)).find("no VAE"), std::string::npos);

  Tensors no_te = sd_single(false);
  no_te.erase("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
  EXPECT_NE(open_error(write("note.safetensors", no_te)).find("no text encoder"), std::string::npos);

  const Tensors vae = {{"decoder.conv_in.weight", filled({8, 4, 3, 3})}, {"encoder.conv_in.weight", filled({8, 3, 3, 3})}};
  EXPECT_NE(open_error(write("vae.safetensors", vae)).find("VAE file"), std::string::npos);

  const Tensors other = {{"transformer.h.0.attn.weight", filled({4, 4})}};
  EXPECT_NE(open_error(write("gpt.safetensors", other)).find("not a Stable Diffusion checkpoint"), std::string::npos);

  Tensors mixed = sd_single(false);
  mixed["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = filled({3, 1024});
  EXPECT_NE(open_error(write("mixed.safetensors", mixed)).find("does not match"), std::string::npos);

  const Tensors lora = {{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", filled({4, 8})}};
  EXPECT_NE(open_error(write("lora.safetensors", lora)).find("LoRA"), std::string::npos);
}

// A diffusers folder with the keys detection reads.
std::string diffusers_folder(const std::string& name, const std::string& cls, const std::string& sched) {
  const fs::path d = tmp_path(name);
  fs::create_directories(d / "unet");
  fs::create_directories(d / "vae");
  fs::create_directories(d / "text_encoder");
  fs::create_directories(d / "scheduler");
  std::ofstream(d / "model_index.json") << "{\"_class_name\": \"" << cls << "\", \"_diffusers_version\": \"0.21.0\"}";
  safetensors_write((d / "unet" / "diffusion_pytorch_model.safetensors").string(),
                    {{"conv_in.weight", filled({8, 4, 3, 3})},
                     {"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", filled({8, 1024})}});
  safetensors_write((d / "vae" / "diffusion_pytorch_model.safetensors").string(),
                    {{"decoder.conv_in.weight", filled({8, 4, 3, 3})}});
  safetensors_write((d / "text_encoder" / "model.safetensors").string(),
                    {{"text_model.embeddings.token_embedding.weight", filled({3, 1024})}});
  std::ofstream(d / "unet" / "config.json")
      << "{\"attention_head_dim\": [5, 10, 20, 20], \"block_out_channels\": [320, 640, 1280, 1280], "
         "\"use_linear_projection\": true}";
  std::ofstream(d / "scheduler" / "scheduler_config.json") << sched;
  return d.string();
}

TEST(SdModel, DiffusersFolder) {
  const std::string d = diffusers_folder(
      "sd21", "StableDiffusionPipeline", "{\"prediction_type\": \"v_prediction\", \"timestep_spacing\": \"trailing\"}");
  const SdModel m = SdModel::open(d);
  EXPECT_EQ(m.info().layout, KeyLayout::Diffusers);
  EXPECT_EQ(m.info().family, SdFamily::Sd2);
  EXPECT_EQ(m.info().prediction, Prediction::V);
  EXPECT_EQ(m.info().spacing, TimestepSpacing::Trailing);
  EXPECT_EQ(m.info().clip_skip_default, 1);  // the diffusers SD 2.x encoder already ends a layer early
  EXPECT_EQ(m.info().name, "sd21");

  std::string e = open_error(diffusers_folder("xl", "StableDiffusionXLPipeline", "{}"));
  EXPECT_NE(e.find("SDXL is not supported"), std::string::npos) << e;

  const std::string bin = diffusers_folder("bin", "StableDiffusionPipeline", "{}");
  fs::remove(fs::path(bin) / "unet" / "diffusion_pytorch_model.safetensors");
  std::ofstream(fs::path(bin) / "unet" / "diffusion_pytorch_model.bin") << "pickle";
  e = open_error(bin);
  EXPECT_NE(e.find("(.bin) are not supported"), std::string::npos) << e;

  const std::string bad = diffusers_folder("badsched", "StableDiffusionPipeline", "{\"prediction_type\": \"sample\"}");
  EXPECT_NE(open_error(bad).find("prediction_type 'sample'"), std::string::npos);

  const std::string badcfg = diffusers_folder("badcfg", "StableDiffusionPipeline", "{}");
  std::ofstream(fs::path(badcfg) / "unet" / "config.json") << "{\"use_linear_projection\": \"yes\"}";
  EXPECT_NE(open_error(badcfg).find("unexpected value in a config file"), std::string::npos) << open_error(badcfg);

  const fs::path empty = tmp_path("empty_folder");
  fs::create_directories(empty);
  EXPECT_NE(open_error(empty.string()).find("model_index.json"), std::string::npos);
}

TEST(SdModel, TokenizerSearch) {
  const std::string model = write("tok_sd1.safetensors", sd_single(false));
  EXPECT_THROW(sd_tokenizer_find(model, tmp_path("missing_vocab.txt.gz")), Error);
  const std::string vocab = tmp_path("bpe_simple_vocab_16e6.txt.gz");
  std::ofstream(vocab) << "x";
  EXPECT_EQ(sd_tokenizer_find(model, ""), vocab);  // next to the model
  EXPECT_EQ(sd_tokenizer_find(model, vocab), vocab);
  setenv("AIGC_CLIP_VOCAB", "/nonexistent/clip_vocab.gz", 1);
  EXPECT_THROW(sd_tokenizer_find(model, ""), Error);
  unsetenv("AIGC_CLIP_VOCAB");
  fs::remove(vocab);
}

}  // namespace
