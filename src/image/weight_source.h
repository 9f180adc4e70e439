// WeightSource: the tensors of one model component (UNet, VAE, text encoder) inside a checkpoint,
// under that component's key prefix, with the checks every loader needs and one error style.
//
//   auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open("v1-5.safetensors"));
//   WeightSource unet(file, "model.diffusion_model.", "UNet");     // single-file CompVis keys
//   WeightSource vae(folder_file, "", "VAE");                        // diffusers vae/ file
//   Tensor w = unet.get("input_blocks.0.0.weight", {320, 4, 3, 3});  // checks the shape
//   if (const Tensor* t = unet.find("label_emb.0.0.weight")) ...    // optional tensors
//   unet.unused_check();   // throws if a key under the prefix was never asked for
//
// Keys are given WITHOUT the prefix. Tensors are zero-copy views of the mapped file (f32, f16 or
// bf16 as stored; loaders convert). Every missing key, wrong shape or unused key is one aigc::Error
// naming the component, the full key and the file, with a hint. Not thread-safe (tracks use).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace aigc {
class SafetensorsFile;
}

namespace aigc::image {

class WeightSource {
 public:
  WeightSource(std::shared_ptr<const SafetensorsFile> file, std::string prefix, std::string component);

  const std::string& component() const { return component_; }
  const std::string& prefix() const { return prefix_; }
  std::string file_name() const;

  bool has(std::string_view key) const;
  // nullptr when absent. The pointer stays valid while the WeightSource lives.
  const Tensor* find(std::string_view key) const;
  // Throws aigc::Error when absent.
  const Tensor& get(std::string_view key) const;
  // Also checks the shape (and that the type is f32, f16 or bf16).
  const Tensor& get(std::string_view key, std::initializer_list<int64_t> shape) const;
  const Tensor& get(std::string_view key, std::span<const int64_t> shape) const;

  // Keys under the prefix (prefix stripped), sorted.
  std::vector<std::string> keys() const;
  // Keys under the prefix that no get/find asked for, except those matching one of `ignore`
  // (exact key or a "prefix*" pattern).
  std::vector<std::string> unused_keys(std::initializer_list<std::string_view> ignore = {}) const;
  // Throws aigc::Error listing (up to 5 of) the unused keys: the checkpoint has parts this loader
  // does not understand, so its output would be wrong.
  void unused_check(std::initializer_list<std::string_view> ignore = {}) const;

 private:
  std::shared_ptr<const SafetensorsFile> file_;
  std::string prefix_, component_;
  mutable std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> cache_;  // key -> view
  mutable std::set<std::string, std::less<>> used_;
};

}  // namespace aigc::image
