#!/usr/bin/env bash
# Text-generation benchmark: TinyLlama-1.1B-shaped random-weight models in F16, Q8_0, Q4_0 and
# Q4_K_M (llama.cpp's mix, the type most published GGUFs have),
# `aigc bench text` on each with 1 and 2 threads, one markdown table in bench-results/text.md.
#
#   bench/run_text.sh                      # pp512, tg128, 3 repetitions (run on a quiet machine)
#   ARGS="-p 16 -n 8 -r 1" bench/run_text.sh        # a quick check that everything runs
#   THREADS=1,2,4 MODELS_DIR=/data/bench-models bench/run_text.sh
#
# Builds build/ (Release, no benchmarks or tests needed) if build/aigc is missing, makes the models
# with bench/make_tinyllama.py if absent (~2.2 GB F16 + 1.2 GB Q8_0 + 0.6 GB Q4_0 + 0.7 GB
# Q4_K_M). Weights are read into memory (aigc bench's default) so that paged-out file memory is
# never timed.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
MODELS_DIR=${MODELS_DIR:-bench-models}
THREADS=${THREADS:-1,2}
TYPES=${TYPES:-f16 q8_0 q4_0 q4_K_M}
ARGS=${ARGS:-}
OUT=bench-results/text.md

if [ ! -x "$BUILD/aigc" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAIGC_BUILD_BENCH=OFF
  ninja -C "$BUILD" aigc
fi
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "run_text.sh: warning: load average $load: the figures will be noisy" >&2
fi

/usr/bin/python3 bench/make_tinyllama.py "$MODELS_DIR" --aigc "$BUILD/aigc" --types "$(echo $TYPES | tr ' ' ',')" >/dev/null

mkdir -p bench-results
{
  echo "# aigc bench text: TinyLlama-1.1B shape, random weights"
  echo
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%Y-%m-%d), aigc $("$BUILD/aigc" --version | cut -d' ' -f2), threads $THREADS, args: ${ARGS:-defaults (pp512, tg128, 3 repetitions)}"
  echo
} >"$OUT"
first=1
for t in $TYPES; do
  model="$MODELS_DIR/tinyllama-1.1b-random-$t.gguf"
  # shellcheck disable=SC2086
  table=$("$BUILD/aigc" bench text -m "$model" --threads-list "$THREADS" $ARGS --markdown)
  if [ $first = 1 ]; then
    echo "$table" | grep '^|' >>"$OUT"
    first=0
  else
    echo "$table" | grep '^|' | tail -n +3 >>"$OUT"
  fi
  echo "$table" | grep -v '^|' | grep . | sed "s/^/$t: /" >>"$OUT.notes"
done
echo >>"$OUT"
cat "$OUT.notes" >>"$OUT"
rm -f "$OUT.notes"
cat "$OUT"
