#!/usr/bin/env bash
# Compiles the Swift core (Embedded mode) for a Cortex-M microcontroller
# (armv7em) and for bare-metal AArch64, to show it assumes no operating system
# beyond the C shim's header. Produces objects only (no link: a port supplies
# its own shim).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The two targets compile at once (each compile is one whole-module job, on one core).
targets=(armv7em-none-none-eabi aarch64-none-none-elf)
pids=()
for target in "${targets[@]}"; do
  swiftc -target "$target" -enable-experimental-feature Embedded -wmo -parse-as-library -Osize \
    -module-name TinyInferCore -I Sources/TinyInferShims/include \
    -c $(find Sources/TinyInferCore -name '*.swift' | sort) -o "$out/core-$target.o" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for target in "${targets[@]}"; do
  echo "TinyInferCore for $target: $(stat -c %s "$out/core-$target.o") bytes of object code ($(file -b "$out/core-$target.o" | cut -d, -f1-2))"
done
