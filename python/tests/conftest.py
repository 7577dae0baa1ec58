"""Test set-up: use the package from python/ (with its built lib/), or the
library $TINYINFER_LIB names. Build it first with scripts/build-lib.sh."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

# The on-disk caches (conversions, prepacked weights) of a test run go to a
# folder of its own, never the user's ~/.cache/tinyinfer (tests that check the
# folder rules set their own).
if not os.environ.get("TINYINFER_CACHE_DIR"):
    import atexit
    import shutil
    import tempfile
    os.environ["TINYINFER_CACHE_DIR"] = tempfile.mkdtemp(prefix="tinyinfer-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TINYINFER_CACHE_DIR"], True)

import tinyinfer  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def run_op(op, inputs, consts=(), outputs=1, threads=1, **attrs):
    """Builds a one-op model: `inputs` are graph inputs (numpy arrays, fed at
    run time), `consts` follow them as constants (None = absent optional
    input), run with `threads` threads. Returns the list of outputs."""
    b = tinyinfer.GraphBuilder(op)
    ins = [b.input(f"in{i}", a.shape, a.dtype) for i, a in enumerate(inputs)]
    cs = [None if c is None else b.const(f"c{i}", c) for i, c in enumerate(consts)]
    out = b.op(op, *ins, *cs, outputs=outputs, **attrs)
    outs = out if isinstance(out, list) else [out]
    b.output(*outs)
    with b.load(threads=threads) as m:
        return m.run(list(inputs))


def assert_close(actual, expected, rtol=1e-5, atol=1e-5):
    """allclose with the absolute tolerance scaled by the reference's magnitude."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


_LEAK_CHECK = r"""
import os, sys
sys.path[:0] = [%r, %r]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
%s
step(2000)  # warm up
grown = []
for _ in range(3):
    r0 = rss()
    step(%d)
    grown.append(rss() - r0)
print(min(grown))
"""


def rss_growth(code, n=50000):
    """RSS growth over `n` calls of `step(n)`, which `code` defines (it may import
    from the test modules), the least of three rounds, measured in a fresh process:
    a leak grows every round, while threads that earlier tests left in the pytest
    process (and allocator noise) do not grow it every time."""
    import subprocess
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", _LEAK_CHECK % (os.path.dirname(HERE), HERE, code, n)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-4000:]
    return int(p.stdout.strip().splitlines()[-1])
