// Unicode helpers backed by ICU's C API (see unicode.h for why ICU).
#include "text/unicode.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <array>

#include "core/error.h"

namespace aigc::text {

UnicodeCategory unicode_category(uint32_t cp) {
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER: return UnicodeCategory::Lu;
    case U_LOWERCASE_LETTER: return UnicodeCategory::Ll;
    case U_TITLECASE_LETTER: return UnicodeCategory::Lt;
    case U_MODIFIER_LETTER: return UnicodeCategory::Lm;
    case U_OTHER_LETTER: return UnicodeCategory::Lo;
    case U_NON_SPACING_MARK: return UnicodeCategory::Mn;
    case U_COMBINING_SPACING_MARK: return UnicodeCategory::Mc;
    case U_ENCLOSING_MARK: return UnicodeCategory::Me;
    case U_DECIMAL_DIGIT_NUMBER: return UnicodeCategory::Nd;
    case U_LETTER_NUMBER: return UnicodeCategory::Nl;
    case U_OTHER_NUMBER: return UnicodeCategory::No;
    case U_CONNECTOR_PUNCTUATION: return UnicodeCategory::Pc;
    case U_DASH_PUNCTUATION: return UnicodeCategory::Pd;
    case U_START_PUNCTUATION: return UnicodeCategory::Ps;
    case U_END_PUNCTUATION: return UnicodeCategory::Pe;
    case U_INITIAL_PUNCTUATION: return UnicodeCategory::Pi;
    case U_FINAL_PUNCTUATION: return UnicodeCategory::Pf;
    case U_OTHER_PUNCTUATION: return UnicodeCategory::Po;
    case U_MATH_SYMBOL: return UnicodeCategory::Sm;
    case U_CURRENCY_SYMBOL: return UnicodeCategory::Sc;
    case U_MODIFIER_SYMBOL: return UnicodeCategory::Sk;
    case U_OTHER_SYMBOL: return UnicodeCategory::So;
    case U_SPACE_SEPARATOR: return UnicodeCategory::Zs;
    case U_LINE_SEPARATOR: return UnicodeCategory::Zl;
    case U_PARAGRAPH_SEPARATOR: return UnicodeCategory::Zp;
    case U_CONTROL_CHAR: return UnicodeCategory::Cc;
    case U_FORMAT_CHAR: return UnicodeCategory::Cf;
    case U_SURROGATE: return UnicodeCategory::Cs;
    case U_PRIVATE_USE_CHAR: return UnicodeCategory::Co;
    default: return UnicodeCategory::Cn;
  }
}

bool unicode_is_letter(uint32_t cp) { return unicode_category(cp) <= UnicodeCategory::Lo; }
bool unicode_is_mark(uint32_t cp) {
  auto c = unicode_category(cp);
  return c >= UnicodeCategory::Mn && c <= UnicodeCategory::Me;
}
bool unicode_is_number(uint32_t cp) {
  auto c = unicode_category(cp);
  return c >= UnicodeCategory::Nd && c <= UnicodeCategory::No;
}
bool unicode_is_punctuation(uint32_t cp) {
  auto c = unicode_category(cp);
  return c >= UnicodeCategory::Pc && c <= UnicodeCategory::Po;
}
bool unicode_is_symbol(uint32_t cp) {
  auto c = unicode_category(cp);
  return c >= UnicodeCategory::Sm && c <= UnicodeCategory::So;
}
bool unicode_is_whitespace(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }
uint32_t unicode_tolower(uint32_t cp) { return static_cast<uint32_t>(u_tolower(static_cast<UChar32>(cp))); }

std::vector<uint32_t> unicode_nfd(const std::vector<uint32_t>& cps) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* nfd = unorm2_getNFDInstance(&err);
  AIGC_ASSERT(U_SUCCESS(err), "ICU NFD instance: {}", u_errorName(err));
  // UTF-32 -> UTF-16 for ICU, normalise, and back.
  std::vector<UChar> src;
  src.reserve(cps.size() + 8);
  for (uint32_t cp : cps) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp >= 0x10000) {
      src.push_back(static_cast<UChar>(0xD7C0 + (cp >> 10)));
      src.push_back(static_cast<UChar>(0xDC00 | (cp & 0x3FF)));
    } else {
      src.push_back(static_cast<UChar>(cp));
    }
  }
  // NFD of one code point expands to at most 4 (Unicode's stability bound is 18 for the string; 4x
  // plus slack covers every assigned character), and ICU reports the needed size if it is short.
  std::vector<UChar> dst(src.size() * 4 + 16);
  int32_t n = unorm2_normalize(nfd, src.data(), static_cast<int32_t>(src.size()), dst.data(),
                               static_cast<int32_t>(dst.size()), &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    err = U_ZERO_ERROR;
    dst.resize(static_cast<size_t>(n));
    n = unorm2_normalize(nfd, src.data(), static_cast<int32_t>(src.size()), dst.data(),
                         static_cast<int32_t>(dst.size()), &err);
  }
  AIGC_ASSERT(U_SUCCESS(err), "ICU NFD: {}", u_errorName(err));
  std::vector<uint32_t> out;
  out.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    uint32_t c = dst[static_cast<size_t>(i)];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n) {
      uint32_t lo = dst[static_cast<size_t>(i) + 1];
      if (lo >= 0xDC00 && lo <= 0xDFFF) {
        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
        ++i;
      }
    }
    out.push_back(c);
  }
  return out;
}

size_t utf8_decode(std::string_view s, size_t pos, uint32_t* cp) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  size_t len;
  uint32_t c;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    c = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    c = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    c = b0 & 0x07;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  if (pos + len > s.size()) {
    *cp = 0xFFFD;
    return 1;
  }
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<uint8_t>(s[pos + i]);
    if ((b & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return 1;
    }
    c = (c << 6) | (b & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are malformed too.
  static constexpr uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < min_for_len[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    *cp = 0xFFFD;
    return 1;
  }
  *cp = c;
  return len;
}

std::vector<uint32_t> utf8_to_codepoints(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    pos += utf8_decode(s, pos, &cp);
    out.push_back(cp);
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_from_codepoints(const std::vector<uint32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (uint32_t cp : cps) utf8_append(out, cp);
  return out;
}

namespace {

struct ByteMap {
  std::array<uint32_t, 256> to_unicode{};
  std::array<int16_t, 512> to_byte{};  // every mapped code point is below U+0200

  ByteMap() {
    to_byte.fill(-1);
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      to_unicode[static_cast<size_t>(b)] = printable(b) ? static_cast<uint32_t>(b) : next++;
      to_byte[to_unicode[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return byte_map().to_unicode[b]; }

int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().to_byte[cp] : -1; }

}  // namespace aigc::text
