"""Runs a PyTorch bench script once per thread count, each in a child process, for
bench/train_gpt_torch.py and bench/train_unet_torch.py.

BLAS: Debian's torch does its f32 GEMMs through libblas.so.3, i.e. whichever BLAS the Debian
alternative selects (the netlib reference BLAS is ~50x slower than OpenBLAS). Each child runs with
OpenBLAS first on the library path when it is installed (blas="system" keeps the alternative) and
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to its thread count.
"""
import argparse
import os
import subprocess
import sys

import torch

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def common_args_add(ap):
    """The options every bench twin has: timed steps, thread counts, BLAS, and the child marker."""
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads-list", default="1,2")
    ap.add_argument("--blas", choices=["openblas", "system"], default="openblas")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)


def children_run(script, argv, threads_list, blas_choice, header):
    """Prints `header`, then runs `script argv --threads-list N --child 1` for each N, then a footer."""
    print(header, flush=True)
    blas = "system libblas"
    for nt in [int(t) for t in threads_list.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(nt), OPENBLAS_NUM_THREADS=str(nt))
        if blas_choice == "openblas" and os.path.exists(os.path.join(OPENBLAS_DIR, "libblas.so.3")):
            env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + ":" + env.get("LD_LIBRARY_PATH", "")
            blas = "OpenBLAS"
        subprocess.run([sys.executable, os.path.abspath(script), *argv, "--threads-list", str(nt), "--child", "1"],
                       env=env, check=True)
    print(f"(torch {torch.__version__}, GEMM via {blas})")
