"""Data-movement ops (Reshape, Squeeze, ExpandDims, Transpose, Concat, Split,
Slice, StridedSlice, Pad, Gather) against reference.py and plain numpy.

These ops move elements of any dtype, so most tests run over several dtypes
(1, 2, 4 and 8-byte elements) and ranks 1..5, with one and several threads.
"""

import itertools

import numpy as np
import pytest

import reference as ref
import tinyinfer as ti
from tinyinfer import ShapeError, TinyInferError, TinyInferRuntimeError, UnsupportedOpError

DTYPES = [np.float32, np.int8, np.int32]
ALL_DTYPES = [np.float32, np.float16, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]
REFUSED = (UnsupportedOpError, ShapeError)


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dt)


def build(op, arrays, outputs=1, quant=None, **attrs):
    """A graph: every array is a graph input, one `op` node, its outputs."""
    b = ti.GraphBuilder(op)
    ins = [b.input(f"x{i}", a.shape, a.dtype) for i, a in enumerate(arrays)]
    if quant is not None:
        for t in ins:
            b.quantization(t, *quant)
    y = b.op(op, *ins, outputs=outputs, **attrs)
    b.output(*(y if isinstance(y, list) else [y]))
    return b


def run(op, arrays, outputs=1, threads=1, **attrs):
    arrays = [np.asarray(a) for a in arrays]
    model = build(op, arrays, outputs, **attrs).load(threads=threads)
    with model:
        res = model.run(arrays)
    return res if outputs > 1 else res[0]


def check(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


def refused(op, arrays, outputs=1, match=None, errors=REFUSED, **attrs):
    arrays = [np.asarray(a) for a in arrays]
    with pytest.raises(errors, match=match):
        with build(op, arrays, outputs, **attrs).load() as m:
            m.run(arrays)


SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 5), (2, 3, 1, 4, 3)]


# ---------------------------------------------------------------------------
# Reshape, Squeeze, ExpandDims


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape,new", [
    ((24,), [2, 3, 4]), ((2, 3, 4), [-1]), ((2, 3, 4), [4, -1]), ((2, 3, 4), [1, 2, 1, 12, 1]),
    ((2, 1, 3, 4, 1), [6, 4]), ((1,), []), ((5, 6), [5, 2, 3, -1]),
])
def test_reshape(dtype, shape, new):
    x = data(shape, dtype)
    check(run("Reshape", [x], shape=new), ref.reshape(x, new))


@pytest.mark.parametrize("new", [[5, -1], [-1, -1], [0, 24], [25], [2, -2, 6], [2, 3, 5]])
def test_reshape_refused(new):
    refused("Reshape", [data((2, 3, 4), np.float32)], shape=new)


def test_reshape_needs_shape():
    refused("Reshape", [data((2, 3), np.float32)], match="shape")


