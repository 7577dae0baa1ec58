"""Common-subexpression elimination (Passes/CommonSubexpression.swift): graphs
built with duplicated ops run with fewer ops, report each merge and the
count, and give the numpy reference's outputs (and, bit for bit, the outputs
of the same file loaded without the graph passes). Near misses (other
attributes, other constants, other output quantization, graph outputs) are
left alone."""
import numpy as np
import pytest

import tinyinfer as ti

RNG = np.random.default_rng(1818)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def load_both(b):
    data = b.to_bytes()
    on, off = ti.load(data), ti.load(data, optimize=False)
    return on, off


def cse_lines(m):
    return [p for p in m.passes if p.startswith("merge ") or p.startswith("common subexpressions")]


def exact(a, b):
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)


def test_duplicate_chain_collapses():
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3, 8))
    c = rand(8)
    t1 = b.op("Tanh", x, name="t1")
    t2 = b.op("Tanh", x, name="t2")                 # duplicate of t1
    a1 = b.op("Add", t1, b.const("c1", c), name="a1")
    a2 = b.op("Add", t2, b.const("c2", c.copy()), name="a2")  # an equal constant, another tensor
    y = b.op("Mul", a1, a2, name="y")
    b.output(y)
    on, off = load_both(b)
    with on, off:
        assert off.num_ops == 5
        assert [o.op for o in on.ops()] == ["Tanh", "Add", "Mul"]
        lines = cse_lines(on)
        assert lines == ["merge Tanh 't2' into Tanh 't1' (same op, attributes and inputs)",
                         "merge Add 'a2' into Add 'a1' (same op, attributes and inputs)",
                         "common subexpressions: 2 duplicate ops removed"]
        xv = rand(2, 3, 8)
        (got,) = on.run(xv)
        ref = (np.tanh(xv.astype(np.float64)) + c) ** 2
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        exact(on.run(xv), off.run(xv))
        assert not cse_lines(off)


def test_multi_output_split_merged():
    b = ti.GraphBuilder()
    x = b.input("x", (4, 6))
    p1, q1 = b.op("Split", x, outputs=2, axis=1)
    p2, q2 = b.op("Split", x, outputs=2, axis=1)     # duplicate, both outputs read
    s = b.op("Sub", p1, q2, name="s")
    t = b.op("Sub", p2, q1, name="t")
    b.output(s, t)
    on, off = load_both(b)
    with on, off:
        assert [o.op for o in on.ops()].count("Split") == 1 and off.num_ops == 4
        assert cse_lines(on)[-1] == "common subexpressions: 1 duplicate op removed"
        xv = rand(4, 6)
        s_got, t_got = on.run(xv)
        np.testing.assert_array_equal(s_got, xv[:, :3] - xv[:, 3:])
        np.testing.assert_array_equal(t_got, xv[:, :3] - xv[:, 3:])


def test_near_misses_are_kept():
    b = ti.GraphBuilder()
    x = b.input("x", (3, 5))
    l1 = b.op("LeakyRelu", x, alpha=0.1, name="l1")
    l2 = b.op("LeakyRelu", x, alpha=0.2, name="l2")  # other attribute
    m1 = b.op("Mul", x, b.const("k1", np.full(5, 2, np.float32)), name="m1")
    m2 = b.op("Mul", x, b.const("k2", np.full(5, 3, np.float32)), name="m2")  # other constant
    m3 = b.op("Mul", b.const("k3", np.full(5, 2, np.float32)), x, name="m3")  # operands swapped: not matched
    y = b.op("Add", b.op("Add", l1, l2, name="s1"), b.op("Add", m1, b.op("Add", m2, m3, name="s2"), name="s3"),
             name="y")
    b.output(y)
    on, off = load_both(b)
    with on, off:
        assert on.num_ops == off.num_ops == 9
        assert cse_lines(on) == []
        xv = rand(3, 5)
        leaky = lambda a: np.where(xv >= 0, xv, a * xv)  # noqa: E731
        ref = (leaky(np.float32(0.1)) + leaky(np.float32(0.2))) + (2 * xv + (3 * xv + 2 * xv))
        np.testing.assert_allclose(on.run(xv)[0], ref, rtol=1e-6, atol=1e-6)


