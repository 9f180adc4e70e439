#include "core/dtype.h"

#include <array>
#include <cctype>
#include <limits>

#include "core/error.h"

namespace aigc {

namespace {

struct Entry {
  uint32_t id;
  DTypeTraits traits;
};

// Block sizes and bytes per block as GGML defines them (ggml-common.h block structs).
constexpr Entry kTypes[] = {
    {0, {"f32", 1, 4, false}},         {1, {"f16", 1, 2, false}},
    {2, {"q4_0", 32, 18, true}},       {3, {"q4_1", 32, 20, true}},
    {6, {"q5_0", 32, 22, true}},       {7, {"q5_1", 32, 24, true}},
    {8, {"q8_0", 32, 34, true}},       {9, {"q8_1", 32, 36, true}},
    {10, {"q2_K", 256, 84, true}},     {11, {"q3_K", 256, 110, true}},
    {12, {"q4_K", 256, 144, true}},    {13, {"q5_K", 256, 176, true}},
    {14, {"q6_K", 256, 210, true}},    {15, {"q8_K", 256, 292, true}},
    {16, {"iq2_xxs", 256, 66, true}},  {17, {"iq2_xs", 256, 74, true}},
    {18, {"iq3_xxs", 256, 98, true}},  {19, {"iq1_s", 256, 50, true}},
    {20, {"iq4_nl", 32, 18, true}},    {21, {"iq3_s", 256, 110, true}},
    {22, {"iq2_s", 256, 82, true}},    {23, {"iq4_xs", 256, 136, true}},
    {24, {"i8", 1, 1, false}},         {25, {"i16", 1, 2, false}},
    {26, {"i32", 1, 4, false}},        {27, {"i64", 1, 8, false}},
    {28, {"f64", 1, 8, false}},        {29, {"iq1_m", 256, 56, true}},
    {30, {"bf16", 1, 2, false}},       {34, {"tq1_0", 256, 54, true}},
    {35, {"tq2_0", 256, 66, true}},    {39, {"mxfp4", 32, 17, true}},
    // aigc's own: the same bytes per block as their file types, rearranged per row (quant.h)
    {0x10002, {"q4_0_r16", 32, 18, true}},  {0x10003, {"q4_1_r16", 32, 20, true}},
    {0x10006, {"q5_0_r16", 32, 22, true}},  {0x10007, {"q5_1_r16", 32, 24, true}},
    // the same bytes per block, rearranged across 16 rows (a weight's rows are no longer apart)
    {0x2000C, {"q4_K_x16", 256, 144, true}},  {0x2000D, {"q5_K_x16", 256, 176, true}},
    {0x2000E, {"q6_K_x16", 256, 210, true}},
};

// Ids from 0x10000 are aigc's in-memory layouts, never a file's.
constexpr uint32_t kInternalIds = 0x10000;

}  // namespace

std::optional<DTypeTraits> dtype_traits_find(uint32_t id) {
  for (const Entry& e : kTypes)
    if (e.id == id && id < kInternalIds) return e.traits;
  return std::nullopt;
}

const DTypeTraits& dtype_traits(DType type) {
  for (const Entry& e : kTypes)
    if (e.id == static_cast<uint32_t>(type)) return e.traits;
  AIGC_ASSERT(false, "unknown DType {}", static_cast<uint32_t>(type));
  __builtin_unreachable();
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const Entry& e : kTypes) {
    if (e.id >= kInternalIds) continue;
    std::string_view n = e.traits.name;
    if (n.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < n.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(n[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    if (same) return static_cast<DType>(e.id);
  }
  return std::nullopt;
}

std::optional<size_t> dtype_row_bytes(DType type, int64_t n) {
  const DTypeTraits& t = dtype_traits(type);
  if (n < 0 || n % t.block_size != 0) return std::nullopt;
  uint64_t blocks = static_cast<uint64_t>(n / t.block_size);
  if (blocks > std::numeric_limits<uint64_t>::max() / t.block_bytes) return std::nullopt;
  return static_cast<size_t>(blocks * t.block_bytes);
}

}  // namespace aigc
