"""Spatial ops against the numpy reference (reference.py): Conv2D,
DepthwiseConv2D, TransposeConv2D, MaxPool2D, AveragePool2D, Mean,
ResizeBilinear, ResizeNearest, DepthToSpace, SpaceToDepth; and the
attributes, shapes and dtypes they refuse.
"""
import itertools

import numpy as np
import pytest

import reference as ref
import tinyinfer as ti

ACTS = (0, 1, 2, 3)
PADS_EXPLICIT = (1, 0, 2, 1)


def build(op, x, *consts, x_dtype=None, weights_as_inputs=False, **attrs):
    """One-op graph: x is the graph input, consts are constants (None: absent).
    With weights_as_inputs, the consts are graph inputs too."""
    g = ti.GraphBuilder(op)
    x = np.asarray(x)
    xi = g.input("x", x.shape, dtype=x_dtype or x.dtype)
    ins = [xi]
    feeds = [x]
    for i, c in enumerate(consts):
        if c is None:
            ins.append(None)
        elif weights_as_inputs:
            c = np.asarray(c)
            ins.append(g.input(f"in{i}", c.shape, dtype=c.dtype))
            feeds.append(c)
        else:
            ins.append(g.const(f"c{i}", c))
    y = g.op(op, *ins, **attrs)
    g.output(y)
    return g, feeds


def run(op, x, *consts, threads=1, weights_as_inputs=False, **attrs):
    g, feeds = build(op, x, *consts, weights_as_inputs=weights_as_inputs, **attrs)
    with g.load(threads=threads) as m:
        (y,) = m.run(feeds)
    return y


def close(got, want):
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.nanmax(np.abs(want))) if want.size and np.isfinite(want).any() else 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def refuses(op, x, *consts, **attrs):
    """Building, loading or running must fail with a tinyinfer error."""
    with pytest.raises(ti.TinyInferError):
        run(op, x, *consts, **attrs)


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def window_attrs(padding, pads, strides, dilations):
    a = dict(strides=list(strides), dilations=list(dilations), padding=padding)
    if padding == 2:
        a["pads"] = list(pads)
    return a


# ----------------------------------------------------------------------------
# Conv2D

def conv_cases():
    """A deterministic sample of the configuration space plus edge cases."""
    rng = np.random.default_rng(1234)
    cases = []
    for i in range(120):
        groups = int(rng.choice([1, 1, 2, 3]))
        cg = int(rng.choice([1, 2, 3, 5, 8, 11]))
        og = int(rng.choice([1, 2, 3, 4, 7]))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = int(rng.integers(0, 3))
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        n = int(rng.choice([1, 3]))
        h = int(rng.integers((kh - 1) * d[0] + 1, 12))
        w = int(rng.integers((kw - 1) * d[1] + 1, 12))
        cases.append((n, h, w, groups * cg, groups * og, kh, kw, s, d, padding, pads, groups,
                      bool(rng.integers(0, 2)), int(rng.integers(0, 4))))
    # 1x1 (read in place, a matrix product), with and without stride / groups.
    cases += [
        (1, 5, 7, 16, 9, 1, 1, (1, 1), (1, 1), 0, (0,) * 4, 1, True, 0),
        (3, 4, 5, 6, 10, 1, 1, (2, 3), (1, 1), 1, (0,) * 4, 2, False, 1),
        (2, 3, 3, 3, 1, 1, 1, (1, 1), (1, 1), 2, (1, 0, 0, 1), 1, True, 0),  # 1x1 with explicit pads
        (1, 9, 9, 24, 13, 3, 3, (1, 1), (1, 1), 1, (0,) * 4, 1, True, 2),  # long dot: SIMD body and tail
        (1, 6, 6, 9, 9, 3, 3, (1, 1), (1, 1), 1, (0,) * 4, 9, True, 0),  # groups == Cin (depthwise as conv)
        (3, 1, 1, 4, 3, 1, 1, (1, 1), (1, 1), 0, (0,) * 4, 1, True, 3),  # 1x1 image
        (1, 2, 2, 2, 3, 3, 3, (1, 1), (1, 1), 2, (2, 2, 2, 2), 1, True, 0),  # windows entirely in padding
    ]
    return cases


