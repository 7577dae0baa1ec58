#!/usr/bin/env bash
# Runs the x86-64 library on emulated older CPUs (qemu-x86_64, user mode):
# Haswell (AVX2, FMA, F16C, no AVX-512: the library picks its avx2 level,
# and any AVX-512 instruction reached there is SIGILL) and Nehalem (SSE4.2,
# no AVX: the baseline level). Checks the level each CPU gets
# (tinf_cpu_isa), then runs every model of tests/c/cross_check.py (the
# digits MLP and CNN and their quantizations, a MobileNetV2, a transformer
# encoder block) with tests/c/run_outputs under both CPUs, one and two
# threads, and compares the outputs with this machine's run of the same
# library (float within 1e-5 relative, int8 within one step). Prints
# `N passed, N failed`; exits non-zero on any mismatch.
#
#   scripts/test-qemu-x86.sh                 # the library in python/tinyinfer/lib (built when missing)
#   TINYINFER_LIB=/path/libtinyinfer.so scripts/test-qemu-x86.sh
#   scripts/test-qemu-x86.sh --only mlp      # only the models whose name contains mlp
#
# Installs qemu-user (Debian/Ubuntu) when qemu-x86_64 is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -m)" = x86_64 ] || { echo "test-qemu-x86: runs on x86-64 only" >&2; exit 1; }
lib=${TINYINFER_LIB:-python/tinyinfer/lib/libtinyinfer.so}
if [ ! -f "$lib" ]; then scripts/build-lib.sh >/dev/null; fi
if ! command -v qemu-x86_64 >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing qemu-user" >&2
  $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq qemu-user >&2 || {
    echo "test-qemu-x86: needs qemu-x86_64 (Debian/Ubuntu package qemu-user)" >&2; exit 1; }
fi
out=build-qemu-x86
mkdir -p "$out"
cp "$lib" "$out/libtinyinfer.so"
ln -sfn libtinyinfer.so "$out/libtinyinfer.so.0"
cc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude tests/c/run_outputs.c -L"$out" -ltinyinfer -Wl,-rpath,'$ORIGIN' \
  -o "$out/run_outputs"
printf '#include <stdio.h>\n#include "tinyinfer.h"\nint main(void) { puts(tinf_cpu_isa()); return 0; }\n' >"$out/isa.c"
cc -std=c99 -Iinclude "$out/isa.c" -L"$out" -ltinyinfer -Wl,-rpath,'$ORIGIN' -o "$out/isa"

# name=qemu CPU=the level the library must choose there. Each CPU's runs are
# compared with this machine's run at that level (TINYINFER_ISA): the same
# kernels, so float outputs match closely (between levels they may differ in
# the last bits, which can move a dynamically quantized activation by one
# step).
cpus=("haswell=Haswell=avx2" "nehalem=Nehalem=baseline")
passed=0 failed=0 rc=0
for c in "${cpus[@]}"; do
  IFS== read -r label cpu want <<<"$c"
  got=$(qemu-x86_64 -cpu "$cpu" "$out/isa" 2>/dev/null)
  if [ "$got" = "$want" ]; then
    echo "ok   level on $cpu: $got"; passed=$((passed + 1))
  else
    echo "FAIL level on $cpu: $got, expected $want"; failed=$((failed + 1))
  fi
  set +e
  TINYINFER_ISA=$want TINYINFER_LIB=$(readlink -f "$lib") python3 tests/c/cross_check.py --runner "$out/run_outputs" \
    --work "$out/check-$label" --emulator "$label=qemu-x86_64 -cpu $cpu" "$@" | tee "$out/cross_check-$label.log"
  r=${PIPESTATUS[0]}
  set -e
  read -r p f <<<"$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$out/cross_check-$label.log" | tail -1)"
  # A run that failed without a failed comparison (a crash, nothing run) counts as one.
  [ "$r" = 0 ] || [ "${f:-0}" != 0 ] || f=1
  [ "$r" = 0 ] || rc=1
  passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0}))
done
echo "qemu x86-64: $passed passed, $failed failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
