// libFuzzer target: the image reader (libjpeg-turbo for JPEG, stb_image's PNG and BMP decoders,
// behind image_decode) on arbitrary bytes. Every input must either decode to an in-range
// [1, 3, H, W] tensor or throw aigc::Error; a crash, sanitizer report or any other exception is a
// bug. Decoded images are written back as PNG (small ones) to exercise the writer too.
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DAIGC_FUZZ=ON -DAIGC_BUILD_TESTS=OFF \
//     -DAIGC_BUILD_BENCH=OFF && ninja -C build-fuzz fuzz_image
//   ./build-fuzz/fuzz_image -max_len=65536 CORPUS_DIR      (seeds: tests/ref/twin_image.py writes some)
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/log.h"
#include "formats/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  aigc::log_level_set(aigc::LogLevel::Quiet);
  try {
    aigc::Tensor img = aigc::image_decode({data, size}, "fuzz.img");
    if (img.ndim() != 4 || img.size(0) != 1 || img.size(1) != 3) std::abort();
    const float* p = img.ptr<float>();
    for (int64_t i = 0; i < img.numel(); ++i)
      if (!(p[i] >= 0.0f && p[i] <= 1.0f)) std::abort();
    if (img.numel() <= 3 * 256 * 256) {
      std::vector<uint8_t> png = aigc::image_encode_png(img, {{"k", "v"}});
      volatile size_t sink = png.size();
      (void)sink;
    }
  } catch (const aigc::Error&) {
  }
  return 0;
}
