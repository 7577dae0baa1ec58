"""The float32 2:4 kernel (Kernels/SparseGemm.swift, `f32_nm24` in
kernels/sparse_kernels.inc): 1x1 Conv2D and FullyConnected of several rows
whose weights have at most 2 nonzeros in every 4 consecutive input channels,
against a numpy reference of its own (float64), and when it is chosen."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from conftest import assert_close
from test_sparse import conv1x1_model, fc_model

HERE = os.path.dirname(os.path.abspath(__file__))


def nm24_weights(rng, n, k, fewer=0.0):
    """[n, k] with exactly 2 nonzeros at random positions in every group of 4
    inputs (k a multiple of 4); a `fewer` fraction of the groups keep only one
    or none (still 2:4: at most 2)."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    g = w.reshape(n, k // 4, 4)
    keep = np.argsort(rng.random(g.shape), axis=2)[:, :, :2]
    mask = np.zeros(g.shape, bool)
    np.put_along_axis(mask, keep, True, 2)
    drop = rng.random(g.shape[:2]) < fewer
    mask[drop, :] &= rng.random((int(drop.sum()), 4)) < 0.25
    g[~mask] = 0
    return w




def reference(x, w, b, act):
    """x [..., k] float64 times w^T plus b, then the fused activation (none,
    ReLU, ReLU6, ReLU-1..1)."""
    y = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b.astype(np.float64))
    return {0: y, 1: np.maximum(y, 0), 2: np.clip(y, 0, 6), 3: np.clip(y, -1, 1)}[act]


def nm24_ops(model):
    return [p for p in model.passes if p.startswith("sparse kernel") and "2:4 kernel" in p]


def sparse_ops(model):
    return [p for p in model.passes if p.startswith("sparse kernel")]


# (pixels as H x W, cout, cin, activation, bias): 1..many pixels (row counts
# on both sides of the kernel's 8-row step and below 5, where it keeps two
# sets of sums), cout not a multiple of 8 (nor 16, AVX-512's block), cin of
# one group to many.
@pytest.mark.parametrize("hw,cout,cin,act,bias", [
    ((1, 2), 8, 4, 0, True), ((1, 3), 13, 8, 1, False), ((2, 2), 36, 12, 2, True), ((1, 5), 7, 20, 3, True),
    ((2, 4), 17, 24, 0, False), ((3, 3), 24, 32, 1, True), ((4, 4), 100, 64, 2, True), ((7, 9), 144, 24, 1, True),
    ((5, 11), 40, 132, 0, True), ((6, 6), 9, 388, 3, False), ((13, 13), 33, 16, 0, True)])
def test_conv1x1_matches_numpy(rng, hw, cout, cin, act, bias):
    w = nm24_weights(rng, cout, cin, fewer=0.04)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    shape = (1, hw[0], hw[1], cin)
    x = rng.standard_normal(shape).astype(np.float32) * 2
    with tinyinfer.load(conv1x1_model(w, b, shape, act), sparse="always") as s:
        assert len(nm24_ops(s)) == 1, s.passes
        assert_close(s.run(x)[0], reference(x, w, b, act), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,n,k,act", [(2, 10, 8, 0), (3, 64, 40, 1), (8, 23, 16, 2), (9, 8, 100, 0),
                                       (45, 70, 256, 3), (70, 130, 128, 1)])
def test_fully_connected_of_several_rows_matches_numpy(rng, m, n, k, act):
    w = nm24_weights(rng, n, k)
    b = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    with tinyinfer.load(fc_model(w, b, m, act), sparse="always") as s:
        assert len(nm24_ops(s)) == 1, s.passes
        assert_close(s.run(x)[0], reference(x, w, b, act), rtol=1e-5, atol=1e-5)


def test_what_is_not_2_4_does_not_take_it(rng):
    """One row (a GEMV), k not a multiple of 4, a group with 3 nonzeros, and
    2:4 weights sparse enough for the unstructured tiles (1:4, 75% zeros):
    other kernels, the same results."""
    cases = []
    w = nm24_weights(rng, 24, 32)
    cases.append(("one row", fc_model(w, None, 1), w, (1, 32), True))
    w18 = np.concatenate([nm24_weights(rng, 24, 16), np.zeros((24, 2), np.float32)], axis=1)
    w18[:, 16] = 1.5
    cases.append(("k % 4 != 0", conv1x1_model(w18, None, (1, 4, 4, 18)), w18, (1, 4, 4, 18), True))
    w3 = nm24_weights(rng, 24, 32)
    w3[5, 8:11] = [1.0, -2.0, 0.5]
    cases.append(("3 of 4", conv1x1_model(w3, None, (1, 4, 4, 32)), w3, (1, 4, 4, 32), True))
    w14 = nm24_weights(rng, 24, 32)
    w14.reshape(24, 8, 4)[:, :, :][np.arange(24)[:, None], np.arange(8)[None, :],
                                    np.argmax(w14.reshape(24, 8, 4) != 0, axis=2)] = 0
    assert (w14 != 0).mean() == 0.25
    cases.append(("1:4", conv1x1_model(w14, None, (1, 4, 4, 32)), w14, (1, 4, 4, 32), True))
    for what, data, wt, shape, sparse_expected in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        with tinyinfer.load(data, sparse="always") as s:
            assert not nm24_ops(s), (what, s.passes)
            assert bool(sparse_ops(s)) == sparse_expected, (what, s.passes)
            assert_close(s.run(x)[0], reference(x, wt, None, 0), rtol=1e-5, atol=1e-5)


