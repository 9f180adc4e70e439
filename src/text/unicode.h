// Unicode helpers for the tokenizers: UTF-8 decoding, general categories, whitespace, case,
// NFD, and GPT-2's byte <-> printable-character map.
//
// Character data comes from ICU (Debian's libicu-dev): a well-kept package that tracks the Unicode
// standard, gives categories, the White_Space property, case mapping and normalisation from one
// source, and spares us a large generated table in the repository.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace aigc::text {

// Unicode general category, grouped the way tokenizer regexes ask for them (\p{L}, \p{Lu}, ...).
enum class UnicodeCategory : uint8_t {
  Lu, Ll, Lt, Lm, Lo,  // letters
  Mn, Mc, Me,          // marks
  Nd, Nl, No,          // numbers
  Pc, Pd, Ps, Pe, Pi, Pf, Po,  // punctuation
  Sm, Sc, Sk, So,      // symbols
  Zs, Zl, Zp,          // separators
  Cc, Cf, Cs, Co, Cn,  // other (Cn: unassigned)
};

UnicodeCategory unicode_category(uint32_t cp);
bool unicode_is_letter(uint32_t cp);       // \p{L}
bool unicode_is_number(uint32_t cp);       // \p{N}
bool unicode_is_punctuation(uint32_t cp);  // \p{P}
bool unicode_is_symbol(uint32_t cp);       // \p{S}
bool unicode_is_mark(uint32_t cp);         // \p{M}
bool unicode_is_whitespace(uint32_t cp);   // White_Space property (what \s means in the regexes)
uint32_t unicode_tolower(uint32_t cp);     // simple (one-to-one) lowercase mapping
std::vector<uint32_t> unicode_nfd(const std::vector<uint32_t>& cps);

// Decodes one UTF-8 sequence at s[pos] (pos < s.size()). Returns its length in bytes (1..4).
// A malformed or truncated sequence yields U+FFFD with length 1, so every byte is consumed and no
// read goes past the end: byte-level tokenizers then still see every input byte.
size_t utf8_decode(std::string_view s, size_t pos, uint32_t* cp);
std::vector<uint32_t> utf8_to_codepoints(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_from_codepoints(const std::vector<uint32_t>& cps);

// GPT-2 byte-level BPE writes every byte as a printable character: bytes that are printable
// Latin-1 map to themselves, the others to U+0100 upward in byte order.
uint32_t byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);  // -1 when cp is not in the map

}  // namespace aigc::text
