"""Models and numpy references shared by the batch-processing tests
(test_batch_*.py, test_batcher.py, test_dask.py)."""

import numpy as np

import tinyinfer


def mlp(d_in=32, hidden=64, d_out=10, seed=0, two_outputs=False):
    """(model bytes, reference function): x[1, d_in] -> FC(hidden, relu) ->
    FC(d_out); with two_outputs also tanh(x)."""
    r = np.random.default_rng(seed)
    w1 = (r.standard_normal((hidden, d_in)) * 0.2).astype(np.float32)
    b1 = r.standard_normal(hidden).astype(np.float32)
    w2 = (r.standard_normal((d_out, hidden)) * 0.2).astype(np.float32)
    b2 = r.standard_normal(d_out).astype(np.float32)
    b = tinyinfer.GraphBuilder("batch-mlp")
    x = b.input("x", (1, d_in))
    h = b.op("FullyConnected", x, b.const("w1", w1), b.const("b1", b1), activation=1)
    y = b.op("FullyConnected", h, b.const("w2", w2), b.const("b2", b2))
    if two_outputs:
        b.output(y, b.op("Tanh", x))
    else:
        b.output(y)
    data = b.to_bytes()
    b.close()

    def reference(xs):
        xs = np.asarray(xs, np.float64)
        h = np.maximum(xs @ w1.T.astype(np.float64) + b1, 0)
        y = h @ w2.T.astype(np.float64) + b2
        return (y, np.tanh(xs)) if two_outputs else y

    return data, reference


def two_input_model(d=8, seed=0):
    """(bytes, reference): a[1, d], b[1, d] -> a * b + a."""
    b = tinyinfer.GraphBuilder("two-in")
    a = b.input("a", (1, d))
    c = b.input("b", (1, d))
    b.output(b.op("Add", b.op("Mul", a, c), a))
    data = b.to_bytes()
    b.close()
    return data, lambda a, c: np.asarray(a, np.float64) * c + a


def gather_model(table_rows=16, width=4):
    """(bytes, table): idx[1, 1] int32 -> table[idx] of shape [1, 1, width];
    an index out of range fails the run (a runtime error)."""
    table = np.arange(table_rows * width, dtype=np.float32).reshape(table_rows, width)
    b = tinyinfer.GraphBuilder("gather")
    i = b.input("idx", (1, 1), np.int32)
    b.output(b.op("Gather", b.const("table", table), i, axis=0))
    data = b.to_bytes()
    b.close()
    return data, table


def close(actual, expected, tol=1e-4):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    assert np.asarray(actual).shape == expected.shape, (np.asarray(actual).shape, expected.shape)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=tol, atol=tol * scale)
