"""int8 kernels against the independent numpy reference of TFLite's integer
arithmetic (reference_int8.py), bit for bit: FullyConnected, Conv2D,
DepthwiseConv2D, TransposeConv2D, Add, Sub, Mul, AveragePool2D, MaxPool2D, Mean, Softmax,
Logistic, Tanh, HardSwish, Relu, Relu6, LeakyRelu, Concat, ResizeBilinear,
Maximum, Minimum; Quantize and
Dequantize (both rounding modes, per tensor and per axis, float16); the
data-movement ops on int8; and the refusals.

reference_int8.py itself is checked against LiteRT in
test_int8_reference_vs_litert.py (when TensorFlow is installed).
"""
import numpy as np
import pytest

import reference as ref
import reference_int8 as R
import tinyinfer as ti

ACTS = (0, 1, 2, 3)


# ----------------------------------------------------------------------------
# Helpers

def rand_q(rng, lo=-3.0, hi=0.5, zp=None):
    """Random per-tensor parameters: scale 10^U(lo, hi), zero point in int8."""
    s = np.float32(10 ** rng.uniform(lo, hi))
    z = int(rng.integers(-128, 128)) if zp is None else zp
    return (s, z)


def rand_i8(rng, *shape):
    x = rng.integers(-128, 128, size=shape).astype(np.int8)
    if x.size >= 2:
        x.flat[0], x.flat[-1] = -128, 127
    return x


def sym_weights(rng, shape, axis=None, channels=None, lo=-3.0, hi=-1.0):
    """int8 weights in [-127, 127] with per-channel (or per-tensor) scales."""
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    if axis is None:
        return w, np.float32(10 ** rng.uniform(lo, hi))
    return w, (10 ** rng.uniform(lo, hi, size=channels)).astype(np.float32)


def deq(x, q, axis=None):
    """Real values of int8 data (per-channel scales along `axis`)."""
    s, z = q
    if axis is not None and np.ndim(s) > 0:
        shp = [1] * np.ndim(x)
        shp[axis] = -1
        s = np.reshape(s, shp)
        z = np.reshape(z, shp) if np.ndim(z) > 0 else z
    return (np.asarray(x, np.float64) - z) * np.asarray(s, np.float64)


def fit_q(rng, real, slack=(0.7, 1.2)):
    """Output parameters that cover `real` (its range, 0 included), slightly
    tight or loose at random, so that outputs use the int8 range."""
    lo, hi = min(float(np.min(real)), 0.0), max(float(np.max(real)), 0.0)
    s = np.float32(max(hi - lo, 1e-3) / 255 * rng.uniform(*slack))
    z = int(np.clip(np.round(-128 - lo / s), -128, 127))
    return (s, z)


ACT_SPREAD = {2: 3.0, 3: 0.8}  # the real spread that suits Relu6 and ReluN1To1


def retarget(xq, real, act, power=1.0):
    """Input parameters rescaled so that the float result (proportional to
    the input scale to `power`) spreads about as the activation suits."""
    if act not in ACT_SPREAD or not np.std(real) > 0:
        return xq
    return (np.float32(xq[0] * (ACT_SPREAD[act] / np.std(real)) ** (1.0 / power)), xq[1])


def real_bias(rng, n, scale):
    """An int32 bias of real values about N(0, 1) at `scale` (per channel)."""
    return np.clip(np.round(rng.normal(size=n) / scale), -2**31, 2**31 - 1).astype(np.int32)


def close_to_float(got, yq, real, activation=0, steps=0.76):
    """The int8 result, dequantized, is the float result (clamped to what the
    output can hold and to the activation) within `steps` output steps (the
    double rounding of MultiplyByQuantizedMultiplier errs by up to 3/4 step
    when its right shift is 1)."""
    lo, hi = R.act_range(activation, yq[0], yq[1])
    want = np.clip(real, deq(lo, yq), deq(hi, yq))
    err = np.abs(deq(got, yq) - want)
    assert err.max() <= steps * yq[0] + 1e-6, (err.max() / yq[0])
    sat = np.mean((got == lo) | (got == hi))
    return sat


class Q:
    """A one-graph builder of int8 ops."""

    def __init__(self, name="int8"):
        self.b = ti.GraphBuilder(name)
        self.feeds = []

    def input(self, x, q=None, name=None):
        t = self.b.input(name or f"in{len(self.feeds)}", x.shape, dtype=x.dtype)
        if q is not None:
            self.b.quantization(t, q[0], q[1])
        self.feeds.append(x)
        return t

    def const(self, x, scales=None, zps=None, axis=None):
        t = self.b.const(None, x)
        if scales is not None:
            s = np.atleast_1d(np.asarray(scales, np.float32))
            z = np.zeros(s.shape, np.int32) if zps is None else np.broadcast_to(np.asarray(zps, np.int32), s.shape)
            self.b.quantization(t, s, z, axis=axis)
        return t

    def op(self, op, *ins, q=None, outputs=1, **attrs):
        y = self.b.op(op, *ins, outputs=outputs, **attrs)
        if q is not None:
            ys = y if isinstance(y, list) else [y]
            for t in ys:
                self.b.quantization(t, q[0], q[1])
        return y

    def run(self, *outs, threads=1):
        self.b.output(*outs)
        with self.b.load(threads=threads) as m:
            res = m.run(self.feeds)
        return res if len(res) > 1 else res[0]


# The output stages of Conv2D, DepthwiseConv2D and TransposeConv2D: TFLite's
# fixed-point multipliers (the default) and the float32 stage of models
# tinyinfer quantizes (the `requantization` attribute; R._requant_float32).
REQUANTS = ["fixed", "float32"]


def rq_attr(requant):
    return {"requantization": 1} if requant == "float32" else {}


def same(got, want):
    want = np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


def refuses(fn, match=None):
    with pytest.raises(ti.TinyInferError, match=match):
        fn()


# ----------------------------------------------------------------------------
# The fixed-point primitives (reference self-checks on hand-computed values)

def test_quantize_multiplier_values():
    assert R.quantize_multiplier(0.5) == (1 << 30, 0)
    assert R.quantize_multiplier(1.0) == (1 << 30, 1)
    assert R.quantize_multiplier(0.0) == (0, 0)
    assert R.quantize_multiplier(2.0 ** -40) == (0, 0)  # flushed
    m, s = R.quantize_multiplier(0.1)
    assert m == round(0.8 * 2 ** 31) and s == -3
    # rounding up to 2^31 carries into the exponent
    assert R.quantize_multiplier(1 - 2.0 ** -40) == (1 << 30, 1)


def test_fixed_point_primitives():
    assert int(R.srdhm(R.I32_MIN, R.I32_MIN)) == R.I32_MAX
    assert int(R.srdhm(1 << 30, 1 << 30)) == 1 << 29
    assert int(R.rdbpot(5, 1)) == 3 and int(R.rdbpot(-5, 1)) == -3  # half away from zero
    assert int(R.rdbpot(4, 1)) == 2 and int(R.rdbpot(-7, 2)) == -2
    assert int(R.mbqm(100, 1 << 30, 0)) == 50
    assert int(R.mbqm(3, 1 << 30, 0)) == 2 and int(R.mbqm(-3, 1 << 30, 0)) == -1  # SRDHM: ties toward +inf


# ----------------------------------------------------------------------------
# FullyConnected

@pytest.mark.parametrize("trial", range(16))
def test_fully_connected(trial):
    rng = np.random.default_rng(100 + trial)
    K, N = int(rng.integers(1, 70)), int(rng.integers(1, 23))
    lead = [(3,), (1,), (2, 3), (5,)][trial % 4]
    x = rand_i8(rng, *lead, K)
    xq = rand_q(rng, -2, 0)
    per_channel = trial % 3 != 0
    if per_channel:
        w, ws = sym_weights(rng, (N, K), 0, N)
        wq = (ws, 0)
    else:
        w = rng.integers(-128, 128, size=(N, K)).astype(np.int8)
        ws = np.float32(10 ** rng.uniform(-3, -1))
        wq = (ws, int(rng.integers(-20, 21)))
    bias = real_bias(rng, N, xq[0] * ws) if trial % 2 == 0 else None
    act = ACTS[trial % 4]

    def real_of(xq):
        return ref.fully_connected(deq(x, xq), deq(w, wq, 0),
                                   None if bias is None else bias * (np.float64(xq[0]) * ws)).astype(np.float64)

    xq = retarget(xq, real_of(xq), act)
    real = real_of(xq)
    yq = fit_q(rng, ref._act(real, act))
    g = Q()
    xi = g.input(x, xq)
    wi = g.const(w, wq[0], wq[1], axis=0 if per_channel else None)
    bi = g.const(bias) if bias is not None else None
    y = g.op("FullyConnected", xi, wi, bi, q=yq, activation=act)
    got = g.run(y, threads=1 + trial % 3)
    same(got, R.fully_connected(x, xq, w, wq, bias, yq, act))
    close_to_float(got, yq, ref._act(real, act), act)


def test_fully_connected_large_threads_and_extremes():
    rng = np.random.default_rng(7)
    x = rand_i8(rng, 16, 300)
    w, ws = sym_weights(rng, (70, 300), 0, 70)
    bias = rng.integers(-(1 << 20), 1 << 20, size=70).astype(np.int32)
    for xq, yq in [((np.float32(0.05), -128), (np.float32(0.4), 127)),  # zero points at the extremes
                   ((np.float32(0.05), 127), (np.float32(1e-4), 0)),  # multipliers >> 1: saturation
                   ((np.float32(1e-3), 3), (np.float32(200.0), -5))]:  # tiny multipliers
        for threads in (1, 4):
            g = Q()
            y = g.op("FullyConnected", g.input(x, xq), g.const(w, ws, axis=0), g.const(bias), q=yq)
            same(g.run(y, threads=threads), R.fully_connected(x, xq, w, (ws, 0), bias, yq))


@pytest.mark.parametrize("m,k,n", [(1, 300, 70), (1, 33, 130), (1, 4, 64), (3, 17, 64), (9, 5, 129),
                                   (8, 64, 16), (1, 1, 1), (17, 130, 33)])
@pytest.mark.parametrize("wz", [0, -7])
def test_fully_connected_packed_gemm_shapes(m, k, n, wz):
    """The packed u8 x s8 GEMM's tiles: one row over four panels and over one,
    eight-row tiles with fewer rows, depths not a multiple of four, partial
    panels, a weight zero point, two threads splitting rows or panels."""
    rng = np.random.default_rng(m * 1000 + k + n)
    x = rand_i8(rng, m, k)
    w = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    ws = np.float32(0.01)
    xq, yq = (np.float32(0.05), int(rng.integers(-128, 128))), (np.float32(0.3 * np.sqrt(k)), 3)
    bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
    for threads in (1, 2):
        g = Q()
        y = g.op("FullyConnected", g.input(x, xq), g.const(w, ws, wz), g.const(bias), q=yq)
        same(g.run(y, threads=threads), R.fully_connected(x, xq, w, (ws, wz), bias, yq))


# The GEMM's blocks of 16 rows on AMX tiles (kernels_q8_amx.c, where the CPU has them: depth >= 32 and
# 64K multiply-adds or more; elsewhere the level's vpdpbusd or pmaddwd tiles run the same shapes): depths that
# are whole 64-byte pieces, a piece and a tail (the tail tiles), tails alone (32, 36), odd panel counts and a
# partial last panel, rows past the blocks of 16 (the VNNI tiles finish them), two threads splitting rows or
# panels, a weight zero point.
@pytest.mark.parametrize("m,k,n", [(16, 64, 16), (16, 32, 70), (33, 100, 130), (48, 36, 48), (64, 1024, 33),
                                   (100, 300, 16), (17, 64, 300), (40, 129, 70)])
@pytest.mark.parametrize("wz", [0, -3])
def test_fully_connected_tile_shapes(m, k, n, wz):
    rng = np.random.default_rng(m * 7919 + k * 31 + n + wz)
    x = rand_i8(rng, m, k)
    w = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    ws = np.float32(0.01)
    xq, yq = (np.float32(0.05), int(rng.integers(-128, 128))), (np.float32(0.3 * np.sqrt(k)), -2)
    bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
    for threads in (1, 2):
        g = Q()
        y = g.op("FullyConnected", g.input(x, xq), g.const(w, ws, wz), g.const(bias), q=yq)
        same(g.run(y, threads=threads), R.fully_connected(x, xq, w, (ws, wz), bias, yq))


