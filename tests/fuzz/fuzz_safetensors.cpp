// libFuzzer target: the safetensors header parser and the sharded index parser on arbitrary bytes.
// Every input must either parse (and then every tensor's bytes are readable, in bounds) or throw
// aigc::Error; a crash, sanitizer report or any other exception is a bug.
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DAIGC_FUZZ=ON -DAIGC_BUILD_TESTS=OFF \
//     -DAIGC_BUILD_BENCH=OFF && ninja -C build-fuzz fuzz_safetensors
//   ./build-fuzz/fuzz_safetensors -dict=tests/fuzz/safetensors.dict -max_len=16384 CORPUS_DIR
#include <cstddef>
#include <cstdint>

#include "core/log.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  aigc::log_level_set(aigc::LogLevel::Quiet);
  const std::span<const uint8_t> bytes(data, size);
  try {
    aigc::SafetensorsFile f = aigc::SafetensorsFile::parse(bytes, "fuzz.safetensors");
    uint8_t sum = 0;
    for (const aigc::TensorInfo& ti : f.tensor_infos()) {
      for (uint8_t b : f.tensor_bytes(ti)) sum ^= b;  // ASan flags any byte outside the input
      try {
        aigc::Tensor t = f.tensor(ti.name);
        const auto* p = static_cast<const uint8_t*>(t.data());
        for (size_t i = 0; i < t.nbytes(); ++i) sum ^= p[i];
      } catch (const aigc::Error&) {
        // unsupported dtype or too many dims: listed, not loadable
      }
    }
    for (const auto& [k, v] : f.metadata()) sum ^= static_cast<uint8_t>(k.size() + v.size());
    volatile uint8_t sink = sum;
    (void)sink;
  } catch (const aigc::Error&) {
  }
  try {
    aigc::SafetensorsIndex idx = aigc::safetensors_index_parse(bytes, "fuzz.index.json");
    volatile size_t sink = idx.weight_map.size() + idx.metadata.size();
    (void)sink;
  } catch (const aigc::Error&) {
  }
  return 0;
}
