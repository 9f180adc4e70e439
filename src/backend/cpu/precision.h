// The arithmetic a packed layer (PackedLinear, PackedConv2d) runs in.
//   Auto  by weight type: bf16 weights compute in bf16, f32 and f16 weights in f32 (f16 widened
//         exactly). What the text models use.
//   F32   f32 weights and activations (f16/bf16 weights widened exactly): matches PyTorch f32.
//   BF16  weights and activations rounded to bf16, products accumulated in f32 (what PyTorch's
//         bf16 autocast does): twice the f32 GEMM rate on CPUs with AVX512-BF16, relative error
//         about 2^-8 per operand.
#pragma once

#include <string_view>

namespace aigc::ops {

enum class Precision { Auto, F32, BF16 };

// "auto", "f32", "bf16" (aigc::Error else).
Precision precision_parse(std::string_view name);
std::string_view precision_name(Precision p);

}  // namespace aigc::ops
