#!/usr/bin/env bash
# Installs the other GEMM libraries that bench/compare/gemm_libs measures against oneDNN.
# Not part of scripts/setup: installing OpenBLAS switches the system's libblas.so.3, which Debian's
# python3-torch (the test oracle) loads. We switch the alternatives back to the reference BLAS so
# the oracle does not change under the tests; gemm_libs dlopens OpenBLAS and BLIS by path.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq libopenblas-dev libopenblas0-pthread libblis-dev libeigen3-dev
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  ref=$(update-alternatives --list "$alt" 2>/dev/null | grep -E '/blas/|/lapack/' | head -1 || true)
  [ -n "$ref" ] && update-alternatives --set "$alt" "$ref"
done
echo "setup_compare: OpenBLAS, BLIS, Eigen installed; libblas.so.3 left on the reference BLAS"
