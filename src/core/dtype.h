// Element types. Values equal GGML's type ids (ggml.h `enum ggml_type`), so a GGUF file's tensor
// type maps to DType with no table. Quantised types are stored in blocks: `block_size` elements
// packed in `block_bytes` bytes; a row of n elements (n a multiple of block_size) takes
// n / block_size * block_bytes bytes. Block layouts: src/core/quant.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace aigc {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
  // aigc's own layouts, never in a file (ids past GGML's; no file type maps to them):
  // Q4_0, Q4_1, Q5_0, Q5_1 rows repacked for the decode kernels (quant.h; id 0x10000 + the file type's)
  Q4_0_R16 = 0x10002, Q4_1_R16 = 0x10003, Q5_0_R16 = 0x10006, Q5_1_R16 = 0x10007,
  // Q4_K, Q5_K, Q6_K weights with their rows interleaved 16 at a time (quant.h; id 0x20000 + the file type's)
  Q4_K_X16 = 0x2000C, Q5_K_X16 = 0x2000D, Q6_K_X16 = 0x2000E,
};

struct DTypeTraits {
  std::string_view name;   // as llama.cpp prints it: "f32", "q8_0", "q4_K"
  int64_t block_size;      // elements per block (1 for plain types)
  size_t block_bytes;      // bytes per block
  bool quantized;
};

// Traits of a known file type; nullopt for an id that no GGML version defines (aigc's own
// layouts included: a file never holds them).
std::optional<DTypeTraits> dtype_traits_find(uint32_t id);
// Traits of a valid DType (asserts it is known).
const DTypeTraits& dtype_traits(DType type);

inline std::string_view dtype_name(DType type) { return dtype_traits(type).name; }
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive; GGML's types only

// Bytes of `n` consecutive elements; nullopt when n is not a multiple of the block size or overflows.
std::optional<size_t> dtype_row_bytes(DType type, int64_t n);

}  // namespace aigc
