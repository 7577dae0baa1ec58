"""The micro-batching queue from C: tests/c/batcher_threads.c (16 threads
with good and bad requests, submissions, a run failing on one request's
data, shutdown with pending requests and with callers waiting, argument
checks), compiled with the documented strict flags and run on models saved
by GraphBuilder. Its outputs are compared byte for byte with batch-1 runs of
a plain session. Skipped only when no C compiler exists."""

import os
import re
import shutil
import subprocess

import pytest

from batch_helpers import gather_model, mlp
from tinyinfer import _lib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIBDIR = os.path.dirname(_lib.lib_path)
CC = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("batcher_c")
    out = d / "batcher_threads"
    cmd = [CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-D_POSIX_C_SOURCE=200809L", "-Iinclude",
           "tests/c/batcher_threads.c", f"-L{LIBDIR}", "-ltinyinfer", "-pthread", f"-Wl,-rpath,{LIBDIR}", "-o",
           str(out)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    (d / "mlp.tinf").write_bytes(mlp()[0])
    (d / "gather.tinf").write_bytes(gather_model()[0])
    return out, d


def test_batcher_from_c_threads(program):
    out, d = program
    p = subprocess.run([str(out), str(d / "mlp.tinf"), str(d / "gather.tinf")], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", p.stdout, re.M)
    assert m and int(m.group(1)) >= 40 and m.group(2) == "0", p.stdout
    assert "FAIL" not in p.stdout


def test_usage(program):
    out, _ = program
    p = subprocess.run([str(out)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage" in p.stderr
