"""The result cache's C tables and key hash (Sources/TinyInferShims/hash.c):
tests/c/result_cache_tables.c is compiled from the shim sources and run at
every CPU level this machine has (TINYINFER_ISA): ti_hash64_quick (the
cache's key hash) equals its scalar reference and gives the same values at
every level, every single-bit change of an input changes it, and the
remembered-keys window (ti_seen_ring) follows a plain model of it. The
sources use clang's vector extensions, so the test needs clang."""

import os
import platform
import shutil
import subprocess

import pytest

import tinyinfer as ti

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLANG = shutil.which("clang")


@pytest.mark.skipif(CLANG is None, reason="no clang (the shim sources use its vector extensions)")
def test_tables_and_quick_hash_at_every_level(tmp_path):
    shims = os.path.join(ROOT, "Sources", "TinyInferShims")
    exe = tmp_path / "tables"
    cmd = [CLANG, "-O2", "-std=gnu11", "-Wall", "-Werror", "-I", os.path.join(shims, "include"),
           os.path.join(ROOT, "tests", "c", "result_cache_tables.c"), os.path.join(shims, "hash.c"),
           os.path.join(shims, "cpu.c"), "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    levels = ["baseline", "avx2", "avx512"] if platform.machine() in ("x86_64", "AMD64") else ["baseline", "dotprod"]
    detected = ti.info()["isa_detected"]
    levels = levels[:levels.index(detected) + 1]
    outputs = {}
    for level in levels:
        r = subprocess.run([str(exe)], env=dict(os.environ, TINYINFER_ISA=level), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0 and r.stdout.endswith("ok\n"), f"{level}: {r.stdout[-2000:]}"
        lines = r.stdout.splitlines()
        outputs[level] = lines[1:]
        assert len(outputs[level]) > 300
    isas = {subprocess.run([str(exe)], env=dict(os.environ, TINYINFER_ISA=lv), capture_output=True,
                           text=True).stdout.split("\n", 1)[0] for lv in levels}
    assert len(isas) == len(levels)  # each run really used another level
    for level in levels[1:]:
        assert outputs[level] == outputs[levels[0]], f"{level} differs from {levels[0]}"
