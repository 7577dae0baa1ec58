#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine with the
# Swift toolchain: a C compiler and binutils (Debian), numpy and pytest (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v readelf >/dev/null || missing+=(binutils)
command -v strip >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}"; else sudo apt-get install -y "${missing[@]}"; fi
fi
command -v swift >/dev/null || { echo "the Swift toolchain (6.3 or newer) is required: https://swift.org/install" >&2; exit 1; }
python3 -m pip install -q -r requirements-dev.txt
