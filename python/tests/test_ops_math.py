"""FullyConnected, MatMul, elementwise, softmax and normalization ops against
the independent numpy references of reference.py."""

import numpy as np
import pytest

import reference as R
import tinyinfer
from conftest import assert_close, run_op


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# -- FullyConnected ------------------------------------------------------------

@pytest.mark.parametrize("xshape,n", [((1, 1), 1), ((1, 7), 5), ((3, 16), 9), ((2, 3, 33), 17), ((5, 64), 64),
                                      ((1, 784), 256), ((4, 2, 1, 10), 3)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("act", [0, 1, 2, 3])
def test_fully_connected(rng, xshape, n, bias, act):
    x = randn(rng, *xshape)
    w = randn(rng, n, xshape[-1])
    b = randn(rng, n) if bias else None
    (y,) = run_op("FullyConnected", [x], [w, b], activation=act)
    # A float32 sum's rounding error follows the size of the sum before the
    # activation clamps it (and its terms' order differs between CPU levels):
    # the absolute tolerance is scaled by the unclamped reference.
    scale = max(1.0, float(np.abs(R.fully_connected(x, w, b)).max()))
    np.testing.assert_allclose(y, R.fully_connected(x, w, b, activation=act), rtol=1e-5, atol=1e-5 * scale)


def test_fully_connected_weights_as_input(rng):
    x, w = randn(rng, 2, 8), randn(rng, 3, 8)
    (y,) = run_op("FullyConnected", [x, w])
    assert_close(y, R.fully_connected(x, w))


def test_fully_connected_refuses_bad_shapes(rng):
    with pytest.raises(tinyinfer.ShapeError, match="FullyConnected"):
        run_op("FullyConnected", [randn(rng, 2, 8)], [randn(rng, 3, 7)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="int32"):
        run_op("FullyConnected", [np.ones((2, 8), np.int32)], [randn(rng, 3, 8)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="activation"):
        run_op("FullyConnected", [randn(rng, 2, 8)], [randn(rng, 3, 8)], activation=9)


# -- MatMul --------------------------------------------------------------------

@pytest.mark.parametrize("ashape,bshape", [((2, 3), (3, 4)), ((1, 5, 7), (7, 9)), ((2, 1, 4, 6), (3, 6, 5)),
                                           ((3, 8, 8), (3, 8, 8)), ((1, 17), (17, 1)), ((2, 2, 33, 20), (20, 3))])
@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_matmul(rng, ashape, bshape, ta, tb):
    a = randn(rng, *ashape)
    b = randn(rng, *bshape)
    if ta:
        a = np.ascontiguousarray(np.swapaxes(a, -1, -2))
    if tb:
        b = np.ascontiguousarray(np.swapaxes(b, -1, -2))
    (y,) = run_op("MatMul", [a, b], transpose_a=ta, transpose_b=tb)
    assert_close(y, R.matmul(a, b, transpose_a=ta, transpose_b=tb))


def test_matmul_refuses(rng):
    with pytest.raises(tinyinfer.ShapeError):
        run_op("MatMul", [randn(rng, 2, 3), randn(rng, 4, 5)])
    with pytest.raises(tinyinfer.ShapeError):
        run_op("MatMul", [randn(rng, 2, 2, 3), randn(rng, 3, 3, 5)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="rank"):
        run_op("MatMul", [randn(rng, 3), randn(rng, 3, 5)])


# -- binary ops ----------------------------------------------------------------

SHAPES = [((4,), (4,)), ((2, 3), (3,)), ((2, 3), (2, 1)), ((1,), (5, 6)), ((3, 1, 5), (1, 4, 1)),
          ((2, 3, 4, 5), (5,)), ((2, 3, 4, 5), (1, 3, 1, 1)), ((2, 1, 4, 1), (2, 3, 1, 5)), ((17,), (1,)),
          ((1, 8, 8, 16), (1, 8, 8, 16)), ((6, 1), (1, 7)),
          # a per-channel vector over pixels (rows of a broadcast in one call), channel counts with a
          # step of 8 (8, 12, 24, 31) and without, both operand orders
          ((1, 5, 7, 8), (1, 1, 1, 8)), ((1, 3, 5, 12), (12,)), ((2, 4, 3, 24), (1, 1, 1, 24)),
          ((1, 1, 1, 31), (1, 6, 5, 31)), ((3, 7), (1, 7))]
BINARY = {"Add": R.add, "Sub": R.sub, "Mul": R.mul, "Div": R.div, "Maximum": R.maximum, "Minimum": R.minimum}


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_binary(rng, op, sa, sb):
    a = randn(rng, *sa)
    b = randn(rng, *sb)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    (y,) = run_op(op, [a, b])
    assert_close(y, BINARY[op](a, b))


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("act", [1, 2, 3])
def test_binary_activation(rng, op, act):
    a, b = randn(rng, 2, 9) * 4, randn(rng, 9) + 3
    (y,) = run_op(op, [a], [b], activation=act)
    assert_close(y, BINARY[op](a, b, activation=act))


def test_binary_constant_operand_first(rng):
    a, b = randn(rng, 3), randn(rng, 2, 3)
    (y,) = run_op("Sub", [b], [a])
    assert_close(y, b - a)


def test_binary_refuses(rng):
    with pytest.raises(tinyinfer.ShapeError, match="broadcast"):
        run_op("Add", [randn(rng, 2, 3), randn(rng, 4)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="activation"):
        run_op("Maximum", [randn(rng, 2), randn(rng, 2)], activation=1)


def test_nan_propagates(rng):
    a = np.array([np.nan, 1.0, -2.0, np.nan], np.float32)
    b = np.array([0.0, np.nan, 1.0, 5.0], np.float32)
    for op in ["Add", "Maximum", "Minimum"]:
        (y,) = run_op(op, [a, b])
        np.testing.assert_array_equal(np.isnan(y), np.isnan(BINARY[op](a, b)))
    # the 8-wide step of rows of 8 to 15 (a per-channel vector over pixels), NaN in either operand
    p = randn(rng, 3, 4, 12)
    p[0, 1, 9] = p[2, 3, 2] = np.nan
    q = randn(rng, 12)
    q[5] = np.nan
    for op in ["Maximum", "Minimum", "Mul"]:
        (r,) = run_op(op, [p, q])
        np.testing.assert_array_equal(np.isnan(r), np.isnan(BINARY[op](p, q)))
        assert_close(np.nan_to_num(r), np.nan_to_num(BINARY[op](p, q)))
    (y,) = run_op("Relu", [a])
    assert np.isnan(y[0]) and np.isnan(y[3])


def test_prelu(rng):
    x = randn(rng, 2, 4, 4, 3)
    for slope in [randn(rng, 3), randn(rng, 1), randn(rng, 4, 1, 3)]:
        (y,) = run_op("PRelu", [x], [slope])
        assert_close(y, R.prelu(x, slope))
    x = randn(rng, 2, 5, 3, 12)  # rows of 12 channels: the 8-wide step, then scalars
    for slope in [randn(rng, 12), randn(rng, 5, 1, 12)]:
        (y,) = run_op("PRelu", [x], [slope])
        assert_close(y, R.prelu(x, slope))
    with pytest.raises(tinyinfer.ShapeError):
        run_op("PRelu", [randn(rng, 3)], [randn(rng, 2, 3)])


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("op,sb,attrs", [
    ("Add", (1, 48, 48, 16), {}), ("Add", (1, 48, 48, 16), {"activation": 2}), ("Sub", (1, 48, 48, 16), {}),
    ("Mul", (16,), {}), ("Div", (1, 1, 1, 16), {"activation": 1}), ("Maximum", (1,), {}),
    ("Minimum", (1, 48, 48, 16), {}), ("PRelu", (16,), {}),
    ("Add", (1, 48, 48, 16), {"prelu_slopes": [0.25 * i - 2 for i in range(16)]}),
])
def test_binary_large_threads(rng, threads, op, sb, attrs):
    # Large outputs are split between the threads (same-shape inputs,
    # a per-channel or scalar broadcast, the fused Add + PRelu): the
    # reference's result, and the one-thread result bit for bit.
    a = randn(rng, 1, 48, 48, 16) * 3
    b = randn(rng, *sb)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    (got,) = run_op(op, [a, b], threads=threads, **attrs)
    np.testing.assert_array_equal(got, run_op(op, [a, b], **attrs)[0])
    if "prelu_slopes" in attrs:
        want = R.prelu(a + b, np.array(attrs["prelu_slopes"], np.float32))
    elif op == "PRelu":
        want = R.prelu(a, b)
    else:
        want = BINARY[op](a, b, **attrs) if attrs else BINARY[op](a, b)
    assert_close(got, want)


# -- unary ops -----------------------------------------------------------------

UNARY = {"Relu": R.relu, "Relu6": R.relu6, "HardSwish": R.hard_swish, "Logistic": R.logistic, "Tanh": R.tanh,
         "Exp": R.exp}


@pytest.mark.parametrize("op", sorted(UNARY))
@pytest.mark.parametrize("shape", [(1,), (7,), (2, 3, 5), (1, 16, 16, 8), (3, 1001)])
def test_unary(rng, op, shape):
    x = randn(rng, *shape) * 4
    (y,) = run_op(op, [x])
    assert_close(y, UNARY[op](x))


def test_hard_swish_special_values():
    """NaN passes, +inf stays +inf, -inf gives NaN (-inf times 0), as x * clip(x + 3, 0, 6) / 6."""
    x = np.array([np.nan, np.inf, -np.inf, -3.0, 3.0, -1.5, 0.0, 1e30, -1e30] * 5, np.float32)
    (y,) = run_op("HardSwish", [x])
    with np.errstate(invalid="ignore", over="ignore"):
        want = R.hard_swish(x)
    assert np.array_equal(np.isnan(y), np.isnan(want)) and np.isnan(want).sum() == 10
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok], rtol=1e-6)


@pytest.mark.parametrize("op,fn", [("Log", R.log), ("Sqrt", R.sqrt), ("Rsqrt", R.rsqrt)])
def test_unary_positive(rng, op, fn):
    x = np.abs(randn(rng, 3, 37)) + 0.01
    (y,) = run_op(op, [x])
    assert_close(y, fn(x))


def test_log_sqrt_of_negative_is_nan():
    x = np.array([-1.0, 4.0], np.float32)
    (y,) = run_op("Sqrt", [x])
    assert np.isnan(y[0]) and y[1] == 2
    (y,) = run_op("Log", [x])
    assert np.isnan(y[0])


@pytest.mark.parametrize("alpha", [0.01, 0.2, 1.5])
def test_leaky_relu(rng, alpha):
    x = randn(rng, 4, 19)
    (y,) = run_op("LeakyRelu", [x], alpha=alpha)
    assert_close(y, R.leaky_relu(x, alpha=alpha))


@pytest.mark.parametrize("approximate", [0, 1])
def test_gelu(rng, approximate):
    x = randn(rng, 5, 23) * 3
    (y,) = run_op("Gelu", [x], approximate=approximate)
    assert_close(y, R.gelu(x, approximate=approximate))


# -- softmax and normalization -------------------------------------------------

@pytest.mark.parametrize("op,fn", [("Softmax", R.softmax), ("LogSoftmax", R.log_softmax)])
@pytest.mark.parametrize("shape,axis", [((10,), -1), ((3, 10), -1), ((3, 10), 0), ((2, 3, 4, 5), 1),
                                        ((2, 3, 4, 5), -2), ((1, 1000), 1), ((4, 7, 3), 2)])
@pytest.mark.parametrize("beta", [1.0, 0.5, -0.7])
def test_softmax(rng, op, fn, shape, axis, beta):
    x = randn(rng, *shape) * 5
    (y,) = run_op(op, [x], axis=axis, beta=beta)
    assert_close(y, fn(x, axis=axis, beta=beta))


def test_softmax_large_values_stable():
    x = np.array([[1000.0, 1001.0, 999.0]], np.float32)
    (y,) = run_op("Softmax", [x])
    assert np.all(np.isfinite(y))
    assert_close(y, R.softmax(x))


@pytest.mark.parametrize("shape,axis", [((2, 8), -1), ((3, 4, 16), -1), ((2, 3, 4, 5), 2), ((1, 7, 768), -1)])
@pytest.mark.parametrize("with_beta", [True, False])
def test_layer_norm(rng, shape, axis, with_beta):
    x = randn(rng, *shape) * 3 + 1
    norm = shape[axis:] if axis >= 0 else shape[axis:]
    g = randn(rng, *norm)
    b = randn(rng, *norm) if with_beta else None
    (y,) = run_op("LayerNorm", [x], [g, b], axis=axis, epsilon=1e-5)
    assert_close(y, R.layer_norm(x, g, b, axis=axis, epsilon=1e-5), atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 4, 4, 3), (2, 5, 7, 16), (3, 8), (2, 3, 27)])  # 27: vectors of 8, then 3
def test_batch_norm(rng, shape):
    c = shape[-1]
    x = randn(rng, *shape)
    scale, bias, mean = randn(rng, c), randn(rng, c), randn(rng, c)
    var = np.abs(randn(rng, c)) + 0.1
    (y,) = run_op("BatchNorm", [x], [scale, bias, mean, var], epsilon=1e-3)
    assert_close(y, R.batch_norm(x, scale, bias, mean, var, epsilon=1e-3))


def test_norm_refuses(rng):
    with pytest.raises(tinyinfer.ShapeError):
        run_op("LayerNorm", [randn(rng, 2, 8)], [randn(rng, 7)])
    with pytest.raises(tinyinfer.ShapeError):
        run_op("BatchNorm", [randn(rng, 2, 8)], [randn(rng, 8)] * 3 + [randn(rng, 7)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="axis"):
        run_op("Softmax", [randn(rng, 2, 8)], axis=2)


def test_softmax_nan_row_is_nan_others_finite():
    x = np.array([[1.0, np.nan, 2.0], [0.0, 1.0, 2.0]], np.float32)
    (y,) = run_op("Softmax", [x])
    assert np.all(np.isnan(y[0]))
    assert_close(y[1], R.softmax(x[1:])[0])


@pytest.mark.parametrize("op,fn", [("Logistic", R.logistic), ("Gelu", R.gelu), ("Exp", R.exp)])
def test_fast_math_in_place_and_extremes(rng, op, fn):
    # A chain makes the second op run in place (same buffer); values cover
    # the ranges where the fast exp saturates.
    x = np.concatenate([rng.standard_normal(1000) * 30, [-100.0, -87.0, 0.0, 80.0]]).astype(np.float32)
    if op == "Exp":
        x = np.clip(x, -80, 80)
    b = tinyinfer.GraphBuilder()
    t = b.input("x", x.shape)
    b.output(b.op(op, b.op("Relu", t)))
    with b.load() as m:
        (y,) = m.run(x)
    np.testing.assert_allclose(y, fn(np.maximum(x, 0)), rtol=2e-6, atol=1e-30)
