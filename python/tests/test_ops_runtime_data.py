"""Ops on run-time data (comparisons, logical ops, Where, Floor/Ceil/Round,
Erf, Cast, Shape, ReduceMin/Sum/Prod, Expand, Tile, Range) against the
independent numpy references of reference.py, over dtypes, broadcasting and
special values."""

import numpy as np
import pytest

import reference as R
import tinyinfer
from conftest import assert_close, run_op
from tinyinfer._dtypes import code_of

SHAPES = [((4,), (4,)), ((2, 3), (3,)), ((2, 3), (2, 1)), ((1,), (5, 6)), ((3, 1, 5), (1, 4, 1)),
          ((2, 3, 4, 5), (1, 3, 1, 1)), ((17,), (1,)), ((6, 1), (1, 7)), ((2, 1, 4, 1), (2, 3, 1, 5))]
COMPARE = {"Equal": R.equal, "NotEqual": R.not_equal, "Less": R.less, "LessEqual": R.less_equal,
           "Greater": R.greater, "GreaterEqual": R.greater_equal}


def values(rng, shape, dtype):
    """Small values so that equal pairs occur; NaN and infinities among floats."""
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    v = rng.integers(-3, 4, shape)
    if dtype == np.uint8:
        v = v + 3
    a = v.astype(dtype)
    if dtype == np.float32 and a.size > 3:
        a.flat[0], a.flat[1], a.flat[2] = np.nan, np.inf, -np.inf
    return a


@pytest.mark.parametrize("op", sorted(COMPARE))
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.int8, np.uint8])
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_compare(rng, op, dtype, sa, sb):
    a, b = values(rng, sa, dtype), values(rng, sb, dtype)
    (y,) = run_op(op, [a, b])
    want = COMPARE[op](a, b)
    assert y.dtype == np.bool_ and y.shape == want.shape
    assert (y == want).all()


@pytest.mark.parametrize("op", ["Equal", "NotEqual"])
def test_compare_bool(rng, op):
    a, b = values(rng, (3, 4), np.bool_), values(rng, (4,), np.bool_)
    (y,) = run_op(op, [a, b])
    assert (y == COMPARE[op](a, b)).all()


def test_compare_with_constant(rng):
    x = rng.standard_normal((2, 5)).astype(np.float32)
    (y,) = run_op("Greater", [x], [np.zeros((1,), np.float32)])
    assert (y == (x > 0)).all()


def test_compare_refuses():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="one dtype"):
        run_op("Less", [np.ones(3, np.float32), np.ones(3, np.int32)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="bool"):
        run_op("Less", [np.ones(3, bool), np.ones(3, bool)])
    with pytest.raises(tinyinfer.ShapeError):
        run_op("Equal", [np.ones(3, np.float32), np.ones(4, np.float32)])


@pytest.mark.parametrize("op,ref", [("LogicalAnd", R.logical_and), ("LogicalOr", R.logical_or),
                                    ("LogicalXor", R.logical_xor)])
@pytest.mark.parametrize("sa,sb", SHAPES)
def test_logical_binary(rng, op, ref, sa, sb):
    a, b = values(rng, sa, np.bool_), values(rng, sb, np.bool_)
    (y,) = run_op(op, [a, b])
    assert y.dtype == np.bool_ and (y == ref(a, b)).all()


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 33)])
def test_logical_not(rng, shape):
    a = values(rng, shape, np.bool_)
    (y,) = run_op("LogicalNot", [a])
    assert (y == R.logical_not(a)).all()


def test_logical_refuses_numbers():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="bool"):
        run_op("LogicalAnd", [np.ones(3, np.float32), np.ones(3, bool)])


@pytest.mark.parametrize("sc,sx,sy", [((4,), (4,), (4,)), ((2, 3), (3,), (2, 1)), ((1,), (5, 6), (6,)),
                                      ((3, 1, 5), (1, 4, 1), (4, 5)), ((2, 1), (1, 7), (1,)),
                                      ((2, 3, 4, 5), (1, 3, 1, 1), (5,))])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.int8, np.bool_])
