#!/usr/bin/env bash
# Builds and runs every benchmark, then prints the markdown tables for docs/dependencies.md.
# Run it on a quiet machine (nothing else compiling or running); it warns when the load is high.
#
#   bench/run_all.sh                     # threads 1,2; results in bench-results/
#   THREADS=1,2,8 MIN_TIME=0.5 OUT=/tmp/r bench/run_all.sh
#
# Each binary takes under two minutes at the defaults (MIN_TIME=0.3 s per case).
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${THREADS:-1,2}"
min_time="${MIN_TIME:-0.3}"
out="${OUT:-bench-results}"
build="${BUILD_DIR:-build-bench}"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAIGC_BUILD_TESTS=OFF -DAIGC_BUILD_BENCH=ON >/dev/null
ninja -C "$build" ${NINJA_FLAGS:-}

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "run_all: WARNING: load average $load; the numbers will be low and noisy" >&2
fi

mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.md
physical=$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)
common=(--threads="$threads" --benchmark_min_time="$min_time" --benchmark_out_format=json)

echo "== bench_probe" >&2
"$build/bench_probe" --markdown --threads="1,$threads,$physical" | tee "$out/probe.md"
echo "== bench_gemm" >&2
"$build/bench_gemm" "${common[@]}" --benchmark_out="$out/gemm.json"
echo "== bench_ops" >&2
"$build/bench_ops" "${common[@]}" --benchmark_out="$out/ops.json"
if [ -x "$build/gemm_libs" ]; then
  echo "== gemm_libs (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}, as the environment has it)" >&2
  "$build/gemm_libs" "${common[@]}" --benchmark_out="$out/libs.json"
  if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    # OpenBLAS reads the variable when it loads: a second process, OpenBLAS only, variable removed.
    echo "== gemm_libs, OpenBLAS with OPENBLAS_CORETYPE unset" >&2
    "$build/gemm_libs" "${common[@]}" --openblas_coretype=unset --benchmark_filter='^openblas' \
      --benchmark_out="$out/libs_openblas_unset.json"
  fi
else
  echo "run_all: gemm_libs not built (needs libeigen3-dev; OpenBLAS/BLIS optional)" >&2
fi

/usr/bin/python3 bench/tables.py "$out" > "$out/tables.md"
cat "$out/tables.md"
echo "run_all: tables in $out/tables.md" >&2
