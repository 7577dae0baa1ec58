"""tests/c/pool_stress.c: the session thread pool (ti_pool_* in
Sources/TinyInferShims/shims.c) runs every item of every job exactly once,
for that job, and returns only when all have finished; the caller runs item
0. Compiled with the pool's own source; 2, 3 and 8 threads, jobs back to
back and after pauses that put the workers to sleep."""

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("clang") or shutil.which("gcc")


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_pool_runs_every_item_once(tmp_path):
    exe = tmp_path / "pool_stress"
    cmd = [CC, "-O2", "-ISources/TinyInferShims/include", "tests/c/pool_stress.c",
           "Sources/TinyInferShims/shims.c", "Sources/TinyInferShims/cpu.c", "-lpthread", "-lm", "-o", str(exe)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for threads in (2, 3, 8):
        assert f"threads {threads}:" in r.stdout and "every item once" in r.stdout
