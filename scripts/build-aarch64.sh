#!/usr/bin/env bash
# Cross-builds libtinyinfer.so for aarch64 (ARM64) Linux from an x86-64 (or
# any) Linux machine: Embedded Swift for the core and the C API, the C shim
# and the link with Debian's aarch64-linux-gnu cross toolchain. The result
# needs libc, libm and libpthread only and exports only tinf_*, like the
# x86-64 build (scripts/build-lib.sh).
#
#   scripts/build-aarch64.sh          # -> build-aarch64/libtinyinfer.so (stripped)
#   TINF_AARCH64_OUT=dir scripts/build-aarch64.sh   # another output directory
#
# The toolchain has Embedded stdlib modules for the bare-metal triple
# aarch64-none-none-elf only (not aarch64-unknown-linux-gnu), so the Swift
# modules are compiled for that triple: same AAPCS64 ABI, LP64, and the
# Swift code calls nothing but the C shim's header and what the Embedded
# runtime needs from libc (posix_memalign, free, arc4random_buf, memcpy...),
# which the Linux link resolves against glibc.
#
# Needs: swiftc (the toolchain of scripts/setup.sh) and, on Debian/Ubuntu,
# gcc-aarch64-linux-gnu, binutils-aarch64-linux-gnu and libc6-dev-arm64-cross
# (installed with apt-get when missing and sudo or root is available).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${TINF_AARCH64_OUT:-build-aarch64}
cross=aarch64-linux-gnu
target=aarch64-none-none-elf

need_pkgs=()
command -v $cross-gcc >/dev/null || need_pkgs+=(gcc-aarch64-linux-gnu)
command -v $cross-strip >/dev/null || need_pkgs+=(binutils-aarch64-linux-gnu)
[ -f /usr/$cross/include/stdio.h ] || need_pkgs+=(libc6-dev-arm64-cross)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${need_pkgs[*]}" >&2
  $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq "${need_pkgs[@]}" >&2 || {
    echo "build-aarch64: needs the Debian/Ubuntu packages ${need_pkgs[*]}" >&2; exit 1; }
fi

swiftc_bin=$(command -v swiftc) || { echo "build-aarch64: swiftc not found (install the Swift toolchain, see scripts/setup.sh)" >&2; exit 1; }
toolchain=$(cd "$(dirname "$(readlink -f "$swiftc_bin")")/.." && pwd)
embedded="$toolchain/lib/swift/embedded"
[ -e "$embedded/Swift.swiftmodule/$target.swiftmodule" ] || {
  echo "build-aarch64: the toolchain has no Embedded stdlib for $target ($embedded)" >&2; exit 1; }
unicode="$embedded/$target/libswiftUnicodeDataTables.a"
[ -f "$unicode" ] || { echo "build-aarch64: missing $unicode" >&2; exit 1; }

obj="$out/obj"
mods="$out/modules"
rm -rf "$obj" "$mods"
mkdir -p "$obj" "$mods"

# The C shim: a normal Linux object (glibc headers, PIC, its TLS error
# buffer in the general-dynamic model that a dlopen'ed library needs).
$cross-gcc -std=gnu11 -O2 -fPIC -fno-omit-frame-pointer -Wall -Wextra \
  -I Sources/TinyInferShims/include -c Sources/TinyInferShims/shims.c -o "$obj/shims.o"

# The Swift modules, whole-module, release, Embedded. The clang importer
# sees only the shim's and the API's headers (stddef.h/stdint.h from
# clang's own resource directory); -Xcc -fPIC for the code it emits for
# static inline C helpers (the Swift code itself is PIC: "PIC Level" 2).
swift_flags=(
  -target "$target" -enable-experimental-feature Embedded -wmo -parse-as-library -O
  -swift-version 6 -module-cache-path "$out/module-cache"
  -Xcc -fPIC -Xcc -fno-omit-frame-pointer
  -Xcc -fmodule-map-file="$root/Sources/TinyInferShims/include/module.modulemap"
  -Xcc -I -Xcc "$root/Sources/TinyInferShims/include"
  -I "$mods"
)
echo "compiling TinyInferCore for $target" >&2
swiftc "${swift_flags[@]}" -module-name TinyInferCore \
  -emit-module -emit-module-path "$mods/TinyInferCore.swiftmodule" \
  -c $(find Sources/TinyInferCore -name '*.swift' | LC_ALL=C sort) -o "$obj/TinyInferCore.o"
echo "compiling TinyInferCAPI for $target" >&2
swiftc "${swift_flags[@]}" -module-name TinyInferCAPI \
  -Xcc -fmodule-map-file="$root/include/module.modulemap" -Xcc -I -Xcc "$root/include" \
  -c $(find Sources/TinyInferCAPI -name '*.swift' | LC_ALL=C sort) -o "$obj/TinyInferCAPI.o"

# The link: a Linux shared object with a SONAME, only tinf_* exported.
$cross-gcc -shared -o "$out/libtinyinfer.unstripped.so" \
  "$obj/TinyInferCAPI.o" "$obj/TinyInferCore.o" "$obj/shims.o" "$unicode" \
  -Wl,--gc-sections -Wl,--version-script=scripts/exports.map -Wl,-soname,libtinyinfer.so.0 \
  -Wl,-z,defs -Wl,-z,noexecstack -lm -lpthread
$cross-strip -o "$out/libtinyinfer.so" "$out/libtinyinfer.unstripped.so"
# The SONAME, for programs linked against it (-L$out -ltinyinfer).
ln -sf libtinyinfer.so "$out/libtinyinfer.so.0"
echo "$out/libtinyinfer.so: $(stat -c %s "$out/libtinyinfer.so") bytes (stripped, aarch64)" >&2
readlink -f "$out/libtinyinfer.so"
