"""Model.run's fast path (one array of a shape one of the model's sessions
was made for, of the input's dtype, no options) against the general path's
checks: every result is compared with numpy, and every bad input is still
refused."""

import numpy as np
import pytest

import tinyinfer
from tinyinfer import InvalidArgumentError, InvalidStateError, TinyInferRuntimeError

RNG = np.random.default_rng(13)
W = RNG.standard_normal((5, 6)).astype(np.float32)
B = RNG.standard_normal(5).astype(np.float32)


def reference(x):
    """FullyConnected + ReLU in numpy (float64, then float32)."""
    return np.maximum(x.astype(np.float64) @ W.T.astype(np.float64) + B, 0).astype(np.float32)


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    b = tinyinfer.GraphBuilder("fc")
    x = b.input("x", (2, 6))
    y = b.op("FullyConnected", x, b.const("w", W), b.const("b", B), activation=1)
    b.output(y)
    path = tmp_path_factory.mktemp("fast") / "fc.tinf"
    b.save(str(path))
    return path.read_bytes()


def close(got, x):
    np.testing.assert_allclose(got, reference(x), rtol=1e-5, atol=1e-5)


def test_fast_path_results_and_strided_inputs(model_bytes):
    with tinyinfer.load(model_bytes) as m:
        x = RNG.standard_normal((2, 6)).astype(np.float32)
        first = m.run(x)[0]  # makes the session (general path)
        again = m.run(x)[0]  # the fast path
        close(first, x)
        np.testing.assert_array_equal(again, first)
        # a Fortran-ordered and a strided array of the same shape: copied by element
        for y in (np.asfortranarray(x), np.repeat(x, 2, axis=1)[:, ::2]):
            assert y.shape == x.shape and not y.flags.c_contiguous
            np.testing.assert_array_equal(m.run(y)[0], first)
        # results are fresh arrays: the next run does not change them
        m.run(RNG.standard_normal((2, 6)).astype(np.float32))
        close(again, x)
        view = m.run(x, copy=False)[0]
        assert not view.flags.writeable
        np.testing.assert_array_equal(view, first)


def test_fast_path_keeps_every_check(model_bytes):
    with tinyinfer.load(model_bytes) as m:
        x = RNG.standard_normal((2, 6)).astype(np.float32)
        m.run(x)
        np.testing.assert_array_equal(m.run(x.astype(np.float64))[0], m.run(x)[0])  # same-kind cast
        with pytest.raises(InvalidArgumentError, match="takes float32"):
            m.run(x.astype(np.complex64))
        with pytest.raises(InvalidArgumentError, match="shape"):
            m.run(np.zeros((2, 7), np.float32))
        with pytest.raises(InvalidArgumentError, match="shape"):
            m.run(np.zeros((2, 6, 1), np.float32))
        bad = x.copy()
        bad[1, 2] = np.nan
        with pytest.raises(InvalidArgumentError, match="non-finite"):
            m.run(bad, check_finite=True)
        huge = np.full((2, 6), 3e38, np.float32)  # finite input, infinite output
        with pytest.raises(TinyInferRuntimeError, match="non-finite"):
            m.run(huge, check_finite=True)
        m.close()
        with pytest.raises(InvalidStateError):
            m.run(x)


def test_fast_path_batch_sessions_stay_a_bounded_lru(model_bytes):
    with tinyinfer.load(model_bytes, shape_sessions=2) as m:
        def cached():
            return [shapes[0][0] for shapes in m._sessions_by_shape]

        xs = {n: RNG.standard_normal((n, 6)).astype(np.float32) for n in (3, 4, 5)}
        m.run(xs[3])
        m.run(xs[4])
        s3 = m._sessions_by_shape[((3, 6),)]
        close(m.run(xs[3])[0], xs[3])  # a fast-path hit moves 3 to the end
        assert cached() == [4, 3]
        close(m.run(xs[5])[0], xs[5])  # evicts 4
        assert cached() == [3, 5]
        close(m.run(xs[4])[0], xs[4])  # made again, evicts 3
        assert cached() == [5, 4] and s3._handle is None
        close(m.run(xs[3])[0], xs[3])  # the closed session is not used
        assert cached() == [4, 3]
