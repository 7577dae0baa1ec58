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


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("c", [16, 24, 5, 32, 80])
def test_add_prelu_fused_large_threads(threads, c):
    """An int8 Add followed by a PRelu (fused into the Add at load) on a
    large tensor: whole rows of c channels split between the threads, each
    range's slopes from its first channel; bit for bit the reference."""
    rng = np.random.default_rng(60 + c)
    a, b, s = rand_i8(rng, 1, 40, 48, c), rand_i8(rng, 1, 40, 48, c), rand_i8(rng, c)
    aq, bq, tq = (np.float32(0.05), 3), (np.float32(0.04), -6), (np.float32(0.07), 2)
    sq, yq = (np.float32(0.01), -5), (np.float32(0.06), -11)
    g = Q()
    t = g.op("Add", g.input(a, aq), g.input(b, bq), q=tq)
    got = g.run(g.op("PRelu", t, g.const(s, sq[0], sq[1]), q=yq), threads=threads)
    same(got, R.prelu(R.add(a, aq, b, bq, tq), tq, s, sq, yq))


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


def _residual_prelu_net(rng, attrs_only=False):
    """Conv -> Add (residual) -> PRelu: the shape the load-time pass fuses
    (the Add takes the slopes, Passes/PReluFusion.swift), or with
    `attrs_only` the fused form itself written into the file."""
    b = ti.GraphBuilder("residual_prelu")
    x = b.input("x", (1, 6, 6, 8))
    w = (rng.standard_normal((8, 3, 3, 8)) * 0.3).astype(np.float32)
    c = b.op("Conv2D", x, b.const("w", w), b.const("b", np.zeros(8, np.float32)), padding=1)
    slopes = np.linspace(0.05, 2.5, 8).astype(np.float32)  # far from 1: dropping them shows
    if attrs_only:
        b.output(b.op("Add", c, x, prelu_slopes=list(map(float, slopes))))
    else:
        b.output(b.op("PRelu", b.op("Add", c, x), b.const("a", slopes)))
    return b, w, slopes


@pytest.mark.parametrize("attrs_only", [False, True])
def test_int8_static_keeps_the_prelu_fused_into_an_add(tmp_path, attrs_only):
    """Regression: the float-only fusion of PRelu into Add used to reach
    the quantizer, whose int8 Add has no slopes, so every such PRelu
    vanished from int8-static models (face_landmark's SQNR fell from 35 to
    12 dB). The quantizer now quantizes the unfused graph (an int8 Add and
    an int8 PRelu); a file that already holds the fused Add keeps that Add
    in float32. Both stay close to the numpy reference."""
    rng = np.random.default_rng(21)
    b, w, slopes = _residual_prelu_net(rng, attrs_only)
    src = tmp_path / "f.tinf"
    b.save(str(src))
    calib = rng.standard_normal((16, 6, 6, 8)).astype(np.float32)
    dst = tmp_path / "q.tinf"
    ti.quantize(str(src), str(dst), mode="int8-static", calib=calib)
    xin = calib[:2]
    with ti.load(str(dst)) as m:
        kinds = [op.op for op in m.ops()]
        passes = m.passes
        got = np.concatenate([m.run(xin[i:i + 1])[0] for i in range(2)])
        # A session for other input shapes infers the fused ops' types again
        # (the int8 fused Add's attribute was refused there once): batch 2 at once.
        with m.session(input_shapes=[xin.shape]) as s2:
            np.testing.assert_array_equal(s2.run(xin)[0], got)
    if attrs_only:
        assert "PRelu" not in kinds and kinds.count("Dequantize") >= 1, kinds
    else:
        # The int8 PRelu runs inside the int8 Add (the load-time int8 fusion of Passes/PReluFusion).
        assert "PRelu" not in kinds and kinds.count("Dequantize") == 1, kinds
        assert any(p.startswith("fuse int8 PRelu") for p in passes), passes
    # numpy reference, written out: SAME 3x3 convolution, residual add, PRelu.
    pad = np.pad(xin, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((2, 6, 6, 8), np.float64)
    for dy in range(3):
        for dx in range(3):
            conv += np.einsum("nhwc,oc->nhwo", pad[:, dy:dy + 6, dx:dx + 6, :], w[:, dy, dx, :])
    t = conv + xin
    want = np.where(t >= 0, t, t * slopes)
    err = np.abs(got - want).max()
    assert err <= 0.04 * np.abs(want).max(), err
