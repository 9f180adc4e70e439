// CLIP tokenizer and Stable Diffusion prompt chunking (see clip_tokenizer.h).
#include "image/clip_tokenizer.h"

#include <unicode/ustring.h>
#include <unicode/unorm2.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "image/prompt_weights.h"
#include "text/unicode.h"

namespace aigc::image {

namespace {

// ---- text cleaning ------------------------------------------------------------------------------

// Python's str.isspace: White_Space plus U+001C..U+001F (what str.strip() removes).
bool py_isspace(uint32_t cp) { return text::unicode_is_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F); }

std::vector<UChar> utf16_from_utf8(std::string_view s) {
  std::vector<UChar> out;
  out.reserve(s.size() + 1);
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    pos += text::utf8_decode(s, pos, &cp);
    if (cp >= 0x10000) {
      out.push_back(static_cast<UChar>(0xD7C0 + (cp >> 10)));
      out.push_back(static_cast<UChar>(0xDC00 | (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<UChar>(cp));
    }
  }
  return out;
}

std::string utf8_from_utf16(const std::vector<UChar>& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    uint32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00u);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    text::utf8_append(out, c);
  }
  return out;
}

// Runs an ICU UTF-16 transform, growing the output when ICU asks for more room.
template <class F>
std::vector<UChar> icu_transform(const std::vector<UChar>& src, F f) {
  std::vector<UChar> dst(src.size() + src.size() / 2 + 16);
  UErrorCode err = U_ZERO_ERROR;
  int32_t n = f(src.data(), static_cast<int32_t>(src.size()), dst.data(), static_cast<int32_t>(dst.size()), &err);
  if (err == U_BUFFER_OVERFLOW_ERROR) {
    err = U_ZERO_ERROR;
    dst.resize(static_cast<size_t>(n));
    n = f(src.data(), static_cast<int32_t>(src.size()), dst.data(), static_cast<int32_t>(dst.size()), &err);
  }
  AIGC_ASSERT(U_SUCCESS(err), "ICU: {}", u_errorName(err));
  dst.resize(static_cast<size_t>(n));
  return dst;
}

std::string nfc(std::string_view s) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&err);
  AIGC_ASSERT(U_SUCCESS(err), "ICU NFC instance: {}", u_errorName(err));
  return utf8_from_utf16(icu_transform(utf16_from_utf8(s), [&](const UChar* a, int32_t an, UChar* b, int32_t bn, UErrorCode* e) {
    return unorm2_normalize(norm, a, an, b, bn, e);
  }));
}

// Python's str.lower(): full case mapping with the final-sigma rule (ICU's root locale).
std::string lower(std::string_view s) {
  return utf8_from_utf16(icu_transform(utf16_from_utf8(s), [](const UChar* a, int32_t an, UChar* b, int32_t bn, UErrorCode* e) {
    return u_strToLower(b, bn, a, an, "", e);
  }));
}

// Removes leading and trailing Python whitespace.
std::string_view strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e) {
    uint32_t cp;
    const size_t n = text::utf8_decode(s, b, &cp);
    if (!py_isspace(cp)) break;
    b += n;
  }
  while (e > b) {
    size_t p = e - 1;  // start of the last code point
    while (p > b && (static_cast<uint8_t>(s[p]) & 0xC0) == 0x80 && e - p < 4) --p;
    uint32_t cp;
    if (text::utf8_decode(s, p, &cp) != e - p) {  // not one well-formed sequence: a lone byte
      p = e - 1;
      text::utf8_decode(s, p, &cp);
    }
    if (!py_isspace(cp)) break;
    e = p;
  }
  return s.substr(b, e - b);
}

// `re.sub(r'\s+', ' ', text)` (the `regex` module: \s is White_Space).
std::string whitespace_collapse(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool in_space = false;
  for (size_t pos = 0; pos < s.size();) {
    uint32_t cp;
    const size_t n = text::utf8_decode(s, pos, &cp);
    if (text::unicode_is_whitespace(cp)) {
      if (!in_space) out += ' ';
      in_space = true;
    } else {
      out.append(s.substr(pos, n));
      in_space = false;
    }
    pos += n;
  }
  return out;
}

// ---- html.unescape ------------------------------------------------------------------------------

struct Entity {
  std::string_view name;
  uint32_t cp;
  bool legacy;  // also recognised without ';' (HTML5's legacy names)
};