@pytest.mark.parametrize("case", conv_cases())
def test_conv2d(case):
    n, h, w, cin, cout, kh, kw, s, d, padding, pads, groups, has_bias, act = case
    rng = np.random.default_rng(abs(hash(case)) % (2 ** 32))
    x = rnd(rng, n, h, w, cin)
    wt = rnd(rng, cout, kh, kw, cin // groups)
    bias = rnd(rng, cout) if has_bias else None
    attrs = window_attrs(padding, pads, s, d)
    if groups != 1:
        attrs["groups"] = groups
    if act:
        attrs["activation"] = act
    want = ref.conv2d(x, wt, bias, strides=s, dilations=d, padding=padding, pads=pads, groups=groups,
                      activation=act)
    got = run("Conv2D", x, wt, bias, **attrs)
    close(got, want)


def test_conv2d_hand_values():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    got = run("Conv2D", x, np.ones((1, 3, 3, 1), np.float32), padding=1)
    close(got[0, :, :, 0], [[12, 21, 16], [27, 45, 33], [24, 39, 28]])


def test_conv2d_weights_as_inputs():
    rng = np.random.default_rng(5)
    x, wt, b = rnd(rng, 2, 6, 5, 4), rnd(rng, 6, 3, 2, 2), rnd(rng, 6)
    got = run("Conv2D", x, wt, b, weights_as_inputs=True, groups=2, padding=1, strides=[2, 1])
    close(got, ref.conv2d(x, wt, b, strides=(2, 1), padding=1, groups=2))


@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("k,groups", [(3, 1), (1, 1), (3, 4)])
def test_conv2d_threads(threads, k, groups):
    rng = np.random.default_rng(7)
    x, wt, b = rnd(rng, 3, 23, 17, 32), rnd(rng, 24, k, k, 32 // groups), rnd(rng, 24)
    want = ref.conv2d(x, wt, b, padding=1, groups=groups, activation=2)
    got = run("Conv2D", x, wt, b, threads=threads, padding=1, groups=groups, activation=2)
    close(got, want)
    # A second run of the same model gives the same result (scratch reuse).
    g, feeds = build("Conv2D", x, wt, b, padding=1, groups=groups, activation=2)
    with g.load(threads=threads) as m:
        a = m.run(feeds)[0]
        bb = m.run(feeds)[0]
    np.testing.assert_array_equal(a, bb)


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("shape,cout,strides", [
    ((1, 4, 4, 40), 200, 1),   # 16 pixels: 13 panels, the last of 8 columns
    ((1, 4, 6, 24), 1280, 1),  # 24 pixels
    ((2, 2, 2, 16), 72, 1),    # batch 2, 8 pixels
    ((1, 8, 8, 32), 96, 2),    # strided 1x1 without padding: 16 pixels read in place
])
def test_conv2d_1x1_few_pixels_threads(threads, shape, cout, strides):
    # 1x1 layers on few pixels: the threads may split the column panels
    # instead of the pixels (PackedGemm.panelsSplitBetter); every split
    # gives the reference's result.
    rng = np.random.default_rng(11)
    x, wt, b = rnd(rng, *shape), rnd(rng, cout, 1, 1, shape[3]), rnd(rng, cout)
    want = ref.conv2d(x, wt, b, strides=(strides, strides), activation=3)
    close(run("Conv2D", x, wt, b, threads=threads, strides=[strides, strides], activation=3), want)


def test_conv_depthwise_chain_threads_repeatable():
    # More threads than this machine's CPUs (chunks run in ever different
    # orders, some on preempted threads): every run gives the one-thread
    # result bit for bit (chunk boundaries fall on whole GEMM tiles and
    # image rows, so no output is computed differently).
    rng = np.random.default_rng(13)
    x = rnd(rng, 1, 24, 24, 16)
    w1, b1 = rnd(rng, 48, 1, 1, 16), rnd(rng, 48)
    w2, b2 = rnd(rng, 1, 3, 3, 48), rnd(rng, 48)
    w3, b3 = rnd(rng, 24, 1, 1, 48), rnd(rng, 24)
    g = ti.GraphBuilder("chain")
    xi = g.input("x", x.shape, dtype=np.float32)
    h = g.op("Conv2D", xi, g.const("w1", w1), g.const("b1", b1), activation=3)
    h = g.op("DepthwiseConv2D", h, g.const("w2", w2), g.const("b2", b2), padding=1, activation=3)
    g.output(g.op("Conv2D", h, g.const("w3", w3), g.const("b3", b3)))
    want = ref.conv2d(ref.depthwise_conv2d(ref.conv2d(x, w1, b1, activation=3), w2, b2, padding=1, activation=3),
                      w3, b3)
    with g.load(threads=1) as m:
        (one,) = m.run([x])
    close(one, want)
    with g.load(threads=5) as m:
        for _ in range(30):
            (got,) = m.run([x])
            np.testing.assert_array_equal(got, one)


@pytest.mark.parametrize("bad", [
    dict(groups=3),  # Cin 4 not divisible
    dict(groups=0),
    dict(activation=4),
    dict(activation=-1),
    dict(padding=3),
    dict(strides=[0, 1]),
    dict(strides=[1, 1, 1]),
    dict(dilations=[1, 0]),
    dict(padding=2, pads=[0, -1, 0, 0]),
    dict(padding=2, pads=[0, 0, 0]),
    dict(dilations=[4, 1]),  # VALID window larger than the input
])
def test_conv2d_refuses_attributes(bad):
    rng = np.random.default_rng(0)
    refuses("Conv2D", rnd(rng, 1, 6, 6, 4), rnd(rng, 2, 3, 3, 4), None, **bad)


def test_conv2d_refuses_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    x = rnd(rng, 1, 6, 6, 4)
    refuses("Conv2D", x, rnd(rng, 2, 3, 3, 3))  # Cin mismatch
    refuses("Conv2D", x, rnd(rng, 2, 3, 3, 4), groups=2)  # w last dim must be Cin/groups
    refuses("Conv2D", x, rnd(rng, 3, 3, 3, 2), groups=2)  # Cout not divisible by groups
    refuses("Conv2D", x, rnd(rng, 2, 3, 3, 4), rnd(rng, 3))  # bias length
    refuses("Conv2D", x, rnd(rng, 2, 3, 3, 4), rnd(rng, 1, 2))  # bias rank
    refuses("Conv2D", x, rnd(rng, 3, 3, 4))  # weights rank
    refuses("Conv2D", rnd(rng, 6, 6, 4), rnd(rng, 2, 3, 3, 4))  # input rank
    refuses("Conv2D", x.astype(np.int32), rnd(rng, 2, 3, 3, 4))
    refuses("Conv2D", x, rnd(rng, 2, 3, 3, 4).astype(np.float16))
    refuses("Conv2D", x)  # no weights
    refuses("Conv2D", x, rnd(rng, 2, 7, 3, 4))  # VALID kernel taller than the input


# ----------------------------------------------------------------------------
# DepthwiseConv2D

def dw_cases():
    rng = np.random.default_rng(99)
    cases = []
    for _ in range(80):
        c = int(rng.choice([1, 3, 8, 13, 16]))
        m = int(rng.choice([1, 1, 2, 3]))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = int(rng.integers(0, 3))
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        n = int(rng.choice([1, 3]))
        h = int(rng.integers((kh - 1) * d[0] + 1, 12))
        w = int(rng.integers((kw - 1) * d[1] + 1, 12))
        cases.append((n, h, w, c, m, kh, kw, s, d, padding, pads, bool(rng.integers(0, 2)), int(rng.integers(0, 4))))
    return cases


@pytest.mark.parametrize("case", dw_cases())
def test_depthwise_conv2d(case):
    n, h, w, c, m, kh, kw, s, d, padding, pads, has_bias, act = case
    rng = np.random.default_rng(abs(hash(case)) % (2 ** 32))
    x = rnd(rng, n, h, w, c)
    wt = rnd(rng, 1, kh, kw, c * m)
    bias = rnd(rng, c * m) if has_bias else None
    attrs = window_attrs(padding, pads, s, d)
    if m != 1:
        attrs["depth_multiplier"] = m
    attrs["activation"] = act
    want = ref.depthwise_conv2d(x, wt, bias, strides=s, dilations=d, padding=padding, pads=pads,
                                depth_multiplier=m, activation=act)
    close(run("DepthwiseConv2D", x, wt, bias, **attrs), want)


@pytest.mark.parametrize("threads", [1, 3])
def test_depthwise_conv2d_large(threads):
    rng = np.random.default_rng(3)
    x, wt, b = rnd(rng, 2, 33, 29, 24), rnd(rng, 1, 3, 3, 48), rnd(rng, 48)
    want = ref.depthwise_conv2d(x, wt, b, strides=(2, 2), padding=1, depth_multiplier=2, activation=1)
    close(run("DepthwiseConv2D", x, wt, b, threads=threads, strides=[2, 2], padding=1, depth_multiplier=2,
              activation=1), want)


def test_depthwise_conv2d_refuses():
    rng = np.random.default_rng(0)
    x = rnd(rng, 1, 5, 5, 3)
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 3, 3, 4))  # C*M mismatch
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 3, 3, 3), depth_multiplier=2)
    refuses("DepthwiseConv2D", x, rnd(rng, 2, 3, 3, 3))  # leading dim must be 1
    refuses("DepthwiseConv2D", x, rnd(rng, 3, 3, 3))
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 3, 3, 3), rnd(rng, 4))  # bias
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 3, 3, 3), depth_multiplier=0)
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 3, 3, 3), activation=7)
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 3, 3, 3), strides=[1, -1])
    refuses("DepthwiseConv2D", x.astype(np.int8), rnd(rng, 1, 3, 3, 3))
    refuses("DepthwiseConv2D", x, rnd(rng, 1, 6, 3, 3))  # VALID kernel taller than the input


