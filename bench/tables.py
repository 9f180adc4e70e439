#!/usr/bin/env python3
"""Markdown tables from the JSON files bench/run_all.sh writes (Google Benchmark's JSON format).

usage: python3 bench/tables.py RESULTS_DIR   (reads probe.md, gemm.json, libs*.json, ops.json)

Benchmark names are "<impl>/<case>/threads:<t>[/real_time]". With --benchmark_repetitions the
median aggregate is used, else the single run.
"""
import json
import pathlib
import sys


def runs_load(path):
    data = json.loads(path.read_text())
    rows = {}
    has_median = any(b.get("aggregate_name") == "median" for b in data["benchmarks"])
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            key = b["run_name"] if "run_name" in b else b["name"]
            rows[key] = {"error": b.get("error_message", "error")}
            continue
        if has_median and b.get("aggregate_name") != "median":
            continue
        if not has_median and b.get("run_type") == "aggregate":
            continue
        rows[b.get("run_name", b["name"])] = b
    return data.get("context", {}), rows


def name_split(name):
    parts = [p for p in name.split("/") if p != "real_time"]
    impl, case = parts[0], "/".join(parts[1:-1])
    threads = int(parts[-1].split(":")[1])
    return impl, case, threads


def cell(b):
    if "error" in b:
        return "ERROR: " + b["error"]
    out = []
    if "GFLOP/s" in b:
        out.append(f"{b['GFLOP/s']:.1f} GFLOP/s ({b.get('%peak', 0):.0f}%)")
    if "GB/s" in b:
        out.append(f"{b['GB/s']:.1f} GB/s ({b.get('%bw', 0):.0f}% bw)")
    if not out:
        out.append(f"{b['real_time']:.3g} {b['time_unit']}")
    return ", ".join(out)


def table_print(title, rows):
    """rows: {name: run}; one line per (impl, threads), one column per case."""
    cases, lines = [], {}
    for name, b in rows.items():
        impl, case, t = name_split(name)
        if case not in cases:
            cases.append(case)
        lines.setdefault((impl, t), {})[case] = b
    print(f"### {title}\n")
    print("| implementation | threads | " + " | ".join(cases) + " |")
    print("|---|--:|" + "--:|" * len(cases))
    for (impl, t), by_case in sorted(lines.items(), key=lambda kv: (kv[0][1], list(lines).index(kv[0]))):
        cells = [cell(by_case[c]) if c in by_case else "" for c in cases]
        print(f"| {impl} | {t} | " + " | ".join(cells) + " |")
    print()


def context_line(ctx):
    keys = ["cpu_model", "physical_cores", "features", "onednn_version", "eigen_version", "openblas_core",
            "openblas_coretype_env", "blis_arch", "load_avg"]
    parts = [f"{k}={ctx[k]}" for k in keys if k in ctx]
    return "Context: " + "; ".join(parts) + "\n" if parts else ""


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = pathlib.Path(sys.argv[1])
    print("## Machine limits (bench_probe)\n")
    probe = d / "probe.md"
    print(probe.read_text() if probe.exists() else "(probe.md missing)\n")
    print("Cells: GFLOP/s (% of the probed peak for that thread count: f32 FMA for f32 inputs, VDPBF16PS "
          "for bf16), and for decode GB/s (% of the probed read bandwidth).\n")
    if (d / "gemm.json").exists():
        ctx, rows = runs_load(d / "gemm.json")
        print(context_line(ctx))
        table_print("GEMM, oneDNN (bench_gemm)", rows)
    libs = sorted(d.glob("libs*.json"))
    if libs:
        merged = {}
        for p in libs:
            ctx, rows = runs_load(p)
            print(context_line(ctx))
            merged.update(rows)  # later files only add OpenBLAS under another OPENBLAS_CORETYPE
        table_print("GEMM across libraries (gemm_libs)", merged)
    if (d / "ops.json").exists():
        ctx, rows = runs_load(d / "ops.json")
        print("Cells: GB/s (% of the probed copy bandwidth; bytes read + written).\n")
        table_print("Memory-bound ops (bench_ops)", rows)


if __name__ == "__main__":
    main()
