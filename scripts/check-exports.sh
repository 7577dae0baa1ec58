#!/usr/bin/env bash
# Checks the dynamic symbol table and dependencies of libtinyinfer.so:
#  1. every defined GLOBAL/WEAK dynamic symbol is a tinf_* name;
#  2. every function declared in include/tinyinfer.h is exported (a defined
#     GLOBAL FUNC of default or protected visibility), and nothing tinf_* is exported that
#     the header does not declare;
#  3. the NEEDED libraries are only libc, libm, libpthread and the dynamic
#     loader (ld-linux*).
# Exits 0 with a one-line summary, or 1 with a message per problem.
#
#   scripts/check-exports.sh [path/to/libtinyinfer.so [path/to/tinyinfer.h]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib=${1:-$root/python/tinyinfer/lib/libtinyinfer.so}
header=${2:-$root/include/tinyinfer.h}

command -v readelf >/dev/null || { echo "check-exports: readelf not found (binutils)" >&2; exit 2; }
[ -f "$lib" ] || { echo "check-exports: $lib not found (build it with scripts/build-lib.sh)" >&2; exit 2; }
[ -f "$header" ] || { echo "check-exports: $header not found" >&2; exit 2; }

problems=0
problem() {
  echo "check-exports: $*" >&2
  problems=$((problems + 1))
}

# Defined GLOBAL/WEAK dynamic symbols as "type bind vis name" (Ndx != UND,
# version suffixes dropped).
syms=$(readelf -W --dyn-syms "$lib" | awk '
  $1 ~ /^[0-9]+:$/ && NF >= 8 && $7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK" || $5 == "GNU_UNIQUE") {
    name = $8; sub(/@.*/, "", name); print $4, $5, $6, name
  }')

# 1. Only tinf_* is exported.
while read -r type bind vis name; do
  [ -n "${name:-}" ] || continue
  case "$name" in
    tinf_*) ;;
    *) problem "exports $name ($type $bind $vis), which is not a tinf_* symbol" ;;
  esac
done <<<"$syms"

# 2. The header's functions, with comments removed.
declared=$(awk '
  {
    line = $0; out = ""
    while (length(line) > 0) {
      if (incomment) {
        i = index(line, "*/"); if (i == 0) { line = ""; break }
        line = substr(line, i + 2); incomment = 0
      } else {
        i = index(line, "/*"); j = index(line, "//")
        if (j > 0 && (i == 0 || j < i)) { out = out substr(line, 1, j - 1); line = ""; break }
        if (i == 0) { out = out line; line = ""; break }
        out = out substr(line, 1, i - 1); line = substr(line, i + 2); incomment = 1
      }
    }
    print out
  }' "$header" | grep -oE '\btinf_[A-Za-z0-9_]+[[:space:]]*\(' | tr -d ' \t(' | sort -u)
[ -n "$declared" ] || problem "no function declarations found in $header"

exported_funcs=$(awk '$1 == "FUNC" && $2 == "GLOBAL" && ($3 == "DEFAULT" || $3 == "PROTECTED") { print $4 }' <<<"$syms" | sort -u)
exported_all=$(awk '{ print $4 }' <<<"$syms" | sort -u)
for f in $declared; do
  if ! grep -qx "$f" <<<"$exported_funcs"; then
    if grep -qx "$f" <<<"$exported_all"; then
      problem "$f is declared in $(basename "$header") but exported as: $(awk -v n="$f" '$4 == n { print $1, $2, $3 }' <<<"$syms")"
    else
      problem "$f is declared in $(basename "$header") but not exported"
    fi
  fi
done
for s in $exported_all; do
  case "$s" in tinf_*) grep -qx "$s" <<<"$declared" || problem "exports $s, which $(basename "$header") does not declare" ;; esac
done

# 3. Dependencies.
needed=$(readelf -W -d "$lib" | awk '/\(NEEDED\)/ { n = $NF; gsub(/[][]/, "", n); print n }')
for n in $needed; do
  case "$n" in
    libc.so.* | libm.so.* | libpthread.so.* | ld-linux*.so.*) ;;
    *) problem "depends on $n (only libc, libm, libpthread and ld-linux are allowed)" ;;
  esac
done

if [ "$problems" -ne 0 ]; then
  echo "check-exports: $lib: $problems problem(s)" >&2
  exit 1
fi
n_exp=$(grep -c . <<<"$exported_all" || true)
n_decl=$(grep -c . <<<"$declared" || true)
echo "check-exports: ok: $n_exp tinf_* symbols exported, all $n_decl header functions present; NEEDED: $(echo $needed)"