def test_reshape_in_place_chain():
    # The intermediate tensors die at the reshapes, so they may run in place.
    x = data((2, 3, 4, 5), np.int32)
    b = ti.GraphBuilder()
    t = b.input("x", x.shape, x.dtype)
    t = b.op("Transpose", t, perm=[0, 2, 1, 3])
    t = b.op("Reshape", t, shape=[8, -1])
    t = b.op("ExpandDims", t, axis=1)
    t = b.op("Squeeze", t)
    t = b.op("Transpose", t, perm=[1, 0])
    b.output(t)
    with b.load() as m:
        got = m.run(x)[0]
    check(got, x.transpose(0, 2, 1, 3).reshape(8, -1).T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axes", [None, [], [1], [-1], [1, 4], [-4, 4]])
def test_squeeze(dtype, axes):
    x = data((2, 1, 3, 5, 1), dtype)
    kw = {} if axes is None else {"axes": axes}
    check(run("Squeeze", [x], **kw), ref.squeeze(x, axes))


def test_squeeze_all_ones_to_scalar():
    x = data((1, 1), np.float32)
    check(run("Squeeze", [x]), x.reshape(()))


@pytest.mark.parametrize("axes", [[0], [2], [5], [-6]])
def test_squeeze_refused(axes):
    refused("Squeeze", [data((2, 1, 3, 5, 1), np.float32)], axes=axes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[:4])
def test_expand_dims(dtype, shape):
    x = data(shape, dtype)
    r = len(shape)
    for axis in range(-r - 1, r + 1):
        check(run("ExpandDims", [x], axis=axis), ref.expand_dims(x, axis))
    check(run("ExpandDims", [x]), x[None])  # default axis 0


@pytest.mark.parametrize("axis", [4, -5, 100])
def test_expand_dims_refused(axis):
    refused("ExpandDims", [data((2, 3, 4), np.float32)], axis=axis)


def test_expand_dims_rank_limit():
    refused("ExpandDims", [data((1,) * 8, np.float32)], axis=0)


# ---------------------------------------------------------------------------
# Transpose


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_transpose_all_perms(dtype, shape):
    x = data(shape, dtype)
    perms = list(itertools.permutations(range(len(shape))))
    rng = np.random.default_rng(len(shape))
    if len(perms) > 12:
        perms = [perms[i] for i in rng.choice(len(perms), 12, replace=False)]
    for perm in perms:
        check(run("Transpose", [x], perm=list(perm)), ref.transpose(x, list(perm)))


def test_transpose_default_reverses():
    x = data((2, 3, 4), np.float32)
    check(run("Transpose", [x]), x.T)


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("dtype,shape,perm", [
    (np.float32, (2, 67, 45, 33), [0, 3, 1, 2]),  # NHWC -> NCHW (tiled path)
    (np.float32, (2, 33, 67, 45), [0, 2, 3, 1]),  # NCHW -> NHWC
    (np.int8, (300, 257), [1, 0]),
    (np.float16, (3, 130, 70), [2, 1, 0]),
    (np.int64, (130, 2, 70), [2, 0, 1]),
    (np.float32, (64, 48, 2, 40), [1, 0, 2, 3]),  # contiguous rows
    (np.int32, (1, 512, 1, 700), [3, 2, 1, 0]),
])
def test_transpose_large(threads, dtype, shape, perm):
    x = data(shape, dtype)
    check(run("Transpose", [x], threads=threads, perm=perm), np.transpose(x, perm))


@pytest.mark.parametrize("perm", [[0, 1], [0, 1, 1], [0, 1, 3], [2, 1, 0, 3], [-1, 0, 1]])
def test_transpose_refused(perm):
    refused("Transpose", [data((2, 3, 4), np.float32)], perm=perm)


# ---------------------------------------------------------------------------
# Concat


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, np.int64])
@pytest.mark.parametrize("shape", SHAPES)
def test_concat(dtype, shape):
    r = len(shape)
    for axis in range(-r, r):
        a = axis % r
        xs = []
        for k, extra in enumerate([1, 3, 2]):
            s = list(shape)
            s[a] = extra
            xs.append(data(tuple(s), dtype, seed=k))
        check(run("Concat", xs, axis=axis), ref.concat(xs, axis))
        check(run("Concat", xs[:1], axis=axis), xs[0])


def test_concat_default_axis_and_threads():
    xs = [data((40 + k, 64, 33), np.float32, seed=k) for k in range(3)]
    check(run("Concat", xs), np.concatenate(xs, 0))
    xs = [data((4, 96, 150 + 3 * k), np.float32, seed=k) for k in range(3)]
    check(run("Concat", xs, threads=4, axis=-1), np.concatenate(xs, -1))


def test_concat_many_inputs():
    xs = [data((2, k + 1, 3), np.int8, seed=k) for k in range(20)]
    check(run("Concat", xs, axis=1), np.concatenate(xs, 1))


def test_concat_refused():
    a, b = data((2, 3), np.float32), data((2, 4), np.float32)
    refused("Concat", [a, b], axis=0)  # dims differ off the axis
    refused("Concat", [a, b], axis=2)
    refused("Concat", [a, data((2, 3, 1), np.float32)], axis=1)  # ranks differ
    refused("Concat", [a, b.astype(np.int32)], axis=1)  # dtypes differ


