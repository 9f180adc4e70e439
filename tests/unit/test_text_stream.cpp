// TextStream (src/text/text_stream.h): crafted piece sequences (UTF-8 split across pieces, stop
// strings split across pieces, false starts, overlapping prefixes, max tokens, invalid bytes) and a
// randomised check against an independent definition (std::string::find on the whole text).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "text/text_stream.h"

using namespace aigc;

namespace {

// Pushes the pieces one by one; returns what each push emitted (the finish() output appended as a
// last element when `finish` is set and the stream was still running).
std::vector<std::string> stream_run(TextStream& ts, const std::vector<std::string>& pieces, bool finish = false) {
  std::vector<std::string> outs;
  for (const std::string& p : pieces) {
    std::string out;
    ts.push(p, out);
    outs.push_back(out);
  }
  if (finish && !ts.done()) {
    std::string out;
    ts.finish(out);
    outs.push_back(out);
  }
  return outs;
}

using Outs = std::vector<std::string>;

}  // namespace

TEST(TextStream, MultiByteCharactersSplitAcrossPieces) {
  TextStream ts;
  // "é" = C3 A9; "😀" = F0 9F 98 80; "中" = E4 B8 AD
  EXPECT_EQ(stream_run(ts, {"caf", "\xC3", "\xA9!", "\xF0\x9F", "\x98", "\x80", "\xE4\xB8", "\xAD"}),
            (Outs{"caf", "", "\xC3\xA9!", "", "", "\xF0\x9F\x98\x80", "", "\xE4\xB8\xAD"}));
  EXPECT_FALSE(ts.done());
}

TEST(TextStream, StopStringSplitAcrossPieces) {
  TextStream ts({"###"});
  EXPECT_EQ(stream_run(ts, {"Hello ", "#", "#", "#", "more"}), (Outs{"Hello ", "", "", "", ""}));
  EXPECT_EQ(ts.stop_reason(), StopReason::StopReasonString);
  EXPECT_EQ(ts.stop_matched(), "###");
  EXPECT_EQ(ts.token_count(), 4);  // the push after the stop was refused
}

TEST(TextStream, FalseStartIsReleased) {
  TextStream ts({"###"});
  EXPECT_EQ(stream_run(ts, {"a", "##", " b", "#", "x"}), (Outs{"a", "", "## b", "", "#x"}));
  EXPECT_FALSE(ts.done());
}

TEST(TextStream, StopInsideOnePieceDropsTheRest) {
  TextStream ts({"###"});
  EXPECT_EQ(stream_run(ts, {"foo###bar"}), (Outs{"foo"}));
  EXPECT_TRUE(ts.done());
}

// "aab" after "aaa": the held "aa" must shift by one, not be dropped or emitted whole.
TEST(TextStream, OverlappingPrefix) {
  TextStream ts({"aab"});
  EXPECT_EQ(stream_run(ts, {"a", "a", "a", "b"}), (Outs{"", "", "a", ""}));
  EXPECT_EQ(ts.stop_reason(), StopReason::StopReasonString);
}

TEST(TextStream, EarliestStopWins) {
  TextStream ts({"</s>", "User:"});
  EXPECT_EQ(stream_run(ts, {"Hi Us", "er: x </s>"}), (Outs{"Hi ", ""}));
  EXPECT_EQ(ts.stop_matched(), "User:");
}

TEST(TextStream, MultiByteStopSplitAcrossPieces) {
  TextStream ts({"\xE3\x80\x82"});  // "。"
  EXPECT_EQ(stream_run(ts, {"\xE5\xA5\xBD", "\xE3", "\x80", "\x82", "x"}), (Outs{"\xE5\xA5\xBD", "", "", "", ""}));
  EXPECT_EQ(ts.stop_reason(), StopReason::StopReasonString);
}

TEST(TextStream, MaxTokensReleasesHeldText) {
  TextStream ts({"###"}, 3);
  EXPECT_EQ(stream_run(ts, {"a", "#", "#", "#"}), (Outs{"a", "", "##", ""}));
  EXPECT_EQ(ts.stop_reason(), StopReason::StopReasonMaxTokens);
}

TEST(TextStream, FinishFlushesAndReplacesTruncatedCharacter) {
  TextStream ts({"###"});
  EXPECT_EQ(stream_run(ts, {"x#", "\xC3"}, /*finish=*/true), (Outs{"x", "#", "\xEF\xBF\xBD"}));  // "#\xC3" is no stop prefix: "#" goes out
  EXPECT_EQ(ts.stop_reason(), StopReason::StopReasonFinish);
  std::string out;
  EXPECT_FALSE(ts.push("more", out));
  EXPECT_EQ(out, "");
}

// Bytes that can never be UTF-8 come out as U+FFFD at once, one per maximal subpart.
TEST(TextStream, InvalidBytesBecomeReplacement) {
  TextStream ts;
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(stream_run(ts, {"\xFF", "\xC3(", "\xE0\x80", "\xED\xA0\x80", "\xF0\x9F\x98("}),
            (Outs{R, R + "(", R + R, R + R + R, R + "("}));
}

// Random texts (ASCII, '#', multi-byte) cut at random places: the concatenated output is the text
// up to the first stop (std::string::find), each emitted chunk is whole UTF-8, and the stream stops
// exactly when the text so far contains a stop string.
TEST(TextStream, RandomSplitsMatchDefinition) {
  std::mt19937 gen(12345);
  const std::vector<std::string> alphabet = {"a", "b", "#", " ", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "##"};
  const std::vector<std::string> stops = {"###", "b\xC3\xA9#", "\xE4\xB8\xAD\xE4\xB8\xAD"};
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    const int n = 1 + static_cast<int>(gen() % 30);
    for (int i = 0; i < n; ++i) text += alphabet[gen() % alphabet.size()];
    size_t first = std::string::npos;
    for (const std::string& s : stops) first = std::min(first, text.find(s));
    const std::string want = text.substr(0, first);

    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      const size_t len = 1 + gen() % 4;
      pieces.push_back(text.substr(i, len));
      i += len;
    }
    TextStream ts(stops);
    std::string got, text_so_far;
    for (const std::string& p : pieces) {
      std::string out;
      const bool more = ts.push(p, out);
      std::string valid;
      utf8_append_valid(valid, out);
      ASSERT_EQ(valid, out) << "emitted a chunk that is not whole UTF-8";
      got += out;
      text_so_far += p;
      bool has_stop = false;
      for (const std::string& s : stops) has_stop |= text_so_far.find(s) != std::string::npos;
      ASSERT_EQ(more, !has_stop) << "trial " << trial;
      if (!more) break;
    }
    ts.finish(got);
    ASSERT_EQ(got, want) << "trial " << trial << " text '" << text << "'";
  }
}

TEST(TextStream, Utf8CompletePrefix) {
  EXPECT_EQ(utf8_complete_prefix("ab\xC3"), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab\xC3\xA9"), 4u);
  EXPECT_EQ(utf8_complete_prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(utf8_complete_prefix("\xF0\x28"), 2u);  // already invalid: nothing to wait for
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
}
