#include "backend/cpu/precision.h"

#include "core/error.h"

namespace aigc::ops {

Precision precision_parse(std::string_view name) {
  if (name == "auto") return Precision::Auto;
  if (name == "f32") return Precision::F32;
  if (name == "bf16") return Precision::BF16;
  error_throw(fmt::format("unknown precision '{}'", name), "", "use auto, f32 or bf16");
}

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::Auto: return "auto";
    case Precision::F32: return "f32";
    case Precision::BF16: return "bf16";
  }
  return "?";
}

}  // namespace aigc::ops
