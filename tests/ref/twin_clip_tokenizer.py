#!/usr/bin/env python3
"""CLIP tokenizer twin: OpenAI CLIP's simple_tokenizer.py algorithm, written here from its published
description (github.com/openai/CLIP, clip/simple_tokenizer.py), run on CLIP's own merges file
(../shared/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz) with Python's `regex` module. The C++
tokenizer (src/image/clip_tokenizer.cpp) must give the same ids.

Algorithm (CLIP):
  basic_clean(t)      = html.unescape(html.unescape(ftfy.fix_text(t))).strip()
  whitespace_clean(t) = re.sub(r'\\s+', ' ', t).strip()
  text = whitespace_clean(basic_clean(t)).lower(); pieces = re.findall(PAT, text) (IGNORECASE)
  each piece: UTF-8 bytes -> bytes_to_unicode chars, last char + '</w>', BPE by merge rank.
  vocab = byte chars + same with '</w>' + joined merges[1:49152-256-2+1] + the two special tokens.
ftfy is not installed here: we stand in for fix_text with its NFC step only (unicodedata), as the
C++ side does; the two differ from real CLIP only on mojibake/typographic text ftfy would repair.

Also written (same directory):
  - clip_hf/vocab.json + clip_hf/merges.txt: a Hugging Face-layout tokenizer from the first 4000
    merges (ids in CLIP order, as diffusers' tokenizer/vocab.json has them), and the ids of every
    text under it, to test the HF loading path;
  - A1111 prompt weighting (modules/prompt_parser.py parse_prompt_attention) and the 75-token
    chunking with the comma rule (modules/sd_hijack_clip.py), written from their published
    algorithm, on prompts that avoid BREAK inside brackets (where aigc differs on purpose).

Usage: twin_clip_tokenizer.py OUT_DIR. Writes OUT_DIR/clip_tokenizer_twin.json and OUT_DIR/clip_hf/.
Without ../shared (or $AIGC_SHARED) only the prompt-weight and html.unescape cases are written;
without the regex module nothing (the C++ tests then skip, saying why).
"""
import gzip
import html
import html.entities
import json
import os
import re as std_re
import sys
import unicodedata

try:
    import regex
except ImportError:
    print("twin_clip_tokenizer: python3-regex is not installed; skipped (run scripts/setup)")
    sys.exit(0)

MERGES_MAX = 49152 - 256 - 2


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


PAT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                    regex.IGNORECASE)


def clean(text):
    text = unicodedata.normalize("NFC", text)  # ftfy.fix_text's normalisation step
    text = html.unescape(html.unescape(text)).strip()
    text = regex.sub(r"\s+", " ", text).strip()
    return text.lower()


class Clip:
    def __init__(self, vocab, merges):
        self.byte_encoder = bytes_to_unicode()
        self.encoder = {t: i for i, t in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.special = {"<|startoftext|>", "<|endoftext|>"}

    def bpe(self, token):
        if token in self.special:
            return [token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        ids = []
        for piece in PAT.findall(clean(text)):
            chars = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder.get(t, self.encoder["<|endoftext|>"]) for t in self.bpe(chars))
        return ids


def clip_vocab(merges):
    chars = list(bytes_to_unicode().values())
    return chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]


# ---- A1111 prompt weighting and chunking ---------------------------------------------------------