// HTML 4's Latin-1 names (U+00A0..U+00FF in order), all legacy in HTML5.
constexpr std::string_view latin1_names[96] = {
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf", "laquo",
    "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro", "para", "middot",
    "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc",
    "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute", "Ecirc", "Euml", "Igrave", "Iacute",
    "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash",
    "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute", "acirc", "atilde",
    "auml", "aring", "aelig", "ccedil", "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc",
    "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave",
    "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml"};

constexpr Entity other_entities[] = {
    {"amp", '&', true}, {"AMP", '&', true}, {"lt", '<', true}, {"LT", '<', true}, {"gt", '>', true},
    {"GT", '>', true}, {"quot", '"', true}, {"QUOT", '"', true}, {"COPY", 0xA9, true}, {"REG", 0xAE, true},
    {"apos", '\'', false}, {"hellip", 0x2026, false}, {"mdash", 0x2014, false}, {"ndash", 0x2013, false},
    {"lsquo", 0x2018, false}, {"rsquo", 0x2019, false}, {"ldquo", 0x201C, false}, {"rdquo", 0x201D, false},
    {"sbquo", 0x201A, false}, {"bdquo", 0x201E, false}, {"bull", 0x2022, false}, {"trade", 0x2122, false},
    {"euro", 0x20AC, false}, {"hearts", 0x2665, false}, {"larr", 0x2190, false}, {"rarr", 0x2192, false},
    {"uarr", 0x2191, false}, {"darr", 0x2193, false}, {"harr", 0x2194, false}, {"infin", 0x221E, false},
    {"ne", 0x2260, false}, {"le", 0x2264, false}, {"ge", 0x2265, false}, {"minus", 0x2212, false},
    {"prime", 0x2032, false}, {"Prime", 0x2033, false}, {"star", 0x2606, false}, {"dagger", 0x2020, false},
};

// s: the name with its ';' when present. Returns the code point or -1.
int64_t entity_find(std::string_view s) {
  const bool semi = !s.empty() && s.back() == ';';
  const std::string_view name = semi ? s.substr(0, s.size() - 1) : s;
  for (size_t i = 0; i < 96; ++i) {
    if (latin1_names[i] == name) return 0xA0 + static_cast<int64_t>(i);  // all legacy
  }
  for (const Entity& e : other_entities) {
    if (e.name == name && (semi || e.legacy)) return e.cp;
  }
  return -1;
}

// Python's html._invalid_charrefs: 0x80..0x9F read as Windows-1252 (HTML5).
constexpr uint16_t cp1252_80_9f[32] = {
    0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,
    0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A,
    0x0153, 0x9D, 0x017E, 0x0178};

