"""tests/c/q8_requant_exact.c: the AVX2 int8 output stages (requantize_rows,
conv1x1_rows, dw_rows; q8_requant.inc's rq64_fast and rq64_fixed) against
TFLite's MultiplyByQuantizedMultiplier value by value, compiled with the
kernels' own source. Needs clang (the kernels use its vector extensions) and
an x86-64 CPU with AVX2."""

import os
import platform
import shutil
import subprocess

import pytest

import tinyinfer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLANG = shutil.which(os.environ.get("CLANG", "clang"))


@pytest.mark.skipif(CLANG is None, reason="no clang")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernels")
def test_q8_output_stages_match_tflite(tmp_path):
    if tinyinfer.info()["isa"] not in ("avx2", "avx512"):
        pytest.skip("no AVX2")
    exe = tmp_path / "q8_requant_exact"
    cmd = [CLANG, "-O2", "-ISources/TinyInferShims/include", "-ISources/TinyInferShims/kernels",
           "tests/c/q8_requant_exact.c", "-o", str(exe)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 of " in r.stdout
