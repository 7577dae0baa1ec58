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
# its default test list, on the fuzzing build: the same sanitizers plus
# coverage, so one sanitized build serves both), and a short fuzz run of
# every harness (scripts/fuzz.sh 12, about 90 s). The ARM and sanitized
# builds run in the background while the kernel tests, the wheel and the
# qemu x86-64 runs go on. Each stage's header shows the seconds since the
# start; the qemu, consumer and sanitizer stages have time limits (a hang
# fails with the end of its log instead of stalling the job). About 40 min
# on a 2-core machine with the packages in the pip cache.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
tmp=$(mktemp -d)
bg=""
# On any exit: stop the background builds (their own process group), drop the temporary folder.
trap 'for p in $bg; do kill -- -"$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
# Each stage's header shows the seconds since the start (set-up included),
# so a slow stage shows in the log.
stage() { echo "== $* == [${SECONDS}s]"; }
# logged SECONDS NAME CMD...: runs CMD with its output in $tmp/NAME.log and
# shows the log's last line; a failure, or no end within SECONDS (a hang),
# shows the log's last 40 lines and stops the job.
logged() {
  local limit=$1 name=$2 rc=0
  shift 2
  timeout --kill-after=10 "$limit" "$@" >"$tmp/$name.log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 40 "$tmp/$name.log" >&2
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "$name: did not end within $limit s" >&2; else echo "$name: exit $rc" >&2; fi
    exit 1
  fi
  tail -n 1 "$tmp/$name.log"
}
stage "build libtinyinfer.so (Embedded Swift; kernels per CPU level, chosen at run time)"
scripts/build-lib.sh >/dev/null
scripts/check-exports.sh
scripts/check-mcu.sh
stage "swift test (XCTest)"
swift test --disable-swift-testing 2>&1 | tail -n 3
# The builds the later stages need (the aarch64 and armv7 libraries, the
# library with ASan + UBSan and coverage) run in the background meanwhile:
# each is mostly one compiler process, and the stages in between (the kernel
# tests, the wheel, qemu x86-64) mostly one Python process, so the two
# cores share the work. Outputs only are checked there, never times.
stage "background: the aarch64, armv7 and sanitized builds (logs: background-*.log)"
arm=0
[ "$(uname -m)" = x86_64 ] && arm=1
# Two lanes: the ARM libraries one after the other, and the sanitized
# build; each its own process group (setsid), stopped on any exit.
lanes=()
bgs=()
lane() {  # lane NAME SCRIPT: SCRIPT in the background, its output in $tmp/background-NAME.log
  setsid bash -c "set -euo pipefail; $2" >"$tmp/background-$1.log" 2>&1 &
  lanes+=("$1")
  bgs+=($!)
}
if [ $arm = 1 ]; then
  lane arm 'timeout 1500 scripts/build-aarch64.sh aarch64 >/dev/null
    timeout 1500 scripts/build-aarch64.sh armv7 >/dev/null
    echo "aarch64 and armv7 libraries built"'
fi
lane sanitized 'TINF_SANITIZE_NO_VENV=1 timeout 1800 scripts/sanitize.sh fuzz --build-only >/dev/null
  echo "sanitized library built"'
bg="${bgs[*]}"
# On a CPU with AMX the detected level's int8 GEMM runs its blocks of 16 rows on the tiles, and with
# AVX-512 VBMI the int8 table lookup runs on vpermt2b; the AVX-512 level's other paths (vpdpbusd tiles,
# the vpermt2w lookup) then run the same kernel tests with both turned off (TINYINFER_AMX=0,
# TINYINFER_VBMI=0: the level "avx512-plain" below).
levels="baseline avx2"
if grep -qwE 'amx_int8|avx512vbmi' /proc/cpuinfo 2>/dev/null; then levels="$levels avx512-plain"; fi
for level in $levels; do
  stage "pytest: kernels (float, int8, hybrid) at the forced $level level (TINYINFER_ISA)"
  plain=$([ "$level" = avx512-plain ] && echo 0 || echo 1)
  TINYINFER_ISA=${level%-plain} TINYINFER_AMX=$plain TINYINFER_VBMI=$plain python3 -m pytest -q -p no:cacheprovider \
    python/tests/test_ops_math.py python/tests/test_ops_spatial.py python/tests/test_ops_movement.py \
    python/tests/test_ops_int8.py python/tests/test_quantize.py::test_hybrid_kernel_matches_the_documented_math \
    python/tests/test_ops_runtime_data.py python/tests/test_ops_transcendental.py python/tests/test_ops_int8_prelu.py \
    python/tests/test_ops_int8_linear.py \
    python/tests/test_rnn.py::test_lstm_op_vs_numpy python/tests/test_rnn.py::test_gru_op_vs_numpy | tail -n 1