# ----------------------------------------------------------------------------
# TransposeConv2D

def tconv_cases():
    rng = np.random.default_rng(4321)
    cases = []
    for _ in range(100):
        cin = int(rng.choice([1, 2, 5, 8, 12]))
        cout = int(rng.choice([1, 3, 4, 6, 9]))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = int(rng.integers(0, 3))
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        op = tuple(int(rng.integers(0, max(s[i], d[i]))) for i in range(2))
        n = int(rng.choice([1, 3]))
        h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        cases.append((n, h, w, cin, cout, kh, kw, s, d, padding, pads, op, bool(rng.integers(0, 2)),
                      int(rng.integers(0, 4))))
    return cases


@pytest.mark.parametrize("case", tconv_cases())
def test_transpose_conv2d(case):
    n, h, w, cin, cout, kh, kw, s, d, padding, pads, op, has_bias, act = case
    oh = ref.transpose_conv_out(h, kh, s[0], d[0], padding, pads[0], pads[1], op[0])[0]
    ow = ref.transpose_conv_out(w, kw, s[1], d[1], padding, pads[2], pads[3], op[1])[0]
    rng = np.random.default_rng(abs(hash(case)) % (2 ** 32))
    x = rnd(rng, n, h, w, cin)
    wt = rnd(rng, cout, kh, kw, cin)
    bias = rnd(rng, cout) if has_bias else None
    attrs = window_attrs(padding, pads, s, d)
    attrs.update(output_padding=list(op), activation=act)
    if oh < 1 or ow < 1:
        refuses("TransposeConv2D", x, wt, bias, **attrs)
        return
    want = ref.transpose_conv2d(x, wt, bias, strides=s, dilations=d, padding=padding, pads=pads,
                                output_padding=op, activation=act)
    close(run("TransposeConv2D", x, wt, bias, **attrs), want)


def tconv_one_tap_cases():
    """Strides at least the kernel, no dilation: the packed-GEMM path
    (each output pixel gets at most one tap), with channel counts past one
    16-wide panel, padding that cuts into the first taps, output padding
    and pixels no tap reaches."""
    rng = np.random.default_rng(97)
    cases = []
    for _ in range(40):
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        kh, kw = int(rng.integers(1, s[0] + 1)), int(rng.integers(1, s[1] + 1))
        padding = int(rng.integers(0, 3))
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        op = tuple(int(rng.integers(0, s[i])) for i in range(2))
        cases.append((int(rng.choice([1, 2])), int(rng.integers(1, 7)), int(rng.integers(1, 12)),
                      int(rng.choice([1, 3, 24])), int(rng.choice([1, 5, 16, 24, 33])), kh, kw, s, (1, 1),
                      padding, pads, op, bool(rng.integers(0, 2)), int(rng.integers(0, 4))))
    cases.append((1, 5, 7, 24, 24, 2, 2, (2, 2), (1, 1), 0, (0, 0, 0, 0), (0, 0), True, 0))  # U-Net upsampling
    cases.append((1, 6, 6, 24, 1, 2, 2, (2, 2), (1, 1), 0, (0, 0, 0, 0), (0, 0), True, 0))
    return cases


@pytest.mark.parametrize("case", tconv_one_tap_cases())
def test_transpose_conv2d_one_tap(case):
    test_transpose_conv2d(case)


def test_transpose_conv2d_hand_values():
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 2, 2, 1)
    got = run("TransposeConv2D", x, np.ones((1, 2, 2, 1), np.float32), strides=[2, 2])
    close(got[0, :, :, 0], np.kron([[1, 2], [3, 4]], np.ones((2, 2))))


@pytest.mark.parametrize("threads", [1, 4])
def test_transpose_conv2d_large(threads):
    rng = np.random.default_rng(8)
    x, wt, b = rnd(rng, 2, 15, 13, 16), rnd(rng, 12, 4, 4, 16), rnd(rng, 12)
    want = ref.transpose_conv2d(x, wt, b, strides=(2, 2), padding=1, activation=1)
    close(run("TransposeConv2D", x, wt, b, threads=threads, strides=[2, 2], padding=1, activation=1), want)


def test_transpose_conv2d_refuses():
    rng = np.random.default_rng(0)
    x = rnd(rng, 1, 4, 4, 3)
    wt = rnd(rng, 2, 3, 3, 3)
    refuses("TransposeConv2D", x, rnd(rng, 2, 3, 3, 2))  # Cin mismatch
    refuses("TransposeConv2D", x, wt, rnd(rng, 3))  # bias
    refuses("TransposeConv2D", x, wt, strides=[2, 2], output_padding=[2, 0])  # >= stride
    refuses("TransposeConv2D", x, wt, output_padding=[1, 0])  # stride 1, dilation 1
    refuses("TransposeConv2D", x, wt, output_padding=[0, -1])
    refuses("TransposeConv2D", x, wt, output_padding=[0])
    refuses("TransposeConv2D", x, wt, padding=2, pads=[4, 3, 0, 0])  # output height 6 - 7 < 1
    refuses("TransposeConv2D", x, wt, activation=9)
    refuses("TransposeConv2D", x.astype(np.int32), wt)
    refuses("TransposeConv2D", rnd(rng, 4, 4, 3), wt)


# ----------------------------------------------------------------------------
# Pooling

def pool_cases():
    rng = np.random.default_rng(2024)
    cases = []
    for _ in range(100):
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = int(rng.integers(0, 3))
        pads = (int(rng.integers(0, kh)), int(rng.integers(0, kh)), int(rng.integers(0, kw)), int(rng.integers(0, kw)))
        n = int(rng.choice([1, 3]))
        h, w = int(rng.integers(kh, 12)), int(rng.integers(kw, 12))
        c = int(rng.choice([1, 3, 8, 17]))
        cases.append((n, h, w, c, kh, kw, s, padding, pads, int(rng.integers(0, 2)), int(rng.integers(0, 4))))
    return cases