// A numeric reference's value, as html.unescape writes it (maybe nothing).
void numeric_ref_append(std::string& out, uint64_t num) {
  if (num == 0) return text::utf8_append(out, 0xFFFD);
  if (num == 0x0D) return text::utf8_append(out, '\r');
  if (num >= 0x80 && num <= 0x9F) return text::utf8_append(out, cp1252_80_9f[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return text::utf8_append(out, 0xFFFD);
  const bool invalid = (num >= 0x1 && num <= 0x8) || (num >= 0xE && num <= 0x1F) || (num >= 0x7F && num <= 0x9F) ||
                       (num >= 0xFDD0 && num <= 0xFDEF) || num == 0xB || (num & 0xFFFE) == 0xFFFE;
  if (invalid) return;
  text::utf8_append(out, static_cast<uint32_t>(num));
}

bool is_hex(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

}  // namespace

std::string html_unescape(std::string_view s) {
  if (s.find('&') == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    size_t j = i + 1;
    if (j < s.size() && s[j] == '#') {
      // &#[0-9]+;?  or  &#[xX][0-9a-fA-F]+;?
      const bool hex = j + 1 < s.size() && (s[j + 1] == 'x' || s[j + 1] == 'X');
      size_t k = j + (hex ? 2 : 1);
      uint64_t num = 0;
      const size_t digits_begin = k;
      while (k < s.size() && (hex ? is_hex(s[k]) : (s[k] >= '0' && s[k] <= '9'))) {
        const char c = s[k];
        const uint64_t d = (c <= '9') ? static_cast<uint64_t>(c - '0') : static_cast<uint64_t>((c | 0x20) - 'a' + 10);
        num = std::min<uint64_t>(num * (hex ? 16 : 10) + d, 0x110000);  // saturate past U+10FFFF
        ++k;
      }
      if (k == digits_begin) {  // no digits: '&' is literal
        out += s[i++];
        continue;
      }
      if (k < s.size() && s[k] == ';') ++k;
      numeric_ref_append(out, num);
      i = k;
      continue;
    }
    // [^\t\n\f <&#;]{1,32};?  (32 code points)
    size_t k = j;
    size_t count = 0;
    while (k < s.size() && count < 32) {
      const char c = s[k];
      if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
      uint32_t cp;
      k += text::utf8_decode(s, k, &cp);
      ++count;
    }
    if (count == 0) {
      out += s[i++];
      continue;
    }
    if (k < s.size() && s[k] == ';') ++k;
    const std::string_view name = s.substr(j, k - j);
    int64_t cp = entity_find(name);
    if (cp >= 0) {
      text::utf8_append(out, static_cast<uint32_t>(cp));
    } else {
      // The longest legacy name that prefixes it (names are ASCII, so byte prefixes suffice).
      size_t x = name.size() - 1;
      for (; x >= 2; --x) {
        if ((cp = entity_find(name.substr(0, x))) >= 0) break;
      }
      if (cp >= 0 && x >= 2) {
        text::utf8_append(out, static_cast<uint32_t>(cp));
        out.append(name.substr(x));
      } else {
        out += '&';
        out.append(name);
      }
    }
    i = k;
  }
  return out;
}

std::string clip_text_clean(std::string_view text_in) {
  // basic_clean: (ftfy.fix_text: here its NFC step only), html.unescape twice, strip.
  std::string t = nfc(text_in);
  t = html_unescape(html_unescape(t));
  // whitespace_clean: collapse, strip; then lower-case.
  t = whitespace_collapse(strip(t));
  return lower(strip(t));
}

// ---- loading ------------------------------------------------------------------------------------

namespace {

// CLIP's regex; (?i:) as IGNORECASE, which on lower-cased text matters only for U+017F (long s),
// which folds to 's' (Python's `regex` matches "'ſ" for 's).
const char* const clip_pattern =
    R"(<\|[sſ]tartoftext\|>|<\|endoftext\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+)";

std::string file_read(const std::string& path) {
  auto f = MappedFile::open(path, FileLoadOptions{.use_mmap = true});
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

std::string gunzip(const std::string& data, const std::string& path) {
  constexpr size_t out_max = size_t{256} << 20;  // a merges file is a few MiB; stop bombs early
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) error_throw("zlib inflateInit2 failed", path);
  std::string out;
  char buf[1 << 16];
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(data.size(), std::numeric_limits<uInt>::max()));
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      error_throw(fmt::format("gzip data is corrupt or truncated (zlib: {})", zs.msg ? zs.msg : std::to_string(rc)),
                  path, "download the file again");
    }
    out.append(buf, sizeof(buf) - zs.avail_out);
    if (out.size() > out_max) {
      inflateEnd(&zs);
      error_throw("gzip data unpacks to more than 256 MiB", path, "this is not a CLIP merges file");
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      error_throw("gzip data is truncated", path, "download the file again");
    }
  }
  inflateEnd(&zs);
  return out;
}

// Merge lines after the header, at most clip_merges_max; blank lines skipped.
std::vector<std::pair<std::string, std::string>> merges_parse(std::string_view text, const std::string& where) {
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos <= text.size() && merges.size() < clip_merges_max) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line_no++ == 0) continue;  // "#version: 0.2" header
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // Python's str.split(): runs of whitespace; a merge line has exactly two fields.
    std::vector<std::string_view> fields;
    for (size_t p = 0; p < line.size();) {
      while (p < line.size() && (line[p] == ' ' || line[p] == '\t')) ++p;
      const size_t b = p;
      while (p < line.size() && line[p] != ' ' && line[p] != '\t') ++p;
      if (p > b) fields.push_back(line.substr(b, p - b));
    }
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      error_throw(fmt::format("merge line {} has {} fields, expected 2: '{}'", line_no, fields.size(),
                              line.substr(0, 80)),
                  where, "a merges file holds one 'left right' pair per line after a header line");
    }
    merges.emplace_back(std::string(fields[0]), std::string(fields[1]));
  }
  return merges;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

