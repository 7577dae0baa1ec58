"""Work that does not depend on the input values is done once (issue 18):
constant folding at load for every op on constants (counted in the report),
and per session for shape arithmetic (Shape and what computes on it) and for
ops on constants that folding does not keep (Runtime/Hoisting.swift). Graphs
built to contain such work; references in plain numpy; the hoisted results
stay right over many runs with changing inputs and for other batch sizes."""
import numpy as np
import pytest

import tinyinfer as ti

RNG = np.random.default_rng(2018)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_constant_subgraph_is_folded_and_counted():
    c, d = rand(8), rand(8)
    b = ti.GraphBuilder()
    x = b.input("x", (2, 8))
    t = b.op("Tanh", b.const("c", c), name="tc")                 # constants only: folded at load
    m = b.op("Mul", t, b.const("d", d), name="md")
    r = b.op("Range", value=[0.0, 8.0, 1.0], name="r")           # no inputs: a constant too
    y = b.op("Add", b.op("Add", x, m, name="a1"), r, name="y")
    b.output(y)
    for optimize in (True, False):
        with ti.load(b.to_bytes(), optimize=optimize) as model:
            assert [o.op for o in model.ops()] == ["Add", "Add"]
            lines = [p for p in model.passes if p.startswith("fold constant")]
            assert "fold constant Range -> r" in lines
            assert lines[-1].startswith("fold constants: 3 ops computed once at load instead of every run")
            xv = rand(2, 8)
            (out,) = model.run(xv)
            np.testing.assert_allclose(out, xv + np.tanh(c) * d + np.arange(8, dtype=np.float32),
                                       rtol=1e-5, atol=1e-5)


def shape_model(rows=3):
    """y = x / n, n = the element count of x computed from Shape(x) (ReduceProd
    of its dims as float), then 4 elementwise ops that could reuse buffers."""
    b = ti.GraphBuilder()
    x = b.input("x", (rows, 4, 5))
    s = b.op("Shape", x, name="s")
    sf = b.op("Cast", s, dtype=1, name="sf")
    n = b.op("ReduceProd", sf, axes=[0], keep_dims=1, name="n")
    h = x
    for i in range(4):
        h = b.op("Tanh" if i % 2 == 0 else "Exp", h, name=f"h{i}")
    y = b.op("Div", h, n, name="y")
    b.output(y)
    return b.to_bytes()


def np_shape_model(x):
    h = x
    for i in range(4):
        h = np.tanh(h) if i % 2 == 0 else np.exp(h)
    return h / np.float32(x.size)


def test_shape_arithmetic_is_hoisted_per_session():
    with ti.load(shape_model()) as m:
        hoist = [p for p in m.passes if p.startswith("hoist:")]
        assert hoist == ["hoist: 3 ops not depending on input values computed once per session instead of every "
                         "run (Shape, Cast, ReduceProd)"]
        for _ in range(5):        # pinned: later ops never overwrite the hoisted values
            xv = rand(3, 4, 5)
            (y,) = m.run(xv)
            np.testing.assert_allclose(y, np_shape_model(xv), rtol=1e-5, atol=1e-6)
        # another batch: a session of its own, whose Shape gives the new count
        for rows in (1, 7):
            xv = rand(rows, 4, 5)
            (y,) = m.run(xv)
            np.testing.assert_allclose(y, np_shape_model(xv), rtol=1e-5, atol=1e-6)


def test_hoisted_ops_do_not_run_per_run():
    # a Range of 200000 floats (800 KB): over folding's growth limit, so hoisted per session
    count = 200_000
    b = ti.GraphBuilder()
    x = b.input("x", (1, count))
    r = b.op("Range", value=[0.0, float(count), 1.0], name="r")
    b.output(b.op("Add", x, r, name="y"))
    with ti.load(b.to_bytes()) as m:
        assert not any(p.startswith("fold constant") for p in m.passes)
        assert any(p.startswith("hoist: 1 op ") and "(Range)" in p for p in m.passes)
        xv = rand(1, count)
        (y,) = m.run(xv)
        np.testing.assert_array_equal(y, xv + np.arange(count, dtype=np.float32))
        prof = dict(m.profile(xv, runs=15))
        # the Add visits 600000 elements; the hoisted Range is an empty call
        assert prof["Range"] < prof["Add"] / 20, prof


def test_batch_plan_counts_the_pinned_buffers():
    # the arena a batch plan predicts is the arena a session of that batch allocates, hoisted buffers included
    from tinyinfer.batching import batch_bytes
    with ti.load(shape_model()) as m:
        for batch in (3, 5):
            arena, _ = batch_bytes(m, batch)
            with m.session(input_shapes=[(batch, 4, 5)]) as s:
                assert arena == s.arena_bytes
