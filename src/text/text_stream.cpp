// TextStream: stop strings and UTF-8 completeness over streamed token pieces (see text_stream.h).
#include "text/text_stream.h"

#include <algorithm>

namespace aigc {

namespace {

enum class Utf8Step { Valid, Invalid, Incomplete };

// One step of UTF-8 decoding at s[i]. Valid: len = the sequence length. Invalid: len = the
// maximal subpart (the bytes that started a well-formed sequence before it broke, at least 1).
// Incomplete: the input ended inside a sequence that was well formed so far; len = bytes left.
// Well-formedness as in the Unicode Standard, table 3-7 (no overlongs, no surrogates, <= U+10FFFF).
Utf8Step utf8_step(std::string_view s, size_t i, size_t& len) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b < 0x80) {
    len = 1;
    return Utf8Step::Valid;
  } else if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    len = 1;
    return Utf8Step::Invalid;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      len = k;
      return Utf8Step::Incomplete;
    }
    const auto c = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) {
      len = k;
      return Utf8Step::Invalid;
    }
  }
  len = need + 1;
  return Utf8Step::Valid;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

void utf8_append_valid(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    if (utf8_step(s, i, len) == Utf8Step::Valid)
      out.append(s.substr(i, len));
    else
      out.append(kReplacement);  // invalid or truncated: one replacement per maximal subpart
    i += len;
  }
}

size_t utf8_complete_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    if (utf8_step(s, i, len) == Utf8Step::Incomplete) return i;
    i += len;
  }
  return s.size();
}

TextStream::TextStream(std::vector<std::string> stop_strings, int64_t max_tokens) : max_tokens_(max_tokens) {
  for (std::string& s : stop_strings)
    if (!s.empty()) stops_.push_back(std::move(s));
}

bool TextStream::push(std::string_view piece, std::string& out) {
  if (done()) return false;
  ++tokens_;
  pending_.append(piece);

  // A stop string can only lie within pending_: any earlier start was held back (below).
  size_t stop_at = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s);
    if (at < stop_at) {
      stop_at = at;
      matched_ = s;
    }
  }
  if (stop_at != std::string::npos) {
    utf8_append_valid(out, std::string_view(pending_).substr(0, stop_at));
    pending_.clear();
    reason_ = StopReason::StopReasonString;
    return false;
  }
  if (max_tokens_ > 0 && tokens_ >= max_tokens_) {
    utf8_append_valid(out, pending_);
    pending_.clear();
    reason_ = StopReason::StopReasonMaxTokens;
    return false;
  }

  // Hold back the longest tail that is a proper prefix of some stop string ...
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, pending_.size()); len > hold; --len) {
      if (std::string_view(pending_).substr(pending_.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  // ... and an unfinished UTF-8 character before it.
  const size_t emit = utf8_complete_prefix(std::string_view(pending_).substr(0, pending_.size() - hold));
  utf8_append_valid(out, std::string_view(pending_).substr(0, emit));
  pending_.erase(0, emit);
  return true;
}

void TextStream::finish(std::string& out) {
  if (done()) return;
  utf8_append_valid(out, pending_);
  pending_.clear();
  reason_ = StopReason::StopReasonFinish;
}

}  // namespace aigc