def test_where(rng, sc, sx, sy, dtype):
    c = values(rng, sc, np.bool_)
    x, y = values(rng, sx, dtype), values(rng, sy, dtype)
    (out,) = run_op("Where", [c, x, y])
    want = R.where(c, x, y)
    assert out.dtype == want.dtype and out.shape == want.shape
    np.testing.assert_array_equal(out, want)


def test_where_refuses():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="bool"):
        run_op("Where", [np.ones(3, np.float32), np.ones(3, np.float32), np.ones(3, np.float32)])
    with pytest.raises(tinyinfer.UnsupportedOpError, match="one dtype"):
        run_op("Where", [np.ones(3, bool), np.ones(3, np.float32), np.ones(3, np.int32)])


ROUNDING = {"Floor": R.floor, "Ceil": R.ceil, "Round": R.round_}


@pytest.mark.parametrize("op", sorted(ROUNDING))
@pytest.mark.parametrize("n", [1, 7, 16, 1000])
def test_rounding(rng, op, n):
    x = (rng.standard_normal(n) * 10).astype(np.float32)
    x[: n // 2] = np.round(x[: n // 2] * 2) / 2  # exact halves: the ties
    (y,) = run_op(op, [x])
    np.testing.assert_array_equal(y, ROUNDING[op](x))


@pytest.mark.parametrize("op", sorted(ROUNDING))
def test_rounding_special_values(op):
    x = np.array([0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 8388607.5, -8388607.5, 8388609.0, 1e30, -1e30,
                  np.inf, -np.inf, np.nan, 1e-45, -1e-45, 0.49999997], np.float32)
    (y,) = run_op(op, [x])
    want = ROUNDING[op](x)
    np.testing.assert_array_equal(y, want)
    assert (np.signbit(y) == np.signbit(want)).all()


@pytest.mark.parametrize("src", [np.float32, np.int32, np.int64, np.int8, np.uint8, np.int16, np.bool_])
@pytest.mark.parametrize("dst", [np.float32, np.int32, np.int64, np.int8, np.uint8, np.int16, np.bool_])
def test_cast(rng, src, dst):
    if src == np.float32:
        x = (rng.standard_normal(64) * 100).astype(np.float32)
        x[:6] = [np.nan, np.inf, -np.inf, 3e9, -3e9, -0.7]
    elif src == np.bool_:
        x = rng.integers(0, 2, 64).astype(bool)
    else:
        info = np.iinfo(src)
        x = rng.integers(max(info.min, -(1 << 40)), min(info.max, 1 << 40), 64, endpoint=True).astype(src)
        x[:2] = [info.min, info.max]
    (y,) = run_op("Cast", [x], dtype=code_of(dst))
    want = R.cast(x, dst)
    assert y.dtype == np.dtype(dst)
    np.testing.assert_array_equal(y, want)


def test_cast_refuses():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="dtype"):
        run_op("Cast", [np.ones(3, np.float32)], dtype=2)  # float16
    with pytest.raises(tinyinfer.UnsupportedOpError, match="dtype"):
        run_op("Cast", [np.ones(3, np.float32)], dtype=99)


