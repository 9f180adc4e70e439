#include "common/model_twin.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/compare.h"

namespace aigc::test {

namespace {
Tensor row_of(const Tensor& t, int64_t r) { return t.slice(0, r, 1); }

int64_t argmax_row(const Tensor& logits, int64_t r) {
  const float* p = static_cast<const float*>(logits.row_ptr(r));
  return std::max_element(p, p + logits.size(-1)) - p;
}
}  // namespace

void twin_logits_check(TextContext& all, TextContext& chunked, const RefDump& ref, float atol) {
  const Tensor& prompt_t = ref.get("prompt");
  const std::span<const int32_t> prompt(prompt_t.ptr<int32_t>(), prompt_t.numel());
  const Tensor& gen = ref.get("gen");
  const Tensor& dec = ref.get("decode_logits");
  const Tensor& margin = ref.get("margin");
  const float rtol = 1e-4f;
  int argmax_checked = 0;
  auto check_argmax = [&](const Tensor& logits, int64_t row, int64_t step) {
    if (margin.ptr<float>()[step] <= 2 * atol) return;  // a near tie: either token is right
    EXPECT_EQ(argmax_row(logits, row), gen.ptr<int32_t>()[step]) << "greedy step " << step;
    ++argmax_checked;
  };

  // All positions' logits, one batched pass for the prompt, then cached decode steps.
  const Tensor& pre = all.eval(prompt);
  ASSERT_EQ(pre.size(0), static_cast<int64_t>(prompt.size()));
  EXPECT_TENSORS_CLOSE(pre, ref.get("prefill_logits"), atol, rtol);
  check_argmax(pre, pre.size(0) - 1, 0);
  for (int64_t s = 0; s < dec.size(0); ++s) {
    const int32_t tok = gen.ptr<int32_t>()[s];
    const Tensor& l = all.eval({&tok, 1});
    ASSERT_EQ(l.size(0), 1);
    EXPECT_TENSORS_CLOSE(l, row_of(dec, s), atol, rtol) << "decode step " << s;
    check_argmax(l, 0, s + 1);
  }
  EXPECT_EQ(all.n_past(), static_cast<int64_t>(prompt.size()) + dec.size(0));
  EXPECT_GE(argmax_checked, 4) << "too few greedy steps with a clear winner to check";

  // The prompt in chunks (cache filled across passes), last-token logits only.
  const Tensor& last = chunked.eval(prompt);
  ASSERT_EQ(last.size(0), 1);
  EXPECT_TENSORS_CLOSE(last, row_of(ref.get("prefill_logits"), prompt.size() - 1), atol, rtol);
  for (int64_t s = 0; s < dec.size(0); ++s) {
    const int32_t tok = gen.ptr<int32_t>()[s];
    EXPECT_TENSORS_CLOSE(chunked.eval({&tok, 1}), row_of(dec, s), atol, rtol) << "chunked, decode step " << s;
  }
  // Rewinding and replaying gives the same logits.
  chunked.truncate(static_cast<int64_t>(prompt.size()));
  const int32_t tok0 = gen.ptr<int32_t>()[0];
  EXPECT_TENSORS_CLOSE(chunked.eval({&tok0, 1}), row_of(dec, 0), atol, rtol) << "after truncate";
}

}  // namespace aigc::test
