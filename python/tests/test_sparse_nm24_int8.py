"""The int8 2:4 kernel (Kernels/SparseGemm.swift `bindInt8NM24`, `q8_nm24` in
kernels/sparse_kernels.inc): int8 1x1 Conv2D and FullyConnected of several
rows whose weights are 2:4. int32 sums are exact, so the outputs must equal
the dense int8 kernels' byte for byte (sparse=False loads), with the float32
output stage of int8-static models and with the fixed-point one, at each
forced CPU level (the AVX2 shuffles, the lane-by-lane code elsewhere)."""

import numpy as np
import pytest

import tinyinfer
from test_sparse import conv1x1_model, fc_model
from test_sparse_nm24 import chosen_at_level, nm24_ops, nm24_weights, pruned_conv_fc, sparse_ops


def quantized(data, calib, requant="float32"):
    return tinyinfer.quantize(data, mode="int8-static", calib=calib, requantization=requant).data


def check_equal(q, x, expect_nm24=True):
    with tinyinfer.load(q, sparse="always") as s, tinyinfer.load(q, sparse=False) as d:
        assert bool(nm24_ops(s)) == expect_nm24, s.passes
        assert not sparse_ops(d)
        ys, yd = s.run(x)[0], d.run(x)[0]
        assert ys.dtype == yd.dtype
        np.testing.assert_array_equal(ys, yd)
        return ys


# (pixels H x W, cout, cin, activation, bias): row counts on both sides of
# the kernel's 8-row step, cout not a multiple of 8, cin a multiple of 4 but
# not of 8 (a half-empty last group), one group to many (the dense 1x1
# kernel up to 128 inputs, the packed GEMM beyond).
CONV_CASES = [((1, 2), 8, 4, 0, True), ((1, 3), 13, 8, 1, False), ((2, 2), 36, 12, 2, True),
              ((1, 5), 7, 20, 3, True), ((2, 4), 17, 24, 0, False), ((3, 3), 24, 32, 1, True),
              ((4, 4), 100, 64, 2, True), ((7, 9), 144, 24, 1, True), ((5, 11), 40, 132, 0, True),
              ((6, 6), 9, 388, 3, False), ((13, 13), 33, 16, 0, True), ((3, 5), 96, 384, 1, True)]


@pytest.mark.parametrize("hw,cout,cin,act,bias", CONV_CASES)
@pytest.mark.parametrize("requant", ["float32", "fixed"])
def test_conv1x1_equals_dense_byte_for_byte(rng, hw, cout, cin, act, bias, requant):
    w = nm24_weights(rng, cout, cin, fewer=0.04)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    shape = (1, hw[0], hw[1], cin)
    calib = [rng.standard_normal(shape).astype(np.float32) * s + 0.7 for s in (1.0, 2.0)]
    q = quantized(conv1x1_model(w, b, shape, act), calib, requant)
    check_equal(q, rng.standard_normal(shape).astype(np.float32) * 1.5 + 0.7)


@pytest.mark.parametrize("m,n,k,act", [(2, 10, 8, 0), (3, 64, 40, 1), (8, 23, 16, 2), (9, 8, 100, 0),
                                       (45, 70, 256, 3), (70, 130, 128, 1)])
def test_fully_connected_of_several_rows_equals_dense(rng, m, n, k, act):
    w = nm24_weights(rng, n, k)
    b = rng.standard_normal(n).astype(np.float32)
    calib = [rng.standard_normal((m, k)).astype(np.float32) * 2 for _ in range(2)]
    q = quantized(fc_model(w, b, m, act), calib)
    check_equal(q, rng.standard_normal((m, k)).astype(np.float32))


def test_extreme_inputs_and_weights(rng):
    """Inputs at the ends of int8 (the zero point far from 0) and weights of
    -128 and 127 (the pair sums of the shuffled products at their largest)."""
    cout, cin, shape = 24, 64, (1, 4, 6, 64)
    w = nm24_weights(rng, cout, cin)
    w[w != 0] = np.sign(w[w != 0]) * 3.0
    w[0, :] = 0
    w[0, 0:2] = [-3.0, 2.9]  # per-channel symmetric scales: -127/-128 and 127 once quantized
    calib = [np.abs(rng.standard_normal(shape)).astype(np.float32) * 4 for _ in range(2)]
    q = quantized(conv1x1_model(w, None, shape, 0), calib)
    x = np.where(rng.random(shape) < 0.5, 100.0, -100.0).astype(np.float32)
    check_equal(q, x)


