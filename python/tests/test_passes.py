"""The graph optimization passes run at load (Passes/, docs/architecture.md):
each pattern is rewritten and reported, each near miss is left alone, and the
outputs with the passes equal the outputs without them (BatchNorm folding
within float rounding) and the numpy reference."""
import ctypes
from ctypes import byref

import numpy as np
import pytest

import tinyinfer as ti
from tinyinfer import _lib
from tinyinfer import InvalidArgumentError, ShapeError

import reference as R

RNG = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def both(b, feeds):
    """Loads the builder's file with and without the graph passes; returns
    (passes report, op names with passes, outputs with, outputs without)."""
    data = b.to_bytes()
    with ti.load(data) as on, ti.load(data, optimize=False) as off:
        assert not [p for p in off.passes if not p.startswith("fold constant")]
        return on.passes, [o.op for o in on.ops()], on.run(feeds), off.run(feeds)


def exact(a, b):
    for x, y in zip(a, b):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert np.array_equal(x, y, equal_nan=True)


def graph_passes(report):
    return [p for p in report if not p.startswith("fold constant")]


# -- BatchNorm folding ----------------------------------------------------------

def bn_params(c):
    return (rand(c), rand(c), rand(c), np.abs(rand(c)) + 0.5)


def add_bn(b, x, params, name="bn", eps=1e-3):
    s, t, m, v = params
    return b.op("BatchNorm", x, b.const(None, s), b.const(None, t), b.const(None, m), b.const(None, v),
                name=name, epsilon=eps)


@pytest.mark.parametrize("kind", ["Conv2D", "Conv2D-nobias", "DepthwiseConv2D", "FullyConnected"])
def test_batchnorm_folded(kind):
    b = ti.GraphBuilder()
    params = bn_params(6)
    if kind.startswith("Conv2D"):
        x = b.input("x", (1, 7, 7, 3))
        feed = rand(1, 7, 7, 3)
        w, bias = rand(6, 3, 3, 3), (None if kind.endswith("nobias") else rand(6))
        y = b.op("Conv2D", x, b.const("w", w), None if bias is None else b.const("b", bias), name="conv",
                 strides=[2, 2], padding=1)
        ref = R.conv2d(feed, w, bias, strides=(2, 2), padding=1)
    elif kind == "DepthwiseConv2D":
        x = b.input("x", (1, 6, 6, 3))
        feed = rand(1, 6, 6, 3)
        w, bias = rand(1, 3, 3, 6), rand(6)
        y = b.op("DepthwiseConv2D", x, b.const("w", w), b.const("b", bias), name="conv", depth_multiplier=2)
        ref = R.depthwise_conv2d(feed, w, bias, depth_multiplier=2)
    else:
        x = b.input("x", (3, 5))
        feed = rand(3, 5)
        w, bias = rand(6, 5), rand(6)
        y = b.op("FullyConnected", x, b.const("w", w), b.const("b", bias), name="conv")
        ref = R.fully_connected(feed, w, bias)
    b.output(add_bn(b, y, params))
    report, ops, on, off = both(b, [feed])
    assert f"fold BatchNorm 'bn' into {kind.split('-')[0]} 'conv'" in report
    assert "BatchNorm" not in ops
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on[0], R.batch_norm(ref, *params, epsilon=1e-3), rtol=1e-4, atol=1e-4)


def test_batchnorm_then_relu_become_one_conv():
    b = ti.GraphBuilder()
    x = b.input("x", (1, 5, 5, 2))
    y = b.op("Conv2D", x, b.const("w", rand(4, 3, 3, 2)), b.const("b", rand(4)), name="conv")
    r = b.op("Relu", add_bn(b, y, bn_params(4)), name="r")
    b.output(r)
    feed = rand(1, 5, 5, 2)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == ["fold BatchNorm 'bn' into Conv2D 'conv'", "fuse Relu 'r' into Conv2D 'bn'"]
    assert ops == ["Conv2D"]
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-5)


def conv_bn(b, x, act=0, params=None):
    y = b.op("Conv2D", x, b.const("w", rand(4, 1, 1, 2)), b.const("b", rand(4)), name="conv", activation=act)
    return y, add_bn(b, y, params or bn_params(4))


@pytest.mark.parametrize("case", ["read twice", "graph output", "activation", "variable weights",
                                  "variable bn params"])
