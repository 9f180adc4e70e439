// Regex engine and the pre-tokenizer table (see pretokenize.h).
#include "text/pretokenize.h"

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "text/unicode.h"

namespace aigc::text {

// ---- pattern representation -------------------------------------------------------------------

namespace {

struct Class {
  bool negated = false;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive
  uint32_t categories = 0;  // bit per UnicodeCategory
  bool space = false;       // \s
  bool non_space = false;   // \S
  bool any_but_newline = false;  // .

  bool match(uint32_t c) const {
    bool hit = false;
    for (const auto& [lo, hi] : ranges) {
      if (c >= lo && c <= hi) {
        hit = true;
        break;
      }
    }
    if (!hit && categories) hit = (categories >> static_cast<unsigned>(unicode_category(c))) & 1u;
    if (!hit && (space || non_space)) {
      const bool ws = unicode_is_whitespace(c);
      hit = (space && ws) || (non_space && !ws);
    }
    if (!hit && any_but_newline) hit = c != '\n';
    return hit != negated;
  }
};

struct Node {
  enum class Kind { Class, Group, LookAhead, NegLookAhead, LineStart, LineEnd } kind;
  size_t index = 0;  // into classes_ (Class) or alts_ (the others with a body)
  int min = 1, max = 1;  // max < 0: unbounded
};

struct Seq {
  std::vector<Node> items;
};
using Alt = std::vector<Seq>;

constexpr uint32_t cat_bit(UnicodeCategory c) { return 1u << static_cast<unsigned>(c); }

// \p{NAME}: one-letter major classes and the two-letter general categories.
bool category_mask_from_name(std::string_view name, uint32_t* mask) {
  using C = UnicodeCategory;
  struct Entry {
    std::string_view name;
    uint32_t mask;
  };
  static const Entry table[] = {
      {"L", cat_bit(C::Lu) | cat_bit(C::Ll) | cat_bit(C::Lt) | cat_bit(C::Lm) | cat_bit(C::Lo)},
      {"Lu", cat_bit(C::Lu)}, {"Ll", cat_bit(C::Ll)}, {"Lt", cat_bit(C::Lt)}, {"Lm", cat_bit(C::Lm)},
      {"Lo", cat_bit(C::Lo)},
      {"M", cat_bit(C::Mn) | cat_bit(C::Mc) | cat_bit(C::Me)},
      {"Mn", cat_bit(C::Mn)}, {"Mc", cat_bit(C::Mc)}, {"Me", cat_bit(C::Me)},
      {"N", cat_bit(C::Nd) | cat_bit(C::Nl) | cat_bit(C::No)},
      {"Nd", cat_bit(C::Nd)}, {"Nl", cat_bit(C::Nl)}, {"No", cat_bit(C::No)},
      {"P", cat_bit(C::Pc) | cat_bit(C::Pd) | cat_bit(C::Ps) | cat_bit(C::Pe) | cat_bit(C::Pi) |
                cat_bit(C::Pf) | cat_bit(C::Po)},
      {"Pc", cat_bit(C::Pc)}, {"Pd", cat_bit(C::Pd)}, {"Ps", cat_bit(C::Ps)}, {"Pe", cat_bit(C::Pe)},
      {"Pi", cat_bit(C::Pi)}, {"Pf", cat_bit(C::Pf)}, {"Po", cat_bit(C::Po)},
      {"S", cat_bit(C::Sm) | cat_bit(C::Sc) | cat_bit(C::Sk) | cat_bit(C::So)},
      {"Sm", cat_bit(C::Sm)}, {"Sc", cat_bit(C::Sc)}, {"Sk", cat_bit(C::Sk)}, {"So", cat_bit(C::So)},
      {"Z", cat_bit(C::Zs) | cat_bit(C::Zl) | cat_bit(C::Zp)},
      {"Zs", cat_bit(C::Zs)}, {"Zl", cat_bit(C::Zl)}, {"Zp", cat_bit(C::Zp)},
      {"C", cat_bit(C::Cc) | cat_bit(C::Cf) | cat_bit(C::Cs) | cat_bit(C::Co) | cat_bit(C::Cn)},
      {"Cc", cat_bit(C::Cc)}, {"Cf", cat_bit(C::Cf)}, {"Cs", cat_bit(C::Cs)}, {"Co", cat_bit(C::Co)},
      {"Cn", cat_bit(C::Cn)},
  };
  for (const auto& e : table) {
    if (e.name == name) {
      *mask = e.mask;
      return true;
    }
  }
  return false;
}

constexpr uint32_t all_categories = (1u << (static_cast<unsigned>(UnicodeCategory::Cn) + 1)) - 1;

}  // namespace

struct Regex::Program {
  std::vector<Class> classes;
  std::vector<Alt> alts;  // alts[0] is the whole pattern
};

namespace {

// ---- parser -----------------------------------------------------------------------------------

struct Parser {
  Regex::Program& re;
  std::string_view pattern;
  std::vector<uint32_t> p;  // pattern code points
  size_t i = 0;
  bool icase = false;  // inside (?i:...): ASCII letters match either case

