// libFuzzer target for the llama2.c importer's parsers: any bytes either parse or throw aigc::Error.
// Input: one byte choosing the vocabulary size (1..256), then a checkpoint header candidate (28
// bytes) and a tokenizer file (the rest). Parsed pieces are touched so that AddressSanitizer sees
// any read outside the input. Build and run: tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>

#include "formats/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t vocab_size = 1 + data[0];
  const std::span<const uint8_t> rest(data + 1, size - 1);
  try {
    const aigc::Llama2cConfig c = aigc::llama2c_config_parse(rest.first(std::min<size_t>(rest.size(), 28)), "fuzz");
    if (c.dim <= 0 || c.n_heads <= 0 || c.dim % c.n_heads != 0) __builtin_trap();  // parse promised these
  } catch (const aigc::Error&) {
  }
  try {
    const aigc::Llama2cVocab v = aigc::llama2c_vocab_parse(rest, vocab_size, "fuzz");
    if (static_cast<int64_t>(v.pieces.size()) != vocab_size) __builtin_trap();
    size_t sum = 0;
    for (const std::string& s : v.pieces)
      for (char ch : s) sum += static_cast<unsigned char>(ch);
    if (sum == SIZE_MAX) __builtin_trap();
  } catch (const aigc::Error&) {
  }
  return 0;
}