def test_what_is_not_2_4_does_not_take_it(rng):
    """A group with 3 nonzeros, k not a multiple of 4, and one row: other
    kernels (or dense), the same outputs as the dense load."""
    w3 = nm24_weights(rng, 24, 32)
    w3[5, 8:11] = [1.0, -2.0, 0.5]
    shape = (1, 4, 4, 32)
    check_equal(quantized(conv1x1_model(w3, None, shape), [rng.standard_normal(shape).astype(np.float32)]),
                rng.standard_normal(shape).astype(np.float32), expect_nm24=False)
    w = nm24_weights(rng, 24, 32)
    q = quantized(fc_model(w, None, 1), [rng.standard_normal((1, 32)).astype(np.float32)])
    with tinyinfer.load(q, sparse="always") as s:
        assert not nm24_ops(s), s.passes


def test_nm_pruned_int8_static_model_equals_its_dense_load(rng, tmp_path):
    """`tinyinfer.prune(..., method="nm", pattern="2:4")`, then int8-static:
    the 1x1 layer and the batch FullyConnected (64 inputs: its double output
    stage is not fused) on the 2:4 kernel (the default load at AVX2,
    `always` everywhere), byte for byte the dense load."""
    out, xv = pruned_conv_fc(rng, tmp_path, 64)
    q = quantized(out.read_bytes(), [xv, xv * 2])
    with tinyinfer.load(q, sparse="always") as s, tinyinfer.load(q, sparse=False) as d, tinyinfer.load(q) as a:
        assert len(nm24_ops(s)) == 2, s.passes
        y = d.run(xv)[0]
        np.testing.assert_array_equal(s.run(xv)[0], y)
        np.testing.assert_array_equal(a.run(xv)[0], y)
        if tinyinfer.info()["isa"] == "avx2":
            assert len(nm24_ops(a)) == 2, a.passes


LEVEL_SCRIPT = r"""
import sys, numpy as np, tinyinfer
sys.path.insert(0, sys.argv[1])
import test_sparse_nm24 as t
rng = np.random.default_rng(7)
auto = []
for requant in ("float32", "fixed"):
    for (cout, cin, hw) in ((37, 72, (9, 7)), (20, 132, (3, 3)), (24, 16, (1, 2))):
        w = t.nm24_weights(rng, cout, cin, fewer=0.04); b = rng.standard_normal(cout).astype(np.float32)
        shape = (1, hw[0], hw[1], cin)
        x = rng.standard_normal(shape).astype(np.float32)
        q = tinyinfer.quantize(t.conv1x1_model(w, b, shape, 1), mode="int8-static", calib=[x, x * 2],
                               requantization=requant).data
        with tinyinfer.load(q, sparse="always") as s, tinyinfer.load(q, sparse=False) as d, \
                tinyinfer.load(q) as a:
            assert len(t.nm24_ops(s)) == 1, s.passes
            y = d.run(x)[0]
            np.testing.assert_array_equal(s.run(x)[0], y)
            np.testing.assert_array_equal(a.run(x)[0], y)
            # the default load: the float32 output stage, or 64 inputs and more
            if requant == "float32" or cin >= 64:
                auto.append(len(t.nm24_ops(a)))
info = tinyinfer.info()
# the int8 kernels are AVX2's at the AVX-512 level without VNNI
print(info["isa"], min(auto), int("avx512vnni" in info["cpu_features"]))
"""


@pytest.mark.parametrize("level", ["baseline", "avx2", "avx512"])
def test_at_each_cpu_level_and_where_it_is_chosen_by_itself(level):
    """The default load takes it wherever the dense int8 kernels are AVX2's
    (the AVX2 level, and AVX-512 without VNNI: the same 256-bit kernel),
    never against VNNI's vpdpbusd (0.1-0.5x there) or at baseline."""
    chosen, vnni = chosen_at_level(LEVEL_SCRIPT, level)
    assert chosen == (level == "avx2" or (level == "avx512" and not vnni))
