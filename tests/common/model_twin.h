// The check every architecture's PyTorch twin test makes (test_model_llama.cpp,
// test_model_gpt2.cpp): a dump with "prompt", "gen" (greedy tokens), "prefill_logits" (all prompt
// positions), "decode_logits" (one row per decode step) and "margin" (top-2 gap per step).
#pragma once

#include "common/refdump.h"
#include "text/text_model.h"

namespace aigc::test {

// `all`: an empty context made with logits_all (prompt in one pass, then each decode step).
// `chunked`: an empty context with a small n_batch (prompt in chunks, last-token logits), also
// rewound with truncate() and replayed. Logits compare with atol and rtol 1e-4; greedy tokens
// must agree wherever the twin's top-2 margin exceeds 2 * atol, for at least 4 steps.
void twin_logits_check(TextContext& all, TextContext& chunked, const RefDump& ref, float atol);

}  // namespace aigc::test