def test_batchnorm_not_folded(case):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 3, 3, 2))
    feeds = [rand(1, 3, 3, 2)]
    if case == "read twice":
        y, z = conv_bn(b, x)
        b.output(z, b.op("Tanh", y))
    elif case == "graph output":
        y, z = conv_bn(b, x)
        b.output(z, y)
    elif case == "activation":
        y, z = conv_bn(b, x, act=1)
        b.output(z)
    elif case == "variable weights":
        w = b.input("w", (4, 1, 1, 2))
        feeds.append(rand(4, 1, 1, 2))
        b.output(add_bn(b, b.op("Conv2D", x, w), bn_params(4)))
    else:
        v = b.input("v", (4,))
        feeds.append(np.abs(rand(4)) + 0.5)
        s, t, m, _ = bn_params(4)
        y = b.op("Conv2D", x, b.const("w", rand(4, 1, 1, 2)))
        b.output(b.op("BatchNorm", y, b.const(None, s), b.const(None, t), b.const(None, m), v))
    report, ops, on, off = both(b, feeds)
    assert not any("BatchNorm" in p for p in report)
    assert "BatchNorm" in ops
    exact(on, off)


# -- activation fusion ------------------------------------------------------------

def producer(b, kind, x):
    if kind == "Conv2D":
        return b.op("Conv2D", x, b.const("w", rand(3, 3, 3, 2)), b.const("b", rand(3)), name="p", padding=1)
    if kind == "DepthwiseConv2D":
        return b.op("DepthwiseConv2D", x, b.const("w", rand(1, 3, 3, 2)), name="p", padding=1)
    if kind == "FullyConnected":
        return b.op("FullyConnected", x, b.const("w", rand(5, 2)), b.const("b", rand(5)), name="p")
    if kind in ("Add", "Sub", "Mul", "Div"):
        return b.op(kind, x, b.const("c", rand(2) + 3.0), name="p")
    if kind in ("MaxPool2D", "AveragePool2D"):
        return b.op(kind, x, name="p", filter=[2, 2], padding=1)
    if kind == "TransposeConv2D":
        return b.op(kind, x, b.const("w", rand(3, 3, 3, 2)), b.const("b", rand(3)), name="p", strides=[2, 2])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["Conv2D", "DepthwiseConv2D", "FullyConnected", "Add", "Sub", "Mul", "Div",
                                  "MaxPool2D", "AveragePool2D", "TransposeConv2D"])
@pytest.mark.parametrize("act", ["Relu", "Relu6"])
def test_activation_fused(kind, act):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4, 4, 2))
    b.output(b.op(act, producer(b, kind, x), name="a"))
    feed = rand(1, 4, 4, 2, scale=4.0)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == [f"fuse {act} 'a' into {kind} 'p'"]
    assert ops == [kind]
    exact(on, off)


def test_activation_fused_reference():
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4, 4, 2))
    w, bias = rand(3, 3, 3, 2), rand(3)
    y = b.op("Conv2D", x, b.const("w", w), b.const("b", bias), name="p", padding=1)
    b.output(b.op("Relu6", y, name="a"))
    feed = rand(1, 4, 4, 2, scale=3.0)
    report, ops, on, off = both(b, [feed])
    assert ops == ["Conv2D"]
    np.testing.assert_allclose(on[0], R.conv2d(feed, w, bias, padding=1, activation=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["read twice", "graph output", "has activation", "LeakyRelu", "Maximum",
                                  "MatMul", "graph input"])
def test_activation_not_fused(case):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4, 4, 2))
    if case == "read twice":
        y = producer(b, "Conv2D", x)
        b.output(b.op("Relu", y), b.op("Tanh", y))
    elif case == "graph output":
        y = producer(b, "Conv2D", x)
        b.output(b.op("Relu", y), y)
    elif case == "has activation":
        y = b.op("Add", x, x, activation=2)
        b.output(b.op("Relu", y))
    elif case == "LeakyRelu":
        b.output(b.op("LeakyRelu", producer(b, "Conv2D", x)))
    elif case == "Maximum":
        b.output(b.op("Relu", b.op("Maximum", x, b.const(None, rand(2)))))
    elif case == "MatMul":
        b.output(b.op("Relu", b.op("MatMul", x, b.const(None, rand(2, 3)))))
    else:
        b.output(b.op("Relu", x))
    report, ops, on, off = both(b, [rand(1, 4, 4, 2, scale=4.0)])
    assert not any(p.startswith("fuse") for p in report)
    exact(on, off)