  [[noreturn]] void fail(std::string_view what) const {
    error_throw(fmt::format("unsupported regex syntax: {} at code point {}", what, i),
                fmt::format("pre-tokenizer pattern '{}'", pattern),
                "the pattern comes from the pre-tokenizer table; extend Regex to support it");
  }
  bool at_end() const { return i >= p.size(); }
  uint32_t peek() const { return at_end() ? 0 : p[i]; }
  bool eat(uint32_t c) {
    if (!at_end() && p[i] == c) {
      ++i;
      return true;
    }
    return false;
  }

  size_t parse_alt() {
    Alt alt;
    alt.push_back(parse_seq());
    while (eat('|')) alt.push_back(parse_seq());
    re.alts.push_back(std::move(alt));
    return re.alts.size() - 1;
  }

  Seq parse_seq() {
    Seq seq;
    while (!at_end() && peek() != '|' && peek() != ')') {
      Node n = parse_atom();
      parse_quantifier(n);
      seq.items.push_back(n);
    }
    return seq;
  }

  size_t add_class(Class c) {
    re.classes.push_back(std::move(c));
    return re.classes.size() - 1;
  }

  Class literal_class(uint32_t c) const {
    Class cls;
    cls.ranges.push_back({c, c});
    if (icase && c < 128 && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
      cls.ranges.push_back({c ^ 0x20u, c ^ 0x20u});
    }
    return cls;
  }

  Node parse_atom() {
    const uint32_t c = p[i++];
    Node n{Node::Kind::Class};
    switch (c) {
      case '(': {
        bool saved_icase = icase;
        n.kind = Node::Kind::Group;
        if (eat('?')) {
          if (eat(':')) {
          } else if (eat('=')) {
            n.kind = Node::Kind::LookAhead;
          } else if (eat('!')) {
            n.kind = Node::Kind::NegLookAhead;
          } else if (eat('i') && eat(':')) {
            icase = true;
          } else {
            fail("group kind");
          }
        }
        n.index = parse_alt();
        icase = saved_icase;
        if (!eat(')')) fail("missing ')'");
        return n;
      }
      case '[': n.index = add_class(parse_class()); return n;
      case '.': {
        Class cls;
        cls.any_but_newline = true;
        n.index = add_class(std::move(cls));
        return n;
      }
      case '^': n.kind = Node::Kind::LineStart; return n;
      case '$': n.kind = Node::Kind::LineEnd; return n;
      case '\\': {
        Class cls;
        if (!parse_escape(cls)) fail("escape");
        n.index = add_class(std::move(cls));
        return n;
      }
      case '*': case '+': case '?': case '{': case ')': fail("misplaced operator");
      default: n.index = add_class(literal_class(c)); return n;
    }
  }

  // Parses the escape after a backslash into cls (adds a range or a category). False if unknown.
  bool parse_escape(Class& cls) {
    if (at_end()) fail("trailing backslash");
    const uint32_t c = p[i++];
    switch (c) {
      case 'p': case 'P': {
        if (!eat('{')) fail("\\p without {");
        std::string name;
        while (!at_end() && peek() != '}') name += static_cast<char>(p[i++]);
        if (!eat('}')) fail("\\p{ without }");
        uint32_t mask;
        if (!category_mask_from_name(name, &mask)) fail("unknown property \\p{" + name + "}");
        if (c == 'P') mask = ~mask & all_categories;
        cls.categories |= mask;
        return true;
      }
      case 's': cls.space = true; return true;
      case 'S': cls.non_space = true; return true;
      case 'd': cls.categories |= cat_bit(UnicodeCategory::Nd); return true;
      case 'D': cls.categories |= ~cat_bit(UnicodeCategory::Nd) & all_categories; return true;
      case 'r': cls.ranges.push_back({'\r', '\r'}); return true;
      case 'n': cls.ranges.push_back({'\n', '\n'}); return true;
      case 't': cls.ranges.push_back({'\t', '\t'}); return true;
      case 'f': cls.ranges.push_back({'\f', '\f'}); return true;
      case 'v': cls.ranges.push_back({'\v', '\v'}); return true;
      case 'x': {
        uint32_t v = parse_hex();
        cls.ranges.push_back({v, v});
        return true;
      }
      default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return false;
        cls.ranges.push_back({c, c});  // escaped punctuation stands for itself
        return true;
    }
  }

