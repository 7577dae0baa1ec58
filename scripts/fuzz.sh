#!/usr/bin/env bash
# Fuzzes the loader and the converters for SECONDS each (default 60):
#
#   scripts/fuzz.sh SECONDS [TARGET ...]
#
# TARGETs (default: all): load (libFuzzer, fuzz/load_run.c: load + prepare +
# run of any bytes through the C API, on the library built with ASan, UBSan
# and coverage: scripts/sanitize.sh fuzz), and the atheris harnesses of
# fuzz/fuzz_converters.py: tflite, onnx, torch-zip, torch-pickle,
# safetensors, calib (only tinyinfer errors may come out). Seeds come from
# fuzz/make_corpus.py into fuzz/corpus/<target>/ (gitignored); what the
# fuzzers add goes to fuzz/corpus/<target>-work/. A finding (crash, sanitizer
# report, leak, leaked Python exception, an input over the time limit)
# stops that harness with its reproducer in fuzz/findings/ and makes the
# script exit non-zero. Limits: TINF_FUZZ_TIMEOUT seconds per input
# (default 10), 2 GB RSS, inputs up to 64 KB (256 KB for the converters).
# Long runs: TINF_FUZZ_RUNS=N stops each harness after N executions instead
# (with SECONDS as an upper bound).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(load tflite onnx torch-zip torch-pickle safetensors calib)
timeout_s=${TINF_FUZZ_TIMEOUT:-10}
runs=${TINF_FUZZ_RUNS:--1}
if [ -z "${TINF_FUZZ_NO_VENV:-}" ]; then . scripts/venv.sh; fi
mkdir -p fuzz/corpus fuzz/findings
python3 fuzz/make_corpus.py fuzz/corpus >&2
status=0
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s ==" >&2
  if [ "$t" = load ]; then
    lib=$(TINF_SANITIZE_NO_VENV=1 scripts/sanitize.sh fuzz --build-only)
    bin=.build-fuzz/load_run
    clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 -Iinclude fuzz/load_run.c \
      -L"$(dirname "$lib")" -ltinyinfer -Wl,-rpath,"$(dirname "$lib")" -o "$bin" 2>/dev/null
    mkdir -p fuzz/corpus/tinf-work
    ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
      "$bin" -max_total_time="$seconds" -runs="$runs" -timeout="$timeout_s" -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix=fuzz/findings/load- -print_final_stats=1 fuzz/corpus/tinf-work fuzz/corpus/tinf \
      2>"fuzz/findings/load.log" || status=1
    grep -E "^stat::number_of_executed_units|^Done|ERROR|SUMMARY" fuzz/findings/load.log >&2 || true
  else
    [ -d "fuzz/corpus/$t" ] || { echo "   (no seeds for $t: its package is missing; skipped)" >&2; continue; }
    mkdir -p "fuzz/corpus/$t-work"
    python3 fuzz/fuzz_converters.py "$t" -max_total_time="$seconds" -runs="$runs" -timeout="$timeout_s" \
      -rss_limit_mb=2048 -max_len=262144 -artifact_prefix="fuzz/findings/$t-" -print_final_stats=1 \
      "fuzz/corpus/$t-work" "fuzz/corpus/$t" 2>"fuzz/findings/$t.log" || status=1
    grep -E "^stat::number_of_executed_units|^Done|Uncaught|ERROR|SUMMARY" "fuzz/findings/$t.log" >&2 || true
  fi
done
[ $status -eq 0 ] && echo "fuzz: no findings" >&2 || echo "fuzz: FINDINGS, see fuzz/findings/" >&2
exit $status