ClipTokenizer::ClipTokenizer(std::vector<std::string> tokens,
                             const std::vector<std::pair<std::string, std::string>>& merges, const std::string& where)
    : tokens_(std::move(tokens)), pattern_(clip_pattern) {
  AIGC_CHECK(tokens_.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()), "{}: vocabulary too large", where);
  ids_.reserve(tokens_.size());
  // Later entries win on duplicates, as Python's dict(zip(vocab, range(n))) does.
  for (size_t i = 0; i < tokens_.size(); ++i) ids_.insert_or_assign(tokens_[i], static_cast<int32_t>(i));
  ranks_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    ranks_.insert_or_assign(merges[r].first + ' ' + merges[r].second, static_cast<int32_t>(r));
  }
  bos_ = token_find("<|startoftext|>");
  eos_ = token_find("<|endoftext|>");
  if (bos_ < 0 && eos_ < 0) {  // OpenCLIP's own vocabulary names them so (same ids, 49406/49407)
    bos_ = token_find("<start_of_text>");
    eos_ = token_find("<end_of_text>");
  }
  comma_ = token_find(",</w>");
  if (bos_ < 0 || eos_ < 0) {
    error_throw("vocabulary has no <|startoftext|> or <|endoftext|> token", where,
                "a CLIP vocabulary ends with these two special tokens");
  }
}

ClipTokenizer ClipTokenizer::from_merges(const std::vector<std::pair<std::string, std::string>>& merges_in) {
  const size_t n = std::min(merges_in.size(), clip_merges_max);
  std::vector<std::pair<std::string, std::string>> merges(merges_in.begin(), merges_in.begin() + static_cast<ptrdiff_t>(n));
  // The 256 byte characters in code point order (the order of CLIP's bytes_to_unicode values).
  std::vector<uint32_t> chars;
  for (int b = 0; b < 256; ++b) chars.push_back(text::byte_to_unicode(static_cast<uint8_t>(b)));
  std::sort(chars.begin(), chars.end());
  std::vector<std::string> tokens;
  tokens.reserve(512 + n + 2);
  for (uint32_t c : chars) {
    std::string s;
    text::utf8_append(s, c);
    tokens.push_back(std::move(s));
  }
  for (size_t i = 0; i < 256; ++i) tokens.push_back(tokens[i] + "</w>");
  for (const auto& [l, r] : merges) tokens.push_back(l + r);
  tokens.emplace_back("<|startoftext|>");
  tokens.emplace_back("<|endoftext|>");
  return ClipTokenizer(std::move(tokens), merges, "merges");
}

ClipTokenizer ClipTokenizer::from_merges_text(std::string_view text, const std::string& where) {
  auto merges = merges_parse(text, where);
  if (merges.empty()) error_throw("merges file holds no merges", where, "expected CLIP's bpe_simple_vocab_16e6.txt");
  try {
    return from_merges(merges);
  } catch (const Error& e) {
    error_throw(e.what_msg(), where, e.hint());
  }
}

ClipTokenizer ClipTokenizer::load_merges_file(const std::string& path) {
  std::string data = file_read(path);
  const bool gz = data.size() >= 2 && static_cast<uint8_t>(data[0]) == 0x1F && static_cast<uint8_t>(data[1]) == 0x8B;
  if (gz) data = gunzip(data, path);
  return from_merges_text(data, path);
}

ClipTokenizer ClipTokenizer::load_hf(const std::string& vocab_json_path, const std::string& merges_txt_path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(file_read(vocab_json_path));
  } catch (const nlohmann::json::exception& e) {
    error_throw(fmt::format("not valid JSON: {}", e.what()), vocab_json_path, "expected a token -> id object");
  }
  if (!j.is_object()) error_throw("vocab.json is not a JSON object", vocab_json_path, "expected a token -> id object");
  std::vector<std::string> tokens(j.size());
  std::vector<bool> seen(j.size(), false);
  for (const auto& [tok, id] : j.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= static_cast<int64_t>(j.size())) {
      error_throw(fmt::format("token '{}' has id {}, expected 0..{}", tok, id.dump(), j.size() - 1), vocab_json_path,
                  "ids must be distinct and cover 0..n-1");
    }
    const auto i = static_cast<size_t>(id.get<int64_t>());
    if (seen[i]) error_throw(fmt::format("id {} is used twice", i), vocab_json_path, "ids must be distinct");
    seen[i] = true;
    tokens[i] = tok;
  }
  const auto merges = merges_parse(file_read(merges_txt_path), merges_txt_path);
  return ClipTokenizer(std::move(tokens), merges, vocab_json_path);
}