  // \xHH or \x{H...}
  uint32_t parse_hex() {
    auto digit = [&](uint32_t d) -> int {
      if (d >= '0' && d <= '9') return static_cast<int>(d - '0');
      if ((d | 0x20) >= 'a' && (d | 0x20) <= 'f') return static_cast<int>((d | 0x20) - 'a' + 10);
      return -1;
    };
    uint32_t v = 0;
    if (eat('{')) {
      int n = 0;
      while (!at_end() && digit(peek()) >= 0 && n < 6) v = v * 16 + static_cast<uint32_t>(digit(p[i++])), ++n;
      if (n == 0 || !eat('}')) fail("\\x{...}");
    } else {
      for (int n = 0; n < 2; ++n) {
        if (at_end() || digit(peek()) < 0) fail("\\xHH");
        v = v * 16 + static_cast<uint32_t>(digit(p[i++]));
      }
    }
    return v;
  }

  // One class member that is a single code point (literal or escape like \x{..}, \-, \]), or -1
  // when the member was a set escape (\p, \s, ...) that was added to cls directly.
  int64_t parse_class_char(Class& cls) {
    uint32_t c = p[i++];
    if (c != '\\') return c;
    Class tmp;
    if (!parse_escape(tmp)) fail("escape in class");
    if (tmp.ranges.size() == 1 && tmp.categories == 0 && !tmp.space && !tmp.non_space) {
      return tmp.ranges[0].first;
    }
    cls.categories |= tmp.categories;
    cls.space |= tmp.space;
    cls.non_space |= tmp.non_space;
    return -1;
  }

  Class parse_class() {
    Class cls;
    if (eat('^')) cls.negated = true;
    bool first = true;
    while (!at_end() && (peek() != ']' || first)) {
      first = false;
      int64_t lo = parse_class_char(cls);
      if (lo < 0) continue;
      if (peek() == '-' && i + 1 < p.size() && p[i + 1] != ']') {
        ++i;
        int64_t hi = parse_class_char(cls);
        if (hi < 0 || hi < lo) fail("bad range in class");
        cls.ranges.push_back({static_cast<uint32_t>(lo), static_cast<uint32_t>(hi)});
      } else {
        Class lit = literal_class(static_cast<uint32_t>(lo));
        cls.ranges.insert(cls.ranges.end(), lit.ranges.begin(), lit.ranges.end());
      }
    }
    if (!eat(']')) fail("missing ']'");
    return cls;
  }

  int parse_int() {
    int v = 0, n = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9' && n < 6) v = v * 10 + static_cast<int>(p[i++] - '0'), ++n;
    if (n == 0) fail("number in {}");
    return v;
  }

  void parse_quantifier(Node& n) {
    if (at_end()) return;
    int min = 1, max = 1;
    const uint32_t c = peek();
    if (c == '?') min = 0, max = 1;
    else if (c == '*') min = 0, max = -1;
    else if (c == '+') min = 1, max = -1;
    else if (c == '{') {
      ++i;
      min = max = parse_int();
      if (eat(',')) max = (peek() == '}') ? -1 : parse_int();
      if (peek() != '}') fail("missing '}'");
      if (max >= 0 && max < min) fail("{n,m} with m < n");
    } else {
      return;
    }
    ++i;
    if (peek() == '?' || peek() == '+') fail("lazy or possessive quantifier");
    if (n.kind == Node::Kind::LookAhead || n.kind == Node::Kind::NegLookAhead ||
        n.kind == Node::Kind::LineStart || n.kind == Node::Kind::LineEnd) {
      fail("quantified assertion");
    }
    n.min = min;
    n.max = max;
  }
};


// ---- matcher ----------------------------------------------------------------------------------

struct Matcher {
  const Regex::Program& re;
  const uint32_t* s;
  size_t begin, end;

  // What to match after the current sequence ends: the rest of an outer sequence, or one more
  // round of a repeated group. nullptr: the whole match is done.
  struct Cont {
    const Seq* seq;
    size_t idx;
    const Cont* next;
    const Node* rep = nullptr;  // set for a group repetition
    int count = 0;
    size_t start = 0;
  };

  bool resume(const Cont* k, size_t pos, size_t* out) const {
    if (!k) {
      *out = pos;
      return true;
    }
    if (!k->rep) return seq_match(*k->seq, k->idx, pos, k->next, out);
    if (pos == k->start) return seq_match(*k->seq, k->idx + 1, pos, k->next, out);  // empty round: stop
    return rep_match(*k->rep, k->count + 1, pos, *k->seq, k->idx, k->next, out);
  }