@pytest.mark.parametrize("shape", [(1,), (2, 3), (1, 4, 5, 6), (2, 1, 1, 3, 1, 2)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_shape(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(np.float32)
    (y,) = run_op("Shape", [x], dtype=code_of(dtype))
    want = R.shape(x, dtype)
    assert y.dtype == want.dtype
    np.testing.assert_array_equal(y, want)


def test_shape_default_int64_and_other_batch():
    b = tinyinfer.GraphBuilder("shape")
    x = b.input("x", (1, 3), np.float32)
    b.output(b.op("Shape", x))
    with b.load() as m:
        (y,) = m.run(np.zeros((1, 3), np.float32))
        assert y.dtype == np.int64 and list(y) == [1, 3]
        (y,) = m.run(np.zeros((4, 3), np.float32))  # a session for batch 4
        assert list(y) == [4, 3]


REDUCE = {"ReduceMin": R.reduce_min, "ReduceSum": R.reduce_sum, "ReduceProd": R.reduce_prod}


@pytest.mark.parametrize("op", sorted(REDUCE))
@pytest.mark.parametrize("shape,axes", [((5,), [0]), ((2, 3), [1]), ((2, 3), [0]), ((2, 3, 4), [0, 2]),
                                        ((2, 3, 4, 5), [1, 2]), ((2, 3, 4, 5), [-1]), ((3, 4), []),
                                        ((2, 3, 4), [0, 1, 2]), ((1, 7, 1, 33), [1, 3])])
@pytest.mark.parametrize("keep", [0, 1])
def test_reduce(rng, op, shape, axes, keep):
    x = rng.uniform(0.5, 1.5, shape).astype(np.float32) * rng.choice([-1, 1], shape).astype(np.float32)
    (y,) = run_op(op, [x], axes=axes, keep_dims=keep)
    assert_close(y, REDUCE[op](x, axes=axes, keep_dims=keep))


def test_reduce_min_nan():
    x = np.array([[1, np.nan, 3], [4, 5, -6]], np.float32)
    (y,) = run_op("ReduceMin", [x], axes=[1])
    np.testing.assert_array_equal(y, R.reduce_min(x, axes=[1]))
    (y,) = run_op("ReduceMin", [x], axes=[0])
    np.testing.assert_array_equal(y, R.reduce_min(x, axes=[0]))


@pytest.mark.parametrize("xshape,shape", [((3,), (2, 3)), ((3, 1), (3, 4)), ((1,), (5,)), ((2, 1, 3), (4, 1)),
                                          ((3, 1), (2, 1, 6)), ((1, 4), (1,)), ((2, 3), (2, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.int8, np.bool_])
def test_expand(rng, xshape, shape, dtype):
    x = values(rng, xshape, dtype)
    (y,) = run_op("Expand", [x], shape=list(shape))
    np.testing.assert_array_equal(y, R.expand(x, shape))


@pytest.mark.parametrize("xshape,sizes", [((3,), [2]), ((2, 3), [1, 1]), ((2, 3), [3, 2]), ((1, 4, 1), [2, 1, 5]),
                                          ((2, 2, 3, 4), [1, 2, 1, 3])])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8])
def test_tile(rng, xshape, sizes, dtype):
    x = values(rng, xshape, dtype)
    (y,) = run_op("Tile", [x], sizes=sizes)
    np.testing.assert_array_equal(y, R.tile(x, sizes))


def test_expand_tile_refuse():
    with pytest.raises(tinyinfer.ShapeError):
        run_op("Expand", [np.ones((3,), np.float32)], shape=[4])
    with pytest.raises(tinyinfer.ShapeError, match="repeats"):
        run_op("Tile", [np.ones((3, 2), np.float32)], sizes=[2])
    with pytest.raises(tinyinfer.UnsupportedOpError):
        run_op("Tile", [np.ones((3,), np.float32)], sizes=[0])


@pytest.mark.parametrize("start,limit,delta", [(0, 5, 1), (1, 10, 4), (5, 0, -2), (-7, 7, 3), (2, 3, 10)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_range_ints(start, limit, delta, dtype):
    (y,) = run_op("Range", [], value=[start, limit, delta], dtype=code_of(dtype))
    want = R.range_(start, limit, delta, dtype)
    assert y.dtype == want.dtype
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("start,limit,delta", [(0.0, 1.0, 0.1), (2.5, -1.0, -0.75), (0.0, 1000.0, 0.37)])
def test_range_floats(start, limit, delta):
    (y,) = run_op("Range", [], value=np.array([start, limit, delta], np.float32).tolist())
    assert_close(y, R.range_(float(np.float32(start)), float(np.float32(limit)), float(np.float32(delta))))


def test_range_refuses():
    with pytest.raises(tinyinfer.UnsupportedOpError, match="delta"):
        run_op("Range", [], value=[0, 5, 0])
    with pytest.raises(tinyinfer.ShapeError, match="no elements"):
        run_op("Range", [], value=[5, 0, 1])