def test_concat_quantized_must_agree():
    a, b = data((2, 3), np.int8), data((2, 4), np.int8)
    got = run("Concat", [a, b], axis=1, quant=([0.5], [3]))
    check(got, np.concatenate([a, b], 1))
    bld = ti.GraphBuilder()
    x0, x1 = bld.input("a", a.shape, a.dtype), bld.input("b", b.shape, b.dtype)
    bld.quantization(x0, [0.5], [3])
    bld.quantization(x1, [0.25], [3])
    y = bld.op("Concat", x0, x1, axis=1)
    bld.output(y)
    # Different input parameters are requantized to the output's (as TFLite
    # does), so the output must declare its own: refused at load otherwise.
    with pytest.raises(TinyInferError, match="quantization parameters"):
        bld.load()
    bld.quantization(y, [0.5], [3])
    with bld.load() as m:
        out = m.run([a, b])[0]
    # b's values (scale 0.25) are halved into the output's scale 0.5.
    np.testing.assert_array_equal(out[:, :3], a)
    want_b = np.clip(np.floor((b.astype(np.int32) - 3) * 0.5 + 0.5 * np.sign(b.astype(np.int32) - 3)) + 3, -128, 127)
    assert np.all(np.abs(out[:, 3:].astype(np.int32) - want_b) <= 1)


# ---------------------------------------------------------------------------
# Split


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_split_equal(dtype, shape):
    x = data(shape, dtype)
    for axis in range(-len(shape), len(shape)):
        n = shape[axis]
        for parts in {1, n}:
            got = run("Split", [x], outputs=parts, axis=axis) if parts > 1 else [run("Split", [x], axis=axis)]
            want = ref.split(x, axis, num_outputs=parts)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                check(g, w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [[1, 2, 4], [3, -1], [-1, 1, 1], [7]])
def test_split_sizes(dtype, sizes):
    x = data((2, 7, 3), dtype)
    got = run("Split", [x], outputs=len(sizes), axis=-2, sizes=sizes)
    got = got if len(sizes) > 1 else [got]
    for g, w in zip(got, ref.split(x, -2, sizes=sizes)):
        check(g, w)


def test_split_large_threads():
    x = data((3, 200, 300), np.float32)
    got = run("Split", [x], outputs=3, threads=4, axis=2, sizes=[100, 50, -1])
    for g, w in zip(got, np.split(x, [100, 150], axis=2)):
        check(g, w)


def test_split_refused():
    x = data((2, 7, 3), np.float32)
    refused("Split", [x], outputs=2, axis=1)  # 7 not divisible by 2
    refused("Split", [x], outputs=2, axis=1, sizes=[3, 3])  # sum
    refused("Split", [x], outputs=2, axis=1, sizes=[3, 5])
    refused("Split", [x], outputs=2, axis=1, sizes=[-1, -1])
    refused("Split", [x], outputs=2, axis=1, sizes=[7, -1])  # -1 would be empty
    refused("Split", [x], outputs=2, axis=1, sizes=[0, 7])
    refused("Split", [x], outputs=3, axis=1, sizes=[3, 4])  # count
    refused("Split", [x], outputs=2, axis=3)


# ---------------------------------------------------------------------------
# Slice


@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
@pytest.mark.parametrize("shape", SHAPES)
def test_slice_random(dtype, shape):
    x = data(shape, dtype)
    rng = np.random.default_rng(len(shape))
    for _ in range(8):
        begin, size = [], []
        for n in shape:
            b = int(rng.integers(0, n))
            size.append(-1 if rng.random() < 0.3 else int(rng.integers(1, n - b + 1)))
            begin.append(b - n if rng.random() < 0.3 else b)
        check(run("Slice", [x], begin=begin, size=size), ref.slice_(x, begin, size))


def test_slice_large_threads():
    x = data((4, 120, 130, 17), np.float32)
    check(run("Slice", [x], threads=4, begin=[1, 3, -100, 2], size=[-1, 110, 90, 10]), x[1:, 3:113, 30:120, 2:12])


@pytest.mark.parametrize("begin,size", [
    ([0, 0], [2, 3]), ([0, 0, 0], [2, 3, 5]), ([2, 0, 0], [1, 1, 1]), ([-3, 0, 0], [1, 1, 1]),
    ([0, 0, 0], [3, 1, 1]), ([0, 1, 0], [1, 3, 1]), ([0, 0, 0], [0, 1, 1]), ([0, 0, 0], [-2, 1, 1]),
])
def test_slice_refused(begin, size):
    refused("Slice", [data((2, 3, 4), np.float32)], begin=begin, size=size)


