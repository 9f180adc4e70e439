// A1111 prompt weighting parser (see prompt_weights.h). The scanner mirrors the alternatives of
// A1111's tokenising regex in order: escapes, '(' '[', ":<number>)", ')' ']', plain text runs, ':'.
#include "image/prompt_weights.h"

#include <unicode/uchar.h>

#include <charconv>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "text/unicode.h"

namespace aigc::image {

namespace {

// Python's str.isspace (what `\s` means in A1111's `re` patterns): White_Space plus U+001C..U+001F.
bool py_isspace(uint32_t cp) { return text::unicode_is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }
// Python's `\w` for str patterns: letters, numbers and the underscore.
bool py_isword(uint32_t cp) { return cp == '_' || text::unicode_is_letter(cp) || text::unicode_is_number(cp); }
// Python's `\d`: any decimal digit (Nd); its value, or -1.
int py_digit(uint32_t cp) {
  if (cp >= '0' && cp <= '9') return static_cast<int>(cp - '0');
  if (cp < 128) return -1;
  if (text::unicode_category(cp) != text::UnicodeCategory::Nd) return -1;
  return u_charDigitValue(static_cast<UChar32>(cp));
}

// A number as Python's float() reads `[+-]?[.\d]+`: at most one '.', at least one digit. Unicode
// digits count as their values. Out-of-range values become inf or 0, as float() makes them.
bool weight_parse(std::string_view sign, const std::vector<int>& digits_and_dots, double* out) {
  std::string ascii;
  int dots = 0, digits = 0;
  bool nonzero_int_part = false;
  for (int d : digits_and_dots) {
    if (d < 0) {
      ++dots;
      ascii += '.';
    } else {
      ++digits;
      ascii += static_cast<char>('0' + d);
      if (d && dots == 0) nonzero_int_part = true;
    }
  }
  if (dots > 1 || digits == 0) return false;
  double v = 0;
  const auto r = std::from_chars(ascii.data(), ascii.data() + ascii.size(), v, std::chars_format::fixed);
  if (r.ec == std::errc::result_out_of_range) {
    v = nonzero_int_part ? HUGE_VAL : 0.0;
  } else if (r.ec != std::errc() || r.ptr != ascii.data() + ascii.size()) {
    return false;
  }
  *out = (sign == "-") ? -v : v;
  return true;
}

struct Cp {
  uint32_t cp;
  size_t off;  // byte offset in the text
};

std::vector<Cp> codepoints(std::string_view s) {
  std::vector<Cp> out;
  out.reserve(s.size() + 1);
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    const size_t n = text::utf8_decode(s, pos, &cp);
    out.push_back({cp, pos});
    pos += n;
  }
  out.push_back({0, s.size()});  // sentinel: the end
  return out;
}

// A1111 splits each text token at `\s*\bBREAK\b\s*`; the pieces are text, the matches breaks.
void text_append(std::string_view s, std::vector<PromptSegment>& res) {
  const std::vector<Cp> c = codepoints(s);
  const size_t n = c.size() - 1;
  size_t piece_begin = 0;  // code point index where the current text piece starts
  size_t i = 0;
  while (i + 5 <= n) {
    bool hit = true;
    for (size_t k = 0; k < 5; ++k) hit = hit && c[i + k].cp == static_cast<uint32_t>("BREAK"[k]);
    hit = hit && (i == 0 || !py_isword(c[i - 1].cp)) && (i + 5 == n || !py_isword(c[i + 5].cp));
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + 5;
    while (b > piece_begin && py_isspace(c[b - 1].cp)) --b;
    while (e < n && py_isspace(c[e].cp)) ++e;
    res.push_back({std::string(s.substr(c[piece_begin].off, c[b].off - c[piece_begin].off)), 1.0, false});
    res.push_back({std::string(), 1.0, true});
    piece_begin = i = e;
  }
  res.push_back({std::string(s.substr(c[piece_begin].off)), 1.0, false});
}

void range_multiply(std::vector<PromptSegment>& res, size_t start, double m) {
  for (size_t p = start; p < res.size(); ++p) {
    if (!res[p].is_break) res[p].weight *= m;
  }
}

bool is_special(char ch) { return ch == '\\' || ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ':'; }

}  // namespace

