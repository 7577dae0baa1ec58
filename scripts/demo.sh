#!/usr/bin/env bash
# The main demo: sets up, builds libtinyinfer.so, builds a small MLP and CNN
# with the Python graph builder, runs them from Python and from C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-lib.sh >/dev/null
python3 examples/python/build_and_run.py out
cc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/run_model.c -Lpython/tinyinfer/lib -ltinyinfer \
  -Wl,-rpath,"$PWD/python/tinyinfer/lib" -o out/run_model
echo
echo "== the same MLP from C =="
out/run_model out/mlp.tinf out/mlp_input.bin