done
stage "pip install ./python (into a temporary folder) and import it"
python3 -m pip install -q --no-deps --no-build-isolation --target "$tmp/site" ./python
(cd "$tmp" && PYTHONPATH="$tmp/site" python3 -c "import tinyinfer, sys; assert tinyinfer._lib.lib_path.startswith('$tmp'); print('installed', tinyinfer.__version__, 'with', len(tinyinfer.OPS), 'ops')")
rm -rf python/build python/*.egg-info
stage "wheel of the library (scripts/build-wheel.sh): manylinux, installs and runs without Swift"
if ! wheel=$(scripts/build-wheel.sh --lib python/tinyinfer/lib/libtinyinfer.so --out "$tmp/dist" 2>"$tmp/wheel.log"); then
  cat "$tmp/wheel.log" >&2
  exit 1
fi
grep -E "^installed .* from the wheel" "$tmp/wheel.log"
echo "$(basename "$wheel") ($(stat -c %s "$wheel") bytes)"
stage "a Swift package that depends on tinyinfer by version (no unsafe flags)"
logged 900 swift-consumer scripts/test-swift-consumer.sh
if [ $arm = 1 ]; then
  stage "the library on older x86-64 CPUs under qemu (Haswell: avx2 level, Nehalem: baseline)"
  logged 900 qemu-x86 scripts/test-qemu-x86.sh
fi
stage "waiting for the background builds"
for i in "${!bgs[@]}"; do
  lane_rc=0
  wait "${bgs[$i]}" || lane_rc=$?
  if [ "$lane_rc" != 0 ]; then
    tail -n 40 "$tmp/background-${lanes[$i]}.log" >&2
    echo "background builds (${lanes[$i]}): exit $lane_rc" >&2
    exit 1
  fi
  tail -n 1 "$tmp/background-${lanes[$i]}.log"
done
bg=""
if [ $arm = 1 ]; then
  stage "the aarch64 and armv7 Linux builds under qemu, against this machine's outputs"
  TINF_ARM_NO_BUILD=1 logged 900 aarch64 scripts/test-aarch64.sh
  TINF_ARM_NO_BUILD=1 logged 900 armv7 scripts/test-aarch64.sh armv7
  stage "the aarch64 wheel installed and run by Debian's arm64 Python under qemu (digits models, every precision)"
  wmodels=$(mktemp -d -p "$tmp")
  for m in models/digits_*.tflite; do
    PYTHONPATH=python python3 -m tinyinfer convert "$m" -o "$wmodels/$(basename "$m" .tflite).tinf" >/dev/null
  done
  logged 900 aarch64-wheel scripts/test-aarch64-wheel.sh "$wmodels"/*.tinf
fi
stage "pytest"
python3 -m pytest python/tests -q -p no:cacheprovider
stage "ASan + UBSan: loader, C API, session, reliability, kernel tests on the sanitized library (scripts/sanitize.sh asan, on the fuzzing build)"
# Any sanitizer report fails the run (halt_on_error); the log's end is shown then.
TINF_SANITIZE_FUZZ_BUILD=1 TINF_SANITIZE_NO_VENV=1 logged 1200 asan scripts/sanitize.sh asan
stage "fuzz every harness for 12 s (scripts/fuzz.sh: loader under ASan+UBSan, converters, calibration)"
TINF_FUZZ_NO_VENV=1 scripts/fuzz.sh 12
echo "== all stages passed == [${SECONDS}s]"
