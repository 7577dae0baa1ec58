#!/usr/bin/env bash
# Cross-builds libtinyinfer.so for aarch64 (ARM64) Linux, or 32-bit ARMv7
# Linux (armhf), from an x86-64 (or any) Linux machine: Embedded Swift for
# the core and the C API, the C shim and the link with Debian's cross
# toolchain. The result needs libc, libm and libpthread only and exports
# only tinf_*, like the x86-64 build (scripts/build-lib.sh).
#
#   scripts/build-aarch64.sh          # -> build-aarch64/libtinyinfer.so (stripped)
#   scripts/build-aarch64.sh armv7    # -> build-armv7/libtinyinfer.so (ARMv7-A, NEON, VFPv4, hard float)
#   TINF_ARM_OUT=dir scripts/build-aarch64.sh   # another output directory
#
# The toolchain has Embedded stdlib modules for the bare-metal triples
# aarch64-none-none-elf and armv7-none-none-eabi only (not *-linux-gnu), so
# the Swift modules are compiled for those: the same procedure call
# standard as Linux (AAPCS64; AAPCS with the hard-float variant, Linux-sized
# enums and wchar_t for armv7), and the Swift code calls nothing but the C
# shim's header and what the Embedded runtime needs from libc
# (posix_memalign, free, arc4random_buf, memcpy...), which the Linux link
# resolves against glibc.
#
# Needs: swiftc (the toolchain of scripts/setup.sh) and, on Debian/Ubuntu,
# gcc-<triple>, binutils-<triple> and the libc6-dev-<arm64|armhf>-cross
# package (installed with apt-get when missing and sudo or root is available).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
arch=${1:-aarch64}
case $arch in
  aarch64)
    target=aarch64-none-none-elf cross=aarch64-linux-gnu libc_pkg=libc6-dev-arm64-cross
    swift_arch=() cc_arch=() ;;
  armv7)
    # 32-bit ARMv7-A with NEON and VFPv4 (half-precision conversions and
    # fused multiply-add: Cortex-A7 and later, Raspberry Pi 2 and later) and the hard-float calling convention of
    # arm-linux-gnueabihf; enums and wchar_t as wide as Linux has them (the
    # bare-metal EABI default is short).
    target=armv7-none-none-eabi cross=arm-linux-gnueabihf libc_pkg=libc6-dev-armhf-cross
    swift_arch=(-Xcc -mfloat-abi=hard -Xcc -mfpu=neon-vfpv4 -Xcc -fno-short-enums -Xcc -fno-short-wchar)
    cc_arch=(-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard) ;;
  *) echo "usage: scripts/build-aarch64.sh [aarch64|armv7]" >&2; exit 2 ;;
esac
out=${TINF_ARM_OUT:-build-$arch}

need_pkgs=()
command -v $cross-gcc >/dev/null || need_pkgs+=(gcc-$cross)
command -v $cross-strip >/dev/null || need_pkgs+=(binutils-$cross)
[ -f /usr/$cross/include/stdio.h ] || need_pkgs+=($libc_pkg)
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

# The C shim and the kernels: normal Linux objects (glibc headers, PIC, the
# TLS error buffer in the general-dynamic model that a dlopen'ed library
# needs), compiled with the toolchain's clang for the target (the kernels
# use clang's vector extensions and pragmas) against the cross sysroot.
clang_bin="$toolchain/bin/clang"
[ -x "$clang_bin" ] || { echo "build-aarch64: no clang in the Swift toolchain ($clang_bin)" >&2; exit 1; }
for src in Sources/TinyInferShims/*.c Sources/TinyInferShims/kernels/*.c; do
  "$clang_bin" --target=$cross --sysroot=/usr/$cross "${cc_arch[@]}" -std=gnu11 -O2 -fPIC -fno-omit-frame-pointer \
    -ffunction-sections -fdata-sections -Wall -Wextra -I Sources/TinyInferShims/include -c "$src" -o "$obj/c-$(basename "$src" .c).o"
done

# The Swift modules, whole-module, release, Embedded. The clang importer
# sees only the shim's and the API's headers (stddef.h/stdint.h from
# clang's own resource directory); -Xcc -fPIC for the code it emits for
# static inline C helpers (the Swift code itself is PIC: "PIC Level" 2).
# Each function (C: and datum) in its own section, as in the x86-64
# Embedded build (Package.swift), so the link's --gc-sections drops the
# code no exported function reaches.
swift_flags=(
  -target "$target" "${swift_arch[@]}" -enable-experimental-feature Embedded -wmo -parse-as-library -O
  -Xfrontend -function-sections
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

if [ "$arch" = armv7 ]; then
  # The toolchain's armv7 Unicode tables are built for the soft-float
  # calling convention, which ld refuses to mix with hard-float objects.
  # The functions the core uses (_swift_stdlib_getNormData,
  # getComposition, getDecompositionEntry) pass integers only, so a copy
  # without the ABI attribute section links correctly; any other one must
  # be checked first.
  for sym in $($cross-nm -u "$obj"/TinyInfer*.o | awk '/_swift_stdlib_/{print $2}' | sort -u); do
    case $sym in
      _swift_stdlib_getNormData|_swift_stdlib_getComposition|_swift_stdlib_getDecompositionEntry|_swift_stdlib_nfd_decompositions) ;;
      *) echo "build-aarch64: the core now uses $sym from the soft-float Unicode tables: check that it passes no float" >&2
         exit 1 ;;
    esac
  done
  $cross-objcopy --remove-section=.ARM.attributes "$unicode" "$obj/libswiftUnicodeDataTables.a"
  unicode="$obj/libswiftUnicodeDataTables.a"
fi

# The link: a Linux shared object with a SONAME, only tinf_* exported.
$cross-gcc "${cc_arch[@]}" -shared -o "$out/libtinyinfer.unstripped.so" \
  "$obj/TinyInferCAPI.o" "$obj/TinyInferCore.o" "$obj"/c-*.o "$unicode" \
  -Wl,--gc-sections -Wl,--version-script=scripts/exports.map -Wl,-soname,libtinyinfer.so.0 \
  -Wl,-z,defs -Wl,-z,noexecstack -static-libgcc -lm -lpthread
$cross-strip -o "$out/libtinyinfer.so" "$out/libtinyinfer.unstripped.so"
# The SONAME, for programs linked against it (-L$out -ltinyinfer).
ln -sf libtinyinfer.so "$out/libtinyinfer.so.0"
echo "$out/libtinyinfer.so: $(stat -c %s "$out/libtinyinfer.so") bytes (stripped, $arch)" >&2
readlink -f "$out/libtinyinfer.so"