def test_int8_activation_not_fused():
    """An int8 Add followed by an int8 Relu: the fused range would come from
    the output's quantization, so the pass leaves integer ops alone."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 8), dtype="int8")
    b.quantization(x, 0.05, -3)
    y = b.op("Add", x, x)
    b.quantization(y, 0.1, 2)
    r = b.op("Relu", y)
    b.quantization(r, 0.05, -128)
    b.output(r)
    feed = RNG.integers(-128, 128, (1, 8)).astype(np.int8)
    report, ops, on, off = both(b, [feed])
    assert ops == ["Add", "Relu"]
    assert graph_passes(report) == []
    exact(on, off)


# -- Constant Mul / Add / Sub folding ---------------------------------------------

def _linear(b, kind):
    """A producer of 6 output channels and its numpy reference."""
    if kind == "Conv2D":
        x = b.input("x", (2, 7, 7, 3))
        feed = rand(2, 7, 7, 3)
        w, bias = rand(6, 3, 3, 3), rand(6)
        y = b.op("Conv2D", x, b.const("w", w), b.const("b", bias), name="conv", strides=[2, 2], padding=1)
        return y, feed, R.conv2d(feed, w, bias, strides=(2, 2), padding=1)
    if kind == "DepthwiseConv2D":
        x = b.input("x", (1, 6, 6, 3))
        feed = rand(1, 6, 6, 3)
        w = rand(1, 3, 3, 6)
        y = b.op("DepthwiseConv2D", x, b.const("w", w), None, name="conv", depth_multiplier=2)
        return y, feed, R.depthwise_conv2d(feed, w, None, depth_multiplier=2)
    x = b.input("x", (3, 5))
    feed = rand(3, 5)
    w, bias = rand(6, 5), rand(6)
    return b.op("FullyConnected", x, b.const("w", w), b.const("b", bias), name="conv"), feed, \
        R.fully_connected(feed, w, bias)


@pytest.mark.parametrize("kind,cshape", [
    (k, c) for k in ["Conv2D", "DepthwiseConv2D", "FullyConnected"] for c in [(), (1,), (6,), (1, 1, 6)]
    if len(c) <= (2 if k == "FullyConnected" else 4)])  # a constant of higher rank broadcasts the output up
@pytest.mark.parametrize("op", ["Mul", "Add", "Sub", "Sub-const-first", "Mul-const-first"])
def test_constant_affine_folded(kind, op, cshape):
    """A Mul/Add/Sub with a constant (one value or one per output channel)
    after a linear op: folded into its weights and bias, one op left,
    within float rounding of the unfolded graph and of numpy."""
    b = ti.GraphBuilder()
    y, feed, ref = _linear(b, kind)
    c = rand(*cshape) if cshape else np.float32(RNG.standard_normal())
    cst = b.const("c", np.asarray(c, np.float32).reshape(cshape))
    name = op.split("-")[0]
    args = (cst, y) if op.endswith("const-first") else (y, cst)
    b.output(b.op(name, *args, name="aff"))
    report, ops, on, off = both(b, [feed])
    assert f"fold {name} 'aff' into {kind} 'conv'" in report
    assert ops == [kind]
    cc = np.asarray(c, np.float32).reshape(cshape)
    want = {"Mul": ref * cc, "Add": ref + cc, "Sub": ref - cc, "Sub-const-first": cc - ref,
            "Mul-const-first": cc * ref}[op]
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on[0], want, rtol=1e-4, atol=1e-4)


def test_constant_affine_chain_then_activation_become_one_conv():
    """Conv -> Mul(c) -> Add(d) -> Relu: one Conv2D with the Relu fused."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 5, 5, 2))
    w, bias = rand(4, 3, 3, 2), rand(4)
    y = b.op("Conv2D", x, b.const("w", w), b.const("b", bias), name="conv")
    s, t = rand(4), rand(4)
    m = b.op("Mul", y, b.const("s", s), name="m")
    a = b.op("Add", m, b.const("t", t), name="a")
    b.output(b.op("Relu", a, name="r"))
    feed = rand(1, 5, 5, 2)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == ["fold Mul 'm' into Conv2D 'conv'", "fold Add 'a' into Conv2D 'm'",
                                    "fuse Relu 'r' into Conv2D 'a'"]
    assert ops == ["Conv2D"]
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on[0], np.maximum(R.conv2d(feed, w, bias) * s + t, 0), rtol=1e-4, atol=1e-4)