  bool alt_match(const Alt& alt, size_t pos, const Cont* k, size_t* out) const {
    for (const Seq& seq : alt) {
      if (seq_match(seq, 0, pos, k, out)) return true;
    }
    return false;
  }

  bool rep_match(const Node& n, int count, size_t pos, const Seq& seq, size_t idx, const Cont* k, size_t* out) const {
    if (n.max < 0 || count < n.max) {
      Cont round{&seq, idx, k, &n, count, pos};
      if (alt_match(re.alts[n.index], pos, &round, out)) return true;
    }
    return count >= n.min && seq_match(seq, idx + 1, pos, k, out);
  }

  bool seq_match(const Seq& seq, size_t idx, size_t pos, const Cont* k, size_t* out) const {
    if (idx == seq.items.size()) return resume(k, pos, out);
    const Node& n = seq.items[idx];
    switch (n.kind) {
      case Node::Kind::Class: {
        const Class& cls = re.classes[n.index];
        const size_t limit = n.max < 0 ? end - pos : std::min(end - pos, static_cast<size_t>(n.max));
        size_t count = 0;
        while (count < limit && cls.match(s[pos + count])) ++count;
        if (count < static_cast<size_t>(n.min)) return false;
        for (size_t j = count + 1; j-- > static_cast<size_t>(n.min);) {  // greedy: longest first
          if (seq_match(seq, idx + 1, pos + j, k, out)) return true;
        }
        return false;
      }
      case Node::Kind::Group: {
        if (n.min == 1 && n.max == 1) {
          Cont rest{&seq, idx + 1, k};
          return alt_match(re.alts[n.index], pos, &rest, out);
        }
        return rep_match(n, 0, pos, seq, idx, k, out);
      }
      case Node::Kind::LookAhead:
      case Node::Kind::NegLookAhead: {
        size_t ignored;
        const bool hit = alt_match(re.alts[n.index], pos, nullptr, &ignored);
        if (hit != (n.kind == Node::Kind::LookAhead)) return false;
        return seq_match(seq, idx + 1, pos, k, out);
      }
      case Node::Kind::LineStart:
        if (pos != begin && s[pos - 1] != '\n') return false;
        return seq_match(seq, idx + 1, pos, k, out);
      case Node::Kind::LineEnd:
        if (pos != end && s[pos] != '\n') return false;
        return seq_match(seq, idx + 1, pos, k, out);
    }
    return false;
  }
};

}  // namespace

Regex::Regex(std::string_view pattern) {
  auto prog = std::make_shared<Program>();
  Parser ps{*prog, pattern, utf8_to_codepoints(pattern)};
  prog->alts.emplace_back();  // slot 0: the whole pattern, filled below
  const size_t top = ps.parse_alt();
  if (!ps.at_end()) ps.fail("unbalanced ')'");
  prog->alts[0] = std::move(prog->alts[top]);
  prog->alts.pop_back();  // top was the last alternation added
  prog_ = std::move(prog);
}

ptrdiff_t Regex::match_at(const uint32_t* cps, size_t begin, size_t end, size_t pos) const {
  AIGC_ASSERT(begin <= pos && pos <= end);
  Matcher m{*prog_, cps, begin, end};
  size_t stop;
  if (!m.alt_match(prog_->alts[0], pos, nullptr, &stop)) return -1;
  return static_cast<ptrdiff_t>(stop - pos);
}

// ---- pre-tokenizer table ----------------------------------------------------------------------

namespace {

// The regexes below are the `pre_tokenizer` Split patterns of each family's tokenizer.json (the
// format's facts; non-ASCII characters written as \x{..} so the source stays unambiguous).
const std::string gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const std::string llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string gpt4o_pattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string tekken_pattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// CJK ideographs (U+4E00..U+9FA5), U+0800..U+4E00, Hangul syllables and beyond (U+AC00..U+D7FF).
const std::string deepseek_cjk_pattern = R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
// Cased letters (Lu/Ll/Lt) as DeepSeek LLM's tokenizer.json lists them.
const std::string deepseek_letters_pattern =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
    R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A})"
    R"(\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556})"
    R"(\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF})"
    R"(\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D})"
    R"(\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D})"
    R"(\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3})"
    R"(\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D})"
    R"(\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184})"
    R"(\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D})"
    R"(\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF})"
    R"(\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F})"
    R"(\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF})"
    R"(\x{1E900}-\x{1E943}]+)";
