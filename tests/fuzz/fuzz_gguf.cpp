// libFuzzer target for the GGUF reader and writer: any bytes either parse or throw aigc::Error.
// When they parse, every tensor's bytes and every metadata value are touched, so that a view or a
// value reaching outside the input is caught by AddressSanitizer; then the file is re-written with
// GgufWriter and parsed again, and must hold the same metadata and tensors (else: trap).
// Build and run: tests/fuzz/README.md.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "formats/gguf.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Writer -> reader round trip of a parsed file: same metadata (bitwise), same tensors.
void round_trip_check(const aigc::GgufFile& f) {
  uint64_t out_bytes = 0;
  for (const aigc::TensorInfo& ti : f.tensor_infos()) out_bytes += ti.nbytes + f.alignment();
  if (out_bytes > (4u << 20)) return;  // overlapping tensors could make the copy large: skip
  aigc::GgufWriter w;
  try {
    for (const aigc::GgufKV& kv : f.metadata()) w.metadata_add(kv.key, kv.value);
    for (const aigc::TensorInfo& ti : f.tensor_infos()) w.tensor_add(ti.name, f.tensor(ti.name));
  } catch (const aigc::Error&) {
    return;  // the writer is stricter (e.g. tensor names of at most 63 bytes)
  }
  const std::vector<uint8_t> bytes = w.to_bytes();
  const aigc::GgufFile g = aigc::GgufFile::parse(bytes);  // must not throw
  check(g.version() == 3 && g.alignment() == f.alignment());
  check(g.metadata().size() == f.metadata().size());
  for (size_t i = 0; i < f.metadata().size(); ++i)
    check(g.metadata()[i].key == f.metadata()[i].key && g.metadata()[i].value == f.metadata()[i].value);
  check(g.tensor_infos().size() == f.tensor_infos().size());
  for (size_t i = 0; i < f.tensor_infos().size(); ++i) {
    const aigc::TensorInfo &a = f.tensor_infos()[i], &b = g.tensor_infos()[i];
    const bool scalar = a.shape.empty() && b.shape == std::vector<int64_t>{1};  // 0-d is written as [1]
    check(a.name == b.name && a.type == b.type && a.nbytes == b.nbytes && (a.shape == b.shape || scalar));
    check(b.offset % g.alignment() == 0);
    check(std::memcmp(f.tensor(a.name).data(), g.tensor(b.name).data(), a.nbytes) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so that ASan sees any read one byte past the input.
  std::vector<uint8_t> bytes(data, data + size);
  try {
    aigc::GgufFile f = aigc::GgufFile::parse(bytes, nullptr, "fuzz.gguf");
    volatile uint64_t sum = 0;
    for (const aigc::TensorInfo& ti : f.tensor_infos()) {
      aigc::Tensor t = f.tensor(ti.name);
      const auto* p = static_cast<const uint8_t*>(t.data());
      uint64_t s = 0;
      for (size_t i = 0; i < t.nbytes(); ++i) s += p[i];
      sum = sum + s;
      (void)t.shape_str();
    }
    for (const aigc::GgufKV& kv : f.metadata()) {
      (void)kv.value.to_string();
      (void)kv.value.to_json(64).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      (void)kv.value.to_uint();
      for (size_t i = 0; i < kv.value.size() && i < 64; ++i) (void)kv.value.at(i);
    }
    round_trip_check(f);
  } catch (const aigc::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