@pytest.mark.parametrize("case", pool_cases())
@pytest.mark.parametrize("op", ["MaxPool2D", "AveragePool2D"])
def test_pool(op, case):
    n, h, w, c, kh, kw, s, padding, pads, cip, act = case
    rng = np.random.default_rng(abs(hash(case)) % (2 ** 32))
    x = rnd(rng, n, h, w, c) * 3
    attrs = dict(filter=[kh, kw], strides=list(s), padding=padding, activation=act)
    if padding == 2:
        attrs["pads"] = list(pads)
    if op == "MaxPool2D":
        want = ref.max_pool2d(x, filter=(kh, kw), strides=s, padding=padding, pads=pads, activation=act)
    else:
        attrs["count_include_pad"] = cip
        want = ref.average_pool2d(x, filter=(kh, kw), strides=s, padding=padding, pads=pads,
                                  count_include_pad=cip, activation=act)
    close(run(op, x, **attrs), want)


@pytest.mark.parametrize("threads", [1, 4])
def test_pool_large(threads):
    rng = np.random.default_rng(11)
    x = rnd(rng, 3, 40, 37, 32)
    for op, f in (("MaxPool2D", ref.max_pool2d), ("AveragePool2D", ref.average_pool2d)):
        want = f(x, filter=(3, 3), strides=(2, 2), padding=1)
        close(run(op, x, threads=threads, filter=[3, 3], strides=[2, 2], padding=1), want)


