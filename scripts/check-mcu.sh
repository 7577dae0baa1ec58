#!/usr/bin/env bash
# Compiles the Swift core (Embedded mode) for a Cortex-M microcontroller
# (armv7em) and for bare-metal AArch64, to show it assumes no operating system
# beyond the C shim's header. Produces objects only (no link: a port supplies
# its own shim).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for target in armv7em-none-none-eabi aarch64-none-none-elf; do
  swiftc -target "$target" -enable-experimental-feature Embedded -wmo -parse-as-library -Osize \
    -module-name TinyInferCore -I Sources/TinyInferShims/include \
    -c $(find Sources/TinyInferCore -name '*.swift' | sort) -o "$out/core-$target.o"
  echo "TinyInferCore for $target: $(stat -c %s "$out/core-$target.o") bytes of object code ($(file -b "$out/core-$target.o" | cut -d, -f1-2))"
done
