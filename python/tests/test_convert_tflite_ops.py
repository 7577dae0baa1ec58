"""TFLite importer, ops on run-time data: small models written here with the
flatbuffer classes of the `tflite` package (test_convert_tflite.Model), run
by LiteRT and by tinyinfer after conversion, outputs compared exactly
(comparisons, logic, SELECT, rounding, CAST, data movement) or within float
rounding (reductions)."""

import numpy as np
import pytest

import tinyinfer

pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")
from test_convert_tflite import Model, _opts, check_io, litert  # noqa: E402


def run_both(m, feeds, exact=True, rel=1e-6):
    data = m.to_bytes()
    refs, it = litert(data, feeds)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as model:
        check_io(model, it)
        outs = model.run(feeds)
    for got, ref in zip(outs, refs):
        assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, ref.shape, got.dtype, ref.dtype)
        if exact:
            np.testing.assert_array_equal(got, ref)
        else:
            np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * max(1.0, float(np.abs(ref).max())))
    return report


def rnd(shape, seed, dtype=np.float32):
    g = np.random.default_rng(seed)
    if dtype == np.bool_:
        return g.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        return g.integers(0, 4, shape).astype(dtype)
    return np.round(g.standard_normal(shape) * 2, 1).astype(dtype)


@pytest.mark.parametrize("op", ["EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_comparisons(op, dtype):
    m = Model()
    a, b = m.input("a", (2, 3, 4), dtype), m.input("b", (3, 1), dtype)
    y = m.tensor("y", (2, 3, 4), np.bool_)
    m.op(op, [a, b], [y])
    m.outputs = [y]
    run_both(m, [rnd((2, 3, 4), 1, dtype), rnd((3, 1), 2, dtype)])


def test_logical_and_select():
    m = Model()
    a, b = m.input("a", (2, 5), np.bool_), m.input("b", (5,), np.bool_)
    x, z = m.input("x", (2, 5)), m.input("z", (2, 5))
    both, either, neg = m.tensor("both", (2, 5), np.bool_), m.tensor("either", (2, 5), np.bool_), \
        m.tensor("neg", (2, 5), np.bool_)
    s1, s2 = m.tensor("select", (2, 5)), m.tensor("select_v2", (2, 5))
    m.op("LOGICAL_AND", [a, b], [both])
    m.op("LOGICAL_OR", [a, b], [either])
    m.op("LOGICAL_NOT", [both], [neg])
    m.op("SELECT", [either, x, z], [s1])
    m.op("SELECT_V2", [neg, x, m.const("zero", np.float32([0]))], [s2])
    m.outputs = [both, either, neg, s1, s2]
    report = run_both(m, [rnd((2, 5), 3, np.bool_), rnd((5,), 4, np.bool_), rnd((2, 5), 5), rnd((2, 5), 6)])
    assert report.ops_out["Where"] == 2


def test_select_v1_rank1_condition_picks_rows():
    m = Model()
    c, x, z = m.input("c", (3,), np.bool_), m.input("x", (3, 4)), m.input("z", (3, 4))
    y = m.tensor("y", (3, 4))
    m.op("SELECT", [c, x, z], [y])
    m.outputs = [y]
    run_both(m, [np.array([True, False, True]), rnd((3, 4), 7), rnd((3, 4), 8)])


def test_rounding():
    m = Model()
    x = m.input("x", (4, 9))
    outs = []
    for op in ("FLOOR", "CEIL", "ROUND"):
        t = m.tensor(op.lower(), (4, 9))
        m.op(op, [x], [t])
        outs.append(t)
    m.outputs = outs
    v = (np.random.default_rng(9).standard_normal((4, 9)) * 5).astype(np.float32)
    v[0] = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.0, -0.0, 7.5]
    run_both(m, [v])


@pytest.mark.parametrize("src,dst", [(np.float32, np.int32), (np.int32, np.float32), (np.float32, np.bool_),
                                     (np.bool_, np.float32), (np.int32, np.int64), (np.int64, np.int32),
                                     (np.float32, np.uint8)])
def test_cast(src, dst):
    m = Model()
    x = m.input("x", (3, 7), src)
    y = m.tensor("y", (3, 7), dst)
    m.op("CAST", [x], [y])
    m.outputs = [y]
    if src == np.float32:
        v = (np.random.default_rng(10).standard_normal((3, 7)) * 40).astype(np.float32)
        if dst == np.uint8:
            v = np.abs(v)  # in range
    else:
        v = rnd((3, 7), 10, src)
    run_both(m, [v])


def test_tile_and_shape():
    m = Model()
    x = m.input("x", (2, 1, 3))
    tiled, shp = m.tensor("tiled", (4, 2, 3)), m.tensor("shape", (3,), np.int32)
    m.op("TILE", [x, m.const("mult", np.int32([2, 2, 1]))], [tiled])
    m.op("SHAPE", [x], [shp], _opts("ShapeOptions", OutType=2))
    m.outputs = [tiled, shp]
    report = run_both(m, [rnd((2, 1, 3), 11)])
    assert report.ops_out["Tile"] == 1


def test_broadcast_to():
    """BROADCAST_TO: against numpy (the test's writer marks ops version 1, which LiteRT has not for it)."""
    m = Model()
    x = m.input("x", (2, 1, 3))
    y = m.tensor("y", (4, 2, 5, 3))
    m.op("BROADCAST_TO", [x, m.const("target", np.int32([4, 2, 5, 3]))], [y])
    m.outputs = [y]
    report = tinyinfer.convert(m.to_bytes(), None, verbose=False)
    v = rnd((2, 1, 3), 14)
    with tinyinfer.Model(report.data) as model:
        np.testing.assert_array_equal(model.run([v])[0], np.broadcast_to(v, (4, 2, 5, 3)))
    assert report.ops_out["Expand"] == 1


def test_range_folds():
    m = Model()
    x = m.input("x", (5,))
    r, y = m.tensor("r", (5,)), m.tensor("y", (5,))
    m.op("RANGE", [m.const("start", np.float32(1)), m.const("limit", np.float32(3.5)),
                   m.const("delta", np.float32(0.5))], [r])
    m.op("ADD", [x, r], [y])
    m.outputs = [y]
    report = run_both(m, [rnd((5,), 12)])
    assert any("RANGE" in f for f in report.folded)


@pytest.mark.parametrize("op", ["SUM", "REDUCE_PROD", "REDUCE_MIN", "REDUCE_MAX", "MEAN"])
@pytest.mark.parametrize("axes,keep", [([1], False), ([0, 2], True), ([-1], False)])
def test_reductions(op, axes, keep):
    m = Model()
    x = m.input("x", (2, 3, 4))
    shape = [d for i, d in enumerate((2, 3, 4)) if i not in [a % 3 for a in axes] or keep]
    if keep:
        shape = [1 if i in [a % 3 for a in axes] else d for i, d in enumerate((2, 3, 4))]
    y = m.tensor("y", shape)
    m.op(op, [x, m.const("axes", np.int32(axes))], [y], _opts("ReducerOptions", KeepDims=keep))
    m.outputs = [y]
    v = np.random.default_rng(13).uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    run_both(m, [v], exact=False)


def test_quantized_comparison_refused():
    m = Model()
    q = m.tensor("q", (4,), np.int8, quant=([0.1], [0], 0))
    m.inputs.append(q)
    y = m.tensor("y", (4,), np.bool_)
    m.op("LESS", [q, q], [y])
    m.outputs = [y]
    with pytest.raises(tinyinfer.UnsupportedOpError, match="quantized input"):
        tinyinfer.convert(m.to_bytes(), None, verbose=False)


@pytest.mark.parametrize("slope_shape", [(8,), (1, 1, 8), (5, 5, 8)])
@pytest.mark.parametrize("seed", range(3))
def test_int8_prelu_bit_exact_with_litert_reference(slope_shape, seed):
    """A full-integer PRELU (constant int8 slope, per-tensor parameters) against LiteRT's reference kernels
    (BUILTIN_REF), bit for bit."""
    from ai_edge_litert.interpreter import OpResolverType
    g = np.random.default_rng(seed)
    xq = ([float(10 ** g.uniform(-2, 0))], [int(g.integers(-128, 128))], 0)
    aq = ([float(10 ** g.uniform(-3, -1))], [int(g.integers(-128, 128))], 0)
    yq = ([float(xq[0][0] * g.uniform(0.3, 1.5))], [int(g.integers(-100, 100))], 0)
    m = Model()
    x = m.tensor("x", (1, 5, 5, 8), np.int8, quant=xq)
    m.inputs.append(x)
    slope = g.integers(-128, 128, slope_shape).astype(np.int8)
    a = m.tensor("alpha", slope_shape, np.int8, data=slope, quant=aq)
    y = m.tensor("y", (1, 5, 5, 8), np.int8, quant=yq)
    m.op("PRELU", [x, a], [y])
    m.outputs = [y]
    data = m.to_bytes()
    feed = g.integers(-128, 128, (1, 5, 5, 8)).astype(np.int8)
    (want,), _ = litert(data, [feed], resolver=OpResolverType.BUILTIN_REF)
    report = tinyinfer.convert(data, None, verbose=False)
    with tinyinfer.Model(report.data) as model:
        assert [op.op for op in model.ops()] == ["PRelu"]
        np.testing.assert_array_equal(model.run([feed])[0], want)


@pytest.mark.parametrize("start", [[0, 0, 0], [1, 0, 3], [3, 2, 4], [-1, 0, 9]])
def test_dynamic_update_slice(start):
    """DYNAMIC_UPDATE_SLICE with a run-time start (LiteRT clamps it so that the update fits, as the runtime)."""
    m = Model()
    x, u, s = m.input("x", (4, 3, 5)), m.input("u", (2, 3, 2)), m.input("start", (3,), np.int32)
    y = m.tensor("y", (4, 3, 5))
    m.op("DYNAMIC_UPDATE_SLICE", [x, u, s], [y])
    m.outputs = [y]
    report = run_both(m, [rnd((4, 3, 5), 21), rnd((2, 3, 2), 22), np.array(start, np.int32)])
    assert report.ops_out["DynamicUpdateSlice"] == 1


def test_int32_arithmetic():
    """ADD / SUB / MUL / MAXIMUM / MINIMUM on int32 (loop counters, run-time shape values), broadcast."""
    m = Model()
    a, b = m.input("a", (2, 3), np.int32), m.input("b", (3,), np.int32)
    outs = []
    for op in ("ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"):
        t = m.tensor(op.lower(), (2, 3), np.int32)
        m.op(op, [a, b], [t])
        outs.append(t)
    m.outputs = outs
    run_both(m, [np.array([[1, -7, 2**31 - 1], [5, 0, -3]], np.int32), np.array([3, -4, 2], np.int32)])


# Issue 14: full-integer RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR, MAXIMUM and MINIMUM imported and run in int8,
# bit for bit with LiteRT's reference kernels (BUILTIN_REF); the converter writes the output with the input's
# parameters (the ops' int8 kernels interpolate or compare the raw values).

RESIZE_MODES = [dict(), dict(AlignCorners=True), dict(HalfPixelCenters=True)]


@pytest.mark.parametrize("op", ["RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"])
@pytest.mark.parametrize("mode", range(3))
@pytest.mark.parametrize("xs,size", [((1, 8, 8, 16), (16, 16)), ((2, 5, 7, 3), (11, 4)), ((1, 9, 12, 5), (4, 5)),
                                     ((1, 3, 3, 8), (7, 10)), ((1, 6, 5, 2), (1, 1))])
def test_int8_resize_bit_exact_with_litert_reference(op, mode, xs, size):
    from ai_edge_litert.interpreter import OpResolverType
    g = np.random.default_rng(sum(xs) + 7 * mode + len(op))
    q = ([float(10 ** g.uniform(-2, 0))], [int(g.integers(-128, 128))], 0)
    m = Model()
    x = m.tensor("x", xs, np.int8, quant=q)
    m.inputs.append(x)
    y = m.tensor("y", (xs[0],) + tuple(size) + (xs[3],), np.int8, quant=q)
    kind = "ResizeBilinearOptions" if op == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
    m.op(op, [x, m.const("size", np.int32(size))], [y], _opts(kind, **RESIZE_MODES[mode]))
    m.outputs = [y]
    data = m.to_bytes()
    report = tinyinfer.convert(data, None, verbose=False)
    for trial in range(3):
        feed = g.integers(-128, 128, xs).astype(np.int8)
        if trial == 1:
            feed = np.where(g.random(xs) < 0.5, np.int8(-128), np.int8(127)).astype(np.int8)
        (want,), _ = litert(data, [feed], resolver=OpResolverType.BUILTIN_REF)
        with tinyinfer.Model(report.data) as model:
            assert [o.op for o in model.ops()] == ["ResizeBilinear" if op == "RESIZE_BILINEAR" else "ResizeNearest"]
            np.testing.assert_array_equal(model.run([feed])[0], want)


@pytest.mark.parametrize("op", ["MAXIMUM", "MINIMUM"])
@pytest.mark.parametrize("bshape,const", [((1,), True), ((1, 4, 6, 8), False), ((8,), True), ((1, 1, 1, 8), False)])
def test_int8_maximum_minimum_bit_exact_with_litert_reference(op, bshape, const):
    from ai_edge_litert.interpreter import OpResolverType
    g = np.random.default_rng(len(op) + sum(bshape) + const)
    q = ([float(10 ** g.uniform(-2, 0))], [int(g.integers(-128, 128))], 0)
    m = Model()
    x = m.tensor("x", (1, 4, 6, 8), np.int8, quant=q)
    m.inputs.append(x)
    bv = g.integers(-128, 128, bshape).astype(np.int8)
    if const:
        b = m.tensor("b", bshape, np.int8, data=bv, quant=q)
    else:
        b = m.tensor("b", bshape, np.int8, quant=q)
        m.inputs.append(b)
    y = m.tensor("y", (1, 4, 6, 8), np.int8, quant=q)
    m.op(op, [x, b], [y])
    m.outputs = [y]
    data = m.to_bytes()
    report = tinyinfer.convert(data, None, verbose=False)
    feeds = [g.integers(-128, 128, (1, 4, 6, 8)).astype(np.int8)] + ([] if const else [bv])
    want, _ = litert(data, feeds, resolver=OpResolverType.BUILTIN_REF)
    with tinyinfer.Model(report.data) as model:
        assert [o.op for o in model.ops()] == [op.capitalize()]
        np.testing.assert_array_equal(model.run(feeds)[0], want[0])