@pytest.mark.parametrize("k,n", [(300, 70), (33, 130), (4, 64), (1, 1), (9, 16), (130, 33), (784, 256), (16, 48)])
def test_fully_connected_gemv_weights_within_127(k, n):
    """A batch of one with weights in [-127, 127] (TFLite's weight range): at
    AVX2 the one-row kernel that sums (x - 128) w through vpsignb and
    vpmaddubsw (gemv_s7), at its largest pair sums (every activation -128 or
    127 against weights of +-127), odd and even counts of panels, depths not
    a multiple of four or eight; one weight of -128 takes the other kernel.
    Bit for bit TFLite's arithmetic either way."""
    rng = np.random.default_rng(k * 7 + n)
    xq, yq = (np.float32(0.05), 3), (np.float32(0.3 * np.sqrt(k)), -2)
    bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
    x_extreme = np.where(rng.random((1, k)) < 0.5, -128, 127).astype(np.int8)
    w_extreme = np.where(rng.random((n, k)) < 0.5, -127, 127).astype(np.int8)
    w_any = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    w_minus = w_any.copy()
    w_minus[n // 2, k // 2] = -128
    for x in (x_extreme, rand_i8(rng, 1, k)):
        for w in (w_extreme, w_any, w_minus):
            for threads in (1, 2):
                g = Q()
                y = g.op("FullyConnected", g.input(x, xq), g.const(w, np.float32(0.01)), g.const(bias), q=yq)
                same(g.run(y, threads=threads), R.fully_connected(x, xq, w, (np.float32(0.01), 0), bias, yq))


@pytest.mark.parametrize("m", [2, 3, 4, 5, 7, 9, 12, 13, 20])
@pytest.mark.parametrize("k,n", [(387, 128), (33, 70), (4, 16), (130, 33)])
def test_fully_connected_gemv_tail_rows(m, k, n):
    """Rows past the last whole block of eight, at most four of them (and a
    batch of two to four), run one at a time through the one-row kernel
    of weights within [-127, 127] (gemv_s7 at AVX2), the block before them
    through the eight-row tiles; five to seven left keep the tiles. Extreme
    activations and weights (the largest vpmaddubsw pair sums), a weight of
    -128 (the tiles only), one and two threads. Bit for bit TFLite's
    arithmetic."""
    rng = np.random.default_rng(m * 100 + k + n)
    xq, yq = (np.float32(0.05), -7), (np.float32(0.3 * np.sqrt(k)), 2)
    bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
    x_extreme = np.where(rng.random((m, k)) < 0.5, -128, 127).astype(np.int8)
    w_extreme = np.where(rng.random((n, k)) < 0.5, -127, 127).astype(np.int8)
    w_any = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    w_minus = w_any.copy()
    w_minus[n // 2, k // 3] = -128
    for x in (x_extreme, rand_i8(rng, m, k)):
        for w in (w_extreme, w_any, w_minus):
            for threads in (1, 2):
                g = Q()
                y = g.op("FullyConnected", g.input(x, xq), g.const(w, np.float32(0.01)), g.const(bias), q=yq)
                same(g.run(y, threads=threads), R.fully_connected(x, xq, w, (np.float32(0.01), 0), bias, yq))


@pytest.mark.parametrize("w_out", [1, 2, 3, 4, 5, 12, 13])
def test_conv2d_few_pixels(w_out):
    """A 1-D convolution over a few pixels (silero VAD's encoder: 1x3
    windows, 129 and 128 channels): the packed GEMM's rows are the pixels,
    fewer than eight or a few past a block, one at a time through the
    one-row kernel where the weights are within [-127, 127]."""
    rng = np.random.default_rng(4700 + w_out)
    cin, cout = 129, 128
    x = rand_i8(rng, 1, 1, w_out, cin)
    xq, yq = (np.float32(0.04), -128), (np.float32(0.1), -128)
    for wmin in (-127, -128):
        w = rng.integers(wmin, 128, size=(cout, 1, 3, cin)).astype(np.int8)
        ws = (rng.uniform(0.001, 0.1, size=cout)).astype(np.float32)
        bias = rng.integers(-20000, 20000, size=cout).astype(np.int32)
        pads = (0, 0, 1, 1)
        for threads in (1, 2):
            g = Q()
            y = g.op("Conv2D", g.input(x, xq), g.const(w, ws, axis=0), g.const(bias), q=yq, padding=2, pads=pads,
                     activation=1)
            same(g.run(y, threads=threads), R.conv2d(x, xq, w, ws, bias, yq, (1, 1), (1, 1), 2, pads, 1, 1))


def test_fully_connected_weights_as_input():
    """Non-constant weights: the weight row sums are taken at each run."""
    rng = np.random.default_rng(8)
    x, w = rand_i8(rng, 4, 20), rng.integers(-128, 128, size=(6, 20)).astype(np.int8)
    xq, wq, yq = (np.float32(0.1), 5), (np.float32(0.02), -3), (np.float32(0.3), 1)
    g = Q()
    xi = g.input(x, xq)
    wi = g.input(w, wq)
    y = g.op("FullyConnected", xi, wi, q=yq, activation=1)
    same(g.run(y), R.fully_connected(x, xq, w, wq, None, yq, 1))


# ----------------------------------------------------------------------------
# Conv2D and DepthwiseConv2D

CONV_CASES = [
    # (N,H,W,Cin), (Cout,KH,KW), strides, dilations, padding, pads, groups
    ((1, 7, 8, 3), (5, 3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0), 1),
    ((2, 9, 6, 4), (6, 3, 2), (2, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 10, 10, 2), (4, 3, 3), (2, 2), (2, 1), 1, (0, 0, 0, 0), 1),
    ((1, 6, 7, 4), (6, 2, 3), (1, 2), (1, 1), 2, (1, 0, 2, 1), 2),
    ((2, 5, 5, 6), (9, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 3),
    ((1, 8, 8, 16), (20, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),  # pointwise (direct) path
    ((1, 9, 9, 8), (17, 3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0), 1),
    ((1, 4, 5, 3), (2, 5, 5), (1, 1), (1, 1), 2, (2, 2, 2, 2), 1),
    ((1, 6, 9, 7), (70, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),  # pointwise, depth % 4 != 0, 5 panels
    ((2, 7, 7, 5), (33, 3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0), 1),  # 2 images in one block, partial panel
    ((1, 3, 5, 4), (257, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),  # lcm(257, 16) > 4096: per-pixel requantization
    ((1, 9, 11, 16), (8, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),  # 8 channels: blocks of 16 span two pixels
    # The indirect path (window rows read in place): rows of 8 pixels inside the image, edge pixels, rows
    # above and below the image, strides, vertical dilation, explicit pads, batches split mid-row.
    ((2, 9, 21, 3), (16, 3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0), 1),
    ((1, 17, 40, 3), (24, 3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0), 1),
    ((2, 11, 37, 5), (7, 5, 3), (1, 3), (2, 1), 0, (0, 0, 0, 0), 1),
    ((1, 6, 30, 4), (33, 2, 3), (1, 1), (1, 1), 2, (1, 0, 2, 1), 1),
    # The exact-widening levels (SSE2, AVX2) split the rows into even and odd bytes 256 groups of four at a
    # time: depths of more than one split (pointwise, 275 groups; a window row of 258 groups, three rows).
    ((1, 3, 7, 1100), (19, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 4, 9, 344), (18, 3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0), 1),
    # Fewer output pixels than a tile (a streaming keyword spotter's first layer, a head over the last
    # feature map): gathered rows through the one-row kernel instead of the indirect path.
    ((1, 5, 1, 40), (30, 5, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((2, 3, 3, 32), (70, 3, 3), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 2, 3, 5), (9, 3, 3), (1, 2), (1, 1), 1, (0, 0, 0, 0), 1),
    # Window rows of at most 16 values (a first layer's 3x3 window of 1-4 channels): the direct kernel on the
    # padded int16 image where the level has one (x86 AVX2 and up): SAME stride 2 on an even image (padding
    # below and right only), one channel (odd rows of three), a 7x1 window with vertical dilation, exactly
    # 16 and 40 output channels (a partial last block), a batch of three, explicit asymmetric pads.
    ((1, 16, 16, 3), (16, 3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0), 1),
    ((3, 9, 10, 1), (40, 3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0), 1),
    ((1, 20, 6, 2), (12, 7, 1), (2, 1), (3, 1), 0, (0, 0, 0, 0), 1),
    ((2, 8, 11, 2), (17, 4, 5), (1, 2), (1, 1), 2, (0, 3, 2, 1), 1),
    # four pixels per weight load: 7 output pixels a row (a partial group of four), a last block of 12
    # channels (more than the half block of 8 the 24-channel case runs)
    ((1, 7, 9, 3), (28, 3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0), 1),
    # 1x1 of at most 128 input channels (the direct 1x1 kernel at x86 AVX2 and up, 64-pixel chunks, four pixels
    # per step): depths in one to four pieces of 16, odd depths, a batch of two, partial last blocks of
    # channels, pixel counts past a chunk and not a multiple of four; the last pixels of each thread's range
    # are read without reading past them.
    ((2, 9, 10, 24), (40, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 7, 11, 41), (24, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((2, 5, 7, 64), (17, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 13, 11, 31), (16, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 5, 13, 32), (33, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 3, 3, 1), (5, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    # depths 65 to 128 (32-pixel chunks): odd depth, partial blocks, chunks of a batch of two
    ((1, 7, 9, 100), (40, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((2, 5, 7, 128), (20, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 6, 11, 77), (8, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    # the packed GEMM's 48-pixel blocks on AMX tiles where the CPU has them: a deep 1x1 (past the direct
    # kernel's depths) and a 3x3 of 8 channels (depth 72, patches copied), partial last blocks of pixels
    ((1, 9, 10, 160), (40, 1, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0), 1),
    ((1, 11, 9, 8), (36, 3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0), 1),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("requant", REQUANTS)
def test_conv2d(case, per_channel, requant):
    xs, (cout, kh, kw), strides, dil, padding, pads, groups = CONV_CASES[case]
    rng = np.random.default_rng(200 + case * 2 + per_channel)
    x = rand_i8(rng, *xs)
    xq = rand_q(rng, -2, 0)
    w, ws = sym_weights(rng, (cout, kh, kw, xs[3] // groups), 0 if per_channel else None, cout)
    bias = real_bias(rng, cout, xq[0] * np.broadcast_to(ws, (cout,))) if case % 2 else None
    act = ACTS[case % 4]

    def real_of(xq):
        return ref.conv2d(deq(x, xq), deq(w, (ws, 0), 0), None if bias is None else bias * (np.float64(xq[0]) * ws),
                          strides, dil, padding, pads, groups).astype(np.float64)

    xq = retarget(xq, real_of(xq), act)
    real = real_of(xq)
    yq = fit_q(rng, ref._act(real, act))
    for threads in (1, 3):
        g = Q()
        y = g.op("Conv2D", g.input(x, xq), g.const(w, ws, axis=0 if per_channel else None),
                 g.const(bias) if bias is not None else None, q=yq, strides=strides, dilations=dil,
                 padding=padding, pads=pads, groups=groups, activation=act, **rq_attr(requant))
        got = g.run(y, threads=threads)
        want = R.conv2d(x, xq, w, ws, bias, yq, strides, dil, padding, pads, groups, act, requant=requant)
        same(got, want)
    close_to_float(got, yq, ref._act(real, act), act)


# The float32 output stage of the kernels that keep the sums in registers (x86 AVX2 and up: the direct 1x1
# and short-row kernels, the GEMM paths' rows) in its two forms: every channel's scale below 1 (the product
# converted without a clamp in float, the packs saturating) and some scales of 1 or more (clamped in float
# first: the conversion would overflow). Scales from 1e-4 up, biases near the int32 ends on some channels,
# every activation; the direct 1x1 kernel (depths 8, 16, 24), the GEMM (depth 80), the short-row kernel
# (3x3x3) and the indirect path (3x3x8), partial last blocks of channels.
FLOAT_STAGE_CASES = [
    ((1, 9, 10, 8), (48, 1, 1)),
    ((2, 7, 9, 16), (8, 1, 1)),
    ((1, 9, 10, 24), (40, 1, 1)),
    ((1, 9, 11, 80), (20, 1, 1)),
    ((1, 12, 12, 3), (24, 3, 3)),
    ((1, 9, 9, 8), (17, 3, 3)),
]


@pytest.mark.parametrize("case", range(len(FLOAT_STAGE_CASES)))
@pytest.mark.parametrize("top", [0.9, 5.0])
@pytest.mark.parametrize("act", ACTS)
def test_conv2d_float_stage_scales(case, top, act):
    xs, (cout, kh, kw) = FLOAT_STAGE_CASES[case]
    rng = np.random.default_rng(900 + case)
    x = rand_i8(rng, *xs)
    xq = (np.float32(0.05), int(rng.integers(-128, 128)))
    yq = (np.float32(1.0), int(rng.integers(-100, 100)))
    w = rng.integers(-127, 128, size=(cout, kh, kw, xs[3])).astype(np.int8)
    # s_x s_w / s_y from 1e-4 to `top`, in a shuffled channel order
    ws = (rng.permutation(np.geomspace(1e-4, top, cout)) / 0.05).astype(np.float32)
    bias = rng.integers(-3000, 3000, size=cout).astype(np.int32)
    bias[::5] = 2**31 - 2**22
    bias[2::5] = -(2**31) + 2**22
    padding = 1 if kh > 1 else 0
    g = Q()
    y = g.op("Conv2D", g.input(x, xq), g.const(w, ws, axis=0), g.const(bias), q=yq, strides=(1, 1),
             dilations=(1, 1), padding=padding, pads=(0, 0, 0, 0), groups=1, activation=act, requantization=1)
    got = g.run(y)
    want = R.conv2d(x, xq, w, ws, bias, yq, (1, 1), (1, 1), padding, (0, 0, 0, 0), 1, act, requant="float32")
    same(got, want)


@pytest.mark.parametrize("xz", [-128, 0, 127])
def test_conv2d_padding_with_extreme_zero_points(xz):
    """The padding must contribute nothing whatever the input zero point."""
    rng = np.random.default_rng(250 + xz)
    x = rand_i8(rng, 1, 5, 5, 3)
    w, ws = sym_weights(rng, (4, 3, 3, 3), 0, 4)
    xq, yq = (np.float32(0.03), xz), (np.float32(0.05), -7)
    g = Q()
    y = g.op("Conv2D", g.input(x, xq), g.const(w, ws, axis=0), q=yq, padding=1)
    same(g.run(y), R.conv2d(x, xq, w, ws, None, yq, padding=1))


DW_CASES = [
    ((1, 7, 8, 5), (3, 3), 1, (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 9, 6, 3), (3, 2), 2, (2, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 10, 10, 24), (3, 3), 1, (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 8, 7, 4), (3, 3), 3, (1, 1), (2, 2), 2, (2, 1, 0, 2)),
    ((1, 6, 6, 33), (5, 5), 1, (1, 1), (1, 1), 1, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("case", range(len(DW_CASES)))
@pytest.mark.parametrize("per_channel", [True, False])
def test_depthwise_conv2d(case, per_channel):
    xs, (kh, kw), m, strides, dil, padding, pads = DW_CASES[case]
    rng = np.random.default_rng(300 + case * 2 + per_channel)
    cm = xs[3] * m
    x = rand_i8(rng, *xs)
    xq = rand_q(rng, -2, 0)
    w, ws = sym_weights(rng, (1, kh, kw, cm), 3 if per_channel else None, cm)
    bias = real_bias(rng, cm, xq[0] * np.broadcast_to(ws, (cm,))) if case % 2 == 0 else None
    act = ACTS[(case + 1) % 4]

    def real_of(xq):
        return ref.depthwise_conv2d(deq(x, xq), deq(w, (ws, 0), 3),
                                    None if bias is None else bias * (np.float64(xq[0]) * ws),
                                    strides, dil, padding, pads, m).astype(np.float64)

    xq = retarget(xq, real_of(xq), act)
    real = real_of(xq)
    yq = fit_q(rng, ref._act(real, act))
    close = True
    for threads in (1, 2):
        g = Q()
        y = g.op("DepthwiseConv2D", g.input(x, xq), g.const(w, ws, axis=3 if per_channel else None),
                 g.const(bias) if bias is not None else None, q=yq, strides=strides, dilations=dil,
                 padding=padding, pads=pads, depth_multiplier=m, activation=act)
        want = R.depthwise_conv2d(x, xq, w, ws, bias, yq, strides, dil, padding, pads, m, act)
        got = g.run(y, threads=threads)
        same(got, want)
    if close:
        close_to_float(got, yq, ref._act(real, act), act)


# The vectorized depthwise path (M = 1, C >= 16: blocks of 16 channels, the
# last one overlapping) and the general path (C < 16 or M > 1: vector
# requantization with an overlapping last block): every channel count from 1
# to 40, strides, dilations, SAME / VALID / explicit padding, batches.
DW_SWEEP = [  # (N, H, W), (KH, KW), M, strides, dilations, padding, pads
    ((1, 6, 7), (3, 3), 1, (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 7, 5), (3, 3), 1, (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 8, 9), (3, 3), 1, (1, 2), (2, 2), 0, (0, 0, 0, 0)),
    ((1, 5, 6), (5, 3), 1, (2, 1), (1, 2), 2, (2, 0, 1, 3)),
    ((2, 5, 5), (3, 3), 2, (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 4, 6), (2, 2), 3, (2, 2), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 3, 3), (3, 3), 1, (1, 1), (1, 1), 2, (3, 3, 3, 3)),  # pixels whose window is all padding
    # Wide rows: dw_row's pixels four at a time (window inside horizontally)
    # for the 5x5 and 3x3 windows at stride 1 and 2 and a general one, with
    # window rows above or below the image left out (heights 2 and 3).
    ((1, 2, 21), (5, 5), 1, (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 5, 23), (5, 5), 1, (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 3, 19), (3, 3), 1, (1, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 4, 22), (2, 3), 1, (1, 1), (2, 2), 2, (1, 0, 2, 1)),
]


@pytest.mark.parametrize("c", list(range(1, 41)))
@pytest.mark.parametrize("requant", REQUANTS)
def test_depthwise_conv2d_channel_sweep(c, requant):
    rng = np.random.default_rng(3000 + c)
    for k, ((n, h, w_), (kh, kw), m, strides, dil, padding, pads) in enumerate(DW_SWEEP):
        if m > 1 and c > 20:
            continue
        cm = c * m
        x = rand_i8(rng, n, h, w_, c)
        if k == 2:
            x[...] = rng.choice(np.array([-128, 127], np.int8), size=x.shape)  # the int8 ends only
        xq = rand_q(rng, -2, 0, zp=[-128, 127, None][k % 3])
        per_channel = k % 2 == 0
        w, ws = sym_weights(rng, (1, kh, kw, cm), 3 if per_channel else None, cm)
        if k == 1:
            w[...] = rng.choice(np.array([-128, 127], np.int8), size=w.shape)  # largest products
        bias = real_bias(rng, cm, xq[0] * np.broadcast_to(ws, (cm,))) if k % 3 != 1 else None
        if k == 3:  # accumulators near the int32 ends: saturation (and wrapping) in the requantization
            bias = rng.choice(np.array([-2**31, 2**31 - 1 - 200000, -2**31 + 200000, 2**31 - 1], np.int64),
                              size=cm).astype(np.int32)
        act = ACTS[(c + k) % 4]
        yq = rand_q(rng, -2, 0.5)
        if k == 4:
            yq = (np.float32(xq[0] * np.min(ws) * 0.25), int(rng.integers(-128, 128)))  # multipliers > 1
        g = Q()
        y = g.op("DepthwiseConv2D", g.input(x, xq), g.const(w, ws, axis=3 if per_channel else None),
                 g.const(bias) if bias is not None else None, q=yq, strides=strides, dilations=dil,
                 padding=padding, pads=pads, depth_multiplier=m, activation=act, **rq_attr(requant))
        want = R.depthwise_conv2d(x, xq, w, ws, bias, yq, strides, dil, padding, pads, m, act, requant=requant)
        same(g.run(y, threads=1 + k % 2), want)


def test_depthwise_conv2d_large_threads():
    """A MobileNet-sized layer (64x64x48, stride 1 and 2), one and two threads."""
    rng = np.random.default_rng(3100)
    x = rand_i8(rng, 1, 64, 64, 48)
    xq, yq = (np.float32(0.02), -5), (np.float32(0.03), 9)
    w, ws = sym_weights(rng, (1, 3, 3, 48), 3, 48)
    bias = real_bias(rng, 48, xq[0] * ws)
    for strides in ((1, 1), (2, 2)):
        want = R.depthwise_conv2d(x, xq, w, ws, bias, yq, strides, (1, 1), 1, (0, 0, 0, 0), 1, 2)
        for threads in (1, 2):
            g = Q()
            y = g.op("DepthwiseConv2D", g.input(x, xq), g.const(w, ws, axis=3), g.const(bias), q=yq,
                     strides=strides, padding=1, activation=2)
            same(g.run(y, threads=threads), want)


# The AVX2 tap-pair path (3- and 5-wide windows, stride 1 or 2, no
# dilation, C >= 16, pixels whose window is inside the image four at a time,
# any number of window rows up to 5): rows wide enough for several quads
# after the left edge, channel counts that are and are not multiples of 16,
# the int8 ends (the largest pair sums, -128 * -128 twice), zero points at
# both ends, accumulators near the int32 ends, left shifts (multipliers > 1),
# and windows cut by the top and bottom edges. With VNNI and VBMI the same
# layers of 8 output columns or more run by groups of four input columns
# (dw_vprows: eight pixels at a time, checked at the image's edges, quads
# and pairs for the rest; the wide rows below have many eights and every kind of edge;
# DW_SMALL's maps of 4 to 7 columns keep the tap pairs). At other levels the same
# shapes check the other kernels.
DW_PAIRS = [  # (H, W), (KH, KW), strides, padding, pads
    ((5, 23), (3, 3), (1, 1), 1, (0, 0, 0, 0)),
    ((6, 29), (3, 3), (2, 2), 1, (0, 0, 0, 0)),
    ((7, 26), (5, 5), (1, 1), 1, (0, 0, 0, 0)),
    ((9, 31), (5, 5), (2, 2), 1, (0, 0, 0, 0)),
    ((4, 21), (2, 3), (1, 2), 2, (1, 0, 2, 1)),
    ((6, 27), (4, 5), (2, 1), 2, (2, 1, 0, 3)),
    ((3, 18), (3, 3), (1, 1), 0, (0, 0, 0, 0)),
    ((3, 45), (3, 3), (2, 1), 1, (0, 0, 0, 0)),
    ((3, 61), (5, 5), (1, 1), 1, (0, 0, 0, 0)),
    ((4, 70), (5, 5), (2, 2), 2, (2, 1, 1, 2)),
    ((2, 53), (3, 3), (1, 2), 2, (1, 1, 0, 2)),
]


@pytest.mark.parametrize("case", range(len(DW_PAIRS)))
@pytest.mark.parametrize("c", [16, 24, 37, 48])
@pytest.mark.parametrize("requant", REQUANTS)
def test_depthwise_conv2d_tap_pairs(case, c, requant):
    (h, w_), (kh, kw), strides, padding, pads = DW_PAIRS[case]
    rng = np.random.default_rng(3200 + 10 * case + c)
    for k in range(4):
        x = rand_i8(rng, 1, h, w_, c)
        w, ws = sym_weights(rng, (1, kh, kw, c), 3, c)
        xq = rand_q(rng, -2, 0, zp=[-128, 127, None, None][k])
        bias = real_bias(rng, c, xq[0] * ws) if k != 1 else None
        yq = rand_q(rng, -2, 0.5)
        if k == 0:  # the int8 ends only: the largest products and pair sums
            x[...] = rng.choice(np.array([-128, 127], np.int8), size=x.shape)
            w[...] = rng.choice(np.array([-128, 127], np.int8), size=w.shape)
        if k == 2:  # accumulators near the int32 ends
            bias = rng.choice(np.array([-2**31, 2**31 - 1 - 300000, -2**31 + 300000, 2**31 - 1], np.int64),
                              size=c).astype(np.int32)
        if k == 3:  # multipliers > 1 (left shifts) on some channels
            ws = ws.copy()
            ws[::3] *= np.float32(1e-4)
            yq = (np.float32(xq[0] * np.min(ws) * 0.25), int(rng.integers(-128, 128)))
        act = ACTS[(case + k) % 4] if k != 3 else case % 2  # no Relu6 / ReluN1To1 bound at the tiny output scale
        g = Q()
        y = g.op("DepthwiseConv2D", g.input(x, xq), g.const(w, ws, axis=3), g.const(bias) if bias is not None else None,
                 q=yq, strides=strides, padding=padding, pads=pads, activation=act, **rq_attr(requant))
        want = R.depthwise_conv2d(x, xq, w, ws, bias, yq, strides, (1, 1), padding, pads, 1, act, requant=requant)
        same(g.run(y, threads=1 + k % 2), want)


# The AVX2 level's rows with per-block data built at bind (dw_prep / dw_rows:
# 3- and 5-wide windows, stride 1 or 2, no horizontal dilation, OW >= 4):
# every pixel in quads, those whose windows reach past the left or right edge
# reading the zero point there, window rows above or below the image
# cancelled; so small maps, where most or all quads are such, with padding 1
# and 2 (SAME and explicit, some windows all padding), OW not a multiple of
# four (the last quad overlapping), OW < 4 (the other path), 4- and 2-row
# windows, vertical dilation, batches (split mid-image over two threads), channel
# counts 16, 24, 40 and 336 (the last block overlapping), per-channel
# multipliers with left shifts on some channels, zero points at both ends. At
# other levels the same shapes check their kernels.
DW_SMALL = [  # (N, H, W), (KH, KW), strides, dilations, padding, pads
    ((1, 4, 4), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 8, 8), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 8, 8), (3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 9, 9), (3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 6, 6), (5, 5), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 4, 5), (5, 5), (1, 1), (1, 1), 2, (2, 2, 2, 2)),
    ((1, 8, 8), (5, 5), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 7, 11), (5, 5), (2, 2), (1, 1), 2, (2, 2, 2, 2)),
    ((1, 5, 7), (3, 3), (1, 1), (1, 1), 2, (2, 2, 2, 2)),  # windows all padding at the corners
    ((1, 3, 6), (3, 3), (1, 2), (1, 1), 2, (2, 1, 0, 3)),
    ((1, 6, 13), (4, 5), (2, 1), (2, 1), 2, (2, 1, 1, 2)),
    ((2, 5, 9), (2, 3), (1, 1), (1, 1), 2, (1, 0, 2, 1)),
    ((1, 4, 3), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),  # OW = 3
    ((1, 12, 12), (3, 3), (1, 1), (1, 1), 0, (0, 0, 0, 0)),  # no padding
    ((3, 5, 6), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),  # 15 rows: two threads split image 1 (C >= 40)
]


def check_depthwise_case(shape, case, c, seed, w_ends):
    """One depthwise shape (row `case` of DW_SMALL or DW_FEW; `case` also picks
    the fused activations) at c channels in three variants (zero points at
    the ends, inputs and weights at the int8 ends, left shifts), at one and
    two threads, against the reference."""
    (n, h, w_), (kh, kw), strides, dil, padding, pads = shape
    rng = np.random.default_rng(seed)
    for k in range(3):
        x = rand_i8(rng, n, h, w_, c)
        w, ws = sym_weights(rng, (1, kh, kw, c), 3, c)
        xq = rand_q(rng, -2, 0, zp=[-128, 127, None][k])
        bias = real_bias(rng, c, xq[0] * ws) if k != 1 else None
        yq = rand_q(rng, -2, 0.5)
        if k == 1:  # the int8 ends only (with w_ends: the largest pair sums)
            x[...] = rng.choice(np.array([-128, 127], np.int8), size=x.shape)
            w[...] = rng.choice(np.array(w_ends, np.int8), size=w.shape)
        if k == 2:  # multipliers > 1 (left shifts) on every third channel
            ws = ws.copy()
            ws[::3] *= np.float32(1e-4)
            yq = (np.float32(xq[0] * np.min(ws) * 0.25), int(rng.integers(-128, 128)))
        act = ACTS[(case + k) % 4] if k != 2 else case % 2
        want = R.depthwise_conv2d(x, xq, w, ws, bias, yq, strides, dil, padding, pads, 1, act)
        if k == 2:  # the left shifts are there: some channel's multiplier exceeds 1
            m, sh = R._conv_multipliers(R._s(xq), ws, R._s(yq), c)
            assert np.max(sh) > 0
        for threads, requant in ((1, "fixed"), (2, "fixed"), (1 + k % 2, "float32")):
            if requant == "float32":
                want = R.depthwise_conv2d(x, xq, w, ws, bias, yq, strides, dil, padding, pads, 1, act,
                                          requant=requant)
            g = Q()
            y = g.op("DepthwiseConv2D", g.input(x, xq), g.const(w, ws, axis=3),
                     g.const(bias) if bias is not None else None, q=yq, strides=strides, dilations=dil,
                     padding=padding, pads=pads, activation=act, **rq_attr(requant))
            same(g.run(y, threads=threads), want)


@pytest.mark.parametrize("case", range(len(DW_SMALL)))
@pytest.mark.parametrize("c", [16, 24, 40, 336])
def test_depthwise_conv2d_small_maps(case, c):
    check_depthwise_case(DW_SMALL[case], case, c, 3400 + 10 * case + c, [-127, 127])


# One output column of a window one column wide (KW = 1, OW = 1: the temporal
# depthwise layers of streaming models, 5 to 21 frames of one feature
# column). At the AVX2 level these run with per-block data built at bind
# (dw_prep / dw_colrows: the window rows in vertical pairs, two pairs at a
# time, an odd one left over), up to 64 rows; taller windows take dw_row. So
# odd and even heights, the streaming shape (the window as tall as the
# image), windows cut by the top and bottom edges (SAME, explicit pads),
# vertical dilation, strides, batches, an input wider than one column (the
# rows W * C apart), the column all padding (every tap outside), 64 and 65
# rows; the int8 ends, zero points at both ends, left shifts (through
# check_depthwise_case). At other levels the same shapes check dw_row.
DW_COLUMN = [  # (N, H, W), (KH, KW), strides, dilations, padding, pads
    ((1, 5, 1), (5, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 21, 1), (21, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 8, 1), (8, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 12, 1), (5, 1), (1, 1), (1, 1), 1, (0, 0, 0, 0)),      # SAME: the first and last windows cut
    ((2, 10, 1), (4, 1), (2, 1), (2, 1), 2, (3, 2, 0, 0)),      # dilation 2, stride 2, batch 2
    ((1, 7, 3), (7, 1), (1, 3), (1, 1), 0, (0, 0, 0, 0)),       # W = 3: rows 3 C apart
    ((1, 6, 1), (3, 1), (1, 2), (1, 1), 2, (1, 1, 1, 0)),       # the column left of the image: all padding
    ((1, 64, 1), (64, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 65, 1), (65, 1), (1, 1), (1, 1), 0, (0, 0, 0, 0)),     # past the limit: dw_row
    ((3, 9, 1), (9, 1), (1, 1), (1, 1), 2, (4, 4, 0, 0)),       # 9 rows each: two threads split the batch
]


@pytest.mark.parametrize("case", range(len(DW_COLUMN)))
@pytest.mark.parametrize("c", [16, 30, 60])
def test_depthwise_conv2d_column(case, c):
    check_depthwise_case(DW_COLUMN[case], case, c, 3800 + 10 * case + c, [-128, 127])


# Fewer than 16 channels. At the AVX2 level C = 8 (and 4) with 3- and 5-wide
# windows at stride 1 (C = 8 also at stride 2) and OW >= 8 (16 for C = 4) run
# 16 / C adjacent pixels per vector (dw_squad: the quads of such vectors
# whose loads reach past the left or right edge put the zero point there,
# pixel by pixel; the last quad overlaps the one before); other shapes and
# channel counts pad to 16 channels. So odd and even widths, OW = 8 (one
# quad, checked on both sides), SAME / VALID / explicit pads (windows all
# padding), strides 1 and 2 (and 2 x 1), 4- and 5-row windows with vertical
# dilation, batches (split over two threads), widths 1-3 (the padded path),
# fused activations, the int8 ends, left shifts. At other levels the same
# shapes check the padded path.
DW_FEW = [  # (N, H, W), (KH, KW), strides, dilations, padding, pads
    ((1, 6, 17), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 5, 16), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 7, 19), (3, 3), (1, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 4, 8), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),   # OW = 8
    ((1, 4, 10), (3, 3), (1, 1), (1, 1), 0, (0, 0, 0, 0)),  # VALID, OW = 8
    ((1, 3, 16), (3, 3), (1, 1), (1, 1), 2, (2, 2, 2, 2)),  # windows all padding at the corners
    ((1, 6, 21), (3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 5, 24), (3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 6, 19), (3, 3), (2, 2), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 7, 17), (3, 3), (2, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 5, 18), (3, 3), (1, 2), (1, 1), 2, (1, 0, 2, 1)),
    ((2, 5, 18), (5, 5), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 6, 23), (5, 5), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 5, 20), (5, 5), (1, 1), (1, 1), 2, (2, 1, 0, 3)),
    ((1, 9, 33), (4, 3), (1, 1), (2, 1), 2, (2, 1, 1, 1)),
    ((2, 6, 40), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),  # C = 4: several quads of 16 pixels
    ((1, 4, 1), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),   # widths 1-3
    ((1, 4, 2), (3, 3), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 4, 3), (3, 3), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("case", range(len(DW_FEW)))
@pytest.mark.parametrize("c", [4, 8, 12])
def test_depthwise_conv2d_few_channels(case, c):
    check_depthwise_case(DW_FEW[case], case, c, 3600 + 10 * case + c, [-128, 127])


# 5x5 windows (BlazePalm's and the OCR classifier's layers): at the AVX2 level
# the window rows inside the image in vertical pairs (one vpmaddwd per tap
# column for two rows, dw_bquad) in the quads away from the left and right
# edges, the odd row left over (the last of five, or of the rows a top or
# bottom edge leaves) by pairs along the row; the fixed-point output stage
# of 5x5 layers rq64_fast's signed form. So heights 2 and 3 (most windows
# cut by the top and bottom edges), wider maps, strides 1 and 2, SAME /
# VALID / explicit padding, batches, channel counts 16, 24, 88, 200 (the
# last block overlapping) and 5 (the padded path), against the numpy
# reference.
DW_5X5 = [  # (N, H, W), (KH, KW), strides, dilations, padding, pads
    ((1, 2, 96), (5, 5), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 3, 44), (5, 5), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 12, 12), (5, 5), (1, 1), (1, 1), 1, (0, 0, 0, 0)),
    ((2, 9, 17), (5, 5), (1, 1), (1, 1), 2, (2, 2, 2, 2)),
    ((1, 11, 19), (5, 5), (2, 2), (1, 1), 1, (0, 0, 0, 0)),
    ((1, 10, 24), (5, 5), (2, 2), (1, 1), 2, (1, 2, 1, 2)),
    ((2, 8, 13), (5, 5), (1, 1), (1, 1), 0, (0, 0, 0, 0)),
    ((1, 7, 15), (5, 5), (2, 2), (1, 1), 0, (0, 0, 0, 0)),
]


@pytest.mark.parametrize("case", range(len(DW_5X5)))
@pytest.mark.parametrize("c", [16, 24, 88, 200, 5])
def test_depthwise_conv2d_5x5(case, c):
    check_depthwise_case(DW_5X5[case], case, c, 3800 + 10 * case + c, [-128, 127])


# ----------------------------------------------------------------------------
# TransposeConv2D (TFLite's int8 TRANSPOSE_CONV)

TCONV_CASES = [  # x shape, (Cout, KH, KW), strides, dilations, padding, pads, output_padding
    ((1, 5, 6, 3), (4, 3, 3), (1, 1), (1, 1), 0, (0, 0, 0, 0), (0, 0)),
    ((2, 4, 5, 8), (5, 3, 3), (2, 2), (1, 1), 2, (1, 0, 1, 1), (1, 0)),    # batch 2, several taps per pixel
    ((2, 6, 7, 16), (24, 2, 2), (2, 2), (1, 1), 0, (0, 0, 0, 0), (0, 0)),  # the 2x2 stride-2 upsampling
    ((1, 8, 8, 16), (1, 2, 2), (2, 2), (1, 1), 0, (0, 0, 0, 0), (0, 0)),   # one output channel (a mask head)
    ((1, 4, 4, 4), (6, 4, 4), (2, 2), (1, 1), 1, (0, 0, 0, 0), (0, 0)),    # SAME, taps cut at both ends
    ((1, 3, 5, 2), (3, 3, 2), (1, 3), (2, 1), 2, (2, 1, 0, 2), (0, 1)),    # dilation, wide stride
    ((1, 3, 3, 40), (33, 3, 3), (3, 3), (1, 1), 0, (0, 0, 0, 0), (2, 1)),  # stride > kernel: pixels no tap reaches
    # One tap per output pixel (the GEMM path): explicit pads cutting the first row and column, a depth that
    # is not a multiple of four; a kernel narrower than the stride (rows and columns no tap reaches); one
    # output channel with SAME padding and three input channels.
    ((2, 5, 7, 5), (3, 2, 2), (2, 2), (1, 1), 2, (1, 0, 1, 2), (0, 1)),
    ((1, 4, 6, 12), (7, 1, 2), (2, 3), (1, 1), 0, (0, 0, 0, 0), (1, 2)),
    ((1, 6, 9, 3), (1, 3, 3), (3, 3), (1, 1), 1, (0, 0, 0, 0), (0, 0)),
    ((1, 9, 20, 36), (40, 2, 2), (2, 2), (1, 1), 0, (0, 0, 0, 0), (1, 1)),  # panels of 16 and a partial one
]


@pytest.mark.parametrize("case", range(len(TCONV_CASES)))
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("requant", REQUANTS)
def test_transpose_conv2d(case, per_channel, requant):
    """Bit for bit against the numpy scatter of TFLite's integer arithmetic,
    at 1 and 3 threads, with and without bias, each fused activation; and
    within the requantization's error of the float result."""
    xs, (cout, kh, kw), strides, dil, padding, pads, op = TCONV_CASES[case]
    rng = np.random.default_rng(5100 + case * 2 + per_channel)
    x = rand_i8(rng, *xs)
    xq = rand_q(rng, -2, 0)
    w, ws = sym_weights(rng, (cout, kh, kw, xs[3]), 0 if per_channel else None, cout)
    bias = real_bias(rng, cout, xq[0] * np.broadcast_to(ws, (cout,))) if case % 2 == 0 else None
    act = ACTS[(case + per_channel) % 4]
    attrs = dict(strides=strides, dilations=dil, padding=padding, pads=pads, output_padding=op)

    def real_of(xq):
        return ref.transpose_conv2d(deq(x, xq), deq(w, (ws, 0), 0),
                                    None if bias is None else bias * (np.float64(xq[0]) * ws),
                                    **attrs).astype(np.float64)

    xq = retarget(xq, real_of(xq), act)
    real = real_of(xq)
    yq = fit_q(rng, ref._act(real, act))
    want = R.transpose_conv2d(x, xq, w, ws, bias, yq, activation=act, requant=requant, **attrs)
    for threads in (1, 3):
        g = Q()
        y = g.op("TransposeConv2D", g.input(x, xq), g.const(w, ws, axis=0 if per_channel else None),
                 g.const(bias) if bias is not None else None, q=yq, activation=act, **attrs, **rq_attr(requant))
        got = g.run(y, threads=threads)
        same(got, want)
    close_to_float(got, yq, ref._act(real, act), act)


def test_transpose_conv2d_extremes():
    """int8 ends everywhere (x and weights at -128 / 127 and -127 / 127),
    input zero points at both ends, many taps per pixel over a deep input:
    accumulators far from zero, the bias near its range; and weights given
    as a graph input (packed at each run)."""
    rng = np.random.default_rng(5200)
    for xz, k, s in ((-128, 5, 1), (127, 5, 1), (-128, 2, 2), (127, 3, 3)):
        x = np.where(rng.random((2, 5, 5, 200)) < 0.5, -128, 127).astype(np.int8)
        w = np.where(rng.random((7, k, k, 200)) < 0.5, -127, 127).astype(np.int8)
        ws = (10 ** rng.uniform(-4, -3, size=7)).astype(np.float32)
        bias = rng.integers(-(1 << 28), 1 << 28, size=7).astype(np.int32)
        xq, yq = (np.float32(0.02), xz), (np.float32(900.0 / s), 3)
        want = R.transpose_conv2d(x, xq, w, ws, bias, yq, strides=(s, s))
        g = Q()
        y = g.op("TransposeConv2D", g.input(x, xq), g.const(w, ws, axis=0), g.const(bias), q=yq, strides=[s, s])
        same(g.run(y, threads=2), want)
        # weights, then bias, as graph inputs (packed, or the starting sums made, at each run)
        for which in ("weights", "bias"):
            g = Q()
            xt = g.input(x, xq, name="x")
            if which == "weights":
                wt = g.input(w, name="w")
                g.b.quantization(wt, ws, np.zeros(7, np.int32), axis=0)
                bt = g.const(bias)
            else:
                wt = g.const(w, ws, axis=0)
                bt = g.input(bias, name="b")
            y = g.op("TransposeConv2D", xt, wt, bt, q=yq, strides=[s, s])
            same(g.run(y), want)


def test_transpose_conv2d_refuses():
    rng = np.random.default_rng(5300)
    x, xq = rand_i8(rng, 1, 4, 4, 3), (np.float32(0.1), 0)
    w, ws = sym_weights(rng, (2, 3, 3, 3), 0, 2)

    def build(wv=w, scales=ws, axis=0, zps=None, bias=None, yq=(np.float32(0.1), 0)):
        g = Q()
        wt = g.const(wv, scales, zps, axis=axis)
        bt = None if bias is None else g.const(bias)
        return g.run(g.op("TransposeConv2D", g.input(x, xq), wt, bt, q=yq))

    build()  # the refusals below differ from this in one thing each
    refuses(lambda: build(scales=np.float32([0.1, 0.2, 0.3]), axis=3))  # scales along the input channels
    refuses(lambda: build(zps=[1, 0]), "zero point")                     # asymmetric weights
    refuses(lambda: build(yq=None), "quantization parameters")           # output without parameters
    refuses(lambda: build(bias=np.zeros(2, np.float32)), "int32 bias")    # float bias
    refuses(lambda: build(bias=np.zeros(3, np.int32)), "3")               # one value per output channel


# ----------------------------------------------------------------------------
# Add, Sub, Mul

# MulF: Mul with the float32 output stage (requantization 1, R.mul's requant="float32").
BINARY_OPS = ["Add", "Sub", "Mul", "MulF"]
BINARY_REFS = {"Add": R.add, "Sub": R.sub, "Mul": R.mul,
               "MulF": lambda *a, **k: R.mul(*a, requant="float32", **k)}


def binary_op(g, op, a, b, yq, act):
    return g.op("Mul" if op == "MulF" else op, a, b, q=yq, activation=act, **rq_attr("float32" if op == "MulF" else "fixed"))


BINARY_SHAPES = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((4, 1, 6), (1, 5, 6)), ((1,), (3, 7)),
                 ((2, 1, 3, 1), (1, 4, 1, 5)), ((33,), (33,))]


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("threads", [2, 3])
def test_binary_large_threads(op, threads):
    """Inputs of one large shape: the threads split the rows kernel's range
    (QBinaryKernel.split); every element as the reference, and as one thread."""
    rng = np.random.default_rng(470 + threads + len(op))
    a, b = rand_i8(rng, 1, 48, 48, 16), rand_i8(rng, 1, 48, 48, 16)
    aq, bq, yq = (np.float32(0.05), 3), (np.float32(0.03), -9), (np.float32(0.06), -4)
    got = {}
    for t in (1, threads):
        g = Q()
        y = binary_op(g, op, g.input(a, aq), g.input(b, bq), yq, 1)
        got[t] = g.run(y, threads=t)
    same(got[threads], BINARY_REFS[op](a, aq, b, bq, yq, 1))
    np.testing.assert_array_equal(got[threads], got[1])


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("case", range(len(BINARY_SHAPES)))
def test_binary(op, case):
    sa, sb = BINARY_SHAPES[case]
    rng = np.random.default_rng(400 + case + 10 * len(op.rstrip("F")))
    f = BINARY_REFS[op]
    fr = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "MulF": np.multiply}[op]
    for trial in range(4):
        a, b = rand_i8(rng, *sa), rand_i8(rng, *sb)
        aq, bq = rand_q(rng, -2, 0.5), rand_q(rng, -2, 0.5)
        act = ACTS[(case + trial) % 4]
        real = fr(deq(a, aq), deq(b, bq))
        aq2 = retarget(aq, real, act, 2.0 if op.startswith("Mul") else 1.0)
        bq = (np.float32(bq[0] * aq2[0] / aq[0]), bq[1])
        aq = aq2
        real = fr(deq(a, aq), deq(b, bq))
        yq = fit_q(rng, ref._act(real, act))
        if trial == 2:  # extremes: zero points at the ends, a tiny output scale (multiplier > 1)
            aq, bq, yq = (aq[0], -128), (bq[0], 127), (np.float32(aq[0] * 0.01), 0)
            real = fr(deq(a, aq), deq(b, bq))
        if trial == 3:  # equal scales
            bq = (aq[0], bq[1])
            real = fr(deq(a, aq), deq(b, bq))
        g = Q()
        y = binary_op(g, op, g.input(a, aq), g.input(b, bq), yq, act)
        got = g.run(y)
        same(got, f(a, aq, b, bq, yq, act))
        close_to_float(got, yq, ref._act(real, act), act)


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 255, 4099])
def test_binary_same_shape_lengths(op, n):
    """Same-shape inputs (the 16-lane path and its scalar tail; MulF's 64-
    and 32-value steps at AVX-512, then the rest) over every pair of int8
    values, extreme zero points and scales, multipliers > 1."""
    rng = np.random.default_rng(4600 + n + 7 * len(op.rstrip("F")))
    for trial in range(6):
        a, b = rand_i8(rng, n), rand_i8(rng, n)
        if n == 4099 and trial == 0:  # every pair of int8 values (65536), then a tail of 100
            a = np.tile(np.arange(-128, 128, dtype=np.int8), 256)
            b = np.repeat(np.arange(-128, 128, dtype=np.int8), 256)
            a = np.concatenate([a, rand_i8(rng, 100)])
            b = np.concatenate([b, rand_i8(rng, 100)])
        _check_binary_trial(rng, op, trial, a, b)


def _check_binary_trial(rng, op, trial, a, b):
    """`op` on int8 a, b against the numpy reference with the quantization
    of trial `trial`: random, extreme zero points, a tiny output scale
    (multiplier > 1), one input's multiplier tiny, everything rounding to
    the zero point; the activation cycles."""
    aq, bq, yq = rand_q(rng, -3, 1), rand_q(rng, -3, 1), rand_q(rng, -3, 1)
    if trial == 1:
        aq, bq = (aq[0], -128), (bq[0], 127)
    if trial == 2:
        aq, bq = (aq[0], 127), (bq[0], -128)
        yq = (np.float32(min(aq[0], bq[0]) * (0.001 if not op.startswith("Mul") else aq[0] * 0.001)), 0)
    if trial == 3:
        bq = (np.float32(aq[0] * 1e-4), bq[1])  # one input's multiplier tiny
    if trial == 4:
        yq = (np.float32(1e3), yq[1])  # everything rounds to the zero point
    act = ACTS[trial % 4]
    f = BINARY_REFS[op]
    g = Q()
    y = binary_op(g, op, g.input(a, aq), g.input(b, bq), yq, act)
    same(g.run(y), f(a, aq, b, bq, yq, act))


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("sa,sb", [((4099,), (1,)), ((1,), (4099,)), ((3, 600, 5), (3, 1, 1)),
                                   ((1, 1, 1), (2, 700, 3)), ((511,), (1,))])
def test_binary_long_rows_against_one_value(op, sa, sb):
    """A long row against one broadcast value (x + 3 of HardSwish, a scalar
    on either side, a value per outer row): the table path, every int8
    value on the long side, extreme zero points, multipliers > 1."""
    rng = np.random.default_rng(4700 + len(op.rstrip("F")) + sum(sa) + 3 * sum(sb))
    for trial in range(5):
        a, b = rand_i8(rng, *sa), rand_i8(rng, *sb)
        long_side = a if a.size > b.size else b
        long_side.reshape(-1)[:256] = np.arange(-128, 128, dtype=np.int8)
        _check_binary_trial(rng, op, trial, a, b)


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("sa,sb", [((16,), (1,)), ((1,), (17,)), ((1, 1, 5, 32), (1,)), ((1,), (1, 1, 5, 32)),
                                   ((1, 1, 1, 200), (1,)), ((300,), (1, 1)), ((4, 40), (4, 1)), ((15,), (1,))])
def test_binary_short_rows_against_one_value(op, sa, sb):
    """Rows shorter than the table's threshold (512) against one broadcast
    value (x * scale, x - mean of a spectrogram, a HardSigmoid's + 3 on a
    squeeze-and-excitation vector): from 16 values on, the value repeated
    in a stack row and the level's vector row kernel; every int8 value on
    the long side, extreme zero points, multipliers > 1."""
    rng = np.random.default_rng(4900 + len(op.rstrip("F")) + sum(sa) + 3 * sum(sb))
    # (Mul's trial 2 may ask for a Relu6 bound the tiny output scale cannot hold: a refusal, tested elsewhere.)
    for trial in (0, 1, 3, 4) if op.startswith("Mul") else range(5):
        a, b = rand_i8(rng, *sa), rand_i8(rng, *sb)
        long_side = (a if a.size > b.size else b).reshape(-1)
        k = min(256, long_side.size)
        long_side[:k] = rng.permutation(np.arange(-128, 128, dtype=np.int8))[:k]
        _check_binary_trial(rng, op, trial, a, b)


@pytest.mark.parametrize("op", BINARY_OPS)
@pytest.mark.parametrize("sa,sb", [((1, 9, 11, 24), (1, 1, 1, 24)), ((1, 1, 5), (2, 30, 31, 5)),
                                   ((3, 7, 1), (1, 1, 1)), ((2, 40, 1000), (1000,)), ((1, 1, 1, 33), (1, 6, 7, 33))])
def test_binary_per_channel_rows(op, sa, sb):
    """One input of the output's shape, the other a row of C values
    broadcast over every pixel (on either side): the repeated-row path,
    stretches longer than its scratch row, tails, extreme quantizations."""
    rng = np.random.default_rng(4800 + len(op.rstrip("F")) + sum(sa) + 3 * sum(sb))
    for trial in range(5):
        _check_binary_trial(rng, op, trial, rand_i8(rng, *sa), rand_i8(rng, *sb))


def test_binary_same_tensor_and_in_place():
    rng = np.random.default_rng(450)
    a = rand_i8(rng, 5, 8)
    aq, yq = (np.float32(0.1), 3), (np.float32(0.15), -2)
    g = Q()
    ai = g.input(a, aq)
    y1 = g.op("Add", ai, ai, q=yq)
    y2 = g.op("Mul", y1, y1, q=(np.float32(0.5), -10))  # y1 dies here: may run in place
    got = g.run(y2)
    t = R.add(a, aq, a, aq, yq)
    same(got, R.mul(t, yq, t, yq, (np.float32(0.5), -10)))


# ----------------------------------------------------------------------------
# Pooling and Mean

POOL_CASES = [((2, 7, 8, 3), (2, 2), (2, 2), 0, (0, 0, 0, 0)), ((1, 7, 7, 4), (3, 3), (2, 2), 1, (0, 0, 0, 0)),
              ((1, 6, 5, 2), (3, 2), (1, 1), 1, (0, 0, 0, 0)), ((1, 5, 6, 3), (3, 3), (2, 1), 2, (1, 2, 0, 1)),
              ((1, 9, 9, 20), (9, 9), (1, 1), 0, (0, 0, 0, 0))]


@pytest.mark.parametrize("op", ["AveragePool2D", "MaxPool2D"])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pool(op, case):
    xs, filt, strides, padding, pads = POOL_CASES[case]
    rng = np.random.default_rng(500 + case)
    x = rand_i8(rng, *xs)
    q = rand_q(rng, -2, 0.5)
    act = ACTS[case % 4]
    f = R.average_pool2d if op == "AveragePool2D" else R.max_pool2d
    g = Q()
    y = g.op(op, g.input(x, q), q=q, filter=filt, strides=strides, padding=padding, pads=pads, activation=act)
    got = g.run(y, threads=1 + case % 2)
    same(got, f(x, q, filt, strides, padding, pads, act))
    fr = ref.average_pool2d if op == "AveragePool2D" else ref.max_pool2d
    close_to_float(got, q, ref._act(fr(deq(x, q), filt, strides, padding, pads), act), act)


def test_average_pool_rounding_negative_sums():
    """Sums of either sign round half away from zero."""
    x = np.array([-3, -2, -2, -1, 1, 2, 2, 3, -5, 4, 0, 0], np.int8).reshape(1, 3, 4, 1)
    q = (np.float32(0.1), 0)
    g = Q()
    y = g.op("AveragePool2D", g.input(x, q), q=q, filter=(2, 2), strides=(1, 2), padding=0)
    same(g.run(y), R.average_pool2d(x, q, (2, 2), (1, 2), 0))


def _with_sums(rng, h, w, sums):
    """int8 [1, h, w, C] whose per-channel sums over the image are `sums`."""
    x = np.zeros((h * w, len(sums)), np.int64)
    for ch, t in enumerate(sums):
        base = int(np.clip(t // (h * w), -128, 127))
        col = np.full(h * w, base, np.int64)
        delta = t - base * h * w
        for i in range(h * w):
            if delta == 0:
                break
            step = int(np.clip(delta, -128 - col[i], 127 - col[i]))
            col[i] += step
            delta -= step
        assert delta == 0
        x[:, ch] = rng.permutation(col)
    return x.astype(np.int8).reshape(1, h, w, len(sums))


@pytest.mark.parametrize("hw", [(64, 64), (65, 64), (9, 7)])
def test_average_pool_global_ties(hw):
    """Global averages over 4096 cells (the largest window of the float
    division), 4160 (the integer one) and 63: sums at k n +- n/2 (ties), one
    off them, and the int8 extremes."""
    h, w = hw
    n = h * w
    rng = np.random.default_rng(5100 + n)
    sums = []
    for k in (-128, -127, -5, -1, 0, 1, 7, 126):
        for d in (-(n // 2) - 1, -(n // 2), -(n // 2) + 1, 0, n // 2 - 1, n // 2, n // 2 + 1):
            t = k * n + d
            if -128 * n <= t <= 127 * n:
                sums.append(t)
    sums += [-128 * n, 127 * n]
    x = _with_sums(rng, h, w, sums)
    q = (np.float32(0.1), 0)
    for act in (0, 1):
        g = Q()
        y = g.op("AveragePool2D", g.input(x, q), q=q, filter=(h, w), padding=0, activation=act)
        same(g.run(y), R.average_pool2d(x, q, (h, w), (1, 1), 0, (0, 0, 0, 0), act))


@pytest.mark.parametrize("c", [1, 5, 16, 17, 40])
def test_average_and_max_pool_channels(c):
    """Every window size of a SAME 3x3 and 2x2 pooling (border counts 4, 6,
    9, 1, 2), random data and the int8 ends, one and two threads."""
    rng = np.random.default_rng(5200 + c)
    for k, (filt, strides, padding) in enumerate((((3, 3), (1, 1), 1), ((2, 2), (2, 2), 1), ((3, 2), (2, 1), 0))):
        x = rand_i8(rng, 2, 9, 8, c)
        if k == 1:
            x[...] = rng.choice(np.array([-128, 127], np.int8), size=x.shape)
        q = rand_q(rng, -2, 0.5)
        act = ACTS[(c + k) % 4]
        for op, f in (("AveragePool2D", R.average_pool2d), ("MaxPool2D", R.max_pool2d)):
            g = Q()
            y = g.op(op, g.input(x, q), q=q, filter=filt, strides=strides, padding=padding, activation=act)
            same(g.run(y, threads=1 + k % 2), f(x, q, filt, strides, padding, (0, 0, 0, 0), act))


def test_mean_vector_requantization():
    """Mean over H, W of 1..40 channels (16-lane requantization and tail),
    extreme zero points and a multiplier > 1."""
    rng = np.random.default_rng(5300)
    for c in (1, 15, 16, 17, 33, 40):
        for xq, yq in (((np.float32(0.1), -128), (np.float32(0.05), 127)),
                       ((np.float32(0.02), 127), (np.float32(0.3), -128)),
                       (rand_q(rng, -2, 0.5), rand_q(rng, -2, 0.5))):
            x = rand_i8(rng, 2, 5, 3, c)
            g = Q()
            y = g.op("Mean", g.input(x, xq), q=yq, axes=[1, 2], keep_dims=1)
            same(g.run(y), R.mean(x, xq, yq, (1, 2), 1))


@pytest.mark.parametrize("axes,keep", [((1, 2), 1), ((1, 2), 0), ((-1,), 1), ((0, 3), 0), ((2,), 0),
                                       ((0, 1, 2, 3), 1)])
def test_mean(axes, keep):
    rng = np.random.default_rng(600 + len(axes) * 7 + keep)
    x = rand_i8(rng, 2, 6, 5, 7)
    xq = rand_q(rng, -2, 0)
    real = ref.mean(deq(x, xq), axes, keep).astype(np.float64)
    for yq in [fit_q(rng, real), fit_q(rng, real, (0.2, 0.4)), (np.float32(0.001), 127), (np.float32(3.0), -128)]:
        g = Q()
        y = g.op("Mean", g.input(x, xq), q=yq, axes=list(axes), keep_dims=keep)
        got = g.run(y)
        same(got, R.mean(x, xq, yq, axes, keep))
        close_to_float(got, yq, real)


def test_mean_global_pool_large():
    rng = np.random.default_rng(610)
    x = rand_i8(rng, 1, 40, 40, 9)
    xq, yq = (np.float32(0.05), -3), (np.float32(0.01), 5)
    g = Q()
    y = g.op("Mean", g.input(x, xq), q=yq, axes=[1, 2], keep_dims=1)
    same(g.run(y), R.mean(x, xq, yq, (1, 2), 1))


# ----------------------------------------------------------------------------
# ReduceMax

@pytest.mark.parametrize("shape,axes", [((2, 6, 5, 7), (1, 2)), ((2, 6, 5, 7), (-1,)), ((2, 6, 5, 7), (0, 3)),
                                        ((2, 6, 5, 7), (2,)), ((2, 6, 5, 7), (0, 1, 2, 3)), ((3, 1, 40), (0, 2)),
                                        ((4, 33), (1,)), ((4, 33), ()), ((1, 9, 9, 20), (1, 2))])
@pytest.mark.parametrize("keep", [0, 1])
def test_reduce_max_same_params(shape, axes, keep):
    """With the input's parameters (TFLite's converter writes those) the max is exact."""
    rng = np.random.default_rng(700 + len(shape) * 11 + len(axes) * 3 + keep)
    x = rand_i8(rng, *shape)
    xq = rand_q(rng, -2, 0)
    g = Q()
    y = g.op("ReduceMax", g.input(x, xq), q=xq, axes=list(axes), keep_dims=keep)
    got = g.run(y)
    same(got, R.reduce_max(x, xq, xq, axes, keep))
    # independent of the int8 reference: the float max of the dequantized input, exactly
    np.testing.assert_array_equal(deq(got, xq).astype(np.float32), ref.reduce_max(deq(x, xq), axes, keep))


@pytest.mark.parametrize("axes,keep", [((1, 2), 1), ((3,), 0), ((0, 1, 2, 3), 0)])
def test_reduce_max_requantizes(axes, keep):
    """Other output parameters: the max requantized to them (as a Quantize int8 -> int8)."""
    rng = np.random.default_rng(720 + len(axes) + keep)
    x = rand_i8(rng, 2, 6, 5, 17)
    xq = rand_q(rng, -2, 0)
    real = ref.reduce_max(deq(x, xq), axes, keep).astype(np.float64)
    for yq in [fit_q(rng, real), (xq[0], int(np.clip(xq[1] + 3, -128, 127))), (np.float32(0.001), 127),
               (np.float32(3.0), -128)]:
        g = Q()
        y = g.op("ReduceMax", g.input(x, xq), q=yq, axes=list(axes), keep_dims=keep)
        got = g.run(y, threads=2)
        same(got, R.reduce_max(x, xq, yq, axes, keep))
        close_to_float(got, yq, real)


def test_reduce_max_batch():
    rng = np.random.default_rng(730)
    xq = rand_q(rng, -2, 0)
    b = ti.GraphBuilder("rmax")
    t = b.input("x", (1, 4, 4, 8), dtype=np.int8)
    b.quantization(t, xq[0], xq[1])
    y = b.op("ReduceMax", t, axes=[1, 2], keep_dims=0)
    b.quantization(y, xq[0], xq[1])
    b.output(y)
    with b.load() as m:
        for n in (1, 3):
            x = rand_i8(rng, n, 4, 4, 8)
            same(m.run(x)[0], R.reduce_max(x, xq, xq, (1, 2), 0))


def test_reduce_max_refuses():
    rng = np.random.default_rng(740)
    x = rand_i8(rng, 2, 3, 4)
    g = Q()
    y = g.op("ReduceMax", g.input(x), axes=[1])  # int8 without parameters
    refuses(lambda: g.run(y))
    g = Q()
    y = g.op("ReduceMax", g.input(x, (np.float32(0.1), 0)), q=(np.float32(0.1), 0), axes=[1, 1])
    refuses(lambda: g.run(y))


# ----------------------------------------------------------------------------
# Softmax

SOFTMAX_OUT = (np.float32(1 / 256), -128)


@pytest.mark.parametrize("scale", [0.003, 0.05, 0.2, 1.0, 20.0])
@pytest.mark.parametrize("beta", [1.0, 0.5, 2.5])
def test_softmax(scale, beta):
    rng = np.random.default_rng(int(scale * 1000) + int(beta * 10))
    x = rand_i8(rng, 4, 19)
    xq = (np.float32(scale), int(rng.integers(-128, 128)))
    g = Q()
    y = g.op("Softmax", g.input(x, xq), q=SOFTMAX_OUT, beta=beta)
    got = g.run(y)
    same(got, R.softmax(x, xq, beta))
    close_to_float(got, SOFTMAX_OUT, ref.softmax(deq(x, xq), beta=beta), steps=1.5)


def test_softmax_axis_and_rows():
    rng = np.random.default_rng(700)
    x = rand_i8(rng, 3, 11, 5)
    x[0, :, 0] = 17  # a row of equal values
    xq = (np.float32(0.1), 2)
    for axis in (1, -1, 0):
        g = Q()
        y = g.op("Softmax", g.input(x, xq), q=SOFTMAX_OUT, axis=axis)
        same(g.run(y, threads=2), R.softmax(x, xq, 1.0, axis))


def test_softmax_long_equal_row():
    """1000 equal values: past where TFLite's check stops (a sum of 2^28)."""
    x = np.full((2, 1000), 5, np.int8)
    x[1, 3] = 100
    xq = (np.float32(0.1), 0)
    g = Q()
    y = g.op("Softmax", g.input(x, xq), q=SOFTMAX_OUT)
    same(g.run(y), R.softmax(x, xq))


# ----------------------------------------------------------------------------
# Elementwise activations: all 256 input values

ALL = np.arange(-128, 128, dtype=np.int8).reshape(4, 64)

ACT_PARAMS = [((np.float32(0.1), 0), (np.float32(0.05), -128)),
              ((np.float32(0.02), -128), (np.float32(0.04), 127)),
              ((np.float32(0.3), 127), (np.float32(0.01), 3)),
              ((np.float32(0.004), 50), (np.float32(0.2), -60))]


@pytest.mark.parametrize("op", ["Relu", "LeakyRelu", "HardSwish", "Tanh"])
@pytest.mark.parametrize("n", [31, 32, 63, 64, 65, 1000])
def test_activations_long_rows(op, n):
    """The table lookup (64 values a step with AVX-512 VBMI and a masked
    tail; 32 a step with AVX-512BW or AVX2, then a scalar tail) over every
    int8 value in a shuffled order, and lengths around the steps."""
    rng = np.random.default_rng(7800 + n + len(op))
    x = np.concatenate([rng.permutation(ALL.ravel()), rand_i8(rng, n)])
    check_activation(op, x, (np.float32(0.03), -9), (np.float32(0.02), 5))


def check_activation(op, x, xq, yq):
    """One int8 activation op on x against the reference (LeakyRelu with
    alpha 0.3), bit for bit."""
    attrs = {"alpha": 0.3} if op == "LeakyRelu" else {}
    g = Q()
    y = g.op(op, g.input(x, xq), q=yq, **attrs)
    want = R.leaky_relu(x, xq, yq, 0.3) if op == "LeakyRelu" else \
        {"Relu": R.relu, "HardSwish": R.hard_swish, "Logistic": R.logistic, "Tanh": R.tanh}[op](x, xq, yq)
    same(g.run(y), want)


@pytest.mark.parametrize("op", ["HardSwish", "Logistic", "Tanh", "LeakyRelu"])
@pytest.mark.parametrize("params", range(len(ACT_PARAMS)))
@pytest.mark.parametrize("width", [32, 64])
def test_activations_every_value_in_every_lane(op, params, width):
    """The table lookup with every int8 value at every position of a
    32- or 64-value step (block b, position l holds (b + l) mod 256, and a
    tail of 19): at AVX2 the 16 vpshufb rows paired by the index's sign bit
    and the blends by its bits 4 to 6, with VBMI the two vpermt2b and the
    blend by bit 7, each seen with every value in every byte lane."""
    xq, yq = ACT_PARAMS[params]
    if op == "HardSwish" and params == 2:
        yq = (np.float32(0.05), 3)
    if op == "Logistic":
        yq = (np.float32(1 / 256), -128)
    b, lane = np.meshgrid(np.arange(256), np.arange(width), indexing="ij")
    x = np.concatenate([((b + lane) % 256 - 128).ravel(), np.arange(-128, -109)]).astype(np.int8)
    check_activation(op, x, xq, yq)


@pytest.mark.parametrize("op", ["Relu", "Relu6", "LeakyRelu", "HardSwish", "Logistic", "Tanh"])
@pytest.mark.parametrize("params", range(len(ACT_PARAMS)))
def test_activations(op, params):
    xq, yq = ACT_PARAMS[params]
    attrs = {}
    if op == "Logistic":
        yq = (np.float32(1 / 256), -128) if params % 2 == 0 else yq
    if op == "Tanh":
        yq = (np.float32(1 / 128), 0) if params % 2 == 0 else yq
    if op == "HardSwish" and params == 2:
        yq = (np.float32(0.05), 3)  # HardSwish needs s_y > s_x / 128
    if op == "LeakyRelu":
        attrs["alpha"] = [0.2, 0.01, 1.7, -0.3][params]
    g = Q()
    y = g.op(op, g.input(ALL, xq), q=yq, **attrs)
    got = g.run(y)
    f = {"Relu": R.relu, "Relu6": R.relu6, "HardSwish": R.hard_swish, "Logistic": R.logistic,
         "Tanh": R.tanh}.get(op)
    want = R.leaky_relu(ALL, xq, yq, attrs["alpha"]) if op == "LeakyRelu" else f(ALL, xq, yq)
    same(got, want)


def test_activation_chain_in_place():
    rng = np.random.default_rng(800)
    x = rand_i8(rng, 3, 50)
    q1, q2, q3 = (np.float32(0.05), 10), (np.float32(0.03), -20), (np.float32(1 / 256), -128)
    g = Q()
    h = g.op("Relu", g.input(x, q1), q=q2)
    h = g.op("HardSwish", h, q=q2)
    y = g.op("Logistic", h, q=q3)
    got = g.run(y)
    same(got, R.logistic(R.hard_swish(R.relu(x, q1, q2), q2, q2), q2, q3))


# ----------------------------------------------------------------------------
# Concat

def test_concat_same_params_copies():
    rng = np.random.default_rng(900)
    a, b = rand_i8(rng, 2, 3, 4), rand_i8(rng, 2, 5, 4)
    q = (np.float32(0.1), 4)
    g = Q()
    y = g.op("Concat", g.input(a, q), g.input(b, q), axis=1)
    d = g.op("Dequantize", y)
    got_y = None
    g.b.output(y)
    g.b.output(d)
    with g.b.load() as m:
        got_y, got_d = m.run(g.feeds)
    same(got_y, np.concatenate([a, b], axis=1))
    same(got_d, R.dequantize(np.concatenate([a, b], axis=1), q[0], q[1]))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_requantizes(axis):
    rng = np.random.default_rng(910 + axis)
    xs = [rand_i8(rng, 2, 3, 4), rand_i8(rng, 2, 3, 4), rand_i8(rng, 2, 3, 4)]
    qs = [(np.float32(0.1), 4), (np.float32(0.37), -128), (np.float32(0.02), 127)]
    yq = (np.float32(0.1), 4)  # input 0 shares the output's parameters: copied
    g = Q()
    y = g.op("Concat", *[g.input(x, q) for x, q in zip(xs, qs)], q=yq, axis=axis)
    same(g.run(y), R.concat(xs, qs, yq, axis))


# ----------------------------------------------------------------------------
# Quantize and Dequantize

@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("dtype,code", [("int8", 3), ("uint8", 4), ("int16", 7)])
def test_quantize_per_tensor(mode, dtype, code):
    rng = np.random.default_rng(1000 + mode + code)
    scale, zp = np.float32(0.05), {"int8": -3, "uint8": 128, "int16": 100}[dtype]
    x = (rng.normal(size=(5, 40)) * 4).astype(np.float32)
    # ties (k + 0.5) * scale, the range ends, saturation, inf, nan
    ties = ((np.arange(-8, 8) + 0.5) * scale).astype(np.float32)
    x[0, :16] = ties
    x[1, :6] = [1e9, -1e9, np.inf, -np.inf, np.nan, 0.0]
    g = Q()
    xi = g.input(x)
    y = g.op("Quantize", xi, q=(scale, zp), dtype=code, mode=mode)
    got = g.run(y)
    same(got, R.quantize(x, scale, zp, dtype, mode=mode))


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("dtype,code", [("int8", 3), ("uint8", 4), ("int16", 7)])
@pytest.mark.parametrize("n", [7, 16, 33, 5000])
def test_quantize_vector_path(mode, dtype, code, n):
    """Lengths around the vector width; every tie k + 1/2 for |k| < 2^17 at
    scale 1 and at a scale whose quotients are not exact, values at the
    clamp of the rounding (+-131072 steps), -0.0, subnormals, inf, nan."""
    rng = np.random.default_rng(1500 + mode + code + n)
    info = np.iinfo(dtype)
    for scale in (np.float32(1.0), np.float32(0.1), np.float32(3e-5)):
        zp = int(rng.integers(info.min, info.max + 1)) if dtype != "int16" else int(rng.integers(-1000, 1000))
        x = (rng.normal(size=n) * rng.choice([1, 100, 1e5], size=n) * float(scale)).astype(np.float32)
        special = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 131071.5, -131071.5, 131072.5, -131072.5, 131073,
                            1e-45, -1e-45, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38], np.float32) * scale
        k = min(n, special.size)
        x[:k] = special[:k]
        if n == 5000:
            ties = (rng.integers(-(1 << 17), 1 << 17, size=2000) + 0.5).astype(np.float32) * scale
            x[100:2100] = ties
        g = Q()
        y = g.op("Quantize", g.input(x), q=(scale, zp), dtype=code, mode=mode)
        same(g.run(y), R.quantize(x, scale, zp, dtype, mode=mode))


@pytest.mark.parametrize("mode", [0, 1])
def test_quantize_near_ties_many_scales(mode):
    """Values a few ulps around (k + 1/2) scale, where a quotient one ulp
    off (x * (1 / scale), say) rounds to another integer, for scales of
    every binade the quantizer meets and extreme ones (a subnormal
    reciprocal, huge values): the vector rows round x / scale itself."""
    rng = np.random.default_rng(1700 + mode)
    scales = (10 ** rng.uniform(-8, 3, size=40)).astype(np.float32).tolist()
    scales += [np.float32(1 / 255), np.float32(2.0 ** -126), np.float32(3e38), np.float32(1e-39)]
    for scale in scales:
        scale = np.float32(scale)
        k = rng.integers(-200, 200, size=512).astype(np.float64) + 0.5
        base = (k * float(scale)).astype(np.float32)
        steps = rng.integers(-3, 4, size=512)
        x = base.copy()
        for _ in range(3):
            x = np.where(steps > 0, np.nextafter(x, np.float32(np.inf)), x)
            x = np.where(steps < 0, np.nextafter(x, np.float32(-np.inf)), x)
            steps = steps - np.sign(steps)
        x = np.concatenate([x, base, (rng.normal(size=512) * 1e4 * float(scale)).astype(np.float32)])
        g = Q()
        y = g.op("Quantize", g.input(x), q=(scale, 0), dtype=3, mode=mode)
        same(g.run(y), R.quantize(x, scale, 0, "int8", mode=mode))
        g = Q()
        y = g.op("Quantize", g.input(x), q=(scale, 0), dtype=7, mode=mode)
        same(g.run(y), R.quantize(x, scale, 0, "int16", mode=mode))


def test_quantize_modes_differ_on_ties():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], np.float32)
    out = []
    for mode in (0, 1):
        g = Q()
        out.append(g.run(g.op("Quantize", g.input(x), q=(np.float32(1.0), 0), dtype=3, mode=mode)))
    same(out[0], np.array([1, 2, 3, -1, -2, -3], np.int8))
    same(out[1], np.array([0, 2, 2, -0, -2, -2], np.int8))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_quantize_dequantize_per_axis(axis):
    rng = np.random.default_rng(1100 + axis)
    x = (rng.normal(size=(3, 4, 5)) * 3).astype(np.float32)
    n = x.shape[axis]
    scales = (10 ** rng.uniform(-2, -0.5, size=n)).astype(np.float32)
    zps = rng.integers(-20, 20, size=n).astype(np.int32)
    g = Q()
    q = g.op("Quantize", g.input(x), dtype=3)
    g.b.quantization(q, scales, zps, axis=axis)
    d = g.op("Dequantize", q)
    g.b.output(q)
    g.b.output(d)
    with g.b.load() as m:
        got_q, got_d = m.run(g.feeds)
    want_q = R.quantize(x, scales, zps, "int8", axis=axis)
    same(got_q, want_q)
    same(got_d, R.dequantize(want_q, scales, zps, axis=axis))
    # the round trip is within half a step where nothing saturated
    shp = [1] * 3
    shp[axis] = -1
    bound = np.broadcast_to(scales.reshape(shp) * 0.5001 + 1e-6, x.shape)
    inside = (got_q > -128) & (got_q < 127)
    assert inside.mean() > 0.5
    assert np.all(np.abs(got_d - x)[inside] <= bound[inside])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32"])
def test_dequantize_per_tensor(dtype):
    rng = np.random.default_rng(1200)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=(4, 9), endpoint=True).astype(dtype)
    x.flat[0], x.flat[1] = info.min, info.max
    zp = {"int8": -7, "uint8": 200, "int16": 1000, "int32": -123456}[dtype]
    s = np.float32(0.0123)
    g = Q()
    y = g.op("Dequantize", g.input(x, (s, zp)))
    same(g.run(y), R.dequantize(x, s, zp))


def test_dequantize_float16():
    rng = np.random.default_rng(1300)
    x = (rng.normal(size=(3, 50)) * 100).astype(np.float16)
    x[0, :6] = [np.inf, -np.inf, 65504, 6e-8, -0.0, 1e-5]  # specials and subnormals
    x[1, 0] = np.nan
    g = Q()
    y = g.op("Dequantize", g.input(x))
    got = g.run(y)
    np.testing.assert_array_equal(got, x.astype(np.float32))


@pytest.mark.parametrize("count", [65536, 13, 8, 1])
def test_dequantize_float16_every_bit_pattern(count):
    """Every float16 bit pattern (or the first `count`: the kernel's tail)
    widens exactly as numpy's conversion: normals, subnormals, signed zeros,
    infinities; a NaN stays a NaN of the same sign."""
    bits = np.arange(65536, dtype=np.uint16)
    bits = np.concatenate([bits[31744:], bits[:31744]])[:count]  # the tails start with inf / NaN patterns
    x = bits.view(np.float16)
    g = Q()
    y = g.op("Dequantize", g.input(x.copy()))
    got = g.run(y)
    want = x.astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.array_equal(np.signbit(got[nan]), np.signbit(want[nan]))


def test_dequantize_constant_weights():
    """A Dequantize of int8 constants (folded at load) feeding a float op."""
    rng = np.random.default_rng(1350)
    w, ws = sym_weights(rng, (6, 10), 0, 6)
    x = rng.normal(size=(2, 10)).astype(np.float32)
    g = Q()
    wd = g.op("Dequantize", g.const(w, ws, axis=0))
    y = g.op("FullyConnected", g.input(x), wd)
    got = g.run(y)
    wf = R.dequantize(w, ws, 0, axis=0)
    np.testing.assert_allclose(got, ref.fully_connected(x, wf), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("src,dst", [("int8", "int8"), ("uint8", "int8"), ("int8", "int16"), ("int16", "int8"),
                                     ("int8", "uint8")])
def test_requantize(src, dst):
    rng = np.random.default_rng(1400)
    info = np.iinfo(src)
    x = rng.integers(info.min, info.max, size=(3, 40), endpoint=True).astype(src)
    iq = (np.float32(0.07), {"int8": 5, "uint8": 130, "int16": -40}[src])
    for oq in [(np.float32(0.02), {"int8": -100, "uint8": 10, "int16": 0}[dst]), (np.float32(0.5), 0)]:
        g = Q()
        y = g.op("Quantize", g.input(x, iq), q=oq, dtype={"int8": 3, "uint8": 4, "int16": 7}[dst])
        same(g.run(y), R.requantize(x, iq, oq, dst))


def test_requantize_int8_every_value():
    """int8 -> int8 (a 256-entry table, looked up 32 at a time with
    AVX-512BW): every int8 value, shuffled, plus a tail; multipliers below
    and above 1, zero points at the ends."""
    rng = np.random.default_rng(1410)
    x = np.concatenate([rng.permutation(np.arange(-128, 128, dtype=np.int8)), rand_i8(rng, 45)])
    for iq, oq in [((np.float32(0.07), 5), (np.float32(0.02), -100)), ((np.float32(0.3), -128), (np.float32(0.5), 127)),
                   ((np.float32(0.011), 127), (np.float32(0.0007), 0)), ((np.float32(1.0), 0), (np.float32(1.0), 3))]:
        g = Q()
        y = g.op("Quantize", g.input(x, iq), q=oq, dtype=3)
        same(g.run(y), R.requantize(x, iq, oq, "int8"))


# ----------------------------------------------------------------------------
# Data movement on int8: the elements move, the parameters follow

def movement_cases(x):
    return [
        ("Reshape", dict(shape=[4, -1]), lambda a: a.reshape(4, -1)),
        ("Transpose", dict(perm=[2, 0, 1]), lambda a: a.transpose(2, 0, 1)),
        ("Pad", dict(pads=[1, 0, 0, 2, 1, 1]), None),
        ("Slice", dict(begin=[0, 1, 1], size=[2, -1, 3]), lambda a: a[0:2, 1:, 1:4]),
        ("StridedSlice", dict(begin=[0, 0, 4], end=[2, 3, 0], strides=[1, 2, -2]), lambda a: a[0:2, 0:3:2, 4:0:-2]),
        ("Squeeze", dict(axes=[]), lambda a: a),
        ("ExpandDims", dict(axis=1), lambda a: a[:, None]),
    ]


@pytest.mark.parametrize("case", range(7))
def test_movement_ops(case):
    rng = np.random.default_rng(1500 + case)
    x = rand_i8(rng, 2, 4, 6)
    q = (np.float32(0.1), -9)
    op, attrs, f = movement_cases(x)[case]
    g = Q()
    y = g.op(op, g.input(x, q), **attrs)
    d = g.op("Dequantize", y)  # parameters must have followed
    g.b.output(y)
    g.b.output(d)
    with g.b.load() as m:
        got, got_d = m.run(g.feeds)
    want = f(x) if f else np.pad(x, ((1, 0), (0, 2), (1, 1)), constant_values=q[1])  # pads with the zero point
    same(got, want)
    same(got_d, R.dequantize(want, q[0], q[1]))


def test_movement_ops_more():
    rng = np.random.default_rng(1600)
    q = (np.float32(0.2), 3)
    x = rand_i8(rng, 1, 4, 4, 8)
    idx = np.array([2, 0, 3], np.int32)
    checks = [
        ("Gather", (idx,), dict(axis=3), lambda a: np.take(a, idx, axis=3)),
        ("DepthToSpace", (), dict(block_size=2), lambda a: ref.depth_to_space(a, 2)),
        ("SpaceToDepth", (), dict(block_size=2), lambda a: ref.space_to_depth(a, 2)),
        ("ResizeNearest", (), dict(size=[7, 5]), lambda a: ref.resize_nearest(a, (7, 5))),
    ]
    for op, consts, attrs, f in checks:
        g = Q()
        y = g.op(op, g.input(x, q), *[g.const(c) for c in consts], **attrs)
        d = g.op("Dequantize", y)
        g.b.output(y)
        g.b.output(d)
        with g.b.load() as m:
            got, got_d = m.run(g.feeds)
        want = f(x)
        same(got, want.astype(np.int8))
        same(got_d, R.dequantize(want, q[0], q[1]))
    g = Q()
    ys = g.op("Split", g.input(x, q), outputs=2, axis=3)
    got = g.run(*ys)
    same(got[0], x[..., :4])
    same(got[1], x[..., 4:])


# ----------------------------------------------------------------------------
# Issue 14: ResizeBilinear, ResizeNearest, Maximum and Minimum on int8

RESIZE_CASES = [((1, 4, 5, 3), (7, 9)), ((1, 64, 64, 16), (128, 128)), ((2, 6, 7, 17), (3, 4)),
                ((1, 5, 5, 1), (1, 1)), ((1, 1, 1, 8), (4, 3)), ((1, 9, 4, 33), (20, 13)),
                ((1, 8, 8, 4), (8, 8)), ((1, 3, 11, 2), (5, 2)), ((1, 2, 2, 40), (57, 31)),
                ((1, 8, 1, 4), (129, 55))]  # the reference's lower index would pass the last row (bounded here)
RESIZE_MODES = [dict(), dict(align_corners=1), dict(half_pixel_centers=1)]


@pytest.mark.parametrize("case", range(len(RESIZE_CASES)))
@pytest.mark.parametrize("mode", range(3))
def test_resize_bilinear(case, mode):
    """TFLite's integer ResizeBilinear (reference_int8.resize_bilinear) bit for
    bit: upsampling, downsampling, one pixel in or out, batches, channel
    counts around the vector widths, each mode; one and two threads; the
    output keeps the input's parameters."""
    xs, size = RESIZE_CASES[case]
    attrs = RESIZE_MODES[mode]
    rng = np.random.default_rng(5100 + 10 * case + mode)
    for trial in range(3):
        x = rand_i8(rng, *xs)
        if trial == 1:
            x = np.where(rng.random(xs) < 0.5, np.int8(-128), np.int8(127)).astype(np.int8)  # extremes
        q = rand_q(rng)
        want = R.resize_bilinear(x, size, **{k: bool(v) for k, v in attrs.items()})
        for threads in (1, 2):
            g = Q()
            y = g.op("ResizeBilinear", g.input(x, q), q=q, size=list(size), **attrs)
            d = g.op("Dequantize", y)
            g.b.output(y)
            g.b.output(d)
            with g.b.load(threads=threads) as m:
                got, got_d = m.run(g.feeds)
            same(got, want)
            same(got_d, R.dequantize(want, q[0], q[1]))


@pytest.mark.parametrize("mode", range(3))
def test_resize_bilinear_close_to_float(mode):
    """On a smooth image the integer interpolation stays within 1.5 steps of
    the float kernel's on the dequantized input: its rounding (half a step)
    plus the 10-bit scale and weights (the coordinates off by up to half a
    1024th of an input pixel per output pixel; 1.07 steps seen here)."""
    attrs = RESIZE_MODES[mode]
    rng = np.random.default_rng(5200 + mode)
    yy, xx = np.meshgrid(np.linspace(0, 3, 12), np.linspace(0, 2, 10), indexing="ij")
    real = np.sin(yy + xx)[None, :, :, None] * rng.uniform(0.5, 1.5, (1, 1, 1, 5))
    q = (np.float32(2.0 / 255), -1)
    x = R.quantize(real.astype(np.float32), q[0], q[1])
    for size in ((24, 20), (7, 5), (31, 29)):
        g = Q()
        y = g.op("ResizeBilinear", g.input(x, q), q=q, size=list(size), **attrs)
        got = g.run(y)
        same(got, R.resize_bilinear(x, size, **{k: bool(v) for k, v in attrs.items()}))
        flt = ref.resize_bilinear(deq(x, q), size, **attrs)
        assert np.abs(deq(got, q) - flt).max() <= 1.5 * q[0] + 1e-6


def test_resize_bilinear_refuses():
    x = np.zeros((1, 4, 4, 2), np.int8)
    g = Q()
    y = g.op("ResizeBilinear", g.input(x, (np.float32(0.1), 0)), q=(np.float32(0.2), 0), size=[8, 8])
    refuses(lambda: g.run(y), "keeps the input's quantization")
    g = Q()
    y = g.op("ResizeBilinear", g.input(x.astype(np.uint8), (np.float32(0.1), 0)), q=(np.float32(0.1), 0), size=[8, 8])
    refuses(lambda: g.run(y), "uint8")


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("mode", range(3))
@pytest.mark.parametrize("xs,size", [((2, 5, 7, 3), (11, 4)), ((1, 80, 80, 24), (160, 160)), ((1, 6, 6, 1), (3, 5)),
                                     ((1, 1, 3, 9), (2, 8))])
def test_resize_nearest_int8_bytes(dtype, mode, xs, size):
    """ResizeNearest moves 8-bit elements as they are for every attribute,
    with batches, and the parameters follow (the Dequantize of the result)."""
    attrs = RESIZE_MODES[mode]
    rng = np.random.default_rng(5300 + mode + sum(xs))
    x = rng.integers(-128, 128, xs).astype(np.int8).view(dtype)
    q = (np.float32(0.05), 7 if dtype == np.int8 else 130)
    g = Q()
    y = g.op("ResizeNearest", g.input(x, q), size=list(size), **attrs)
    d = g.op("Dequantize", y)
    g.b.output(y)
    g.b.output(d)
    with g.b.load(threads=2) as m:
        got, got_d = m.run(g.feeds)
    want = ref.resize_nearest(x, size, **attrs)
    same(got, want.astype(dtype))
    same(got_d, R.dequantize(want, q[0], q[1]))


MINMAX_SHAPES = BINARY_SHAPES + [((4099,), (1,)), ((1,), (4099,)), ((1, 40, 40, 96), (1,)), ((3, 600, 5), (3, 1, 1)),
                                 ((1, 9, 11, 24), (1, 1, 1, 24)), ((1, 1, 5), (2, 30, 31, 5)), ((1, 1), (7, 1))]


@pytest.mark.parametrize("op", ["Maximum", "Minimum"])
@pytest.mark.parametrize("case", range(len(MINMAX_SHAPES)))
def test_maximum_minimum(op, case):
    """int8 Maximum / Minimum (TFLite's: raw values, inputs and output with
    one set of parameters) with numpy broadcasting: rows, one value against a
    tensor on either side, per-channel rows, tails; in place."""
    sa, sb = MINMAX_SHAPES[case]
    rng = np.random.default_rng(5400 + case + 50 * len(op))
    f = R.maximum if op == "Maximum" else R.minimum
    fr = np.maximum if op == "Maximum" else np.minimum
    for trial in range(3):
        a, b = rand_i8(rng, *sa), rand_i8(rng, *sb)
        q = rand_q(rng)
        g = Q()
        if trial == 2 and b.size == 1:  # a constant operand (Maximum(x, 0) of a Relu written out)
            y = g.op(op, g.input(a, q), g.const(b, [q[0]], [q[1]]), q=q)
        else:
            y = g.op(op, g.input(a, q), g.input(b, q), q=q)
        got = g.run(y)
        same(got, f(a, b))
        np.testing.assert_array_equal(deq(got, q), fr(deq(a, q), deq(b, q)))


def test_maximum_minimum_refuse_other_parameters():
    """Raw comparison is only the real one with shared parameters: other ones are refused, not misread."""
    x = np.zeros((3, 4), np.int8)
    for op in ("Maximum", "Minimum"):
        g = Q()
        y = g.op(op, g.input(x, (np.float32(0.1), 0)), g.input(x, (np.float32(0.2), 0)), q=(np.float32(0.1), 0))
        refuses(lambda: g.run(y), "must share their quantization")
        g = Q()
        y = g.op(op, g.input(x, (np.float32(0.1), 0)), g.input(x, (np.float32(0.1), 0)), q=(np.float32(0.1), 1))
        refuses(lambda: g.run(y), "keeps its inputs' quantization")


# ----------------------------------------------------------------------------
# Work split over threads (shapes large enough for the kernels to split)

@pytest.mark.parametrize("threads", [2, 4])
def test_threaded_kernels(threads):
    rng = np.random.default_rng(1650 + threads)
    q_in = (np.float32(0.05), 7)
    # FullyConnected, one row: the outputs are split
    x = rand_i8(rng, 1, 600)
    w, ws = sym_weights(rng, (300, 600), 0, 300, -3.5, -2.5)
    yq = (np.float32(0.2), -3)
    g = Q()
    y = g.op("FullyConnected", g.input(x, q_in), g.const(w, ws, axis=0), q=yq)
    same(g.run(y, threads=threads), R.fully_connected(x, q_in, w, (ws, 0), None, yq))
    # Conv2D and DepthwiseConv2D: pixels are split
    x = rand_i8(rng, 1, 20, 20, 32)
    w, ws = sym_weights(rng, (24, 3, 3, 32), 0, 24, -3.5, -2.5)
    g = Q()
    y = g.op("Conv2D", g.input(x, q_in), g.const(w, ws, axis=0), q=yq, padding=1, strides=[1, 1])
    same(g.run(y, threads=threads), R.conv2d(x, q_in, w, ws, None, yq, padding=1))
    x = rand_i8(rng, 1, 32, 32, 64)
    w, ws = sym_weights(rng, (1, 3, 3, 64), 3, 64, -2.5, -1.5)
    g = Q()
    y = g.op("DepthwiseConv2D", g.input(x, q_in), g.const(w, ws, axis=3), q=yq, padding=1)
    same(g.run(y, threads=threads), R.depthwise_conv2d(x, q_in, w, ws, None, yq, padding=1))
    # pooling rows, softmax rows, activation elements
    x = rand_i8(rng, 2, 40, 40, 48)
    for op, f in (("AveragePool2D", R.average_pool2d), ("MaxPool2D", R.max_pool2d)):
        g = Q()
        y = g.op(op, g.input(x, q_in), q=q_in, filter=[3, 3], strides=[1, 1], padding=1)
        same(g.run(y, threads=threads), f(x, q_in, (3, 3), (1, 1), 1))
    x = rand_i8(rng, 64, 100)
    g = Q()
    y = g.op("Softmax", g.input(x, q_in), q=SOFTMAX_OUT)
    same(g.run(y, threads=threads), R.softmax(x, q_in))
    x = rand_i8(rng, 600, 1000)
    g = Q()
    y = g.op("Tanh", g.input(x, q_in), q=(np.float32(1 / 128), 0))
    same(g.run(y, threads=threads), R.tanh(x, q_in, (np.float32(1 / 128), 0)))


# ----------------------------------------------------------------------------
# A small network end to end

def test_small_network():
    rng = np.random.default_rng(1700)
    x = (rng.normal(size=(1, 12, 12, 3)) * 2).astype(np.float32)
    q_in = (np.float32(0.05), -1)
    w1, s1 = sym_weights(rng, (8, 3, 3, 3), 0, 8)
    b1 = rng.integers(-500, 500, size=8).astype(np.int32)
    w2, s2 = sym_weights(rng, (1, 3, 3, 8), 3, 8)
    w3, s3 = sym_weights(rng, (5, 8), 0, 5)
    q1, q2, q3, q4, q5 = [rand_q(rng, -2, -0.5) for _ in range(5)]
    g = Q()
    xi = g.input(x)
    h = g.op("Quantize", xi, q=q_in, dtype=3)
    h = g.op("Conv2D", h, g.const(w1, s1, axis=0), g.const(b1), q=q1, padding=1, activation=2)
    h = g.op("DepthwiseConv2D", h, g.const(w2, s2, axis=3), q=q2, padding=1, strides=[2, 2], activation=1)
    h = g.op("MaxPool2D", h, q=q2, filter=[2, 2])
    h = g.op("Mean", h, q=q3, axes=[1, 2])
    h = g.op("FullyConnected", h, g.const(w3, s3, axis=0), q=q4)
    h2 = g.op("Add", h, h, q=q5)
    h = g.op("Softmax", h2, q=SOFTMAX_OUT)
    y = g.op("Dequantize", h)
    got = g.run(y, threads=2)
    r = R.quantize(x, q_in[0], q_in[1])
    r = R.conv2d(r, q_in, w1, s1, b1, q1, padding=1, activation=2)
    r = R.depthwise_conv2d(r, q1, w2, s2, None, q2, strides=(2, 2), padding=1, activation=1)
    r = R.max_pool2d(r, q2, (2, 2))
    r = R.mean(r, q2, q3, (1, 2))
    r = R.fully_connected(r, q3, w3, (s3, 0), None, q4)
    r = R.add(r, q4, r, q4, q5)
    r = R.softmax(r, q5)
    same(got, R.dequantize(r, SOFTMAX_OUT[0], SOFTMAX_OUT[1]))


# ----------------------------------------------------------------------------
# Refusals

def _fc(xq=(np.float32(0.1), 0), wq=((np.float32(0.01),), (0,), None), yq=(np.float32(0.1), 0), x_dtype=np.int8,
        w_dtype=np.int8, bias=None):
    g = Q()
    x = np.zeros((2, 4), x_dtype)
    xi = g.input(x, xq)
    w = g.const(np.ones((3, 4), w_dtype))
    if wq is not None:
        g.b.quantization(w, wq[0], wq[1], axis=wq[2])
    y = g.op("FullyConnected", xi, w, bias, q=yq)
    return g.run(y)


def test_refuses_missing_parameters():
    refuses(lambda: _fc(xq=None), "no quantization parameters")
    refuses(lambda: _fc(wq=None), "no quantization parameters")
    refuses(lambda: _fc(yq=None), "no quantization parameters")


def test_refuses_bad_per_channel_weights():
    # two scales for three output channels
    refuses(lambda: _fc(wq=((0.1, 0.2), (0, 0), 0)), "one scale per output channel")
    # per-channel along the wrong axis
    refuses(lambda: _fc(wq=((0.1, 0.2, 0.3, 0.4), (0, 0, 0, 0), 1)), "one scale per output channel")
    # asymmetric per-channel weights
    refuses(lambda: _fc(wq=((0.1, 0.2, 0.3), (0, 1, 0), 0)), "zero point")
    # per-channel input activations
    refuses(lambda: _fc(xq=((0.1, 0.2, 0.3, 0.4), (0, 0, 0, 0))), "per tensor")
    # Conv2D weights with a zero point
    g = Q()
    y = g.op("Conv2D", g.input(np.zeros((1, 4, 4, 2), np.int8), (np.float32(0.1), 0)),
             g.const(np.ones((3, 1, 1, 2), np.int8), [0.1], [2]), q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "zero point")
    # depthwise scales along dim 0
    g = Q()
    y = g.op("DepthwiseConv2D", g.input(np.zeros((1, 4, 4, 3), np.int8), (np.float32(0.1), 0)),
             g.const(np.ones((1, 1, 1, 3), np.int8), [0.1, 0.2, 0.3], 0, axis=0), q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "axis 3")


def test_refuses_wrong_dtypes():
    refuses(lambda: _fc(x_dtype=np.uint8), "uint8")
    refuses(lambda: _fc(bias=None, w_dtype=np.int16), "int8")
    g = Q()
    xi = g.input(np.zeros((2, 4), np.int8), (np.float32(0.1), 0))
    y = g.op("FullyConnected", xi, g.const(np.ones((3, 4), np.int8), [0.1]), g.const(np.zeros(3, np.float32)),
             q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "int32 bias")


@pytest.mark.parametrize("op", ["Div"])
def test_refuses_binary_without_int8_kernel(op):
    g = Q()
    a = g.input(np.zeros((3,), np.int8), (np.float32(0.1), 0))
    b = g.input(np.zeros((3,), np.int8), (np.float32(0.1), 0))
    y = g.op(op, a, b, q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "no int8 kernel")


@pytest.mark.parametrize("op", ["Exp", "Gelu", "LogSoftmax", "Sqrt"])
def test_refuses_unary_without_int8_kernel(op):
    g = Q()
    y = g.op(op, g.input(np.zeros((3,), np.int8), (np.float32(0.1), 0)), q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "no int8 kernel")


def test_refuses_fixed_output_parameters():
    g = Q()
    y = g.op("Softmax", g.input(np.zeros((2, 5), np.int8), (np.float32(0.1), 0)), q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "1/256")
    g = Q()
    x = g.input(np.zeros((1, 4, 4, 2), np.int8), (np.float32(0.1), 0))
    y = g.op("MaxPool2D", x, q=(np.float32(0.2), 0), filter=[2, 2])
    refuses(lambda: g.run(y), "keeps the input's quantization")
    g = Q()
    y = g.op("HardSwish", g.input(np.zeros((4,), np.int8), (np.float32(1.0), 0)), q=(np.float32(1e-3), 0))
    refuses(lambda: g.run(y), "HardSwish")
    g = Q()
    x = g.input(np.zeros((1, 4, 4, 2), np.int8), (np.float32(0.1), 0))
    y = g.op("AveragePool2D", x, q=(np.float32(0.1), 0), filter=[2, 2], count_include_pad=1)
    refuses(lambda: g.run(y), "count_include_pad")


def test_refuses_quantize_misuse():
    x = np.zeros((2, 3), np.float32)
    g = Q()
    y = g.op("Quantize", g.input(x), q=(np.float32(0.1), 0))
    refuses(lambda: g.run(y), "dtype")
    g = Q()
    y = g.op("Quantize", g.input(x), dtype=3)
    refuses(lambda: g.run(y), "no quantization parameters")
    g = Q()
    y = g.op("Quantize", g.input(x), dtype=5)
    refuses(lambda: g.run(y), "dtype")
    g = Q()
    y = g.op("Quantize", g.input(x), q=(np.float32(0.1), 300), dtype=3)
    refuses(lambda: g.run(y), "zero point")
    g = Q()
    q = g.op("Quantize", g.input(x), dtype=3)
    g.b.quantization(q, [0.1, 0.2], [0, 0], axis=1)  # 2 scales for a dim of 3
    refuses(lambda: g.run(q), "per-axis")
    g = Q()
    y = g.op("Dequantize", g.input(x))
    refuses(lambda: g.run(y), "Dequantize takes")
    g = Q()
    y = g.op("Dequantize", g.input(np.zeros(3, np.int8)))
    refuses(lambda: g.run(y), "no quantization parameters")
    g = Q()
    y = g.op("Dequantize", g.input(np.zeros(3, np.float16), (np.float32(0.1), 0)))
    refuses(lambda: g.run(y), "float16")
    g = Q()
    y = g.op("Quantize", g.input(np.zeros(3, np.int8), (np.float32(0.1), 0)), q=(np.float32(0.1), 0), dtype=3, mode=1)
    refuses(lambda: g.run(y), "mode")


def test_refuses_softmax_too_long():
    g = Q()
    y = g.op("Softmax", g.input(np.zeros((1, 5000), np.int8), (np.float32(0.1), 0)), q=SOFTMAX_OUT)
    refuses(lambda: g.run(y), "4095")
