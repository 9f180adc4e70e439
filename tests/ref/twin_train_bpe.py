#!/usr/bin/env python3
"""Twin for the byte-level BPE trainer (src/train/bpe_trainer; tests/unit/test_train_text.cpp).

A plain BPE written from the algorithm (Sennrich et al.; GPT-2's byte-level form), recounting all
pairs each round (no incremental bookkeeping, unlike the C++ trainer):
  - the corpus is cut into lines (each keeps its '\\n'), each line split by GPT-2's pre-tokenizer
    regex (the `regex` module), words counted;
  - symbols start as bytes, ids 0..255 (a byte's token text is GPT-2's printable character);
  - each round merges the most frequent adjacent pair; ties go to the smaller (left id, right id);
    the new token's text is the concatenation (an existing text keeps its id); stop when
    vocab_size - 1 tokens exist (one id is left for <|endoftext|>) or the best count is < 2.
Writes OUT_DIR/train_bpe.bin: corpus u8 (the text), vocab_size i32 [1], merges u8 ("a b" lines
joined by '\\n'), n_tokens i32 [1].
"""
import os
import sys

import numpy as np
import regex

import refdump

GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
VOCAB = 420


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def corpus_text():
    words = ["the", "and", "of", "LORD", "God", "said", "unto", "him", "them", "shall", "be", "earth", "heaven",
             "light", "day", "night", "waters", "face", "Spirit", "created", "beginning", "it's", "don't", "they'll"]
    rng = np.random.default_rng(3)
    lines = []
    for i in range(120):
        n = int(rng.integers(3, 12))
        ws = [words[int(j)] for j in rng.integers(0, len(words), n)]
        sep = [", ", " ", " ", "; ", "  "]
        line = ws[0].capitalize()
        for w in ws[1:]:
            line += sep[int(rng.integers(0, len(sep)))] + w
        lines.append(line + (". " + str(int(rng.integers(1, 200))) if i % 7 == 0 else ".") + ("\n\n" if i % 11 == 0 else "\n"))
    return "".join(lines) + "Ünïcödé ☃ naïve café\n"


def train(text, vocab_size):
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    tid = {t: i for i, t in enumerate(tokens)}
    counts = {}
    for line in text.splitlines(keepends=True):
        for w in regex.findall(GPT2_PAT, line):
            counts[w] = counts.get(w, 0) + 1
    words = [[list(w.encode()), c] for w, c in counts.items()]
    merges = []
    while len(tokens) < vocab_size - 1:
        pc = {}
        for sym, c in words:
            for a, b in zip(sym, sym[1:]):
                pc[(a, b)] = pc.get((a, b), 0) + c
        if not pc:
            break
        best = min(pc.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        a, b = best[0]
        text_ab = tokens[a] + tokens[b]
        if text_ab in tid:
            new = tid[text_ab]
        else:
            new = len(tokens)
            tokens.append(text_ab)
            tid[text_ab] = new
        merges.append(tokens[a] + " " + tokens[b])
        for w in words:
            s, out, i = w[0], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            w[0] = out
    return merges, len(tokens) + 1


def main(out_dir):
    text = corpus_text()
    merges, n_tokens = train(text, VOCAB)
    refdump.write(os.path.join(out_dir, "train_bpe.bin"), {
        "corpus": np.frombuffer(text.encode(), dtype=np.uint8),
        "vocab_size": np.array([VOCAB], dtype=np.int32),
        "merges": np.frombuffer("\n".join(merges).encode(), dtype=np.uint8),
        "n_tokens": np.array([n_tokens], dtype=np.int32),
    })


if __name__ == "__main__":
    main(sys.argv[1])
