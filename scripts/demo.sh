#!/usr/bin/env bash
# The main demo, on bundled real data (scikit-learn's digits): sets up (the
# project environment .venv, see scripts/setup.sh), builds
# libtinyinfer.so, converts the trained digits MLP and CNN from TFLite,
# quantizes them in every mode, and compares them (python -m tinyinfer
# compare): one table of size, accuracy, latency, memory, CPU and energy per
# mode next to LiteRT's own quantizations. Then the graph-builder example and
# the same model from C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
scripts/build-lib.sh >/dev/null
export OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3
echo "== convert, quantize, compare: the digits models =="
# The table comes from `python -m tinyinfer compare` (docs/monitoring.md): every
# quantization mode of each trained model next to LiteRT's own quantizations of
# it, on the held-out split (accuracy, agreement with float32, latency, memory,
# CPU, energy); with --json and an HTML report with plots in out/.
mkdir -p out
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "
import numpy as np, tinyinfer.datasets as d
x, y = d.load_digits_28x28(); s = np.load('models/digits_split.npz')
np.save('out/digits_test_x.npy', x[s['test']]); np.save('out/digits_test_y.npy', y[s['test']])
np.save('out/digits_calib.npy', x[s['calib']])"
litert=$(python3 -c "import ai_edge_litert" 2>/dev/null && echo yes || true)
for m in mlp cnn; do
  python3 -m tinyinfer convert "models/digits_$m.tflite" -o "out/digits_$m.tinf" >/dev/null
  variants=("float32=out/digits_$m.tinf")
  for mode in fp16 int8-dynamic int8-static int4; do
    calib=()
    [ "$mode" = int8-static ] && calib=(--calib out/digits_calib.npy)
    python3 -m tinyinfer quantize "out/digits_$m.tinf" -o "out/digits_$m.$mode.tinf" --mode "$mode" "${calib[@]}" \
      --no-progress >/dev/null
    variants+=("$mode=out/digits_$m.$mode.tinf")
  done
  if [ -n "$litert" ]; then
    variants+=("LiteRT-float32=models/digits_$m.tflite" "LiteRT-float16=models/digits_$m.float16.tflite"
               "LiteRT-dynamic=models/digits_$m.dynamic.tflite" "LiteRT-int8=models/digits_$m.int8.tflite")
  fi
  echo "-- digits $m (test split: $(python3 -c "import numpy as np; print(len(np.load('out/digits_test_y.npy')))") images)"
  plot=()
  python3 -c "import matplotlib" 2>/dev/null && plot=(--plot "out/compare_$m.html")
  python3 -m tinyinfer compare "${variants[@]}" --data out/digits_test_x.npy --labels out/digits_test_y.npy \
    --json "out/compare_$m.json" "${plot[@]}" 2>&1 | grep -v "XNNPACK delegate"
done
echo
echo "== build a model with the Python graph builder =="
python3 examples/python/build_and_run.py out
cc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude examples/c/run_model.c -Lpython/tinyinfer/lib -ltinyinfer \
  -Wl,-rpath,"$PWD/python/tinyinfer/lib" -o out/run_model
echo
echo "== the quantized digits CNN from C =="
out/run_model out/digits_cnn.int8-static.tinf
