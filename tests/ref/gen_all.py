#!/usr/bin/env python3
"""Runs every PyTorch twin (tests/ref/twin_*.py) so the C++ tests find their reference dumps.

Usage: /usr/bin/python3 tests/ref/gen_all.py --out build/ref
Each twin is called as `twin_X.py OUT_DIR` and writes OUT_DIR/<name>.bin files (see refdump.py).
"""
import argparse
import glob
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=here)
failed = 0
for twin in sorted(glob.glob(os.path.join(here, "twin_*.py"))):
    t0 = time.time()
    r = subprocess.run([sys.executable, twin, args.out], env=env)
    print(f"{os.path.basename(twin)}: {'ok' if r.returncode == 0 else 'FAILED'} ({time.time() - t0:.1f} s)")
    failed += r.returncode != 0
sys.exit(1 if failed else 0)