RE_ATTENTION = std_re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""", std_re.X)
RE_BREAK = std_re.compile(r"\s*\bBREAK\b\s*", std_re.S)


def parse_prompt_attention(text):
    res, round_b, square_b = [], [], []

    def multiply(start, m):
        for p in range(start, len(res)):
            res[p][1] *= m

    for m in RE_ATTENTION.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            round_b.append(len(res))
        elif tok == "[":
            square_b.append(len(res))
        elif weight is not None and round_b:
            multiply(round_b.pop(), float(weight))
        elif tok == ")" and round_b:
            multiply(round_b.pop(), 1.1)
        elif tok == "]" and square_b:
            multiply(square_b.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(RE_BREAK.split(tok)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_b:
        multiply(pos, 1.1)
    for pos in square_b:
        multiply(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


def tokenize_for_sd(clip, prompt, pad, backtrack):
    bos, eos = clip.encoder["<|startoftext|>"], clip.encoder["<|endoftext|>"]
    comma = clip.encoder.get(",</w>")
    chunks, toks, mults = [], [], []
    last_comma = -1

    def close():
        nonlocal toks, mults, last_comma
        ids = [bos] + toks + [eos] + [eos] * (75 - len(toks))
        ws = [1.0] + mults + [1.0] + [1.0] * (75 - len(toks))
        if pad != eos:
            k = ids.index(eos)
            ids = ids[:k + 1] + [pad] * (len(ids) - k - 1)
        chunks.append((ids, ws))
        toks, mults, last_comma = [], [], -1

    for text, weight in parse_prompt_attention(prompt):
        if text == "BREAK" and weight == -1:
            close()
            continue
        for t in clip.encode(text):
            if t == comma:
                last_comma = len(toks)
            elif backtrack and len(toks) == 75 and last_comma != -1 and len(toks) - last_comma <= backtrack:
                cut = last_comma + 1
                rt, rm = toks[cut:], mults[cut:]
                toks, mults = toks[:cut], mults[:cut]
                close()
                toks, mults = rt, rm
            if len(toks) == 75:
                close()
            toks.append(t)
            mults.append(weight)
    if toks or not chunks:
        close()
    return chunks


# ---- inputs --------------------------------------------------------------------------------------

WORDS = ("a portrait of an old sailor with a white beard standing on the deck of a wooden ship during a storm "
         "dramatic lighting volumetric clouds crashing waves oil painting by rembrandt and turner highly "
         "detailed intricate textures warm colors cinematic composition golden hour rim light bokeh").split()
LONG = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(200))
LONG_COMMAS = ", ".join(" ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(1 + i % 4)) for i in range(70))

TEXTS = [
    "a photo of a cat",
    "A photograph of an astronaut riding a horse",
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, outdoors, sky, cloud",
    "portrait of a woman, highly detailed, digital painting, artstation, concept art, smooth, sharp focus, "
    "illustration, art by greg rutkowski and alphonse mucha",
    "8k, RAW photo, high detailed skin, dslr, soft lighting, film grain, Fujifilm XT3",
    "It's a dog's life, isn't it? We'll see; they've gone, I'm here, you'd know.",
    "IT'S LOUD!!! ... ?!? --- *** ~~~ @#$%^&*()_+=[]{}|\\:;\"<>,./",
    "numbers 1 12 123 2024 3.14159 1,000,000 4k 8k uhd 1920x1080",
    "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m cr\u00e8me br\u00fbl\u00e9e fa\u00e7ade",
    "e\u0301 combining acute and precomposed \u00e9",
    "\u6771\u4eac\u306e\u591c\u666f\u3001\u30cd\u30aa\u30f3\u3001\u96e8",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 \uadf8\ub9ac\uace0 \u4e2d\u6587",
    "\U0001f431 cat emoji \U0001f680\U0001f315 and \U0001f44d\U0001f3fd",
    "multiple     spaces\t\ttabs\n\nnewlines   ",
    "   leading and trailing   ",
    "fish &amp; chips &lt;tag&gt; &quot;quoted&quot; &#39;apos&#39; &#x263A; &amp;amp; &copy 2024 &eacute;t&eacute;",
    "\u039f\u0394\u039f\u03a3 \u03a3 \u03a3\u0391\u03a3 \u0130stanbul",
    "<|startoftext|>hello<|endoftext|> world <|STARTOFTEXT|>",
    "(masterpiece), [blurry], (red:1.3) cat",
    "",
    "   ",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u0661\u0662\u0663",
    "hyphen-ated words, snake_case and camelCase, e-mail@example.com, https://example.com/path?q=1",
    "\u201ccurly quotes\u201d \u2018single\u2019 \u2014 em dash \u2026 ellipsis",
    "\ufb01ne ligature \uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28",
    "x'\u017f it'S DON'T",
    "a\u00a0nbsp\u3000ideographic\u2028sep\x1fctl\x1c",
    "a\x07b\x00c",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    LONG,
]

SD_CASES = [
    ("a photo of a cat", -1, 20),
    ("a photo of a cat", 0, 20),
    ("a (red:1.3) cat, [blurry], ((masterpiece)), (((sky))), [[dim]]", -1, 20),
    ("an (important) word \\(literal\\) (unbalanced", 0, 20),
    ("first part BREAK second part, with a comma BREAK third", -1, 20),
    ("BREAK starts with a break", -1, 20),
    ("", -1, 20),
    ("", 0, 20),
    (LONG, -1, 20),
    (LONG, 0, 0),
    (LONG_COMMAS, -1, 20),
    (LONG_COMMAS, -1, 0),
    (LONG_COMMAS, 0, 5),
    ("(" + LONG_COMMAS + ":0.8), end", -1, 20),
]

PARSE_CASES = [
    "normal text", "an (important) word", "(unbalanced", "\\(literal\\]", "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "[[a]] b] c) (d:-0.5) (e: 2 ) (f:.5) (g:3.) :x (h:1e3) \\\\ lone\\back (i:+2)",
    "a BREAK b BREAKfast BREAK", "x:1.5) y", "((a) [b (c:2)] d)",
]


def unescape_cases():
    cases = []
    for name in html.entities.html5:
        if not name.endswith(";"):  # the legacy names: with and without ';', and with a suffix
            cases += [f"&{name};", f"&{name}", f"&{name}xyz"]
    for name in ("apos", "hellip", "mdash", "ndash", "lsquo", "rsquo", "ldquo", "rdquo", "sbquo", "bdquo",
                 "bull", "trade", "euro", "hearts", "larr", "rarr", "uarr", "darr", "harr", "infin", "ne", "le",
                 "ge", "minus", "prime", "Prime", "star", "dagger"):
        cases.append(f"a&{name};b")
    cases += ["&#0;", "&#13;", "&#128;", "&#x80;", "&#x9f;", "&#xD800;", "&#1114112;", "&#99999999999999999999;",
              "&#1;", "&#xFFFE;", "&#x10FFFF;", "&#65", "&#x41", "&#x;", "&#;", "&", "&&amp;", "& amp;", "&#233;&#xe9;",
              "&unknown;", "&amp;amp;", "&AMP", "x&lt y", "&copy2024", "&\u00e9;", "&" + "a" * 40 + ";"]
    return cases


def main():
    out_dir = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("AIGC_SHARED") or os.path.join(here, "..", "..", "..", "shared")
    path = os.path.join(shared, "tokenizers", "clip", "bpe_simple_vocab_16e6.txt.gz")
    # Prompt weights and html.unescape need no vocabulary: always written.
    out = {
        "unescape": [[s, html.unescape(s)] for s in unescape_cases()],
        "parse": [[p, parse_prompt_attention(p)] for p in PARSE_CASES],
    }
    if os.path.exists(path):
        lines = gzip.open(path).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1:MERGES_MAX + 1]]
        clip = Clip(clip_vocab(merges), merges)

        # HF layout from the first 4000 merges.
        small_merges = merges[:4000]
        small_vocab = clip_vocab(small_merges)
        hf_dir = os.path.join(out_dir, "clip_hf")
        os.makedirs(hf_dir, exist_ok=True)
        with open(os.path.join(hf_dir, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(small_vocab)}, f, ensure_ascii=False)
        with open(os.path.join(hf_dir, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in small_merges))
        small = Clip(small_vocab, small_merges)

        out.update({
            "anchors": {"<|startoftext|>": clip.encoder["<|startoftext|>"],
                        "<|endoftext|>": clip.encoder["<|endoftext|>"], "vocab_size": len(clip.encoder)},
            "texts": TEXTS,
            "cleaned": [clean(t) for t in TEXTS],
            "ids": [clip.encode(t) for t in TEXTS],
            "hf_ids": [small.encode(t) for t in TEXTS],
            "sd": [{"prompt": p, "pad": pad, "comma_backtrack": bt,
                    "chunks": [{"ids": ids, "weights": ws} for ids, ws in
                               tokenize_for_sd(clip, p, clip.encoder["<|endoftext|>"] if pad < 0 else pad, bt)]}
                   for p, pad, bt in SD_CASES],
        })
    else:
        print(f"twin_clip_tokenizer: {path} not found; CLIP token ids skipped")
    with open(os.path.join(out_dir, "clip_tokenizer_twin.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
