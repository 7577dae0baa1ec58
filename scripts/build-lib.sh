#!/usr/bin/env bash
# Builds the distributed libtinyinfer.so: Embedded Swift, whole-module,
# release, self-contained (libc, libm, libpthread only), exporting only tinf_*.
# Copies it into python/tinyinfer/lib/ (with the libtinyinfer.so.0 link of its
# SONAME) and prints its size.
#
#   scripts/build-lib.sh            # the build: no CPU flags; kernels per CPU level, chosen at run time
#   TINF_SCRATCH=.build-x TINF_LIB_OUT=/tmp/x/libtinyinfer.so scripts/build-lib.sh   # a private build
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${TINF_SCRATCH:-.build-embedded}

swift_bin=$(command -v swift)
toolchain=$(cd "$(dirname "$(readlink -f "$swift_bin")")/.." && pwd)
arch=$(uname -m)
unicode="$toolchain/lib/swift/embedded/$arch-unknown-linux-gnu/libswiftUnicodeDataTables.a"
[ -f "$unicode" ] || { echo "missing $unicode (Embedded Swift support of the toolchain)" >&2; exit 1; }

TINF_EMBEDDED=1 swift build -c release --scratch-path "$scratch" --product tinyinfer -Xlinker "$unicode" >&2
lib="$scratch/release/libtinyinfer.so"
# TINF_LIB_OUT: where to put the stripped library (default: inside the Python package).
out=${TINF_LIB_OUT:-python/tinyinfer/lib/libtinyinfer.so}
mkdir -p "$(dirname "$out")"
strip -o "$out.tmp" "$lib" && mv "$out.tmp" "$out"
# Programs linked with -ltinyinfer load the SONAME (libtinyinfer.so.0, set in
# Package.swift): it names this file beside it, as an install's link does.
soname=$(readelf -d "$out" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -z "$soname" ] || [ "$soname" = "$(basename "$out")" ] || ln -sfn "$(basename "$out")" "$(dirname "$out")/$soname"
echo "$out: $(stat -c %s "$out") bytes (stripped)" >&2
readlink -f "$out"
