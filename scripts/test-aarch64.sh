#!/usr/bin/env bash
# Tests the aarch64 (ARM64) Linux library under qemu-aarch64: builds it
# (scripts/build-aarch64.sh), cross-compiles tests/c/run_outputs.c against
# it, checks the library's ELF type, SONAME, needed libraries and exports,
# makes the models with this machine's library (the digits MLP and CNN from
# models/*.tflite, LiteRT's and tinyinfer's quantizations of them, a
# MobileNetV2 and a transformer encoder block with seeded weights), runs
# each under qemu with one and two threads, on an emulated CPU with the dot
# product instructions (the SDOT path of the int8 GEMM) and on a plain
# Armv8.0 one, and compares the outputs with the native library's
# (tests/c/cross_check.py: float within 1e-5 relative, int8 within one
# step). Prints `N passed, N failed`; exits non-zero on any mismatch.
#
#   scripts/test-aarch64.sh                 # build, then test
#   TINF_ARM_NO_BUILD=1 scripts/test-aarch64.sh   # test the existing build-aarch64/
#   scripts/test-aarch64.sh armv7           # the same for the 32-bit ARMv7 build (qemu-arm)
#   scripts/test-aarch64.sh --only mlp      # only the models whose name contains mlp
#
# The native reference library is python/tinyinfer/lib/libtinyinfer.so (or
# TINYINFER_LIB); it is built with scripts/build-lib.sh when missing.
# Installs qemu-user (Debian/Ubuntu) when qemu-aarch64 / qemu-arm is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=aarch64
case ${1:-} in aarch64|armv7) arch=$1; shift ;; esac
out=build-$arch
if [ $arch = aarch64 ]; then
  cross=aarch64-linux-gnu qemu=qemu-aarch64 elf='ELF64 DYN AArch64' loader=ld-linux-aarch64.so.1
  # Every run on two CPUs: one with the dot product instructions (the int8
  # GEMM takes its SDOT path) and a plain Armv8.0 one (the portable path).
  cpus=("dotprod=max" "armv8.0=cortex-a53")
else
  cross=arm-linux-gnueabihf qemu=qemu-arm elf='ELF32 DYN ARM' loader=ld-linux-armhf.so.3
  cpus=("cortex-a7=cortex-a7")  # Raspberry Pi 2's core: ARMv7-A, NEON, VFPv4
  # The float kernels do not fuse multiply-adds there (LLVM keeps ARMv7
  # float vectors unfused): the reference is this machine's baseline level,
  # which does not either (a last-bit difference upstream can move a
  # dynamically quantized activation by one step).
  ref_isa=baseline
fi

if [ "${TINF_ARM_NO_BUILD:-0}" != 1 ] || [ ! -f "$out/libtinyinfer.so" ]; then
  TINF_ARM_OUT=$out scripts/build-aarch64.sh $arch >/dev/null
fi
if ! command -v $qemu >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing qemu-user" >&2
  $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq qemu-user >&2 || {
    echo "test-aarch64: needs $qemu (Debian/Ubuntu package qemu-user)" >&2; exit 1; }
fi
if [ -z "${TINYINFER_LIB:-}" ] && [ ! -f python/tinyinfer/lib/libtinyinfer.so ]; then
  scripts/build-lib.sh >/dev/null
fi

for prog in run_outputs abi_smoke; do
  $cross-gcc -std=c99 -O2 -Wall -Wextra -Werror -Iinclude tests/c/$prog.c \
    -L"$out" -ltinyinfer -Wl,-rpath,'$ORIGIN' -o "$out/$prog"
done

# The library is what it should be: a shared object for the target with its
# SONAME, needing only libc, libm and libpthread (and the dynamic loader),
# exporting only tinf_*.
lib="$out/libtinyinfer.so"
kind=$($cross-readelf -h "$lib" | awk -F: '/Class:/{c=$2} /Type:/{t=$2} /Machine:/{m=$2} END{print c, t, m}' |
  awk '{print $1, $2, $NF}')
[ "$kind" = "$elf" ] || { echo "test-aarch64: $lib is $kind, not $elf (an $arch shared object)" >&2; exit 1; }
$cross-readelf -d "$lib" | grep -q 'Library soname: \[libtinyinfer.so.0\]' || { echo "test-aarch64: no SONAME" >&2; exit 1; }
needed=$($cross-readelf -d "$lib" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
for n in $needed; do
  case $n in libc.so.6|libm.so.6|libpthread.so.0|$loader) ;;
    *) echo "test-aarch64: $lib needs $n" >&2; exit 1 ;;
  esac
done
stray=$($cross-nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^tinf_' || true)
[ -z "$stray" ] || { echo "test-aarch64: exports other than tinf_*: $stray" >&2; exit 1; }
echo "$lib: $(stat -c %s "$lib") bytes stripped; needs: $needed; exports $($cross-nm -D --defined-only "$lib" | wc -l) tinf_* symbols"

emulators=()
for c in "${cpus[@]}"; do emulators+=(--emulator "${c%%=*}=$qemu -cpu ${c#*=} -L /usr/$cross"); done
set +e
env ${ref_isa:+TINYINFER_ISA=$ref_isa} python3 tests/c/cross_check.py --runner "$out/run_outputs" \
  --work "$out/check" "${emulators[@]}" "$@" |
  tee "$out/cross_check.log"
rc=${PIPESTATUS[0]}
# The C ABI smoke test (every function with NULL and bad arguments, the
# builder, a model from a file and a buffer) on the first emulated CPU.
c=${cpus[0]}
echo "abi_smoke ($qemu -cpu ${c#*=}):"
PYTHONPATH=python python3 -m tinyinfer convert models/digits_cnn.tflite -o "$out/abi_smoke.tinf" >/dev/null
$qemu -cpu "${c#*=}" -L /usr/$cross "$out/abi_smoke" "$out/abi_smoke.tinf" | tail -3 | tee "$out/abi_smoke.log"
rc_abi=${PIPESTATUS[0]}
set -e
counts() { sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$1" | tail -1; }
read -r p1 f1 <<<"$(counts "$out/cross_check.log")"
read -r p2 f2 <<<"$(counts "$out/abi_smoke.log")"
# A step that failed without a failed run (a crash, nothing run) counts as one.
[ "$rc" = 0 ] || [ "${f1:-0}" != 0 ] || f1=1
[ "$rc_abi" = 0 ] || [ "${f2:-0}" != 0 ] || f2=1
echo "$arch: $(( ${p1:-0} + ${p2:-0} )) passed, $(( ${f1:-0} + ${f2:-0} )) failed"
[ "$rc" = 0 ] && [ "$rc_abi" = 0 ] && [ -n "${p1:-}" ] && [ -n "${p2:-}" ]