// ASCII punctuation, fullwidth forms, curly quotes and CJK punctuation U+3000..U+3002.
const std::string deepseek_punct_pattern =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
// BLOOM-style: words up to whitespace or sentence punctuation (… 。 ， 、 । ۔ ،).
const std::string bloom_pattern =
    R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)";

struct PreEntry {
  std::vector<std::string_view> names;
  std::vector<std::string> patterns;
};

const std::vector<PreEntry>& pre_table() {
  static const std::vector<PreEntry> table = {
      // No `tokenizer.ggml.pre` (old conversions) or "default": llama.cpp's fallback set.
      {{"", "default"},
       {R"([\p{P}\$\+<=>\^~\|]+)", gpt2_pattern, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
      {{"gpt-2", "gpt2", "mpt", "olmo", "phi-2", "jais", "jina-es", "jina-de", "jina-v1-en",
        "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "gigachat", "exaone4", "trillion",
        "granite-docling", "a.x-4.0", "mellum", "modern-bert"},
       {gpt2_pattern}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx", "smaug-bpe",
        "chatglm-bpe", "glm4", "midm-2.0", "lfm2"},
       {llama3_pattern}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", "megrez", "grok-2"}, {qwen2_pattern}},
      {{"gpt-4o", "llama4", "minimax-m2"}, {gpt4o_pattern}},
      {{"tekken"}, {tekken_pattern}},
      {{"deepseek-llm"},
       {R"([\r\n])", deepseek_letters_pattern, deepseek_punct_pattern, R"(\s+$)", deepseek_cjk_pattern,
        R"(\p{N}+)"}},
      {{"deepseek-coder"},
       {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", deepseek_cjk_pattern, R"(\p{N})"}},
      {{"deepseek-v3", "hunyuan-dense"},
       {R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}},
      // Falcon: punctuation runs (ASCII symbols count as punctuation there), then GPT-2 words,
      // then numbers cut into groups of three digits.
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", gpt2_pattern, "[0-9][0-9][0-9]"}},
      // StarCoder family: every digit alone, then GPT-2 words.
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
       {R"(\p{N})", gpt2_pattern}},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {bloom_pattern}},
      {{"viking"}, {bloom_pattern, R"(\p{N})"}},
  };
  return table;
}

const PreEntry* pre_find(std::string_view pre) {
  for (const auto& e : pre_table()) {
    if (std::find(e.names.begin(), e.names.end(), pre) != e.names.end()) return &e;
  }
  return nullptr;
}

}  // namespace

PreTokenizer::PreTokenizer(const std::vector<std::string>& patterns) {
  regexes_.reserve(patterns.size());
  for (const auto& p : patterns) regexes_.emplace_back(p);
}

bool PreTokenizer::name_known(std::string_view pre) { return pre_find(pre) != nullptr; }

PreTokenizer PreTokenizer::from_name(std::string_view pre) {
  const PreEntry* e = pre_find(pre);
  if (!e) {
    error_throw(fmt::format("unknown pre-tokenizer '{}'", pre), "tokenizer.ggml.pre",
                "supported: gpt-2, llama-bpe, qwen2, deepseek-llm, deepseek-coder, deepseek-v3, falcon, "
                "mpt, starcoder, refact, gpt-4o, tekken, bloom and their aliases");
  }
  return PreTokenizer(e->patterns);
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  // Code points and their byte offsets; offs[n] = text.size().
  std::vector<uint32_t> cps;
  std::vector<size_t> offs;
  cps.reserve(text.size());
  offs.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cp;
    offs.push_back(pos);
    pos += utf8_decode(text, pos, &cp);
    cps.push_back(cp);
  }
  offs.push_back(text.size());

  std::vector<std::pair<size_t, size_t>> pieces, next;  // code point ranges [b, e)
  if (!cps.empty()) pieces.push_back({0, cps.size()});
  for (const Regex& re : regexes_) {
    next.clear();
    for (const auto& [b, e] : pieces) {
      size_t last = b;
      for (size_t pos = b; pos < e;) {
        const ptrdiff_t len = re.match_at(cps.data(), b, e, pos);
        if (len <= 0) {
          ++pos;
          continue;
        }
        if (last < pos) next.push_back({last, pos});
        next.push_back({pos, pos + static_cast<size_t>(len)});
        pos += static_cast<size_t>(len);
        last = pos;
      }
      if (last < e) next.push_back({last, e});
    }
    pieces.swap(next);
  }

  std::vector<std::string_view> out;
  out.reserve(pieces.size());
  for (const auto& [b, e] : pieces) out.push_back(text.substr(offs[b], offs[e] - offs[b]));
  return out;
}

}  // namespace aigc::text
