"""int8 Add, Sub and PRelu over every int8 input, and int8 MaxPool2D over
channel counts around every level's vector widths, bit for bit against the
numpy references of TFLite's integer arithmetic (reference_int8).

Issue 14: Add/Sub and PRelu with a constant per-channel slope run as
floor-linear functions of their int8 inputs where constants chosen at bind
time reproduce the fixed-point result on every input (QLinearFit); these
tests feed every input value (all 65536 Add pairs, all 256 PRelu values
per channel) for many random and extreme quantization parameters, so any
constant that is off for one input shows. scripts/test.sh runs them at
every forced CPU level (TINYINFER_ISA)."""

import numpy as np
import pytest

import reference_int8 as R
from test_ops_int8 import Q, rand_i8, rand_q, same

EXTREME = [((np.float32(0.05), -128), (np.float32(0.05), 127), (np.float32(0.1), 0)),  # equal scales
           ((np.float32(1.0), 127), (np.float32(0.001), -128), (np.float32(0.004), -128)),  # ratio 1000
           ((np.float32(0.02), 0), (np.float32(0.03), 5), (np.float32(0.0005), 3)),  # output finer than inputs
           ((np.float32(0.25), 1), (np.float32(0.125), -1), (np.float32(0.5), 0))]  # powers of two (ties)


def near_q(rng, scale, spread=0.6):
    """Parameters of a scale within 10^+-spread of `scale` (a model's neighbouring tensors), zero point random."""
    return (np.float32(scale * 10 ** rng.uniform(-spread, spread)), int(rng.integers(-128, 128)))


def _pairs(extra=0):
    """Every (a, b) int8 pair, plus `extra` trailing elements (a tail shorter than a vector)."""
    v = np.arange(-128, 128, dtype=np.int8)
    a, b = np.repeat(v, 256), np.tile(v, 256)
    if extra:
        a, b = np.concatenate([a, v[:extra]]), np.concatenate([b, v[-extra:]])
    return a, b


