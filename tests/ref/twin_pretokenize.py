#!/usr/bin/env python3
"""Pre-tokenizer twin: splits texts with the pre-tokenizer regexes of each `tokenizer.ggml.pre`
family using Python's `regex` module (Debian python3-regex; Unicode classes such as \\p{L}), as
Hugging Face's Split pre-tokenizer does ("isolated": each regex splits every piece further; matches
and the text between them both become pieces). The C++ regex engine (src/text/pretokenize.cpp)
must produce the same pieces. This checks the engine's semantics (leftmost-first alternation,
greedy quantifiers with backtracking, lookaheads, classes, anchors) against an engine we did not
write, also for families with no vocab in ../shared (llama-3, qwen2, gpt-4o, ...).

Usage: twin_pretokenize.py OUT_DIR. Writes OUT_DIR/pretokenize_twin.json:
  {"texts": [...], "splits": {pre: [[end byte offset of each piece] per text]}}
Texts: built-in samples, plus every llama.cpp .inp vector file in ../shared when present.
Without the regex module it writes nothing (the C++ test then skips, saying why).
"""
import json
import os
import sys

try:
    import regex
except ImportError:
    print("twin_pretokenize: python3-regex is not installed; skipped (run scripts/setup)")
    sys.exit(0)

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
          r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
         r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
GPT4O = (r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
         r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
         r"""|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
TEKKEN = (r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
          r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
          r"""|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
DEEPSEEK_LETTERS = (
    r"\s?[A-Za-z"
    "\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
    "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf"
    "\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
    "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4"
    "\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d"
    "\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17"
    "\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+")
DEEPSEEK_PUNCT = r"\s?[!-/:-~" "\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
BLOOM = r" ?[^(\s|.,!?" "\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"

PRE = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
    "gpt-2": [GPT2],
    "llama-bpe": [LLAMA3],
    "qwen2": [QWEN2],
    "gpt-4o": [GPT4O],
    "tekken": [TEKKEN],
    "deepseek-llm": [r"[\r\n]", DEEPSEEK_LETTERS, DEEPSEEK_PUNCT, r"\s+$", CJK, r"\p{N}+"],
    "deepseek-coder": [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
    "deepseek-v3": [r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                    r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"""
                    r"""| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
    "starcoder": [r"\p{N}", GPT2],
    "bloom": [BLOOM],
    "viking": [BLOOM, r"\p{N}"],
}

SAMPLES = [
    "Hello world", " Hello World!", "I'm DON'T you'LL it's", "   leading and trailing   ",
    "tabs\tand\nnewlines\r\n\r\n  \n", "numbers 1 12 123 1234 12345 3.14159 1,000,000",
    "\u4e2d\u6587\u6d4b\u8bd5 \ud55c\uad6d\uc5b4 \u65e5\u672c\u8a9e\u3067\u3059\u3002", "\U0001f999 llama \U0001f60a\U0001f44d",
    "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \u03a9\u2126 \u212a K", "x = a+b*c; if (x >= 10) { return 0; }",
    "\u00a0nbsp\u3000ideographic\u2028line sep", "e\u0301 combining \u0915\u093f \u0e01\u0e34",
    "'s 's' ''' \"quoted\" ---", "\u0410\u0411\u0412 \u043f\u0440\u0438\u0432\u0435\u0442 \u0661\u0662\u0663",
    "UPPER lower MiXeD camelCase snake_case", "/path/to/file.txt\n\n\n", "a\n \n b", " \u2026 \u3002 \uff0c",
]


def texts_collect():
    texts = list(SAMPLES)
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("AIGC_SHARED") or os.path.join(here, "..", "..", "..", "shared")
    base = os.path.join(shared, "tokenizers", "llama.cpp-vocab")
    for d in (base, os.path.join(base, "vectors-without-vocab")):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".inp"):
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    parts = f.read().split("\n__ggml_vocab_test__\n")
                texts.extend(parts[:-1])
    seen = set()
    return [t for t in texts if not (t in seen or seen.add(t))]


def split(patterns, text):
    pieces = [text] if text else []
    for p in patterns:
        rx = regex.compile(p, regex.MULTILINE)  # ^ and $ at line ends, as in Oniguruma's Ruby syntax
        out = []
        for piece in pieces:
            last = 0
            for m in rx.finditer(piece):
                if m.end() == m.start():
                    continue
                if m.start() > last:
                    out.append(piece[last:m.start()])
                out.append(m.group())
                last = m.end()
            if last < len(piece):
                out.append(piece[last:])
        pieces = out
    return pieces


def main():
    out_dir = sys.argv[1]
    texts = texts_collect()
    splits = {}
    for pre, patterns in PRE.items():
        rows = []
        for t in texts:
            ends, pos = [], 0
            for piece in split(patterns, t):
                pos += len(piece.encode("utf-8"))
                ends.append(pos)
            rows.append(ends)
        splits[pre] = rows
    with open(os.path.join(out_dir, "pretokenize_twin.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": texts, "splits": splits}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