def test_graph_outputs_are_kept():
    b = ti.GraphBuilder()
    x = b.input("x", (2, 4))
    r1 = b.op("Relu", x, name="r1")
    r2 = b.op("Relu", x, name="r2")
    b.output(r1, r2)
    on, off = load_both(b)
    with on, off:
        assert on.num_ops == 2 and cse_lines(on) == []
        xv = rand(2, 4)
        for got in on.run(xv):
            np.testing.assert_array_equal(got, np.maximum(xv, 0))


def test_other_output_quantization_is_kept():
    """Two Quantize ops of one input with other output scales compute other values."""
    b = ti.GraphBuilder()
    x = b.input("x", (16,))
    q1 = b.op("Quantize", x, dtype=3, mode=0, name="q1")
    b.quantization(q1, 0.05, 0)
    q2 = b.op("Quantize", x, dtype=3, mode=0, name="q2")
    b.quantization(q2, 0.1, 0)
    q3 = b.op("Quantize", x, dtype=3, mode=0, name="q3")  # the same as q1: merged
    b.quantization(q3, 0.05, 0)
    d1, d2, d3 = (b.op("Dequantize", q) for q in (q1, q2, q3))
    y = b.op("Add", b.op("Add", d1, d2), d3, name="y")
    b.output(y)
    on, off = load_both(b)
    with on, off:
        merged = [line for line in cse_lines(on) if line.startswith("merge")]
        assert merged[0] == "merge Quantize 'q3' into Quantize 'q1' (same op, attributes and inputs)"
        ops = [o.op for o in on.ops()]
        assert ops.count("Quantize") == 2 and off.num_ops == 8
        xv = np.linspace(-3, 3, 16).astype(np.float32)

        def qdq(s):
            v = xv.astype(np.float64) / s
            q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -128, 127)
            return (q * np.float32(s)).astype(np.float32)
        ref = qdq(0.05) + qdq(0.1) + qdq(0.05)
        np.testing.assert_allclose(on.run(xv)[0], ref, rtol=1e-6, atol=1e-6)
        exact(on.run(xv), off.run(xv))


def test_with_other_input_shapes():
    """A merged graph still runs a session with another batch size."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 8))
    e1 = b.op("Exp", x, name="e1")
    e2 = b.op("Exp", x, name="e2")
    b.output(b.op("Sub", e1, e2, name="z"))
    with ti.load(b.to_bytes()) as m:
        assert m.num_ops == 2
        xv = rand(5, 8)
        (z,) = m.run(xv)
        np.testing.assert_array_equal(z, np.zeros((5, 8), np.float32))


def test_duplicate_of_a_graph_output_reads_it():
    """The later duplicate (not an output) goes; its reader reads the earlier op's output, a graph output."""
    b = ti.GraphBuilder()
    x = b.input("x", (2, 4))
    r1 = b.op("Relu", x, name="r1")
    r2 = b.op("Relu", x, name="r2")
    y = b.op("Add", r2, b.const("c", np.full(4, 1.5, np.float32)), name="y")
    b.output(r1, y)
    on, off = load_both(b)
    with on, off:
        assert on.num_ops == 2 and off.num_ops == 3
        assert cse_lines(on)[0] == "merge Relu 'r2' into Relu 'r1' (same op, attributes and inputs)"
        xv = rand(2, 4)
        r, yv = on.run(xv)
        np.testing.assert_array_equal(r, np.maximum(xv, 0))
        np.testing.assert_array_equal(yv, np.maximum(xv, 0) + np.float32(1.5))
