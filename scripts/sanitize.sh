#!/usr/bin/env bash
# Builds the library with sanitizers and runs the tests against it:
#
#   scripts/sanitize.sh asan  [PYTEST ARGS...]   AddressSanitizer + UndefinedBehaviorSanitizer (C shims and kernels)
#   scripts/sanitize.sh tsan  [PYTEST ARGS...]   ThreadSanitizer
#   scripts/sanitize.sh all                      both (the default)
#   scripts/sanitize.sh asan --build-only        build only; prints the library's path
#
# Each build is a normal-mode (not Embedded) release build of the library
# product into .build-<kind>/ (Swift with -sanitize=address or thread, the C
# target with -fsanitize=address,undefined or thread). The Python suite then
# runs on it (TINYINFER_LIB, the sanitizer runtime preloaded into Python),
# which includes the C programs of tests/c and examples/c
# (test_c_programs.py compiles them against the sanitized library), and the
# concurrency soak (python/tests/test_reliability_soak.py: threads x sessions
# x close/run interleavings, outputs compared with serial runs). Without
# PYTEST ARGS it runs python/tests minus the slow peer-converter and install
# tests (TINF_SANITIZE_ALL=1: every test). Any sanitizer report fails the run
# (halt_on_error; UBSan reports are fatal too).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-all}
[ $# -gt 0 ] && shift
if [ "$kind" = all ]; then
  "$0" asan "$@"
  "$0" tsan "$@"
  exit 0
fi
extra=()
coverage=(-Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp -Xcc -fsanitize=fuzzer-no-link)
scratch=.build-$kind
case "$kind" in
  asan) swift_san=address; c_san=address,undefined; rt=asan
    # TINF_SANITIZE_FUZZ_BUILD=1: the tests run on the fuzzing build (the
    # same sanitizers plus the coverage instrumentation, .build-fuzz), so
    # one sanitized build serves both (scripts/test.sh).
    if [ "${TINF_SANITIZE_FUZZ_BUILD:-0}" = 1 ]; then extra=("${coverage[@]}"); scratch=.build-fuzz; fi ;;
  tsan) swift_san=thread; c_san=thread; rt=tsan ;;
  fuzz) # (scripts/fuzz.sh) ASan + UBSan with libFuzzer's coverage instrumentation
    swift_san=address; c_san=address,undefined; rt=asan
    extra=("${coverage[@]}") ;;
  *) echo "usage: $0 [asan|tsan|all|fuzz] [pytest args]" >&2; exit 2 ;;
esac
if [ -z "${TINF_SANITIZE_NO_VENV:-}" ] && [ "${1:-}" != --build-only ]; then . scripts/venv.sh; fi
echo "== build the library with -sanitize=$swift_san (C: -fsanitize=$c_san) in $scratch ==" >&2
swift build -c release --scratch-path "$scratch" --product tinyinfer \
  -Xswiftc -sanitize="$swift_san" -Xcc -fsanitize="$c_san" -Xcc -fno-sanitize-recover=all \
  -Xcc -fno-omit-frame-pointer -Xlinker -fsanitize="$c_san" ${extra[@]+"${extra[@]}"} >&2
lib=$(readlink -f "$scratch/release/libtinyinfer.so")
if [ "${1:-}" = --build-only ]; then echo "$lib"; exit 0; fi  # (scripts/fuzz.sh)
# The sanitizer runtime the library was linked with, preloaded into Python (not instrumented itself).
runtime=$(ldd "$lib" | awk "/libclang_rt.$rt/ {print \$3}")
if [ -z "$runtime" ]; then
  runtime=$(find "$(clang -print-resource-dir)/lib" -name "libclang_rt.$rt-$(uname -m).so" | head -n 1)
fi
[ -f "$runtime" ] || { echo "no $rt runtime found for $lib" >&2; exit 1; }
preload=$runtime
if [ "$kind" = tsan ]; then
  # The toolchain's TSan runtime refers to libdispatch (Swift's build of it); preload it too.
  dispatch=$(ldd "$lib" | awk '/libdispatch/ {print $3}')
  [ -z "$dispatch" ] || preload="$runtime $dispatch"
fi
# The C programs the tests compile (test_c_programs.py takes $CC) link the
# sanitized library, so they are built with the same sanitizers (clang: the
# runtime the library was built against).
cc_wrapper="$PWD/$scratch/cc-$kind"
printf '#!/bin/sh\nexec clang -fsanitize=%s -shared-libsan "$@"\n' "$c_san" > "$cc_wrapper"
chmod +x "$cc_wrapper"
export CC="$cc_wrapper"
export TINYINFER_LIB="$lib" LD_PRELOAD="$preload"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1:detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
# Python's own allocations are not the library's: leaks are checked by the
# libFuzzer harness (fuzz/load_run.c, scripts/fuzz.sh), not here.
if [ $# -eq 0 ]; then
  if [ -n "${TINF_SANITIZE_ALL:-}" ]; then
    set -- python/tests
  else
    set -- python/tests/test_reliability.py python/tests/test_reliability_soak.py python/tests/test_concurrency.py \
      python/tests/test_capi.py python/tests/test_errors.py python/tests/test_format.py python/tests/test_c_programs.py \
      python/tests/test_ops_math.py python/tests/test_ops_spatial.py python/tests/test_ops_movement.py \
      python/tests/test_ops_int8.py python/tests/test_quantize.py python/tests/test_passes.py \
      python/tests/test_batcher.py python/tests/test_batcher_c.py python/tests/test_prepack_cache.py \
      python/tests/test_sparse.py python/tests/test_sparse_nm24.py python/tests/test_sparse_nm24_int8.py \
      python/tests/test_sparse_measure.py
  fi
fi
# Deselected: tests that measure RSS growth (the sanitizers' quarantine and
# shadow memory grow it by design; leaks are the fuzz harness's LeakSanitizer
# job), valgrind (which cannot run a sanitized program), the export checks
# (of the shipped Embedded build, not this one) and test_format.py's
# fuzz_in_subprocess (it limits the address space, where ASan's shadow memory
# cannot live; the libFuzzer harness covers the same ground under ASan).
echo "== pytest under $kind: $* ==" >&2
python3 -m pytest -q -p no:cacheprovider -x -k "not does_not_leak and not do_not_leak and not valgrind and not fuzz_in_subprocess and not check_exports" "$@"