# ---------------------------------------------------------------------------
# StridedSlice


def _py_slice(x, begin, end, strides, bm, em, sm):
    idx = []
    for i in range(len(begin)):
        if sm >> i & 1:
            idx.append(int(begin[i]))
        else:
            idx.append(slice(None if bm >> i & 1 else int(begin[i]), None if em >> i & 1 else int(end[i]),
                             int(strides[i])))
    return x[tuple(idx)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9,), (7, 6), (3, 5, 4), (2, 3, 4, 5), (2, 3, 2, 4, 3)])
def test_strided_slice_random(dtype, shape):
    x = data(shape, dtype)
    r = len(shape)
    rng = np.random.default_rng(100 + r)
    done = 0
    while done < 25:
        k = int(rng.integers(1, r + 1))  # dims past k are taken whole
        begin = [int(v) for v in rng.integers(-9, 10, k)]
        end = [int(v) for v in rng.integers(-9, 10, k)]
        strides = [int(v) for v in rng.choice([-3, -2, -1, 1, 2, 3], k)]
        bm, em, sm = (int(v) for v in rng.integers(0, 1 << k, 3))
        if rng.random() < 0.6:
            sm = 0
        try:
            want = ref.strided_slice(x, begin, end, strides, bm, em, sm)
        except ValueError:
            refused("StridedSlice", [x], begin=begin, end=end, strides=strides, begin_mask=bm, end_mask=em,
                    shrink_axis_mask=sm)
            continue
        # reference.py and python slicing agree (where both are defined).
        check(want, _py_slice(x, begin, end, strides, bm, em, sm))
        got = run("StridedSlice", [x], begin=begin, end=end, strides=strides, begin_mask=bm, end_mask=em,
                  shrink_axis_mask=sm)
        check(got, want)
        done += 1


def test_strided_slice_cases():
    x = data((4, 6, 5), np.float32)
    cases = [
        (dict(begin=[0], end=[4], strides=[-1], begin_mask=1, end_mask=1), x[::-1]),
        (dict(begin=[-1, 0, 0], end=[0, 6, 5], strides=[-1, 2, -2], end_mask=5, begin_mask=4), x[::-1, ::2, ::-2]),
        (dict(begin=[1, -2], end=[3, 0], strides=[1, 1], shrink_axis_mask=2), x[1:3, -2]),
        (dict(begin=[-1, 2, 1], end=[0, 0, 0], strides=[1, 1, 1], shrink_axis_mask=7), x[-1, 2, 1]),
        (dict(begin=[0, 100], end=[4, -100], strides=[1, -1]), x[:, ::-1]),
        (dict(begin=[0, 0, 0], end=[4, 6, 5], strides=[5, 7, 9]), x[:1, :1, :1]),
        (dict(begin=[1], end=[3]), x[1:3]),  # strides default to 1
    ]
    for attrs, want in cases:
        check(run("StridedSlice", [x], **attrs), want)


def test_strided_slice_large_threads():
    x = data((2, 200, 160, 8), np.float32)
    got = run("StridedSlice", [x], threads=4, begin=[0, -1, 3, 0], end=[2, 0, 150, 8], strides=[1, -2, 3, 1])
    check(got, x[:, -1:0:-2, 3:150:3, :])


@pytest.mark.parametrize("attrs,match", [
    (dict(begin=[0], end=[1], strides=[1], ellipsis_mask=1), "ellipsis_mask"),
    (dict(begin=[0], end=[1], strides=[1], new_axis_mask=2), "new_axis_mask"),
    (dict(begin=[0], end=[1], strides=[0]), "stride 0"),
    (dict(begin=[2], end=[1], strides=[1]), "empty"),
    (dict(begin=[0, 0, 0, 0], end=[1, 1, 1, 1], strides=[1, 1, 1, 1]), None),
    (dict(begin=[0, 0], end=[1], strides=[1]), None),
    (dict(begin=[5], end=[6], strides=[1], shrink_axis_mask=1), None),
    (dict(begin=[1], end=[0], strides=[-1], shrink_axis_mask=1), None),
])
def test_strided_slice_refused(attrs, match):
    refused("StridedSlice", [data((4, 6, 5), np.float32)], match=match, **attrs)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 31, 33])
