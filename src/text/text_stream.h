// TextStream: turns the pieces of generated tokens into text a user may see, as it arrives.
//
// Token pieces are bytes: one UTF-8 character can be split across tokens (byte-fallback tokens),
// and a stop string can be split across tokens too. The stream
//   - emits only complete UTF-8 (an incomplete sequence at the end is held until it completes;
//     bytes that can never form a character are emitted as U+FFFD),
//   - holds back any tail that could be the start of a stop string,
//   - stops when a stop string completes; neither the stop string nor anything after it is
//     emitted (the earliest stop string in the text wins),
//   - stops after max_tokens pieces (the held-back tail is then emitted: no stop string came).
//
//   TextStream ts({"\n\nUser:", "###"}, /*max_tokens=*/256);
//   std::string out;
//   while (!ts.done()) {
//     int32_t tok = sampler.sample(logits);
//     if (tok == eos) { ts.finish(out); break; }   // end of generation: flush what was held
//     ts.push(vocab_piece(tok), out);               // appends what is safe to show
//     print(out); out.clear();
//   }
//   // ts.stop_reason(): why it ended
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace aigc {

enum class StopReason {
  StopReasonNone,       // still running
  StopReasonString,     // a stop string completed
  StopReasonMaxTokens,  // max_tokens pieces were pushed
  StopReasonFinish,     // the caller ended it (end-of-generation token)
};

class TextStream {
 public:
  // Empty stop strings are ignored. max_tokens <= 0: no limit.
  explicit TextStream(std::vector<std::string> stop_strings = {}, int64_t max_tokens = 0);

  // Adds one token's piece; appends to `out` the text that is now safe to emit. Returns true while
  // generation should go on (false once a stop string completed or max_tokens was reached).
  // Pushing after done() is a no-op that returns false.
  bool push(std::string_view piece, std::string& out);
  // Ends the stream (e.g. on the end-of-generation token): appends everything still held back
  // (an incomplete UTF-8 sequence becomes U+FFFD). No-op when already done.
  void finish(std::string& out);

  bool done() const { return reason_ != StopReason::StopReasonNone; }
  StopReason stop_reason() const { return reason_; }
  int64_t token_count() const { return tokens_; }
  // The stop string that ended the stream (empty unless stop_reason() is StopReasonString).
  const std::string& stop_matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  int64_t max_tokens_;
  int64_t tokens_ = 0;
  std::string pending_;  // bytes received but not yet emitted
  std::string matched_;
  StopReason reason_ = StopReason::StopReasonNone;
};

// Appends bytes [0, n) of `s` to `out` as valid UTF-8: each maximal invalid subsequence becomes
// U+FFFD (the Unicode "substitution of maximal subparts" practice, as Python's errors="replace").
void utf8_append_valid(std::string& out, std::string_view s);
// Length of the longest prefix of `s` that does not end inside an incomplete (but so far valid)
// UTF-8 sequence: the bytes after it may still complete into a character.
size_t utf8_complete_prefix(std::string_view s);

}  // namespace aigc
