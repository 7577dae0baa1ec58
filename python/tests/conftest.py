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