@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.float16, np.int64])
def test_transpose_nchw_to_nhwc_few_channels(channels, dtype):
    """NCHW -> NHWC of an image with few channels (the tiled copy runs along
    the source rows when a tile has fewer columns than rows), pixel counts
    that leave a partial tile, 1 and 3 threads."""
    x = data((2, channels, 7, 45), dtype)
    for threads in (1, 3):
        check(run("Transpose", [x], threads=threads, perm=[0, 2, 3, 1]), np.transpose(x, (0, 2, 3, 1)))
        check(run("Transpose", [x], threads=threads, perm=[0, 3, 1, 2]), np.transpose(x, (0, 3, 1, 2)))


# ---------------------------------------------------------------------------
# Pad


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, np.int64, np.uint8])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_pad(dtype, mode, shape):
    x = data(shape, dtype)
    rng = np.random.default_rng(len(shape) * 10 + mode)
    for _ in range(4):
        pads = []
        for n in shape:
            hi = {0: 3, 1: n - 1, 2: n}[mode]
            pads += [int(rng.integers(0, hi + 1)), int(rng.integers(0, hi + 1))]
        want = ref.pad(x, pads, mode)
        np_mode = {0: "constant", 1: "reflect", 2: "symmetric"}[mode]
        check(want, np.pad(x, np.array(pads).reshape(-1, 2), mode=np_mode))
        check(run("Pad", [x], pads=pads, mode=mode), want)


@pytest.mark.parametrize("value", [0.0, 1.5, -7.25, np.inf])
def test_pad_value_float32(value):
    x = data((2, 3, 4), np.float32)
    pads = [1, 0, 2, 1, 0, 3]
    check(run("Pad", [x], pads=pads, value=value), ref.pad(x, pads, 0, value))


def test_pad_value_float16():
    x = data((3, 4), np.float16)
    check(run("Pad", [x], pads=[1, 1, 2, 0], value=2.5), np.pad(x, ((1, 1), (2, 0)), constant_values=2.5))


def test_pad_large_threads():
    x = data((2, 100, 120, 16), np.float32)
    pads = [0, 0, 3, 4, 5, 2, 0, 0]
    for mode in (0, 1, 2):
        check(run("Pad", [x], threads=4, pads=pads, mode=mode), ref.pad(x, pads, mode))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("pads", [[0, 0, 0, 0, 0, 0, 0, 4], [0, 0, 0, 0, 0, 0, 3, 5], [0, 0, 2, 1, 0, 0, 0, 0],
                                  [0, 0, 0, 0, 1, 0, 0, 0]])
def test_pad_only_inner_dims(dtype, threads, pads):
    """Pads of 4-byte elements where no outer dim is padded (a residual
    branch's channel padding: a row-by-row copy of its own), with a fill
    value."""
    x = data((2, 30, 41, 24), dtype)
    value = 2.5 if dtype == np.float32 else 0
    check(run("Pad", [x], threads=threads, pads=pads, value=value), ref.pad(x, pads, 0, value))


def test_pad_nothing():
    x = data((2, 3), np.int8)
    check(run("Pad", [x], pads=[0, 0, 0, 0], mode=1), x)


def test_pad_quantized_uses_zero_point():
    # A constant pad of 0 is the real value 0: the zero point of a quantized tensor.
    x = data((1, 2, 3, 2), np.int8)
    got = run("Pad", [x], pads=[0, 0, 1, 1, 1, 0, 0, 0], quant=([0.1], [-128]))
    check(got, np.pad(x, ((0, 0), (1, 1), (1, 0), (0, 0)), constant_values=-128))