def pruned_conv_fc(rng, tmp_path, mid):
    """A 1x1 Conv2D (32 -> mid channels, Relu) and a batch FullyConnected
    (36 rows, mid -> 20) pruned 2:4 by `tinyinfer.prune(..., method="nm")`:
    (the pruned file, an input)."""
    g = tinyinfer.GraphBuilder("two")
    x = g.input("x", (1, 6, 6, 32))
    h = g.op("Conv2D", x, g.const("w1", rng.standard_normal((mid, 1, 1, 32)).astype(np.float32)),
             g.const("b1", rng.standard_normal(mid).astype(np.float32)), activation=1)
    r = g.op("Reshape", h, shape=[36, mid])
    g.output(g.op("FullyConnected", r, g.const("w2", rng.standard_normal((20, mid)).astype(np.float32)), None))
    src = tmp_path / "m.tinf"
    src.write_bytes(g.to_bytes())
    out = tmp_path / "m24.tinf"
    tinyinfer.prune(str(src), str(out), method="nm", pattern="2:4")
    return out, rng.standard_normal((1, 6, 6, 32)).astype(np.float32)


def test_nm_pruned_model_runs_on_it_and_matches_its_dense_load(rng, tmp_path):
    """`tinyinfer.prune(..., method="nm", pattern="2:4")` on a 1x1 convolution
    and a batch FullyConnected: with sparse="always" every layer runs the 2:4
    kernel; its outputs equal the dense load's within float rounding."""
    out, xv = pruned_conv_fc(rng, tmp_path, 48)
    with tinyinfer.load(str(out), sparse="always") as s, tinyinfer.load(str(out), sparse=False) as d:
        assert len(nm24_ops(s)) == 2, s.passes
        from tinyinfer.prune import sparse_ops as indices
        assert indices(s, nm24=True) == {0, 2}, s.passes
        assert_close(s.run(xv)[0], d.run(xv)[0], rtol=1e-5, atol=1e-5)


def test_profile_names_the_2_4_kernel(rng, tmp_path):
    """`python -m tinyinfer bench --profile` marks an op on the 2:4 kernel
    ("sparse kernel (2:4)") apart from one on the unstructured tiles (the
    default load: the 2:4 kernel is chosen by itself at AVX2 only)."""
    g = tinyinfer.GraphBuilder("pw")
    x = g.input("x", (1, 8, 8, 64))
    h = g.op("Conv2D", x, g.const("w", nm24_weights(rng, 32, 64).reshape(32, 1, 1, 64)), None, activation=1)
    w2 = rng.standard_normal((16, 32)).astype(np.float32)
    w2[rng.random(w2.shape) < 0.9] = 0
    g.output(g.op("Conv2D", h, g.const("w2", w2.reshape(16, 1, 1, 32)), None))
    path = tmp_path / "m.tinf"
    path.write_bytes(g.to_bytes())
    from tinyinfer.prune import sparse_ops as indices
    with tinyinfer.load(str(path), sparse="always") as m:
        assert indices(m) == {0, 1} and indices(m, nm24=True) == {0}, m.passes
    if tinyinfer.info()["isa"] != "avx2":
        pytest.skip("the default load takes the 2:4 kernel at AVX2 only")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    r = subprocess.run([sys.executable, "-m", "tinyinfer", "bench", str(path), "--profile", "--runs", "5"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("sparse kernel (2:4)") == 1 and r.stdout.count("sparse kernel") == 2, r.stdout


LEVEL_SCRIPT = r"""
import sys, numpy as np, tinyinfer
sys.path.insert(0, sys.argv[1])
import test_sparse_nm24 as t
rng = np.random.default_rng(7)
w = t.nm24_weights(rng, 37, 72, fewer=0.04); b = rng.standard_normal(37).astype(np.float32)
for m in (2, 7, 45):
    x = rng.standard_normal((m, 72)).astype(np.float32)
    with tinyinfer.load(t.fc_model(w, b, m, 2), sparse="always") as s:
        assert len(t.nm24_ops(s)) == 1, s.passes
        err = np.abs(s.run(x)[0] - t.reference(x, w, b, 2)).max()
        assert err < 1e-4, err
x = rng.standard_normal((1, 9, 7, 72)).astype(np.float32)
auto = []
with tinyinfer.load(t.conv1x1_model(w, b, x.shape), sparse="always") as s, \
        tinyinfer.load(t.conv1x1_model(w, b, x.shape)) as a:
    for m in (s, a):
        err = np.abs(m.run(x)[0] - t.reference(x, w, b, 0)).max()
        assert err < 1e-4, err
    auto = len(t.nm24_ops(a))
    timed = sum("measured" in p for p in a.passes if "2:4 kernel" in p)
print(tinyinfer.info()["isa"], auto, timed)
"""


def chosen_at_level(script: str, level: str) -> list:
    """Runs `script` (it prints the level it ran at and counts) in a fresh
    process forced to `level`; skips when the CPU runs another level."""
    env = dict(os.environ, TINYINFER_ISA=level, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    env.pop("TINYINFER_SPARSE_MEASURE", None)
    r = subprocess.run([sys.executable, "-c", script, HERE], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got, *counts = r.stdout.split()
    if got != level:
        pytest.skip(f"this CPU runs {got}, not {level}")
    return [int(c) for c in counts]


@pytest.mark.parametrize("level,auto", [("baseline", 0), ("avx2", 1), ("avx512", None)])
def test_at_each_cpu_level_and_where_it_is_chosen_by_itself(level, auto):
    """Every level computes it right (baseline selects lane by lane); the
    default load takes it by itself where it measured faster than the
    dense GEMM (AVX2), times it against dense at load at AVX-512 (a probe,
    Runtime/SparseMeasure.swift: kept only when faster there), and never
    at baseline."""
    chosen, timed = chosen_at_level(LEVEL_SCRIPT, level)
    if auto is None:
        assert timed == 1 and chosen in (0, 1)
    else:
        assert (chosen, timed) == (auto, 0)