ClipTokenizer ClipTokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    // A diffusers tokenizer folder, or a model folder holding one.
    for (const std::string sub : {"", "tokenizer"}) {
      const fs::path dir = sub.empty() ? fs::path(path) : fs::path(path) / sub;
      if (fs::exists(dir / "vocab.json", ec) && fs::exists(dir / "merges.txt", ec)) {
        return load_hf((dir / "vocab.json").string(), (dir / "merges.txt").string());
      }
    }
    for (const char* name : {"bpe_simple_vocab_16e6.txt.gz", "bpe_simple_vocab_16e6.txt"}) {
      if (fs::exists(fs::path(path) / name, ec)) return load_merges_file((fs::path(path) / name).string());
    }
    error_throw("folder holds neither vocab.json + merges.txt nor bpe_simple_vocab_16e6.txt.gz", path,
                "point at a CLIP tokenizer folder or at the merges file");
  }
  if (ends_with(path, "vocab.json")) {
    const fs::path merges = fs::path(path).parent_path() / "merges.txt";
    return load_hf(path, merges.string());
  }
  return load_merges_file(path);
}

ClipTokenId ClipTokenizer::token_find(std::string_view text) const {
  auto it = ids_.find(text);
  return it == ids_.end() ? -1 : it->second;
}

// ---- encode / decode ----------------------------------------------------------------------------

void ClipTokenizer::piece_encode(std::string_view piece, std::vector<ClipTokenId>& out) const {
  if (piece == "<|startoftext|>") return out.push_back(bos_);  // CLIP's bpe cache holds these as is
  if (piece == "<|endoftext|>") return out.push_back(eos_);
  // Bytes -> printable characters; the last one carries "</w>".
  std::vector<std::string> word;
  word.reserve(piece.size());
  for (char b : piece) {
    std::string s;
    text::utf8_append(s, text::byte_to_unicode(static_cast<uint8_t>(b)));
    word.push_back(std::move(s));
  }
  if (word.empty()) return;
  word.back() += "</w>";
  std::string key;
  std::vector<std::string> next;
  while (word.size() > 1) {
    // The adjacent pair of lowest rank.
    int32_t best = std::numeric_limits<int32_t>::max();
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      key.assign(word[i]).append(" ").append(word[i + 1]);
      auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best) best = it->second, best_i = i;
    }
    if (best == std::numeric_limits<int32_t>::max()) break;
    // Merge every occurrence of that pair, left to right.
    const std::string first = word[best_i], second = word[best_i + 1];
    next.clear();
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        next.push_back(first + second);
        i += 2;
      } else {
        next.push_back(std::move(word[i]));
        i += 1;
      }
    }
    word.swap(next);
  }
  for (const std::string& s : word) {
    const ClipTokenId id = token_find(s);
    out.push_back(id >= 0 ? id : eos_);  // not in an HF vocab.json: its unk token, <|endoftext|>
  }
}

std::vector<ClipTokenId> ClipTokenizer::encode(std::string_view text_in) const {
  const std::string t = clip_text_clean(text_in);
  std::vector<ClipTokenId> out;
  const std::vector<uint32_t> cps = text::utf8_to_codepoints(t);
  // re.findall: matches left to right; what no alternative matches (whitespace) is skipped.
  std::string piece;
  for (size_t pos = 0; pos < cps.size();) {
    const ptrdiff_t len = pattern_.match_at(cps.data(), 0, cps.size(), pos);
    if (len <= 0) {
      ++pos;
      continue;
    }
    piece.clear();
    for (size_t k = pos; k < pos + static_cast<size_t>(len); ++k) text::utf8_append(piece, cps[k]);
    piece_encode(piece, out);
    pos += static_cast<size_t>(len);
  }
  return out;
}