@pytest.mark.parametrize("dtype,attrs", [
    (np.int8, dict(pads=[1, 1, 1, 1], value=1.0)),
    (np.int32, dict(pads=[1, 1, 1, 1], value=-2.0)),
    (np.float32, dict(pads=[1, 1, 1], value=0.0)),
    (np.float32, dict(pads=[1, 1, 1, -1])),
    (np.float32, dict(pads=[1, 1, 1, 1], mode=3)),
    (np.float32, dict(pads=[2, 0, 0, 0], mode=1)),  # reflect: pad must be < dim (2)
    (np.float32, dict(pads=[0, 0, 0, 3], mode=1)),
    (np.float32, dict(pads=[3, 0, 0, 0], mode=2)),  # symmetric: pad must be <= dim
    (np.float32, dict(pads=[0, 0, 0, 4], mode=2)),
    (np.float32, dict()),
])
def test_pad_refused(dtype, attrs):
    refused("Pad", [data((2, 3), dtype)], **attrs)


# ---------------------------------------------------------------------------
# Gather


@pytest.mark.parametrize("dtype", DTYPES + [np.float16, np.int64])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES)
def test_gather(dtype, idx_dtype, shape):
    x = data(shape, dtype)
    rng = np.random.default_rng(len(shape))
    for axis in range(-len(shape), len(shape)):
        n = shape[axis]
        for ishape in [(), (1,), (4,), (2, 3)]:
            if len(shape) - 1 + len(ishape) > 8:
                continue
            idx = rng.integers(-n, n, ishape).astype(idx_dtype)
            check(run("Gather", [x, idx], axis=axis), ref.gather(x, idx, axis))


def test_gather_default_axis_and_large():
    x = data((50, 64, 33), np.float32)
    idx = np.array([[49, 0, -1], [3, -50, 7]], np.int64)
    check(run("Gather", [x, idx]), np.take(x, idx % 50, 0))
    emb = data((1000, 256), np.float32)
    tok = np.random.default_rng(0).integers(-1000, 1000, (4, 77)).astype(np.int32)
    check(run("Gather", [emb, tok], threads=4), ref.gather(emb, tok))


@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("bad", [5, -6, 7, 2 ** 31 - 1])
def test_gather_index_out_of_range(idx_dtype, bad):
    x = data((5, 3), np.float32)
    idx = np.array([1, bad, 0], idx_dtype)
    with build("Gather", [x, idx]).load() as m:
        with pytest.raises(TinyInferRuntimeError, match=f"index {bad} out of range for axis 0 of size 5"):
            m.run([x, idx])
        # The session stays usable.
        good = np.array([4, -5, 0], idx_dtype)
        check(m.run([x, good])[0], x[[4, 0, 0]])


def test_gather_index_out_of_range_inner_axis():
    x = data((2, 4, 3), np.int8)
    idx = np.array([0, 4], np.int64)
    with build("Gather", [x, idx], axis=-2).load() as m:
        with pytest.raises(TinyInferRuntimeError, match="index 4 out of range for axis 1 of size 4"):
            m.run([x, idx])


def test_gather_int64_huge_index():
    x = data((5,), np.int32)
    idx = np.array([-(2 ** 62)], np.int64)
    with build("Gather", [x, idx]).load() as m:
        with pytest.raises(TinyInferRuntimeError):
            m.run([x, idx])


def test_gather_refused():
    x = data((5, 3), np.float32)
    refused("Gather", [x, np.array([1], np.float32)])
    refused("Gather", [x, np.array([1], np.int16)])
    refused("Gather", [x, np.array([1], np.int32)], axis=2)
    refused("Gather", [x], errors=TinyInferError)
    refused("Gather", [data((2,) * 8, np.float32), np.zeros((1, 1), np.int32)])  # output rank 9


# ---------------------------------------------------------------------------
# Quantization parameters pass through; per-axis ones follow their dim.


