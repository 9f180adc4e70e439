// libFuzzer target: the pixel-diffusion checkpoint reader (image/pixel_diffusion_file.h: config JSON,
// vocabulary JSON, parameter names and shapes against the config) and the caption tokenizer
// (image/pixel_diffusion.h) on arbitrary bytes. Every input must either parse or throw aigc::Error;
// a parsed checkpoint's every parameter byte is touched, and its tokenizer runs on a prompt taken
// from the input. Also the tokenizer alone, with a fixed vocabulary, on the whole input as a prompt.
// A config sized beyond the file's own tensors must be refused before anything is allocated
// (libFuzzer's -rss_limit_mb catches a regression).
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DAIGC_FUZZ=ON -DAIGC_BUILD_TESTS=OFF \
//     -DAIGC_BUILD_BENCH=OFF && ninja -C build-fuzz fuzz_pixel_diffusion
//   PYTHONPATH=tests/ref /usr/bin/python3 tests/ref/twin_pixel_diffusion.py build-fuzz/seeds  (seeds: *.safetensors)
//   ./build-fuzz/fuzz_pixel_diffusion -dict=tests/fuzz/safetensors.dict -max_len=65536 CORPUS_DIR
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "formats/safetensors.h"
#include "image/pixel_diffusion.h"
#include "image/pixel_diffusion_file.h"

namespace {

void tokenize_any(const aigc::image::PixelDiffusionConfig& c, std::string_view prompt) {
  std::vector<int32_t> ids(static_cast<size_t>(c.unet.text_len));
  try {
    aigc::image::pixel_diffusion_tokenize(c, prompt, ids);
    for (int32_t id : ids)
      if (id < 0 || id >= static_cast<int32_t>(c.vocab.size())) __builtin_trap();  // ids index the embedding table
  } catch (const aigc::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  aigc::log_level_set(aigc::LogLevel::Quiet);
  const std::span<const uint8_t> bytes(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const aigc::image::PixelDiffusionConfig fixed = [] {
    aigc::image::PixelDiffusionConfig c;
    c.vocab = {"<pad>", "<empty>", "a", "two", "red", "circle", "circles", "letter", "K", "7"};
    c.unet.text_vocab = static_cast<int64_t>(c.vocab.size());
    c.unet.text_len = 5;
    return c;
  }();
  tokenize_any(fixed, text);
  try {
    const aigc::SafetensorsFile f = aigc::SafetensorsFile::parse(bytes, "fuzz.safetensors");
    const aigc::image::PixelDiffusionFile m = aigc::image::pixel_diffusion_parse(f, "fuzz.safetensors");
    uint8_t sum = 0;
    for (const auto& [name, t] : m.params) {
      const auto* p = static_cast<const uint8_t*>(t.data());
      for (size_t i = 0; i < t.nbytes(); ++i) sum ^= p[i];
    }
    volatile uint8_t sink = sum;
    (void)sink;
    tokenize_any(m.config, text.substr(size / 2));
  } catch (const aigc::Error&) {
  }
  return 0;
}