@pytest.mark.parametrize("op", ["Add", "Sub"])
@pytest.mark.parametrize("trial", range(12))
def test_add_sub_every_input_pair(op, trial):
    rng = np.random.default_rng(1400 + trial)
    if trial < len(EXTREME):
        aq, bq, yq = EXTREME[trial]
    elif trial < 8:  # any parameters (mostly the fixed-point kernel: slopes too steep for int32 lanes)
        aq, bq, yq = rand_q(rng, -3, 0.5), rand_q(rng, -3, 0.5), rand_q(rng, -3, 0.5)
    else:  # a model's parameters (the floor-linear kernel)
        aq = rand_q(rng, -3, 0.5)
        bq, yq = near_q(rng, aq[0]), near_q(rng, aq[0])
    act = trial % 4
    a, b = _pairs(extra=trial % 7)
    f = R.add if op == "Add" else R.sub
    for shape in ((a.size,), (1, 4, a.size // 64, 16) if trial % 7 == 0 else (a.size,)):
        g = Q()
        y = g.op(op, g.input(a.reshape(shape), aq), g.input(b.reshape(shape), bq), q=yq, activation=act)
        same(g.run(y), f(a, aq, b, bq, yq, act).reshape(shape))


@pytest.mark.parametrize("c", [3, 16, 24, 64])
def test_add_per_channel_row_every_value(c):
    """The broadcast row of C values against a full tensor (the per-channel path) with every int8 value."""
    rng = np.random.default_rng(1450 + c)
    for k in range(4):
        aq = rand_q(rng, -3, 0.5)
        bq, yq = near_q(rng, aq[0]), near_q(rng, aq[0])
        x = np.resize(np.arange(-128, 128, dtype=np.int8), (1, 256, 3, c))
        row = rand_i8(rng, c)
        g = Q()
        y = g.op("Add", g.input(x, aq), g.input(row, bq), q=yq, activation=k)
        same(g.run(y), R.add(x, aq, row, bq, yq, k))


@pytest.mark.parametrize("c", [1, 3, 16, 24, 40, 64, 128])
@pytest.mark.parametrize("trial", range(6))
def test_prelu_constant_slope_every_value(c, trial):
    """Every int8 x on every channel, the slopes random, every int8 slope value and the extremes of the zero
    points; one and two threads."""
    rng = np.random.default_rng(1500 + 10 * c + trial)
    xq, aq, yq = rand_q(rng, -2, 0.5), rand_q(rng, -3, -1), rand_q(rng, -2, 0.5)
    if trial == 1:
        xq, aq, yq = (xq[0], -128), (aq[0], 127), (np.float32(xq[0] * 0.3), 0)  # no x below zp_x; multiplier > 1
    if trial == 2:
        xq, aq, yq = (xq[0], 127), (aq[0], -128), (np.float32(xq[0] * 7.0), -128)
    if trial == 3:
        xq, aq, yq = (np.float32(0.5), 0), (np.float32(0.25), 0), (np.float32(1.0), 0)  # exact halves
    x = np.repeat(np.arange(-128, 128, dtype=np.int8), c).reshape(1, 256, 1, c)
    x = np.concatenate([x, rand_i8(rng, 1, 256, 1, c)], axis=2)
    if trial == 4:
        a = np.resize(np.arange(-128, 128, dtype=np.int8), (c,))
    else:
        a = rand_i8(rng, c)
    g = Q()
    y = g.op("PRelu", g.input(x, xq), g.const(a, aq[0], aq[1]), q=yq)
    same(g.run(y, threads=1 + trial % 2), R.prelu(x, xq, a, aq, yq))


@pytest.mark.parametrize("c", [1, 15, 16, 17, 31, 32, 33, 64, 65, 129])
def test_max_pool_channel_widths(c):
    """Channel counts around 4, 8, 16, 32 and 64 bytes (every level's vectors and their tails), padded and
    strided windows, the int8 ends, each activation."""
    rng = np.random.default_rng(1600 + c)
    for k, (filt, strides, padding, pads) in enumerate(
            (((2, 2), (2, 2), 0, (0, 0, 0, 0)), ((3, 3), (2, 2), 1, (0, 0, 0, 0)),
             ((3, 2), (1, 2), 2, (1, 1, 0, 1)), ((1, 1), (1, 1), 0, (0, 0, 0, 0)))):
        x = rand_i8(rng, 2, 7, 6, c)
        if k == 2:
            x[...] = rng.choice(np.array([-128, 127, -127, 126], np.int8), size=x.shape)
        q = rand_q(rng, -2, 0.5)
        g = Q()
        y = g.op("MaxPool2D", g.input(x, q), q=q, filter=filt, strides=strides, padding=padding, pads=pads,
                 activation=k)
        same(g.run(y, threads=1 + k % 2), R.max_pool2d(x, q, filt, strides, padding, pads, k))


def _add_prelu(a, aq, b, bq, tq, slope, sq, yq, act=0, threads=1):
    """int8 Add (output tq) then int8 PRelu with a constant slope: runs the model, returns (output, passes)."""
    g = Q()
    t = g.op("Add", g.input(a, aq), g.input(b, bq), q=tq, activation=act)
    y = g.op("PRelu", t, g.const(slope, sq[0], sq[1]), q=yq)
    g.b.output(y)
    with g.b.load(threads=threads) as m:
        return m.run(g.feeds)[0], m.passes, [op.op for op in m.ops()]


@pytest.mark.parametrize("c", [1, 3, 16, 24, 64])
@pytest.mark.parametrize("trial", range(5))
def test_add_prelu_fused_every_input_pair(c, trial):
    """The int8 PRelu fused into the int8 Add that feeds it (Passes/PReluFusion): every (a, b) pair on every
    channel against the unfused numpy reference, random and extreme parameters, each activation of the Add."""
    rng = np.random.default_rng(1700 + 10 * c + trial)
    aq = rand_q(rng, -3, 0.5)
    bq, tq, yq = (near_q(rng, aq[0]) for _ in range(3))
    sq = rand_q(rng, -3, -1)
    if trial == 4:  # any parameters
        bq, tq, yq = (rand_q(rng, -3, 0.5) for _ in range(3))
    if trial == 1:
        aq, bq, tq, yq = (np.float32(0.05), -128), (np.float32(0.05), 127), (np.float32(0.1), -128), (np.float32(0.02), 0)
    if trial == 2:
        tq, yq = (tq[0], 127), (np.float32(tq[0] * 7.0), -128)
    pa, pb = _pairs()
    a = np.repeat(pa, c).reshape(1, 256, 256, c)
    b = np.repeat(pb, c).reshape(1, 256, 256, c)
    slope = np.resize(np.arange(-128, 128, dtype=np.int8), (c,)) if trial == 3 else rand_i8(rng, c)
    act = trial % 4
    got, passes, kinds = _add_prelu(a, aq, b, bq, tq, slope, sq, yq, act, threads=1 + trial % 2)
    assert any(p.startswith("fuse int8 PRelu") for p in passes) and "PRelu" not in kinds, (passes, kinds)
    same(got, R.prelu(R.add(a, aq, b, bq, tq, act), tq, slope, sq, yq))


# Add + PRelu layers of face_landmark's int8 model: (a, b, sum, alpha, output) (scale, zero point). At AVX2 these
# run the PRelu in 16-bit lanes (add_prelu16_row: the pieces' slopes within int16, 11-14 bits).
FACE_LANDMARK_ADD_PRELU = [
    ((0.03568931, -2), (0.04610343, -1), (0.05961316, -6), (0.00631496, -24), (0.03926808, -75)),
    ((0.03926808, -75), (0.10522851, 39), (0.11255042, 39), (0.00498136, 21), (0.05735364, -45)),
    ((0.04928092, -29), (0.06210049, 27), (0.06256498, 11), (0.00592418, -51), (0.03863550, -61)),
    ((0.04820080, -91), (0.03399781, 41), (0.06403220, -42), (0.00857638, -47), (0.05293907, -77)),
    ((0.01060541, -77), (0.01386311, 26), (0.01767503, -7), (0.00303984, 22), (0.01006011, -109)),
]


@pytest.mark.parametrize("c", [1, 16, 32, 48, 128])
@pytest.mark.parametrize("layer", range(len(FACE_LANDMARK_ADD_PRELU)))
def test_add_prelu_fused_model_parameters(c, layer):
    """A real model's fused Add + PRelu parameters (the ones the 16-bit PRelu kernel takes) with every (a, b)
    pair on every channel, every slope value among the channels, periods 1, 16 (one kernel step) and multiples
    of 16, against the numpy reference."""
    aq, bq, tq, sq, yq = ((np.float32(s), z) for s, z in FACE_LANDMARK_ADD_PRELU[layer])
    rng = np.random.default_rng(1800 + 10 * layer + c)
    pa, pb = _pairs()
    a = np.repeat(pa, c).reshape(1, 256, 256, c)
    b = np.repeat(pb, c).reshape(1, 256, 256, c)
    slope = rng.permutation(np.arange(-128, 128, dtype=np.int8))[:c] if c > 1 else np.array([-100], np.int8)
    got, passes, kinds = _add_prelu(a, aq, b, bq, tq, slope, sq, yq, 0, threads=1 + layer % 2)
    assert "PRelu" not in kinds, kinds
    same(got, R.prelu(R.add(a, aq, b, bq, tq), tq, slope, sq, yq))


def test_add_prelu_not_fused_when_the_sum_is_read_elsewhere():
    """The Add's result also an output of the graph: no fusion, both ops run, both results exact."""
    rng = np.random.default_rng(1790)
    a, b, slope = rand_i8(rng, 1, 5, 5, 16), rand_i8(rng, 1, 5, 5, 16), rand_i8(rng, 16)
    aq, bq, tq, yq, sq = (rand_q(rng, -3, 0.5) for _ in range(5))
    g = Q()
    t = g.op("Add", g.input(a, aq), g.input(b, bq), q=tq)
    y = g.op("PRelu", t, g.const(slope, sq[0], sq[1]), q=yq)
    g.b.output(t, y)
    with g.b.load() as m:
        gt, gy = m.run(g.feeds)
        assert not any(p.startswith("fuse int8 PRelu") for p in m.passes)
    same(gt, R.add(a, aq, b, bq, tq))
    same(gy, R.prelu(R.add(a, aq, b, bq, tq), tq, slope, sq, yq))
