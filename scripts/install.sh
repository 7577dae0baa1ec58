#!/usr/bin/env bash
# Installs tinyinfer for C programs under PREFIX:
#   PREFIX/include/tinyinfer.h
#   PREFIX/lib/libtinyinfer.so.M.m.p      the library (SONAME libtinyinfer.so.M, M.m.p from the header)
#   PREFIX/lib/libtinyinfer.so.M          -> libtinyinfer.so.M.m.p (what programs load)
#   PREFIX/lib/libtinyinfer.so            -> libtinyinfer.so.M     (what `-ltinyinfer` links)
#   PREFIX/lib/pkgconfig/tinyinfer.pc     cc app.c $(pkg-config --cflags --libs tinyinfer)
#
#   scripts/install.sh PREFIX [--lib path/to/libtinyinfer.so]
#   make install PREFIX=/usr/local            # the same, from the top-level Makefile
# The library defaults to python/tinyinfer/lib/libtinyinfer.so (scripts/build-lib.sh
# builds it). LIBDIR=dir puts the library and tinyinfer.pc elsewhere than PREFIX/lib;
# DESTDIR=dir stages the files under dir (for packagers). As root, with PREFIX/lib in
# the loader's configuration, runs ldconfig so programs find the library.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: scripts/install.sh PREFIX [--lib path/to/libtinyinfer.so]"
prefix=
lib=$root/python/tinyinfer/lib/libtinyinfer.so
while [ $# -gt 0 ]; do
  case "$1" in
    --lib) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; lib=$2; shift 2 ;;
    -h | --help) echo "$usage"; exit 0 ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) [ -z "$prefix" ] || { echo "$usage" >&2; exit 2; }; prefix=$1; shift ;;
  esac
done
[ -n "$prefix" ] || { echo "$usage" >&2; exit 2; }
case "$prefix" in /*) ;; *) echo "install: PREFIX must be an absolute path (it is written into tinyinfer.pc): $prefix" >&2; exit 2 ;; esac
prefix=${prefix%/}
libdir=${LIBDIR:-$prefix/lib}
header=$root/include/tinyinfer.h
[ -f "$lib" ] || { echo "install: $lib not found (build it with scripts/build-lib.sh)" >&2; exit 1; }

macro() { awk -v m="$1" '$1 == "#define" && $2 == m { print $3 }' "$header"; }
major=$(macro TINF_VERSION_MAJOR) minor=$(macro TINF_VERSION_MINOR) patch=$(macro TINF_VERSION_PATCH)
[ -n "$major" ] && [ -n "$minor" ] && [ -n "$patch" ] || { echo "install: no TINF_VERSION_* in $header" >&2; exit 1; }
version=$major.$minor.$patch
soname=libtinyinfer.so.$major
have=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$have" != "$soname" ]; then
  echo "install: $lib has SONAME '${have:-none}', expected $soname (rebuild it with scripts/build-lib.sh;" \
    "the SONAME is set in Package.swift)" >&2
  exit 1
fi

dest=${DESTDIR:-}
install -d "$dest$prefix/include" "$dest$libdir/pkgconfig"
install -m 0644 "$header" "$dest$prefix/include/tinyinfer.h"
install -m 0755 "$lib" "$dest$libdir/libtinyinfer.so.$version"
ln -sfn "libtinyinfer.so.$version" "$dest$libdir/$soname"
ln -sfn "$soname" "$dest$libdir/libtinyinfer.so"
case "$libdir" in "$prefix"/*) pc_libdir="\${prefix}${libdir#"$prefix"}" ;; *) pc_libdir=$libdir ;; esac
cat >"$dest$libdir/pkgconfig/tinyinfer.pc" <<EOF
prefix=$prefix
includedir=\${prefix}/include
libdir=$pc_libdir

Name: tinyinfer
Description: A small neural-network inference runtime (C API)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -ltinyinfer
EOF
chmod 0644 "$dest$libdir/pkgconfig/tinyinfer.pc"
echo "installed tinyinfer $version: $dest$prefix/include/tinyinfer.h, $dest$libdir/libtinyinfer.so{,.$major,.$version}, $dest$libdir/pkgconfig/tinyinfer.pc"

loader_dirs=
if [ -z "$dest" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then
  loader_dirs=$(ldconfig -N -X -v 2>/dev/null | sed -n 's/^\(\/[^:]*\):.*/\1/p' || true)
fi
if grep -qxF "$libdir" <<<"$loader_dirs"; then
  ldconfig
elif [ -z "$dest" ]; then
  echo "programs find the library at run time once $libdir is in the loader's path (ldconfig, LD_LIBRARY_PATH or -Wl,-rpath,$libdir)"
fi