def test_pool_hand_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    close(run("MaxPool2D", x, filter=[2, 2], strides=[2, 2])[0, :, :, 0], [[5, 7], [13, 15]])
    close(run("AveragePool2D", x, filter=[2, 2], strides=[2, 2])[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    ones = np.ones((1, 3, 3, 1), np.float32)
    got = run("AveragePool2D", ones, filter=[3, 3], padding=1, count_include_pad=1)
    close(got[0, :, :, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
    close(run("AveragePool2D", ones, filter=[3, 3], padding=1), np.ones((1, 3, 3, 1)))
    # Negative values: padding is never the max.
    close(run("MaxPool2D", -ones, filter=[3, 3], padding=1), -np.ones((1, 3, 3, 1)))


@pytest.mark.parametrize("c", [20, 24, 28, 40, 42, 48])
@pytest.mark.parametrize("geom", [((2, 2), (2, 2), 0), ((3, 3), (2, 2), 1), ((3, 2), (1, 2), 1)])
@pytest.mark.parametrize("act", [0, 3])
def test_max_pool_channel_blocks(c, geom, act):
    """The max-pool row kernel (channels by 16, 8, 4, then one at a time): every
    block against numpy, NaN reaching exactly the windows that hold it."""
    (kh, kw), s, padding = geom
    rng = np.random.default_rng(c + kh)
    x = rnd(rng, 2, 9, 10, c) * 3
    x[1, 4, 5, [0, 17, c - 1]] = np.nan
    attrs = dict(filter=[kh, kw], strides=list(s), padding=padding, activation=act)
    got = run("MaxPool2D", x, **attrs)
    want = ref.max_pool2d(x, filter=(kh, kw), strides=s, padding=padding, activation=act)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).any()
    close(got, want)


def test_max_pool_nan_propagates():
    x = np.zeros((1, 2, 2, 2), np.float32)
    x[0, 1, 1, 0] = np.nan
    got = run("MaxPool2D", x, filter=[2, 2])
    assert np.isnan(got[0, 0, 0, 0]) and got[0, 0, 0, 1] == 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", [
    # (N, H, W, Cin), (Cout, KH, KW), strides, dilations, padding (1 = SAME, 0 = VALID)
    ((2, 9, 21, 3), (16, 3, 3), (1, 1), (1, 1), 1),   # rows of 21: 8 + 8 + edge pixels
    ((1, 17, 40, 3), (24, 3, 3), (2, 2), (1, 1), 1),  # a first layer, stride 2
    ((2, 11, 37, 5), (7, 5, 3), (1, 3), (2, 1), 0),   # vertical dilation, horizontal stride 3
    ((1, 6, 64, 2), (33, 1, 3), (1, 1), (1, 1), 1),   # one window row, three panels
    ((1, 3, 3, 32), (70, 3, 3), (1, 1), (1, 1), 0),   # one output pixel: a gathered row, the one-row kernel
    ((2, 2, 3, 5), (9, 3, 3), (1, 2), (1, 1), 1),     # fewer pixels than a tile, with padding
])
def test_conv2d_indirect_rows(case, threads):
    """The indirect convolution (window rows read in place): a GEMM tile's
    pixels (8 at AVX-512, 6 at AVX2, 3 at baseline x86) of one output row from
    base pointers, edge pixels from gathered rows, rows
    above and below the image from zeros, chunks of pixels split between
    threads anywhere in a row."""
    xs, (cout, kh, kw), strides, dil, padding = case
    rng = np.random.default_rng(sum(xs) + cout)
    x = rng.standard_normal(xs).astype(np.float32)
    wt = rng.standard_normal((cout, kh, kw, xs[3])).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    want = ref.conv2d(x, wt, b, strides=strides, dilations=dil, padding=padding, activation=2)
    got = run("Conv2D", x, wt, b, threads=threads, strides=list(strides), dilations=list(dil), padding=padding,
              activation=2)
    close(got, want)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act", [0, 1, 2, 3])
@pytest.mark.parametrize("case", [
    # (N, H, W, Cin), (Cout, KH, KW), strides, padding (1 = SAME, 0 = VALID, else explicit pads)
    ((1, 32, 32, 3), (16, 3, 3), (2, 2), 1),            # MobileNetV2's first layer: SAME pads right/bottom only
    ((2, 33, 31, 3), (16, 3, 3), (2, 2), 1),            # odd sizes: SAME pads all four sides
    ((2, 32, 30, 3), (13, 3, 3), (2, 2), 0),            # VALID, 13 channels (an 8-wide last panel)
    ((2, 27, 29, 3), (35, 3, 3), (2, 2), 0),            # VALID odd, three panels (the last of 3 columns)
    ((2, 20, 26, 3), (24, 3, 3), (2, 2), (2, 1, 0, 3)),  # explicit pads cutting both edges and the top
    ((1, 9, 70, 1), (8, 3, 3), (2, 2), 1),              # one channel, a row of 35 pixels
    ((2, 7, 5, 4), (20, 5, 5), (2, 2), 1),              # 5x5 windows on a 5-wide image: every tile gathered
    ((1, 15, 17, 8), (17, 3, 2), (1, 3), 1),            # 8 channels, horizontal stride 3
])
def test_conv2d_few_channel_rows(case, act, threads):
    """Conv2D of few input channels (Cin <= 8, an image's first layer):
    the level's conv_row computes each output row's pixels in tiles read
    in place, gathers the tiles cut by the left or right edge, skips window
    rows above or below the image; threads split rows anywhere."""
    xs, (cout, kh, kw), strides, padding = case
    rng = np.random.default_rng(sum(xs) + cout + act)
    x = rnd(rng, *xs)
    wt, b = rnd(rng, cout, kh, kw, xs[3]), rnd(rng, cout)
    pads = padding if isinstance(padding, tuple) else (0,) * 4
    pad_attr = 2 if isinstance(padding, tuple) else padding
    want = ref.conv2d(x, wt, b, strides=strides, padding=pad_attr, pads=pads, activation=act)
    attrs = window_attrs(pad_attr, pads, strides, (1, 1))
    got = run("Conv2D", x, wt, b, threads=threads, activation=act, **attrs)
    close(got, want)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act", [0, 3])
@pytest.mark.parametrize("case", [
    # (N, H, W, Cin), Cout, bias: 1x1 convolutions to at most 8 channels (gemm_tile8)
    ((1, 64, 64, 16), 8, True),     # MobileNetV2's 16 -> 8
    ((1, 32, 32, 48), 8, True),     # 48 -> 8
    ((2, 5, 7, 5), 3, False),       # 70 pixels: tiles of 12 then a tail of 10, 3 columns
    ((1, 1, 11, 9), 1, True),       # fewer pixels than a tile, one column
    ((1, 1, 1, 1280), 2, True),     # one pixel (the one-row kernel), a long dot product
    ((2, 1, 7, 40), 5, False),      # 14 pixels: a tile of 12, then 2 through the one-row kernel
    ((3, 3, 3, 2), 7, True),        # 27 pixels, 7 columns, 2 input channels
])
def test_conv2d_1x1_few_outputs(case, act, threads):
    xs, cout, has_bias = case
    rng = np.random.default_rng(sum(xs) + cout)
    x, wt = rnd(rng, *xs), rnd(rng, cout, 1, 1, xs[3])
    b = rnd(rng, cout) if has_bias else None
    close(run("Conv2D", x, wt, b, threads=threads, activation=act), ref.conv2d(x, wt, b, activation=act))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", [
    # op, (N, H, W, C), weights shape, strides: the layer kinds of MobileNetV2
    ("DepthwiseConv2D", (5, 13, 11, 16), (1, 3, 3, 16), (1, 1)),   # 3x3 interior kernel and borders
    ("DepthwiseConv2D", (5, 14, 12, 48), (1, 3, 3, 48), (2, 2)),   # strided, blocks of 16
    ("DepthwiseConv2D", (4, 9, 7, 12), (1, 5, 5, 12), (1, 1)),     # general row kernel (C % 8 != 0)
    ("Conv2D", (5, 9, 10, 8), (48, 1, 1, 8), (1, 1)),              # 1x1: a GEMM over pixels of all items
    ("Conv2D", (5, 17, 15, 3), (16, 3, 3, 3), (2, 2)),             # a first layer, indirect rows
])
def test_conv_batch_items_independent(case, threads):
    """A batch of N images: every item equals the numpy reference and the
    same op run on that item alone (threads split the batch's output rows
    anywhere, across image boundaries)."""
    op, xs, ws, strides = case
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x, wt, b = rnd(rng, *xs), rnd(rng, *ws), rnd(rng, ws[0] if op == "Conv2D" else ws[3])
    f = ref.conv2d if op == "Conv2D" else ref.depthwise_conv2d
    got = run(op, x, wt, b, threads=threads, strides=list(strides), padding=1, activation=3)
    close(got, f(x, wt, b, strides=strides, padding=1, activation=3))
    for i in range(xs[0]):
        alone = run(op, x[i:i + 1], wt, b, threads=threads, strides=list(strides), padding=1, activation=3)
        np.testing.assert_allclose(got[i:i + 1], alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("act", [1, 2, 3])
@pytest.mark.parametrize("pixels", [1, 9])
def test_fused_activation_keeps_nan(act, pixels):
    """The packed GEMM clamps in registers (vmaxps/vminps with the value as
    the second operand): a NaN stays NaN under Relu, Relu6 and ReluN1To1, as
    the scalar clamp leaves it, in the 8-row tile and the one-row tiles."""
    rng = np.random.default_rng(act)
    x = rng.standard_normal((1, 1, pixels, 5)).astype(np.float32)
    x[0, 0, 0, 2] = np.nan
    wt = rng.standard_normal((40, 1, 1, 5)).astype(np.float32)
    got = run("Conv2D", x, wt, np.zeros(40, np.float32), activation=act)
    want = ref.conv2d(x, wt, np.zeros(40, np.float32), activation=act)
    assert np.isnan(got[0, 0, 0]).all()
    close(got[0, 0, 1:], want[0, 0, 1:])


@pytest.mark.parametrize("act", [1, 2])
@pytest.mark.parametrize("c", [16, 24, 28, 42])
def test_depthwise_fused_activation_keeps_nan(act, c):
    """The 3x3 depthwise kernel clamps in registers: a NaN input reaches
    exactly the outputs whose window holds it, as NaN."""
    rng = np.random.default_rng(c)
    x = rng.standard_normal((1, 6, 7, c)).astype(np.float32)
    x[0, 3, 3, 5] = np.nan
    wt = rng.standard_normal((1, 3, 3, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    got = run("DepthwiseConv2D", x, wt, b, padding=1, activation=act)
    want = ref.depthwise_conv2d(x, wt, b, padding=1, activation=act)
    nan = np.zeros(got.shape, bool)
    nan[0, 2:5, 2:5, 5] = True
    assert np.isnan(got[nan]).all() and not np.isnan(got[~nan]).any()
    close(np.where(nan, 0, got), np.where(nan, 0, want))


@pytest.mark.parametrize("op", ["MaxPool2D", "AveragePool2D"])
@pytest.mark.parametrize("bad", [
    dict(filter=[0, 2]),
    dict(filter=[2]),
    dict(filter=[2, 2], dilations=[2, 1]),
    dict(filter=[2, 2], padding=2, pads=[2, 0, 0, 0]),  # a window of padding only
    dict(filter=[2, 2], padding=2, pads=[0, 0, 0, 5]),
    dict(filter=[2, 2], strides=[0, 1]),
    dict(filter=[2, 2], activation=5),
    dict(filter=[2, 2], count_include_pad=2),
    dict(filter=[9, 2]),  # VALID window larger than the input
])
def test_pool_refuses(op, bad):
    refuses(op, np.zeros((1, 5, 5, 2), np.float32), **bad)


def test_pool_refuses_more():
    refuses("MaxPool2D", np.zeros((1, 5, 5, 2), np.float32), filter=[2, 2], count_include_pad=1)
    refuses("MaxPool2D", np.zeros((1, 5, 5, 2), np.int32), filter=[2, 2])
    refuses("AveragePool2D", np.zeros((5, 5, 2), np.float32), filter=[2, 2])


# ----------------------------------------------------------------------------
# Mean

# Shapes and axes of the reductions (Mean, ReduceMax): kept and reduced dims
# merged, size-1 dims, negative axes, none at all.
REDUCTIONS = [
    ((2, 3, 4, 5), [1, 2]),
    ((2, 3, 4, 5), [1, -2]),
    ((3, 7, 7, 16), [1, 2]),
    ((2, 3, 4, 5), [0]),
    ((2, 3, 4, 5), [3]),
    ((2, 3, 4, 5), [-1, 0]),
    ((2, 3, 4, 5), [0, 1, 2, 3]),
    ((2, 3, 4, 5), [0, 2]),
    ((2, 1, 4, 1, 3), [1, 3]),
    ((2, 1, 4, 1, 3), [0, 2, 4]),
    ((2, 1, 4, 1, 3), [3, 4]),
    ((5,), [0]),
    ((5,), []),
    ((4, 6), [1]),
    ((1, 1, 1), [1]),
]


@pytest.mark.parametrize("shape,axes", REDUCTIONS)
@pytest.mark.parametrize("keep", [0, 1])
def test_mean(shape, axes, keep):
    rng = np.random.default_rng(len(shape) * 10 + len(axes))
    x = rnd(rng, *shape) + 0.5
    want = ref.mean(x, axes=axes, keep_dims=keep)
    close(run("Mean", x, axes=axes, keep_dims=keep), want)


def test_mean_large_reduction_is_accurate():
    x = np.full((1, 1000, 1000, 1), 0.1, np.float32)
    got = run("Mean", x, axes=[1, 2])
    np.testing.assert_allclose(got, np.full((1, 1), 0.1), rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 4, 4, 1280), (1, 3, 5, 37), (1, 7, 1, 5), (6, 16)])
def test_mean_over_outer_dims_in_order(shape):
    """A Mean over the outer dims (a global average pool): the level's
    mean_cols sums each column in double, in order of the rows, then
    rounds once; the same bits as that sum in numpy (cumsum is in order)."""
    rng = np.random.default_rng(sum(shape))
    x = rnd(rng, *shape)
    axes = list(range(len(shape) - 1))
    rows = x.reshape(-1, shape[-1]).astype(np.float64)
    want = (np.cumsum(rows, axis=0)[-1] / rows.shape[0]).astype(np.float32)
    got = run("Mean", x, axes=axes, keep_dims=1)
    np.testing.assert_array_equal(got.reshape(-1), want)


@pytest.mark.parametrize("bad", [
    dict(axes=[1, -3]),  # duplicate
    dict(axes=[4]),
    dict(axes=[-5]),
    dict(axes=[1], keep_dims=2),
])
def test_mean_refuses(bad):
    refuses("Mean", np.zeros((2, 3, 4, 5), np.float32), **bad)


def test_mean_refuses_int():
    refuses("Mean", np.zeros((2, 3), np.int32), axes=[1])


# ----------------------------------------------------------------------------
# ReduceMax

@pytest.mark.parametrize("shape,axes", REDUCTIONS + [((2, 3, 4, 5), [-3, -2]), ((4, 2, 6, 3, 5), [1, 3]),
                                                ((4, 37), [1])])
@pytest.mark.parametrize("keep", [0, 1])
def test_reduce_max(shape, axes, keep):
    rng = np.random.default_rng(len(shape) * 31 + len(axes) * 7 + keep)
    x = rnd(rng, *shape) - 0.25
    got = run("ReduceMax", x, axes=axes, keep_dims=keep)
    np.testing.assert_array_equal(got, ref.reduce_max(x, axes=axes, keep_dims=keep))


def test_reduce_max_negative_values_and_nan():
    x = np.full((2, 3, 4), -7.5, np.float32)
    x[0, 1, 2] = -1.0
    x[1, 2, 0] = np.nan
    got = run("ReduceMax", x, axes=[1, 2])
    np.testing.assert_array_equal(got[0], np.float32(-1.0))
    assert np.isnan(got[1])
    got = run("ReduceMax", x, axes=[0], keep_dims=1)
    want = ref.reduce_max(x, axes=[0], keep_dims=1)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (1, 3, 4) and np.isnan(got[0, 2, 0])
    # long runs (the 16-lane loop): a NaN early in a run, larger values after it, infinities
    x = np.tile(np.linspace(-3, 3, 70, dtype=np.float32), (4, 1))
    x[0, 5] = np.nan
    x[1, 69] = np.nan
    x[2, 17] = np.inf
    x[3, :] = -np.inf
    got = run("ReduceMax", x, axes=[1])
    assert np.isnan(got[0]) and np.isnan(got[1])
    np.testing.assert_array_equal(got[2:], [np.inf, -np.inf])


def test_reduce_max_batch_sizes():
    """A model built for batch 1 runs other batch sizes (the reduction plan is made per session)."""
    g = ti.GraphBuilder()
    y = g.op("ReduceMax", g.input("x", (1, 5, 6, 3)), axes=[1, 2], keep_dims=1)
    g.output(y)
    m = g.load()
    rng = np.random.default_rng(77)
    for n in (1, 2, 5):
        x = rnd(rng, n, 5, 6, 3)
        np.testing.assert_array_equal(m.run(x)[0], ref.reduce_max(x, axes=[1, 2], keep_dims=1))


@pytest.mark.parametrize("bad", [
    dict(axes=[1, -3]),  # duplicate
    dict(axes=[4]),
    dict(axes=[-5]),
    dict(axes=[1], keep_dims=2),
])
def test_reduce_max_refuses(bad):
    refuses("ReduceMax", np.zeros((2, 3, 4, 5), np.float32), **bad)


def test_reduce_max_refuses_int32():
    refuses("ReduceMax", np.zeros((2, 3), np.int32), axes=[1])


# ----------------------------------------------------------------------------
# Resize

RESIZE_MODES = [(0, 0), (1, 0), (0, 1)]


@pytest.mark.parametrize("in_hw,out_hw", [
    ((3, 4), (3, 4)), ((3, 4), (6, 8)), ((3, 4), (7, 5)), ((5, 7), (2, 3)), ((1, 1), (3, 2)),
    ((4, 4), (1, 1)), ((2, 3), (5, 9)), ((6, 2), (4, 13)), ((9, 8), (3, 3)),
])
@pytest.mark.parametrize("ac,hp", RESIZE_MODES)
@pytest.mark.parametrize("n", [1, 3])
def test_resize(in_hw, out_hw, ac, hp, n):
    rng = np.random.default_rng(in_hw[0] * 100 + out_hw[1])
    x = rnd(rng, n, in_hw[0], in_hw[1], 3)
    attrs = dict(size=list(out_hw), align_corners=ac, half_pixel_centers=hp)
    close(run("ResizeBilinear", x, **attrs), ref.resize_bilinear(x, out_hw, ac, hp))
    np.testing.assert_array_equal(run("ResizeNearest", x, **attrs), ref.resize_nearest(x, out_hw, ac, hp))


def test_resize_hand_values():
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    close(run("ResizeBilinear", x, size=[1, 4], half_pixel_centers=1)[0, 0, :, 0], [0, 0.25, 0.75, 1])
    close(run("ResizeBilinear", x, size=[1, 4])[0, 0, :, 0], [0, 0.5, 1, 1])
    close(run("ResizeBilinear", x, size=[1, 4], align_corners=1)[0, 0, :, 0], [0, 1 / 3, 2 / 3, 1])
    v = np.arange(3, dtype=np.float32).reshape(1, 1, 3, 1)
    assert list(run("ResizeNearest", v, size=[1, 5], align_corners=1)[0, 0, :, 0]) == [0, 1, 1, 2, 2]
    assert list(run("ResizeNearest", v, size=[1, 2], half_pixel_centers=1)[0, 0, :, 0]) == [0, 2]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_resize_nearest_any_dtype(dtype):
    x = np.arange(2 * 3 * 5 * 3).reshape(2, 3, 5, 3).astype(dtype)
    for ac, hp in RESIZE_MODES:
        np.testing.assert_array_equal(run("ResizeNearest", x, size=[7, 4], align_corners=ac, half_pixel_centers=hp),
                                      ref.resize_nearest(x, (7, 4), ac, hp))


@pytest.mark.parametrize("threads", [1, 4])
def test_resize_large(threads):
    rng = np.random.default_rng(12)
    x = rnd(rng, 2, 30, 20, 16)
    close(run("ResizeBilinear", x, threads=threads, size=[61, 47], half_pixel_centers=1),
          ref.resize_bilinear(x, (61, 47), 0, 1))
    np.testing.assert_array_equal(run("ResizeNearest", x, threads=threads, size=[61, 47]),
                                  ref.resize_nearest(x, (61, 47)))


@pytest.mark.parametrize("op", ["ResizeBilinear", "ResizeNearest"])
@pytest.mark.parametrize("bad", [
    dict(size=[4, 4], align_corners=1, half_pixel_centers=1),
    dict(),
    dict(size=[0, 4]),
    dict(size=[4]),
    dict(size=[4, 4], align_corners=2),
    dict(size=[4, 4], half_pixel_centers=-1),
])
def test_resize_refuses(op, bad):
    refuses(op, np.zeros((1, 3, 3, 2), np.float32), **bad)


def test_resize_refuses_more():
    refuses("ResizeBilinear", np.zeros((1, 3, 3, 2), np.int32), size=[4, 4])
    refuses("ResizeNearest", np.zeros((3, 3, 2), np.float32), size=[4, 4])


# ----------------------------------------------------------------------------
# DepthToSpace / SpaceToDepth

@pytest.mark.parametrize("dtype", [np.float32, np.int8, np.uint8, np.int16, np.int32, np.int64, np.float16])
@pytest.mark.parametrize("b", [1, 2, 3])
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("n", [1, 3])
def test_depth_space(dtype, b, mode, n):
    cp = 3
    x = (np.arange(n * 2 * 3 * cp * b * b) % 120).reshape(n, 2, 3, cp * b * b).astype(dtype)
    y = run("DepthToSpace", x, block_size=b, mode=mode)
    np.testing.assert_array_equal(y, ref.depth_to_space(x, b, mode))
    z = run("SpaceToDepth", y, block_size=b, mode=mode)
    np.testing.assert_array_equal(z, ref.space_to_depth(y, b, mode))
    np.testing.assert_array_equal(z, x)


def test_depth_space_formulas():
    x = np.arange(2 * 2 * 3 * 12, dtype=np.int32).reshape(2, 2, 3, 12)
    dcr = x.reshape(2, 2, 3, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 6, 3)
    crd = x.reshape(2, 2, 3, 3, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(2, 4, 6, 3)
    np.testing.assert_array_equal(run("DepthToSpace", x, block_size=2), dcr)
    np.testing.assert_array_equal(run("DepthToSpace", x, block_size=2, mode=1), crd)


@pytest.mark.parametrize("threads", [1, 4])
def test_depth_space_large(threads):
    x = np.random.default_rng(0).standard_normal((2, 64, 48, 32)).astype(np.float32)
    for mode in (0, 1):
        y = run("SpaceToDepth", x, threads=threads, block_size=4, mode=mode)
        np.testing.assert_array_equal(y, ref.space_to_depth(x, 4, mode))
        np.testing.assert_array_equal(run("DepthToSpace", y, threads=threads, block_size=4, mode=mode), x)


def test_depth_space_refuses():
    x = np.zeros((1, 4, 6, 8), np.float32)
    refuses("DepthToSpace", x, block_size=3)  # 8 % 9
    refuses("SpaceToDepth", x, block_size=4)  # 6 % 4
    refuses("SpaceToDepth", np.zeros((1, 3, 4, 2), np.float32), block_size=2)  # 3 % 2
    for op in ("DepthToSpace", "SpaceToDepth"):
        refuses(op, x)  # block_size missing
        refuses(op, x, block_size=0)
        refuses(op, x, block_size=-2)
        refuses(op, x, block_size=2, mode=2)
        refuses(op, np.zeros((4, 6, 8), np.float32), block_size=2)


def test_tconv_is_conv_adjoint():
    """<conv(x), y> == <x, tconv(y)> with the weights' channels swapped."""
    rng = np.random.default_rng(17)
    for pd, pads, s, d, k, H in ((0, (0,) * 4, 2, 1, 3, 10), (1, (0,) * 4, 2, 1, 3, 8),
                                 (2, (1, 2, 0, 1), 2, 2, 3, 11), (2, (2, 1, 1, 0), 3, 1, 2, 7)):
        x, w = rnd(rng, 2, H, H - (s if pd == 1 else 1), 3), rnd(rng, 4, k, k, 3)
        attrs = window_attrs(pd, pads, (s, s), (d, d))
        c = run("Conv2D", x, w, **attrs)
        yv = rnd(rng, *c.shape)
        op = [x.shape[1 + i] - ref.transpose_conv_out(c.shape[1 + i], k, s, d, pd, pads[2 * i], pads[2 * i + 1])[0]
              for i in range(2)]
        t = run("TransposeConv2D", yv, np.ascontiguousarray(np.transpose(w, (3, 1, 2, 0))), output_padding=op, **attrs)
        assert t.shape == x.shape
        np.testing.assert_allclose(np.vdot(c.astype(np.float64), yv), np.vdot(x, t.astype(np.float64)), rtol=1e-4)


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))


