"""int8 PRelu against the numpy reference of TFLite's integer arithmetic
(reference_int8.prelu), bit for bit: constant slopes per channel, per tensor
and per element, a slope computed at run time, extreme parameters, in place,
and the int8-static rewrite of a PRelu network (its PRelu runs in int8)."""

import numpy as np
import pytest

import reference as ref
import reference_int8 as R
import tinyinfer as ti
from test_ops_int8 import Q, close_to_float, deq, fit_q, rand_i8, rand_q, same

SHAPES = [((1, 4, 4, 8), (8,)), ((2, 3, 5, 16), (1, 1, 16)), ((3, 7), (1,)), ((2, 3, 4), (2, 3, 4)),
          ((1, 5, 5, 3), (5, 1, 3)), ((40,), (40,)), ((1, 6, 6, 32), (32,)), ((1, 3, 3, 24), (24,)),
          ((2, 9, 4), (9, 1))]


@pytest.mark.parametrize("case", range(len(SHAPES)))
@pytest.mark.parametrize("const_slope", [True, False])
def test_prelu(case, const_slope):
    sx, sa = SHAPES[case]
    rng = np.random.default_rng(900 + case)
    for trial in range(4):
        x, a = rand_i8(rng, *sx), rand_i8(rng, *sa)
        xq, aq = rand_q(rng, -2, 0.5), rand_q(rng, -3, -1)
        real = ref.prelu(deq(x, xq).astype(np.float32), deq(a, aq).astype(np.float32))
        yq = fit_q(rng, real)
        if trial == 2:  # extremes: zero points at the ends, an output scale below the input's (multiplier > 1)
            xq, aq, yq = (xq[0], -128), (aq[0], 127), (np.float32(xq[0] * 0.3), 0)
        if trial == 3:  # all slope values at once
            a = np.resize(np.arange(-128, 128, dtype=np.int8), a.shape) if a.size > 1 else a
        g = Q()
        xt = g.input(x, xq)
        at = g.const(a, aq[0], aq[1]) if const_slope else g.input(a, aq)
        got = g.run(g.op("PRelu", xt, at, q=yq))
        same(got, R.prelu(x, xq, a, aq, yq))
        close_to_float(got, yq, ref.prelu(deq(x, xq).astype(np.float32), deq(a, aq).astype(np.float32)))


def test_prelu_in_place_chain():
    """Two PRelu in a row (the planner may run them in place) and a large tensor over threads."""
    rng = np.random.default_rng(7)
    x, a = rand_i8(rng, 2, 32, 32, 24), rand_i8(rng, 24)
    xq, aq, yq, zq = (np.float32(0.05), 3), (np.float32(0.004), -7), (np.float32(0.04), -20), (np.float32(0.03), 5)
    g = Q()
    y = g.op("PRelu", g.input(x, xq), g.const(a, aq[0], aq[1]), q=yq)
    z = g.op("PRelu", y, g.const(a, aq[0], aq[1]), q=zq)
    got = g.run(z, threads=2)
    same(got, R.prelu(R.prelu(x, xq, a, aq, yq), yq, a, aq, zq))


def test_prelu_refuses():
    rng = np.random.default_rng(8)
    x = rand_i8(rng, 2, 3)
    g = Q()
    y = g.op("PRelu", g.input(x, (np.float32(0.1), 0)), g.const(rand_i8(rng, 2, 1, 3), 0.1, 0), q=(0.1, 0))
    with pytest.raises(ti.ShapeError, match="slope"):
        g.run(y)


def test_int8_static_prelu_network_runs_prelu_in_int8(tmp_path):
    """A Conv -> PRelu -> Conv -> PRelu net quantized int8-static: the PRelu ops become int8 ops (no
    Dequantize/Quantize around them) and the outputs stay close to float32."""
    rng = np.random.default_rng(9)
    b = ti.GraphBuilder("prelu_net")
    x = b.input("x", (1, 8, 8, 4))
    t = x
    for i, cin in enumerate((4, 8)):
        w = (rng.standard_normal((8, 3, 3, cin)) * 0.3).astype(np.float32)
        t = b.op("Conv2D", t, b.const(f"w{i}", w), b.const(f"b{i}", np.zeros(8, np.float32)), padding=1)
        t = b.op("PRelu", t, b.const(f"a{i}", rng.uniform(0.05, 0.3, 8).astype(np.float32)))
    b.output(t)
    src = tmp_path / "f.tinf"
    b.save(str(src))
    calib = rng.standard_normal((16, 8, 8, 4)).astype(np.float32)
    dst = tmp_path / "q.tinf"
    ti.quantize(str(src), str(dst), mode="int8-static", calib=calib)
    with ti.load(str(dst)) as m:
        kinds = [op.op for op in m.ops()]
        assert kinds.count("PRelu") == 2
        assert kinds.count("Dequantize") == 1, kinds  # only at the output: both PRelu run in int8
        xin = calib[:1]
        got = m.run(xin)[0]
    with ti.load(str(src)) as f:
        want = f.run(xin)[0]
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