def test_batchnorm_after_a_folded_add():
    """Conv2D -> Add(c) -> BatchNorm -> Relu (PaddlePaddle's conv bias as an
    Add before its BatchNorm): the BatchNorm's producer is linear only once
    the Add is folded, so the folds run again; one Conv2D is left."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 5, 5, 2))
    w, c, params = rand(4, 3, 3, 2), rand(4), bn_params(4)
    y = b.op("Conv2D", x, b.const("w", w), None, name="conv")
    a = b.op("Add", y, b.const("c", c), name="a")
    b.output(b.op("Relu", add_bn(b, a, params), name="r"))
    feed = rand(1, 5, 5, 2)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == ["fold Add 'a' into Conv2D 'conv'", "fold BatchNorm 'bn' into Conv2D 'a'",
                                    "fuse Relu 'r' into Conv2D 'bn'"]
    assert ops == ["Conv2D"]
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on[0], np.maximum(R.batch_norm(R.conv2d(feed, w) + c, *params, epsilon=1e-3), 0),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["spatial const", "inf const", "input operand", "activation", "conv activation",
                                  "read twice", "graph output", "Div", "broadcast up"])
def test_constant_affine_not_folded(case):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4, 4, 2))
    feeds = [rand(1, 4, 4, 2)]
    y = b.op("Conv2D", x, b.const("w", rand(3, 1, 1, 2)), b.const("b", rand(3)), name="conv",
             activation=1 if case == "conv activation" else 0)
    c = b.const("c", rand(3))
    if case == "spatial const":
        b.output(b.op("Mul", y, b.const(None, rand(1, 4, 4, 3))))
    elif case == "inf const":
        b.output(b.op("Mul", y, b.const(None, np.array([1, np.inf, 2], np.float32))))
    elif case == "input operand":
        s = b.input("s", (3,))
        feeds.append(rand(3))
        b.output(b.op("Mul", y, s))
    elif case == "activation":
        b.output(b.op("Add", y, c, activation=1))
    elif case == "read twice":
        b.output(b.op("Add", y, c), b.op("Tanh", y))
    elif case == "graph output":
        b.output(b.op("Add", y, c), y)
    elif case == "Div":
        b.output(b.op("Div", y, c))
    elif case == "broadcast up":
        b.output(b.op("Add", y, b.const(None, rand(2, 1, 1, 3))))
    else:
        b.output(b.op("Add", y, c))
    report, ops, on, off = both(b, feeds)
    assert not any(p.startswith("fold") and "constant" not in p for p in report), report
    exact(on, off)


# -- TransposeConv2D: BatchNorm, constant Mul / Add / Sub, Relu ---------------------

# (kernel, attributes): stride 1; stride 2 with explicit pads and output
# padding (several taps per output pixel); 2x2 stride 2 (one tap per pixel,
# the kernel's per-tap GEMM path).
TCONV_GEOMETRY = {
    "s1": (3, dict(strides=[1, 1])),
    "s2": (3, dict(strides=[2, 2], padding=2, pads=[1, 0, 1, 1], output_padding=[1, 0])),
    "s2k2": (2, dict(strides=[2, 2])),
}


def _tconv(b, geometry, bias=True, cout=5, act=0):
    """TransposeConv2D 'tc' of a batch-2 input with 4 channels into `cout`,
    and its numpy reference (reference.transpose_conv2d: a scatter of each
    input pixel's taps)."""
    k, attrs = TCONV_GEOMETRY[geometry]
    x = b.input("x", (2, 4, 5, 4))
    feed = rand(2, 4, 5, 4)
    w, bv = rand(cout, k, k, 4), (rand(cout) if bias else None)
    y = b.op("TransposeConv2D", x, b.const("w", w), None if bv is None else b.const("b", bv), name="tc",
             activation=act, **attrs)
    ref = R.transpose_conv2d(feed, w, bv, strides=attrs["strides"], padding=attrs.get("padding", 0),
                             pads=attrs.get("pads", (0, 0, 0, 0)), output_padding=attrs.get("output_padding", (0, 0)))
    return y, feed, ref


@pytest.mark.parametrize("geometry", list(TCONV_GEOMETRY))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("pattern", ["Add", "Add-(1,1,1,C)", "Add-scalar", "Sub", "Sub-const-first", "Mul",
                                     "Mul-(1,1,1,C)", "BatchNorm", "Relu", "Relu6", "Add-BatchNorm-Relu"])
def test_transpose_conv_folded(geometry, bias, pattern):
    """What follows a TransposeConv2D (weights [Cout,KH,KW,Cin]: output
    channel first) folds into it as into Conv2D: one TransposeConv2D left
    (with a bias made when it had none), within float rounding of the
    unfolded graph and of numpy."""
    b = ti.GraphBuilder()
    y, feed, ref = _tconv(b, geometry, bias)
    c = rand(5)
    params = bn_params(5)
    want_lines = []
    if pattern.startswith(("Add", "Sub", "Mul")) and pattern != "Add-BatchNorm-Relu":
        name = pattern.split("-")[0]
        cc = c.reshape(1, 1, 1, 5) if pattern.endswith("(1,1,1,C)") else (c[:1].reshape(()) if "scalar" in pattern else c)
        args = (b.const("c", cc), y) if pattern.endswith("const-first") else (y, b.const("c", cc))
        b.output(b.op(name, *args, name="f"))
        want = {"Add": ref + cc, "Sub": ref - cc, "Mul": ref * cc}[name]
        if pattern.endswith("const-first"):
            want = cc - ref
        want_lines = [f"fold {name} 'f' into TransposeConv2D 'tc'"]
    elif pattern == "BatchNorm":
        b.output(add_bn(b, y, params, name="f"))
        want = R.batch_norm(ref, *params, epsilon=1e-3)
        want_lines = ["fold BatchNorm 'f' into TransposeConv2D 'tc'"]
    elif pattern in ("Relu", "Relu6"):
        b.output(b.op(pattern, y, name="f"))
        want = np.maximum(ref, 0) if pattern == "Relu" else np.clip(ref, 0, 6)
        want_lines = [f"fuse {pattern} 'f' into TransposeConv2D 'tc'"]
    else:
        # the tail of ocr_det: TransposeConv2D -> Add(per-channel) -> BatchNorm -> Relu
        a = b.op("Add", y, b.const("c", c), name="a")
        b.output(b.op("Relu", add_bn(b, a, params), name="r"))
        want = np.maximum(R.batch_norm(ref + c, *params, epsilon=1e-3), 0)
        want_lines = ["fold BatchNorm 'bn' into TransposeConv2D 'a'", "fold Add 'a' into TransposeConv2D 'tc'",
                      "fuse Relu 'r' into TransposeConv2D 'bn'"]
    report, ops, on, off = both(b, [feed])
    assert sorted(graph_passes(report)) == sorted(want_lines), report
    assert ops == ["TransposeConv2D"]
    np.testing.assert_allclose(on[0], off[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(on[0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["read twice", "graph output", "spatial const", "per-batch const",
                                  "conv activation", "Div", "variable weights", "variable bias", "bn read twice"])
def test_transpose_conv_not_folded(case):
    """No fold when the TransposeConv2D's output has another reader or is a
    graph output, when the constant does not broadcast per output channel,
    when the TransposeConv2D applies an activation itself, or when its
    weights or bias are not constants: outputs exactly those without passes."""
    b = ti.GraphBuilder()
    feeds = None
    if case in ("variable weights", "variable bias"):
        x = b.input("x", (2, 4, 5, 4))
        w = b.input("w", (5, 3, 3, 4)) if case == "variable weights" else b.const("w", rand(5, 3, 3, 4))
        bb = b.input("b", (5,)) if case == "variable bias" else b.const("b", rand(5))
        y = b.op("TransposeConv2D", x, w, bb, name="tc", strides=[2, 2])
        feeds = [rand(2, 4, 5, 4), rand(5, 3, 3, 4) if case == "variable weights" else rand(5)]
    else:
        y, feed, _ = _tconv(b, "s2", act=1 if case == "conv activation" else 0)
        feeds = [feed]
    c = b.const("c", rand(5))
    if case == "read twice":
        b.output(b.op("Add", y, c), b.op("Tanh", y))
    elif case == "graph output":
        b.output(b.op("Mul", y, c), y)
    elif case == "bn read twice":
        b.output(add_bn(b, y, bn_params(5)), b.op("Relu", y))
    elif case == "spatial const":
        b.output(b.op("Add", y, b.const(None, rand(1, 1, 9, 5))))  # one value per output column (s2: 9)
    elif case == "per-batch const":
        b.output(b.op("Mul", y, b.const(None, rand(2, 1, 1, 5))))
    elif case == "Div":
        b.output(b.op("Div", y, c))
    else:
        b.output(b.op("Add", y, c))
    report, ops, on, off = both(b, feeds)
    assert not any(p.startswith(("fold", "fuse")) and "constant" not in p for p in report), report
    assert ops.count("TransposeConv2D") == 1 and len(ops) >= 2
    exact(on, off)


# -- PRelu fusion into Add -------------------------------------------------------

@pytest.mark.parametrize("c_shape,slope_shape", [
    (c, sl) for c in [(1, 5, 7, 20), (2, 3, 20)] for sl in [(1, 1, 20), (20,), (1, 1, 1, 20), (1,), ()]
    if len(sl) <= len(c)])  # a slope of higher rank than the input is not a PRelu of it
def test_prelu_fused_into_add(c_shape, slope_shape):
    """Add then PRelu with a per-channel (or single) constant slope: one Add
    that adds and applies the slope in one pass, exactly as the two ops
    (and the numpy reference), a NaN staying NaN."""
    b = ti.GraphBuilder()
    x = b.input("x", c_shape)
    r = b.input("r", c_shape)
    slope = rand(*slope_shape) if slope_shape else np.float32(RNG.standard_normal())
    y = b.op("Add", x, r, name="p")
    b.output(b.op("PRelu", y, b.const("s", np.asarray(slope, np.float32).reshape(slope_shape)), name="a"))
    fx, fr = rand(*c_shape, scale=3.0), rand(*c_shape)
    fx.reshape(-1)[7] = np.nan
    report, ops, on, off = both(b, [fx, fr])
    assert graph_passes(report) == ["fuse PRelu 'a' into Add 'p'"]
    assert ops == ["Add"]
    exact(on, off)
    want = R.prelu(R.add(fx, fr), np.asarray(slope, np.float32).reshape(slope_shape))
    assert np.array_equal(on[0], want, equal_nan=True) and np.isnan(on[0]).sum() == 1


@pytest.mark.parametrize("case", ["broadcast add", "spatial slope", "slope input", "add activation",
                                  "graph output", "read twice", "Sub"])
def test_prelu_not_fused(case):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4, 4, 8))
    slope = b.const("s", rand(1, 1, 8))
    feeds = [rand(1, 4, 4, 8, scale=3.0)]
    if case == "broadcast add":
        b.output(b.op("PRelu", b.op("Add", x, b.const(None, rand(8))), slope))
    elif case == "spatial slope":
        b.output(b.op("PRelu", b.op("Add", x, x), b.const(None, rand(4, 4, 8))))
    elif case == "slope input":
        s = b.input("slope", (1, 1, 8))
        b.output(b.op("PRelu", b.op("Add", x, x), s))
        feeds.append(rand(1, 1, 8))
    elif case == "add activation":
        b.output(b.op("PRelu", b.op("Add", x, x, activation=1), slope))
    elif case == "graph output":
        y = b.op("Add", x, x)
        b.output(b.op("PRelu", y, slope), y)
    elif case == "read twice":
        y = b.op("Add", x, x)
        b.output(b.op("PRelu", y, slope), b.op("Tanh", y))
    else:
        b.output(b.op("PRelu", b.op("Sub", x, b.const(None, rand(1, 4, 4, 8))), slope))
    report, ops, on, off = both(b, feeds)
    assert not any(p.startswith("fuse") for p in report)
    exact(on, off)


@pytest.mark.parametrize("case", ["Sub", "count", "broadcast", "activation"])
def test_prelu_slopes_attribute_checked(case):
    """prelu_slopes (what the pass writes) in a file is checked at load:
    Add only, one slope per channel, inputs of the output's shape, no
    fused activation besides."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 3, 8))
    other = b.const(None, rand(8)) if case == "broadcast" else x
    kind = "Sub" if case == "Sub" else "Add"
    slopes = list(map(float, rand(5 if case == "count" else 8)))
    attrs = dict(prelu_slopes=slopes)
    if case == "activation":
        attrs["activation"] = 1
    b.output(b.op(kind, x, other, **attrs))
    with pytest.raises(ti.TinyInferError, match="prelu_slopes"):
        ti.load(b.to_bytes(), optimize=False)


# -- Pad fusion -----------------------------------------------------------------

@pytest.mark.parametrize("conv,padding", [("Conv2D", 0), ("Conv2D", 2), ("DepthwiseConv2D", 0),
                                          ("DepthwiseConv2D", 2)])
def test_pad_fused(conv, padding):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 6, 5, 2))
    p = b.op("Pad", x, name="pad", pads=[0, 0, 1, 2, 2, 0, 0, 0])
    w = rand(3, 3, 3, 2) if conv == "Conv2D" else rand(1, 3, 3, 2)
    extra = {"pads": [1, 0, 0, 1]} if padding == 2 else {}
    y = b.op(conv, p, b.const("w", w), name="c", padding=padding, strides=[2, 1], **extra)
    b.output(y)
    feed = rand(1, 6, 5, 2)
    report, ops, on, off = both(b, [feed])
    total = [1, 2, 2, 0] if padding == 0 else [2, 2, 2, 1]
    assert graph_passes(report) == [f"fuse Pad 'pad' into {conv} 'c' (explicit pads {total})"]
    assert ops == [conv]
    exact(on, off)
    f = R.conv2d if conv == "Conv2D" else R.depthwise_conv2d
    np.testing.assert_allclose(on[0], f(feed, w, strides=(2, 1), padding=2, pads=total), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["value", "channels", "reflect", "same", "read twice", "weights"])
def test_pad_not_fused(case):
    b = ti.GraphBuilder()
    x = b.input("x", (1, 5, 5, 2))
    pads = [0, 0, 1, 1, 1, 1, 0, 0]
    attrs = {}
    if case == "value":
        attrs["value"] = 0.5
    elif case == "channels":
        pads = [0, 0, 1, 1, 1, 1, 0, 1]
    elif case == "reflect":
        attrs["mode"] = 1
    p = b.op("Pad", x, pads=pads, **attrs)
    cin = 3 if case == "channels" else 2
    if case == "weights":
        # The padded tensor is the weights of a convolution, not its input.
        y = b.op("Conv2D", b.const(None, rand(1, 9, 9, 2)), p)
        b.output(y)
    else:
        y = b.op("Conv2D", p, b.const(None, rand(4, 3, 3, cin)), padding=1 if case == "same" else 0)
        b.output(y, b.op("Tanh", p)) if case == "read twice" else b.output(y)
    report, ops, on, off = both(b, [rand(1, 5, 5, 2)])
    assert "Pad" in ops
    assert not any("Pad" in p for p in report)
    exact(on, off)


# -- identities and dead ops ------------------------------------------------------

def test_identities_removed():
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3, 4))
    t = b.op("Tanh", x, name="t")
    r = b.op("Reshape", t, name="r", shape=[2, 3, 4])
    s = b.op("Squeeze", r, name="s")
    p = b.op("Transpose", s, name="p", perm=[0, 1, 2])
    e = b.op("Exp", p, name="e")
    b.op("Logistic", e, name="dead1")
    b.op("Sqrt", b.op("Exp", x, name="dead2"), name="dead3")
    b.output(e)
    feed = rand(2, 3, 4)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == [
        "remove Reshape 'r' (identity)", "remove Squeeze 's' (identity)",
        "remove Transpose 'p' (identity permutation)",
        "remove Sqrt 'dead3' (output never read)", "remove Exp 'dead2' (output never read)",
        "remove Logistic 'dead1' (output never read)"]
    assert ops == ["Tanh", "Exp"]
    exact(on, off)
    np.testing.assert_allclose(on[0], np.exp(np.tanh(feed)), rtol=1e-5)


def test_identity_graph_output_written_by_producer():
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3))
    t = b.op("Tanh", x, name="t")
    r = b.op("Reshape", t, name="out", shape=[2, 3])
    b.output(r)
    feed = rand(2, 3)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == ["remove Reshape 'out' (identity)"]
    assert ops == ["Tanh"]
    with ti.load(b.to_bytes()) as m:
        assert [o.name for o in m.outputs] == ["out"]
        names = {t.index: t.name for t in m.tensors()}
        assert [names[i] for i in m.ops()[0].outputs] == ["out"]
    exact(on, off)


def test_identity_kept_when_it_must_copy():
    """The graph output is a Reshape of the graph input (or of a tensor read
    elsewhere): the op has to stay (it makes a distinct tensor)."""
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3))
    t = b.op("Tanh", x)
    b.output(b.op("Reshape", x, shape=[2, 3]), b.op("Reshape", t, shape=[2, 3]), b.op("Exp", t))
    report, ops, on, off = both(b, [rand(2, 3)])
    assert ops.count("Reshape") == 2
    assert graph_passes(report) == []
    exact(on, off)


def test_reshape_of_reshape_collapsed():
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3, 4))
    r1 = b.op("Reshape", b.op("Tanh", x), name="r1", shape=[6, 4])
    r2 = b.op("Reshape", r1, name="r2", shape=[4, -1])
    b.output(b.op("Exp", r2))
    feed = rand(2, 3, 4)
    report, ops, on, off = both(b, [feed])
    assert graph_passes(report) == ["collapse Reshape 'r1' + Reshape 'r2' into one Reshape",
                                    "remove Reshape 'r1' (output never read)"]
    assert ops == ["Tanh", "Reshape", "Exp"]
    exact(on, off)
    np.testing.assert_allclose(on[0], np.exp(np.tanh(feed)).reshape(4, 6), rtol=1e-5)


def test_reshape_to_original_shape_collapses_to_nothing():
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3, 4))
    t = b.op("Tanh", x)
    r2 = b.op("Reshape", b.op("ExpandDims", t, name="e", axis=0), name="r2", shape=[2, 3, 4])
    b.output(b.op("Exp", r2))
    report, ops, on, off = both(b, [rand(2, 3, 4)])
    assert ops == ["Tanh", "Exp"]
    assert "remove Reshape 'r2' (identity)" in report
    exact(on, off)


def test_identity_guard_with_other_input_shapes():
    """An identity for the file's shapes only: a session with shapes that
    make it a real reshape is refused with the reason; shapes that keep it an
    identity run."""
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3))
    b.output(b.op("Exp", b.op("Squeeze", b.op("Tanh", x))))
    with ti.load(b.to_bytes()) as m, ti.load(b.to_bytes(), optimize=False) as off:
        assert m.num_ops == 2
        feed = rand(4, 3)
        exact(m.run(feed), off.run(feed))
        with pytest.raises(ShapeError, match="identity for the file's shapes"):
            m.session(input_shapes=[(1, 3)])
        assert off.session(input_shapes=[(1, 3)]) is not None
    b = ti.GraphBuilder()
    x = b.input("x", (2, 3))
    b.output(b.op("Exp", b.op("Reshape", b.op("Tanh", x), shape=[-1, 3])))
    with ti.load(b.to_bytes()) as m, ti.load(b.to_bytes(), optimize=False) as off:
        assert m.num_ops == 2
        feed = rand(5, 3)
        exact(m.run(feed), off.run(feed))


# -- ordering -------------------------------------------------------------------

def interleaved(n_branches=2, depth=3, wide=4096):
    """Branches that each widen then narrow, built in interleaved order: every
    branch's wide tensor is alive at the same time."""
    b = ti.GraphBuilder()
    x = b.input("x", (1, 16))
    heads = [x] * n_branches
    ws = [[(rand(wide, 16, scale=0.1), rand(16, wide, scale=0.01)) for _ in range(depth)] for _ in range(n_branches)]
    for d in range(depth):
        wide_t = [b.op("FullyConnected", heads[i], b.const(None, ws[i][d][0]), activation=1)
                  for i in range(n_branches)]
        heads = [b.op("FullyConnected", wide_t[i], b.const(None, ws[i][d][1])) for i in range(n_branches)]
    y = heads[0]
    for h in heads[1:]:
        y = b.op("Add", y, h)
    b.output(y)
    return b


def test_reorder_lowers_the_arena():
    b = interleaved()
    data = b.to_bytes()
    feed = rand(1, 16)
    with ti.load(data) as on, ti.load(data, optimize=False) as off:
        lines = [p for p in on.passes if p.startswith("reorder")]
        assert len(lines) == 1
        before, after = [int(v) for v in lines[0].split("arena ")[1].rstrip(" B").split(" -> ")]
        assert before == off.arena_bytes and after == on.arena_bytes
        assert on.arena_bytes < off.arena_bytes
        assert on.arena_bytes <= off.arena_bytes * 0.75, (on.arena_bytes, off.arena_bytes)
        exact(on.run(feed), off.run(feed))


def test_reorder_keeps_a_good_order():
    b = ti.GraphBuilder()
    x = b.input("x", (1, 64))
    y = x
    for i in range(5):
        y = b.op("FullyConnected", y, b.const(None, rand(64, 64)))
    b.output(y)
    with ti.load(b.to_bytes()) as m:
        assert not any(p.startswith("reorder") for p in m.passes)


# -- the report through the C API -----------------------------------------------

def test_c_api_pass_report_and_flags():
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4))
    b.output(b.op("Relu", b.op("FullyConnected", x, b.const("w", rand(3, 4)), name="fc"), name="r"))
    data = b.to_bytes()
    buf = ctypes.create_string_buffer(data, len(data))
    L = _lib.lib
    h = _lib.ModelHandle()
    with pytest.raises(InvalidArgumentError):
        L.tinf_model_load_buffer_flags(buf, len(data), 8, byref(h))  # 2 and 4: TINF_LOAD_DENSE, _SPARSE_ALWAYS
    for flags, want in [(0, ["fuse Relu 'r' into FullyConnected 'fc'"]), (1, [])]:
        h = _lib.ModelHandle()
        L.tinf_model_load_buffer_flags(buf, len(data), flags, byref(h))
        n = ctypes.c_int32()
        L.tinf_model_pass_count(h, byref(n))
        text = ctypes.c_char_p()
        got = []
        for i in range(n.value):
            L.tinf_model_pass(h, i, byref(text))
            got.append(text.value.decode())
        assert got == want
        with pytest.raises(InvalidArgumentError):
            L.tinf_model_pass(h, n.value, byref(text))
        with pytest.raises(InvalidArgumentError):
            L.tinf_model_pass(h, 0, None)
        L.tinf_model_free(h)


def test_inspect_prints_the_passes(capsys, tmp_path):
    from tinyinfer.__main__ import main
    b = ti.GraphBuilder()
    x = b.input("x", (1, 4))
    b.output(b.op("Relu", b.op("FullyConnected", x, b.const("w", rand(3, 4)), name="fc"), name="r"))
    path = tmp_path / "m.tinf"
    b.save(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "load-time passes (1):" in out and "fuse Relu 'r' into FullyConnected 'fc'" in out
    assert main(["inspect", "--no-optimize", str(path)]) == 0
    assert "load-time passes: nothing to do" in capsys.readouterr().out
