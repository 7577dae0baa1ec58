#!/usr/bin/env bash
# Checks that another SwiftPM package can depend on tinyinfer BY VERSION.
#
# SwiftPM refuses a dependency required by version whose targets use
# `unsafeFlags` ("contains unsafe build flags"); only root packages and
# dependencies by path or branch may use them. This script puts the current
# tree (the commit checked out plus tracked changes; untracked files are not
# included) into a temporary bare git repository tagged 0.1.0, makes a
# consumer package that requires it with `from: "0.1.0"` and builds it in
# debug (compiling TinyInferCore: a minute or a few). The consumer's program
# is examples/swift's tinyinfer-run; it is then run on a missing file, which
# must fail with tinyinfer's own error message (exit 1). SwiftPM's shared
# dependency cache is not used (each run's temporary URL would stay in it).
#
#     scripts/test-swift-consumer.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/tinyinfer-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The tree as a commit: `git stash create` records tracked changes without
# touching the work tree, and prints nothing when there are none.
rev=$(git -C "$root" stash create)
rev=${rev:-$(git -C "$root" rev-parse HEAD)}
git init -q --bare "$work/tinyinfer.git"
git -C "$root" push -q "$work/tinyinfer.git" "$rev:refs/heads/main" "$rev:refs/tags/0.1.0"

mkdir -p "$work/consumer/Sources/consumer"
cp "$root/examples/swift/Sources/tinyinfer-run/main.swift" "$work/consumer/Sources/consumer/main.swift"
cat >"$work/consumer/Package.swift" <<EOF
// swift-tools-version: 6.1
import PackageDescription

let package = Package(
  name: "consumer",
  dependencies: [.package(url: "file://$work/tinyinfer.git", from: "0.1.0")],
  targets: [
    .executableTarget(name: "consumer", dependencies: [.product(name: "TinyInferCore", package: "tinyinfer")])
  ]
)
EOF

echo "== swift build of a package that depends on tinyinfer from: \"0.1.0\" (tree of commit ${rev:0:12})"
log="$work/build.log"
if ! swift build --disable-dependency-cache --package-path "$work/consumer" >"$log" 2>&1; then
  tail -n 40 "$log"
  if grep -q "unsafe build flags" "$log"; then
    echo "FAIL: SwiftPM refuses the dependency: a target of Package.swift uses unsafeFlags in a normal build" >&2
  else
    echo "FAIL: the consumer package does not build" >&2
  fi
  exit 1
fi
grep -q "tinyinfer" "$work/consumer/Package.resolved" || { echo "FAIL: tinyinfer is not in Package.resolved" >&2; exit 1; }
grep -q '"version" : "0.1.0"' "$work/consumer/Package.resolved" || {
  cat "$work/consumer/Package.resolved"
  echo "FAIL: tinyinfer was not resolved by version" >&2
  exit 1
}

bin="$(swift build --disable-dependency-cache --package-path "$work/consumer" --show-bin-path)/consumer"
set +e
out=$("$bin" "$work/missing.tinf" 2>&1)
rc=$?
set -e
if [ "$rc" -ne 1 ] || [[ "$out" != *"io: cannot open '$work/missing.tinf'"* ]]; then
  echo "$out"
  echo "FAIL: the consumer's program should fail with tinyinfer's io error (exit 1), got exit $rc" >&2
  exit 1
fi
echo "ok: the consumer resolves tinyinfer 0.1.0, builds, and runs ($out)"
