#!/usr/bin/env bash
# Recipe of aigc's built-in text model: a Llama-architecture GPT trained from scratch on the King
# James Bible (public domain), as Debian's bible-kjv-text package ships it (read with its `bible`
# program: /usr/lib/bible.data is compressed). scripts/setup installs both packages.
#
#   scripts/train_text_default.sh [OUT_DIR]           # full recipe (STEPS=4000 by default)
#   STEPS=150 scripts/train_text_default.sh /tmp/kjv  # a ~2-minute smoke run: the loss falls
#
# Sizes (2.56M parameters; ~10 MB f32 GGUF): vocab 2048 (byte-level BPE learned from the corpus),
# embedding 192, 4 layers, 6 heads of 32, feed-forward 512, context 128; batch 8 x 128 tokens;
# AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, clip 1.0), peak lr 3e-3 with 5% warm-up
# (at most 200 steps) and cosine decay to 3e-4; seed 1. The last 5% of the text (the end of the
# New Testament) is held out: the command reports its loss and perplexity.
# Resume an interrupted run with RESUME=1 (same OUT_DIR and STEPS).
set -euo pipefail

OUT=${1:-models/kjv}
AIGC=${AIGC:-build/aigc}
STEPS=${STEPS:-4000}
SEED=${SEED:-1}
THREADS=${THREADS:-0}
WARMUP=$(( STEPS / 20 < 200 ? STEPS / 20 : 200 ))
WARMUP=$(( WARMUP < 1 ? 1 : WARMUP ))

command -v bible >/dev/null || { echo "bible (Debian bible-kjv) is missing: run scripts/setup" >&2; exit 1; }
mkdir -p "$OUT"
# One verse per line; the "Ge1:1 " reference is cut off.
bible -f gen1:1-rev22:21 </dev/null | cut -d' ' -f2- > "$OUT/kjv.txt"
echo "corpus: $(wc -c < "$OUT/kjv.txt") bytes, $(wc -l < "$OUT/kjv.txt") verses" >&2

if [ ! -f "$OUT/tokenizer.gguf" ]; then
  "$AIGC" train tokenizer --corpus "$OUT/kjv.txt" --vocab-size 2048 -o "$OUT/tokenizer.gguf"
fi
resume=()
[ "${RESUME:-0}" = 1 ] && resume=(--resume)
start=$(date +%s)
"$AIGC" -t "$THREADS" train text --corpus "$OUT/kjv.txt" --tokenizer "$OUT/tokenizer.gguf" -o "$OUT/kjv.gguf" \
  --embd 192 --layers 4 --heads 6 --ff 512 --batch 8 --ctx 128 \
  --steps "$STEPS" --lr 3e-3 --min-lr 3e-4 --warmup "$WARMUP" --weight-decay 0.1 --clip 1.0 --seed "$SEED" \
  --val-fraction 0.05 --eval-every $(( STEPS / 10 > 0 ? STEPS / 10 : 1 )) --eval-batches 16 --save-every 500 \
  "${resume[@]}"
echo "trained in $(( $(date +%s) - start )) s; try: $AIGC text -m $OUT/kjv.gguf -p 'And God said'" >&2
# The shipped model (models/kjv.gguf) is this checkpoint quantised to Q8_0 (2.8 MB):
"$AIGC" quantize "$OUT/kjv.gguf" "$OUT/kjv-q8_0.gguf" --type q8_0
echo "built-in model candidate: $OUT/kjv-q8_0.gguf (copy to models/kjv.gguf)" >&2