std::vector<PromptSegment> prompt_weights_parse(std::string_view prompt) {
  constexpr double round_multiplier = 1.1;
  constexpr double square_multiplier = 1 / 1.1;
  std::vector<PromptSegment> res;
  std::vector<size_t> round, square;  // open brackets: index into res where they began

  size_t i = 0;
  const size_t n = prompt.size();
  while (i < n) {
    const char ch = prompt[i];
    if (ch == '\\') {
      // \( \) \[ \] \\ give the character; a lone backslash gives nothing.
      if (i + 1 < n && (prompt[i + 1] == '(' || prompt[i + 1] == ')' || prompt[i + 1] == '[' ||
                        prompt[i + 1] == ']' || prompt[i + 1] == '\\')) {
        res.push_back({std::string(1, prompt[i + 1]), 1.0, false});
        i += 2;
      } else {
        res.push_back({std::string(), 1.0, false});
        i += 1;
      }
      continue;
    }
    if (ch == '(') {
      round.push_back(res.size());
      ++i;
      continue;
    }
    if (ch == '[') {
      square.push_back(res.size());
      ++i;
      continue;
    }
    if (ch == ':') {
      // `:\s*([+-]?[.\d]+)\s*\)`
      size_t j = i + 1;
      uint32_t cp = 0;
      size_t len = 0;
      auto next = [&]() {
        if (j >= n) return false;
        len = text::utf8_decode(prompt, j, &cp);
        return true;
      };
      while (next() && py_isspace(cp)) j += len;
      std::string_view sign;
      if (j < n && (prompt[j] == '+' || prompt[j] == '-')) sign = prompt.substr(j++, 1);
      std::vector<int> num;  // digit values; -1 for '.'
      while (next()) {
        if (cp == '.') {
          num.push_back(-1);
        } else {
          const int d = py_digit(cp);
          if (d < 0) break;
          num.push_back(d);
        }
        j += len;
      }
      bool matched = !num.empty();
      if (matched) {
        while (next() && py_isspace(cp)) j += len;
        matched = j < n && prompt[j] == ')';
      }
      if (matched) {
        const std::string_view token = prompt.substr(i, j + 1 - i);
        if (!round.empty()) {
          double w = 0;
          if (!weight_parse(sign, num, &w)) {
            error_throw(fmt::format("prompt weight '{}' is not a number", token), "prompt",
                        "write weights like (word:1.2)");
          }
          const size_t start = round.back();
          round.pop_back();
          range_multiply(res, start, w);
        } else {
          text_append(token, res);  // no open '(': plain text, as in A1111
        }
        i = j + 1;
        continue;
      }
      text_append(":", res);
      ++i;
      continue;
    }
    if (ch == ')' && !round.empty()) {
      range_multiply(res, round.back(), round_multiplier);
      round.pop_back();
      ++i;
      continue;
    }
    if (ch == ']' && !square.empty()) {
      range_multiply(res, square.back(), square_multiplier);
      square.pop_back();
      ++i;
      continue;
    }
    if (ch == ')' || ch == ']') {
      text_append(prompt.substr(i, 1), res);
      ++i;
      continue;
    }
    size_t j = i;
    while (j < n && !is_special(prompt[j])) ++j;
    text_append(prompt.substr(i, j - i), res);
    i = j;
  }
  // Brackets left open apply to the end, in the order they were opened (A1111).
  for (size_t pos : round) range_multiply(res, pos, round_multiplier);
  for (size_t pos : square) range_multiply(res, pos, square_multiplier);

  if (res.empty()) res.push_back({std::string(), 1.0, false});
  // Merge runs of identical weights (exact comparison, as A1111); breaks stay apart.
  std::vector<PromptSegment> out;
  out.reserve(res.size());
  for (auto& s : res) {
    if (!out.empty() && !s.is_break && !out.back().is_break && out.back().weight == s.weight) {
      out.back().text += s.text;
    } else {
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace aigc::image
