#!/usr/bin/env bash
# The main demo, on bundled real data (scikit-learn's digits): sets up (the
# project environment .venv, see scripts/setup.sh), builds
# libtinyinfer.so, converts the trained digits MLP and CNN from TFLite,
# quantizes them in every mode, runs them, and prints one table of size,
# accuracy and latency per mode next to LiteRT's own quantizations. Then the
# graph-builder example and the same model from C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
scripts/build-lib.sh >/dev/null
export OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3
echo "== convert, quantize, run: the digits models =="
python3 examples/python/quantize_demo.py --out out 2>&1 | grep -v "XNNPACK delegate"
echo
echo "== build a model with the Python graph builder =="
python3 examples/python/build_and_run.py out
cc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/run_model.c -Lpython/tinyinfer/lib -ltinyinfer \
  -Wl,-rpath,"$PWD/python/tinyinfer/lib" -o out/run_model
echo
echo "== the quantized digits CNN from C =="
out/run_model out/digits_cnn.int8-static.tinf