def depthwise_const_weights(x, w, b, attrs):
    """DepthwiseConv2D with constant weights and bias (as converted models
    have them): (tinyinfer's output, the numpy reference's)."""
    bld = ti.GraphBuilder()
    t = bld.input("x", x.shape)
    bld.output(bld.op("DepthwiseConv2D", t, bld.const("w", w), bld.const("b", b), **attrs))
    with bld.load() as m:
        (y,) = m.run(x)
    return y, ref.depthwise_conv2d(x, w, b, **attrs)


@pytest.mark.parametrize("c", [3, 8, 13, 16, 24, 28, 36, 42, 48])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("width", [13, 70])
def test_depthwise_3x3_fast_path(c, stride, padding, width):
    """The 3x3 kernel for inner pixels (any channel count: blocks of 16 or
    8, then 4, then one; rows of 70 pixels take the blocks of 16 at stride
    1 too) and the general code at the borders give one consistent
    result."""
    rng = np.random.default_rng(c * 10 + stride)
    x = rng.standard_normal((2, 11, width, c)).astype(np.float32)
    w = rng.standard_normal((1, 3, 3, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    pads = (1, 0, 2, 1) if padding == 2 else (0, 0, 0, 0)
    attrs = dict(strides=(stride, stride), padding=padding, activation=2)
    if padding == 2:
        attrs["pads"] = pads
    y, want = depthwise_const_weights(x, w, b, attrs)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [8, 16, 20, 32, 45])
@pytest.mark.parametrize("k,stride,dil", [((5, 5), 1, 1), ((5, 5), 2, 1), ((3, 5), 1, 2), ((4, 2), 3, 1),
                                          ((7, 7), 1, 1)])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_depthwise_general_window_four_pixel_path(c, k, stride, dil, padding):
    """The general-window row kernel computes pixels whose window lies
    inside the image four at a time (channels in blocks of 16, or 8 at the
    SSE2 baseline; the last channels masked at the AVX levels, else one
    pixel at a time): every split of a row (left border, groups
    of four, leftover pixels, right border; channel tails) against numpy,
    with a NaN reaching exactly the outputs whose window holds it."""
    rng = np.random.default_rng(c * 100 + k[0] * 10 + stride)
    x = rng.standard_normal((2, 12, 23, c)).astype(np.float32)
    x[1, 6, 12, c - 1] = np.nan
    w = rng.standard_normal((1, *k, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    attrs = dict(strides=(stride, stride), dilations=(dil, dil), padding=padding, activation=3)
    if padding == 2:
        attrs["pads"] = (2, 1, 3, 0)
    y, want = depthwise_const_weights(x, w, b, attrs)
    assert y.shape == want.shape
    assert np.array_equal(np.isnan(y), np.isnan(want)) and np.isnan(want).any()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [12, 16, 40, 67])
@pytest.mark.parametrize("hw", [(7, 7), (14, 14), (5, 28), (4, 9), (6, 3)])
@pytest.mark.parametrize("k,stride,dil", [((5, 5), 1, 1), ((5, 5), 2, 1), ((3, 3), 1, 1), ((3, 3), 2, 1),
                                          ((3, 5), 1, (2, 1)), ((5, 3), 2, (2, 1))])
def test_depthwise_sliding_row_path(c, hw, k, stride, dil):
    """The row kernel for 3- and 5-wide windows without horizontal dilation
    at stride 1 or 2 (AVX-512: channel blocks of 16 across the row, eight or
    four pixels a step sharing the input columns, columns outside the image
    read as zeros): small images where every pixel is a border pixel, steps
    past the row's end, masked channel tails, vertical dilation, against
    numpy, a NaN reaching exactly the outputs whose window holds it."""
    h, w = hw
    dh, dw = dil if isinstance(dil, tuple) else (dil, dil)
    if h + 3 < (k[0] - 1) * dh + 1 or w + 4 < (k[1] - 1) * dw + 1:
        pytest.skip("window taller than the padded image")
    rng = np.random.default_rng(c * 1000 + h * 10 + w + k[0] * 7 + stride)
    x = rng.standard_normal((2, h, w, c)).astype(np.float32)
    x[1, h // 4 * 2, w - 1, c - 1] = np.nan  # an even row: covered with stride 2 and dilation 2
    wt = rng.standard_normal((1, *k, c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    attrs = dict(strides=(stride, stride), dilations=(dh, dw), padding=2, pads=(2, 1, 2, 2), activation=1)
    y, want = depthwise_const_weights(x, wt, b, attrs)
    assert y.shape == want.shape
    assert np.array_equal(np.isnan(y), np.isnan(want)) and np.isnan(want).any()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_batch_runs_by_sub_batches_with_the_same_results(threads):
    """A batch whose first activations outgrow the cache (8 x 64x64x48
    floats: 6 MB a tensor) runs its first ops a few images at a time
    (Runtime/SubBatch.swift): the outputs, one made by those ops and one by
    a Mean run after them over the whole batch, equal the numpy reference
    and each image run alone."""
    rng = np.random.default_rng(17)
    x = rnd(rng, 8, 64, 64, 48)
    w1, b1 = rnd(rng, 48, 1, 1, 48) * 0.2, rnd(rng, 48)
    w2, b2 = rnd(rng, 1, 3, 3, 48), rnd(rng, 48)
    g = ti.GraphBuilder("subbatch")
    xi = g.input("x", (8, 64, 64, 48))
    c = g.op("Conv2D", xi, g.const("w1", w1), g.const("b1", b1), activation=3)
    d = g.op("DepthwiseConv2D", c, g.const("w2", w2), g.const("b2", b2), padding=1)
    s = g.op("Add", c, d)
    m = g.op("Mean", s, axes=[1, 2])
    g.output(s)
    g.output(m)
    cw = ref.conv2d(x, w1, b1, activation=3)
    want = cw + ref.depthwise_conv2d(cw, w2, b2, padding=1)
    with g.load(threads=threads) as model:
        got, mean = model.run([x])
        close(got, want)
        close(mean, want.mean(axis=(1, 2)))
        one = model.session(input_shapes=[(1, 64, 64, 48)])
        for i in (0, 5, 7):
            a, am = one.run([x[i:i + 1]])
            np.testing.assert_array_equal(got[i:i + 1], a)
            np.testing.assert_array_equal(mean[i:i + 1], am)
