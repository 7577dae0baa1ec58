#!/usr/bin/env bash
# Runs every test: sets up (scripts/setup.sh: Debian packages, the project
# environment .venv), builds the shipped (Embedded) library and checks its
# exports, runs XCTest (normal-mode build), the kernel tests at forced CPU levels,
# the Python package built from source and as a manylinux wheel (installed and
# run without Swift), and pytest (kernels against numpy, C ABI, C programs,
# the C install with pkg-config, concurrency), a Swift package depending on
# this one by version, and under qemu: the library on older x86-64 CPUs
# (scripts/test-qemu-x86.sh) and the aarch64 and armv7 builds
# (scripts/test-aarch64.sh) and the aarch64 wheel with arm64 Python
# (scripts/test-aarch64-wheel.sh), then the Python suite's loader, C API,
# session, reliability, concurrency, kernel, quantization and C-program
# tests on the library built with ASan + UBSan (scripts/sanitize.sh asan,
# its default test list: about 1.5 min plus the sanitized build), and a
# short fuzz run of every harness (scripts/fuzz.sh 12, about 90 s plus the
# instrumented build).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
echo "== build libtinyinfer.so (Embedded Swift; kernels per CPU level, chosen at run time) =="
scripts/build-lib.sh >/dev/null
scripts/check-exports.sh
scripts/check-mcu.sh
echo "== swift test (XCTest) =="
swift test --disable-swift-testing 2>&1 | tail -n 3
# On a CPU with AMX the detected level's int8 GEMM runs its blocks of 16 rows on the tiles, and with
# AVX-512 VBMI the int8 table lookup runs on vpermt2b; the AVX-512 level's other paths (vpdpbusd tiles,
# the vpermt2w lookup) then run the same kernel tests with both turned off (TINYINFER_AMX=0,
# TINYINFER_VBMI=0: the level "avx512-plain" below).
levels="baseline avx2"
if grep -qwE 'amx_int8|avx512vbmi' /proc/cpuinfo 2>/dev/null; then levels="$levels avx512-plain"; fi
for level in $levels; do
  echo "== pytest: kernels (float, int8, hybrid) at the forced $level level (TINYINFER_ISA) =="
  plain=$([ "$level" = avx512-plain ] && echo 0 || echo 1)
  TINYINFER_ISA=${level%-plain} TINYINFER_AMX=$plain TINYINFER_VBMI=$plain python3 -m pytest -q -p no:cacheprovider \
    python/tests/test_ops_math.py python/tests/test_ops_spatial.py python/tests/test_ops_movement.py \
    python/tests/test_ops_int8.py python/tests/test_quantize.py::test_hybrid_kernel_matches_the_documented_math \
    python/tests/test_ops_runtime_data.py python/tests/test_ops_transcendental.py python/tests/test_ops_int8_prelu.py \
    python/tests/test_ops_int8_linear.py \
    python/tests/test_rnn.py::test_lstm_op_vs_numpy python/tests/test_rnn.py::test_gru_op_vs_numpy | tail -n 1
done
echo "== pip install ./python (into a temporary folder) and import it =="
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip install -q --no-deps --no-build-isolation --target "$tmp/site" ./python
(cd "$tmp" && PYTHONPATH="$tmp/site" python3 -c "import tinyinfer, sys; assert tinyinfer._lib.lib_path.startswith('$tmp'); print('installed', tinyinfer.__version__, 'with', len(tinyinfer.OPS), 'ops')")
rm -rf python/build python/*.egg-info
echo "== wheel of the library (scripts/build-wheel.sh): manylinux, installs and runs without Swift =="
if ! wheel=$(scripts/build-wheel.sh --lib python/tinyinfer/lib/libtinyinfer.so --out "$tmp/dist" 2>"$tmp/wheel.log"); then
  cat "$tmp/wheel.log" >&2
  exit 1
fi
grep -E "^installed .* from the wheel" "$tmp/wheel.log"
echo "$(basename "$wheel") ($(stat -c %s "$wheel") bytes)"
echo "== a Swift package that depends on tinyinfer by version (no unsafe flags) =="
scripts/test-swift-consumer.sh 2>&1 | tail -n 1
if [ "$(uname -m)" = x86_64 ]; then
  echo "== the library on older x86-64 CPUs under qemu (Haswell: avx2 level, Nehalem: baseline) =="
  scripts/test-qemu-x86.sh | tail -n 1
  echo "== the aarch64 and armv7 Linux builds under qemu, against this machine's outputs =="
  scripts/test-aarch64.sh | tail -n 1
  scripts/test-aarch64.sh armv7 | tail -n 1
  echo "== the aarch64 wheel installed and run by Debian's arm64 Python under qemu (digits models, every precision) =="
  wmodels=$(mktemp -d)
  for m in models/digits_*.tflite; do
    PYTHONPATH=python python3 -m tinyinfer convert "$m" -o "$wmodels/$(basename "$m" .tflite).tinf" >/dev/null
  done
  scripts/test-aarch64-wheel.sh "$wmodels"/*.tinf 2>&1 | tail -n 1
  rm -rf "$wmodels"
fi
echo "== pytest =="
python3 -m pytest python/tests -q -p no:cacheprovider
echo "== ASan + UBSan: loader, C API, session, reliability, kernel tests on the sanitized library (scripts/sanitize.sh asan) =="
# Any sanitizer report fails the run (halt_on_error); the log's end is shown then.
if ! TINF_SANITIZE_NO_VENV=1 scripts/sanitize.sh asan >"$tmp/asan.log" 2>&1; then
  tail -n 80 "$tmp/asan.log" >&2
  exit 1
fi
tail -n 1 "$tmp/asan.log"
echo "== fuzz every harness for 12 s (scripts/fuzz.sh: loader under ASan+UBSan, converters, calibration) =="
TINF_FUZZ_NO_VENV=1 scripts/fuzz.sh 12