def test_per_axis_quant_transpose_and_refusals():
    x = data((2, 3, 4), np.int8)
    b = ti.GraphBuilder()
    t = b.input("x", x.shape, x.dtype)
    b.quantization(t, [0.1, 0.2, 0.3], [0, 0, 0], axis=1)
    y = b.op("Transpose", t, perm=[2, 1, 0])
    y = b.op("Reshape", y, shape=[4, 3, 1, 2])
    y = b.op("Slice", y, begin=[1, 0, 0, 0], size=[2, -1, -1, -1])
    b.output(y)
    with b.load() as m:
        check(m.run(x)[0], x.transpose(2, 1, 0).reshape(4, 3, 1, 2)[1:3])
    for op, attrs in [("Slice", dict(begin=[0, 1, 0], size=[-1, -1, -1])),
                      ("Pad", dict(pads=[0, 0, 1, 0, 0, 0])),
                      ("Gather", dict(axis=1)),
                      ("Reshape", dict(shape=[6, 4]))]:
        b = ti.GraphBuilder()
        t = b.input("x", x.shape, x.dtype)
        b.quantization(t, [0.1, 0.2, 0.3], [0, 0, 0], axis=1)
        extra = [b.input("i", (2,), np.int32)] if op == "Gather" else []
        b.output(b.op(op, t, *extra, **attrs))
        with pytest.raises(UnsupportedOpError, match="per-axis quantization"):
            b.load()


# ---------------------------------------------------------------------------
# Hostile attribute values: refused cleanly, never a crash.


@pytest.mark.parametrize("op,attrs", [
    ("Reshape", dict(shape=[2 ** 40, 2 ** 40, -1])),
    ("Reshape", dict(shape=[2 ** 40] * 8)),
    ("Reshape", dict(shape=[1] * 9 + [6])),
    ("Pad", dict(pads=[2 ** 40, 2 ** 40, 0, 0])),
    ("Pad", dict(pads=[2 ** 40, 0, 2 ** 40, 0], mode=2)),
    ("Split", dict(sizes=[2 ** 40, -1])),
    ("Slice", dict(begin=[-(2 ** 40), 0], size=[1, 1])),
    ("Slice", dict(begin=[0, 0], size=[2 ** 40, 1])),
    ("Squeeze", dict(axes=[2 ** 40])),
    ("ExpandDims", dict(axis=-(2 ** 40))),
    ("Transpose", dict(perm=[2 ** 40, 0])),
    ("Concat", dict(axis=2 ** 40)),
    ("StridedSlice", dict(begin=[0], end=[1], strides=[1], begin_mask=-1)),
])
def test_hostile_attributes(op, attrs):
    x = data((2, 3), np.float32)
    outputs = 2 if op == "Split" else 1
    refused(op, [x], outputs=outputs, **attrs)


def test_hostile_strided_slice_values_clamp():
    x = data((4, 6), np.int32)
    big = 2 ** 30  # the attribute limit (docs/format.md)
    got = run("StridedSlice", [x], begin=[-big, big], end=[big, -big], strides=[big, -big])
    check(got, x[::big, ::-big])
    check(run("StridedSlice", [x], begin=[-big, 0], end=[big, 6], strides=[1, 1]), x)
    with pytest.raises(UnsupportedOpError, match="out of range"):
        run("StridedSlice", [x], begin=[-2 ** 40, 0], end=[2 ** 40, 6], strides=[1, 1])


@pytest.mark.parametrize("channels", [3, 5, 8, 16, 19, 130])
@pytest.mark.parametrize("pads", [[0, 0, 0, 0, 0, 0, 0, 16], [0, 0, 0, 0, 0, 0, 3, 5], [0, 0, 0, 0, 1, 2, 0, 0],
                                  [0, 0, 0, 0, 0, 0, 1, 0]])
def test_pad_only_inner_dims_short_rows(channels, pads):
    """The inner-dims-only constant padding of 1-, 2- and 4-byte elements on
    rows of any length (16-byte pieces, the last overlapping, 8- and 4-byte
    ones and bytes below 16): int8 filled with its zero point, float16 and
    float32 with a value, int64 with 0, 1 and 3 threads."""
    for dtype, kw, value in ((np.int8, dict(quant=([0.1], [-7])), -7), (np.float16, dict(value=2.5), 2.5),
                             (np.float32, dict(value=-1.25), -1.25), (np.int64, {}, 0)):
        x = data((2, 7, 9, channels), dtype)
        want = np.pad(x, np.array(pads).reshape(-1, 2), constant_values=value)
        for threads in (1, 3):
            check(run("Pad", [x], threads=threads, pads=pads, **kw), want)
