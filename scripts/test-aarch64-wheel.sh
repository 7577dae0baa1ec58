#!/usr/bin/env bash
# Installs the aarch64 (ARM64) wheel and runs it under qemu-aarch64 with
# Debian's arm64 Python: the wheel as a user on an ARM64 Linux machine
# without Swift would get it.
#
# 1. Builds the wheel from build-aarch64/libtinyinfer.so (scripts/build-aarch64.sh
#    when missing; scripts/build-wheel.sh tags it manylinux with auditwheel,
#    which reads the architecture from the library, and checks it; it runs
#    in the project environment of scripts/setup.sh, made when missing).
# 2. Makes an arm64 sysroot from Debian bookworm's packages (python3.11 and
#    the libraries it and numpy load; `apt-get download` after
#    `dpkg --add-architecture arm64`, unpacked with dpkg-deb, nothing
#    installed into the system).
# 3. Installs the wheel and numpy's manylinux aarch64 wheel from PyPI into a
#    folder (this machine's pip with `--platform` (the wheel's tags and
#    manylinux2014_aarch64) `--only-binary=:all: --target`: pip only
#    unpacks wheels, which is all that installing a wheel does).
# 4. Under `qemu-aarch64 -L sysroot` (-I -S: that folder and the standard
#    library only on sys.path, no swift on PATH, no TINYINFER_LIB): imports
#    tinyinfer, checks that it loaded the wheel's library, prints
#    tinyinfer.info(), and runs each model given (default: the bench models bench/models/*.tinf,
#    made by bench/make_models.py, when present) comparing its outputs with
#    this machine's library's (float within 1e-4 relative, int8 within one
#    step).
#
#   scripts/test-aarch64-wheel.sh [MODEL.tinf ...]
#   TINF_ARM_SYSROOT=dir   where the arm64 sysroot goes (default: build-aarch64/sysroot; reused)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=build-aarch64/wheel-test
sysroot=$(realpath -m "${TINF_ARM_SYSROOT:-build-aarch64/sysroot}")  # absolute: the run is in $work
mkdir -p "$work"

if ! command -v qemu-aarch64 >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq qemu-user >&2 || {
    echo "test-aarch64-wheel: needs qemu-aarch64 (Debian/Ubuntu package qemu-user)" >&2; exit 1; }
fi

echo "== aarch64 library and wheel ==" >&2
[ -f build-aarch64/libtinyinfer.so ] || TINF_ARM_OUT=build-aarch64 scripts/build-aarch64.sh >/dev/null
rm -rf "$work/dist"
wheel=$(scripts/build-wheel.sh --lib build-aarch64/libtinyinfer.so --out "$work/dist")
echo "wheel: $wheel" >&2

echo "== arm64 Python sysroot (Debian packages) ==" >&2
if [ ! -x "$sysroot/usr/bin/python3.11" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
  fi
  $sudo apt-get update -qq >&2
  debs=$(mktemp -d)
  # python3.11 and what its standard library and numpy's extension modules load.
  (cd "$debs" && apt-get download -q \
    python3.11-minimal:arm64 libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 libc6:arm64 \
    libffi8:arm64 libexpat1:arm64 zlib1g:arm64 libbz2-1.0:arm64 liblzma5:arm64 libssl3:arm64 \
    libcrypt1:arm64 libstdc++6:arm64 libgcc-s1:arm64 >&2)
  mkdir -p "$sysroot"
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$sysroot"; done
  rm -rf "$debs"
fi
py=(qemu-aarch64 -L "$sysroot" "$sysroot/usr/bin/python3.11")

echo "== install the wheel and numpy (aarch64 wheels) ==" >&2
site=$root/$work/site
rm -rf "$site"
# The wheel's platform tags (tinyinfer-V-py3-none-TAG1.TAG2.whl) and numpy's.
plats=()
tags=$(basename "$wheel" .whl)
IFS=. read -ra wheel_tags <<<"${tags##*-none-}"
for t in "${wheel_tags[@]}" manylinux2014_aarch64; do plats+=(--platform "$t"); done
python3 -m pip install -q --disable-pip-version-check "${plats[@]}" --only-binary=:all: \
  --python-version 3.11 --implementation cp --target "$site" "$wheel" >&2

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  for f in bench/models/*.tinf; do [ -f "$f" ] && models+=("$f"); done
fi
# Inputs and reference outputs from this machine's library.
[ -f python/tinyinfer/lib/libtinyinfer.so ] || scripts/build-lib.sh >/dev/null
ref=$root/$work/ref
rm -rf "$ref" && mkdir -p "$ref"
i=0
for m in "${models[@]}"; do
  PYTHONPATH=python python3 - "$m" "$ref/$i.npz" <<'EOF'
import sys, numpy as np, tinyinfer
from tinyinfer.__main__ import _inputs  # the inputs of `python -m tinyinfer run` without files
with tinyinfer.load(sys.argv[1]) as mod:
    xs = _inputs(mod, None)
    ys = mod.run(*xs)
np.savez(sys.argv[2], **{f"x{j}": x for j, x in enumerate(xs)}, **{f"y{j}": y for j, y in enumerate(ys)})
EOF
  i=$((i + 1))
done

echo "== run under qemu-aarch64: import, info(), the models ==" >&2
start=$(date +%s)
abs=()  # the models' absolute paths (the run is in $work)
for m in "${models[@]}"; do case $m in /*) abs+=("$m") ;; *) abs+=("$root/$m") ;; esac; done
(cd "$work" && env -i HOME="$root/$work" PATH=/usr/bin:/bin "${py[@]}" -I -S - "$site" "$ref" "${abs[@]}" <<'EOF'
import sys, platform
sys.path.insert(0, sys.argv[1])
import numpy as np, tinyinfer
assert platform.machine() == "aarch64", platform.machine()
assert tinyinfer._lib.lib_path.startswith(sys.argv[1]), tinyinfer._lib.lib_path
print("python", platform.python_version(), platform.machine(), "numpy", np.__version__, "tinyinfer", tinyinfer.__version__)
print("info:", tinyinfer.info())
failed = 0
for i, path in enumerate(sys.argv[3:]):
    r = np.load(f"{sys.argv[2]}/{i}.npz")
    xs = [r[f"x{j}"] for j in range(sum(k.startswith("x") for k in r.files))]
    with tinyinfer.load(path) as mod:
        ys = mod.run(*xs)
    for j, y in enumerate(ys):
        want = r[f"y{j}"]
        if np.issubdtype(want.dtype, np.floating):
            ok = np.allclose(y, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
        else:
            ok = int(np.abs(y.astype(np.int64) - want.astype(np.int64)).max(initial=0)) <= 1
        failed += not ok
        print(("ok  " if ok else "FAIL"), path.rsplit("/", 1)[-1], f"output {j}", y.shape, y.dtype)
sys.exit(1 if failed else 0)
EOF
)
echo "test-aarch64-wheel: passed (${#models[@]} models, $(( $(date +%s) - start )) s under qemu)" >&2