std::string ClipTokenizer::decode(std::span<const ClipTokenId> ids) const {
  std::string joined;
  for (ClipTokenId id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
      error_throw(fmt::format("token id {} is outside the vocabulary (0..{})", id, tokens_.size() - 1), "clip decode");
    }
    joined += tokens_[static_cast<size_t>(id)];
  }
  // Printable characters -> bytes (characters outside the byte map, which a loaded vocab.json
  // could hold, are kept as UTF-8), then "</w>" -> " ".
  std::string bytes;
  for (size_t pos = 0; pos < joined.size();) {
    uint32_t cp;
    const size_t n = text::utf8_decode(joined, pos, &cp);
    const int b = text::unicode_to_byte(cp);
    if (b >= 0) {
      bytes += static_cast<char>(b);
    } else {
      bytes.append(joined, pos, n);
    }
    pos += n;
  }
  // Invalid UTF-8 (a cut multi-byte character) becomes U+FFFD, as decode(errors="replace").
  std::string valid;
  valid.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    uint32_t cp;
    pos += text::utf8_decode(bytes, pos, &cp);
    text::utf8_append(valid, cp);
  }
  std::string out;
  out.reserve(valid.size());
  for (size_t pos = 0; pos < valid.size();) {
    if (valid.compare(pos, 4, "</w>") == 0) {
      out += ' ';
      pos += 4;
    } else {
      out += valid[pos++];
    }
  }
  return out;
}

// ---- Stable Diffusion chunks --------------------------------------------------------------------

std::vector<ClipChunk> ClipTokenizer::tokenize_for_sd(std::string_view prompt, const SdTokenizeOptions& opt) const {
  std::vector<PromptSegment> segments;
  if (opt.weighting) {
    segments = prompt_weights_parse(prompt);
  } else {
    segments.push_back({std::string(prompt), 1.0, false});
  }
  const ClipTokenId pad = opt.pad_id < 0 ? eos_ : opt.pad_id;

  std::vector<ClipChunk> chunks;
  std::vector<ClipTokenId> tokens;  // the current chunk's prompt tokens (at most 75)
  std::vector<float> weights;
  ptrdiff_t last_comma = -1;        // index in tokens of the last comma, -1: none

  auto chunk_close = [&]() {
    ClipChunk c;
    c.ids.reserve(clip_context);
    c.weights.reserve(clip_context);
    c.ids.push_back(bos_);
    c.weights.push_back(1.0f);
    c.ids.insert(c.ids.end(), tokens.begin(), tokens.end());
    c.weights.insert(c.weights.end(), weights.begin(), weights.end());
    c.ids.push_back(eos_);
    c.weights.push_back(1.0f);
    c.ids.resize(clip_context, pad);
    c.weights.resize(clip_context, 1.0f);
    if (pad != eos_) {  // A1111: everything after the first EOS becomes padding
      auto first_eos = std::find(c.ids.begin() + 1, c.ids.end(), eos_);
      if (first_eos != c.ids.end()) std::fill(first_eos + 1, c.ids.end(), pad);
    }
    chunks.push_back(std::move(c));
    tokens.clear();
    weights.clear();
    last_comma = -1;
  };

  std::vector<ClipTokenId> seg_ids;
  for (const PromptSegment& seg : segments) {
    if (seg.is_break) {
      chunk_close();
      continue;
    }
    seg_ids = encode(seg.text);
    const auto w = static_cast<float>(seg.weight);
    for (ClipTokenId id : seg_ids) {
      if (id == comma_) {
        last_comma = static_cast<ptrdiff_t>(tokens.size());
      } else if (opt.comma_backtrack > 0 && tokens.size() == clip_chunk_tokens && last_comma >= 0 &&
                 static_cast<ptrdiff_t>(tokens.size()) - last_comma <= opt.comma_backtrack) {
        // Full, and a comma is near the end: the words after it move to the next chunk.
        const auto cut = static_cast<size_t>(last_comma + 1);
        std::vector<ClipTokenId> moved_ids(tokens.begin() + static_cast<ptrdiff_t>(cut), tokens.end());
        std::vector<float> moved_w(weights.begin() + static_cast<ptrdiff_t>(cut), weights.end());
        tokens.resize(cut);
        weights.resize(cut);
        chunk_close();
        tokens = std::move(moved_ids);
        weights = std::move(moved_w);
      }
      if (tokens.size() == clip_chunk_tokens) chunk_close();
      tokens.push_back(id);
      weights.push_back(w);
    }
  }
  if (!tokens.empty() || chunks.empty()) chunk_close();
  return chunks;
}

}  // namespace aigc::image
