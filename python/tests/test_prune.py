"""Pruning (tinyinfer.prune, the prune command, tinf_pruner_*) against
numpy references of each method, its bad-input errors, and its composition
with quantization (zeros stay exactly zero)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer.prune import Pruner, parse_pattern

HERE = os.path.dirname(os.path.abspath(__file__))


def mlp(rng, dims=(64, 48, 32, 10), batch=1):
    """A float32 MLP: FullyConnected + Relu layers; returns (bytes, [weights])."""
    g = tinyinfer.GraphBuilder("mlp")
    h = g.input("x", (batch, dims[0]))
    ws = []
    for i in range(len(dims) - 1):
        w = rng.standard_normal((dims[i + 1], dims[i])).astype(np.float32)
        ws.append(w)
        h = g.op("FullyConnected", h, g.const(f"w{i}", w), g.const(f"b{i}", rng.standard_normal(dims[i + 1])
                                                                  .astype(np.float32)),
                 activation=1 if i < len(dims) - 2 else 0)
    g.output(h)
    return g.to_bytes(), ws


def convnet(rng):
    """Conv2D 3x3 (8 -> 16) then a 1x1 (16 -> 12): weights [Cout, KH, KW, Cin]."""
    g = tinyinfer.GraphBuilder("cnn")
    x = g.input("x", (1, 6, 6, 8))
    w1 = rng.standard_normal((16, 3, 3, 8)).astype(np.float32)
    w2 = rng.standard_normal((12, 1, 1, 16)).astype(np.float32)
    h = g.op("Conv2D", x, g.const("w1", w1), None, activation=1, padding=1)
    g.output(g.op("Conv2D", h, g.const("w2", w2), None))
    return g.to_bytes(), [w1, w2]


def pruned_weights(data):
    with tinyinfer.load(data) as m, Pruner(m) as p:
        return [p.weights(i) for i in range(len(p.layers()))]


def test_magnitude_global_zeros_the_smallest_over_all_layers(rng):
    data, ws = mlp(rng)
    r = tinyinfer.prune(data, method="magnitude", sparsity=0.7)
    got = pruned_weights(r.data)
    flat = np.concatenate([np.abs(w).ravel() for w in ws])
    k = int(np.floor(0.7 * flat.size))
    threshold = np.sort(flat)[k - 1]
    for w, p in zip(ws, got):
        expect = np.where(np.abs(w) <= threshold, 0, w).reshape(p.shape)
        np.testing.assert_array_equal(p, expect)
    assert sum(int((p == 0).sum()) for p in got) == k
    assert abs(r.sparsity - k / flat.size) < 1e-12
    assert r.check is not None and r.check.inputs >= 1


def test_magnitude_per_layer_scope(rng):
    data, ws = mlp(rng)
    got = pruned_weights(tinyinfer.prune(data, method="magnitude", sparsity=0.5, scope="layer").data)
    for w, p in zip(ws, got):
        k = int(np.floor(0.5 * w.size))
        assert int((p == 0).sum()) == k
        kept = np.abs(w.ravel()[p.ravel() != 0])
        dropped = np.abs(w.ravel()[p.ravel() == 0])
        assert kept.min() >= dropped.max()


def test_sensitivity_allocation_reaches_the_target(rng):
    data, ws = mlp(rng)
    calib = rng.standard_normal((8, 64)).astype(np.float32)
    r = tinyinfer.prune(data, method="magnitude", sparsity=0.6, scope="sensitivity", calib=calib)
    total = sum(w.size for w in ws)
    zeros = sum(int((p == 0).sum()) for p in pruned_weights(r.data))
    assert abs(zeros / total - 0.6) < 0.01
    # Not uniform: the allocation differs between layers.
    assert len({round(l.sparsity, 2) for l in r.layers}) > 1


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "4:8"])
def test_nm_keeps_the_largest_of_each_group(rng, pattern):
    n, m = parse_pattern(pattern)
    data, ws = convnet(rng)
    got = pruned_weights(tinyinfer.prune(data, method="nm", pattern=pattern).data)
    for w, p in zip(ws, got):
        groups = w.reshape(-1, m)            # along Cin (innermost), m divides Cin here
        order = np.argsort(-np.abs(groups), axis=1, kind="stable")[:, :n]
        expect = np.zeros_like(groups)
        np.put_along_axis(expect, order, np.take_along_axis(groups, order, 1), 1)
        np.testing.assert_array_equal(p.reshape(-1, m), expect)


def test_nm_reports_layers_that_cannot_hold_it(rng):
    data, ws = mlp(rng, dims=(64, 30, 10))   # the second layer's rows have 30 values: not a multiple of 4
    r = tinyinfer.prune(data, method="nm", pattern="2:4")
    assert r.skipped == [r.layers[1].name]
    got = pruned_weights(r.data)
    assert (got[0].reshape(-1, 4) != 0).sum(1).max() == 2
    np.testing.assert_array_equal(got[1], ws[1])
    with tinyinfer.load(data) as model, Pruner(model) as p:
        with pytest.raises(tinyinfer.InvalidArgumentError, match="cannot hold"):
            p.nm(2, 4, layer=1)


def test_wanda_uses_weight_times_input_norm_per_output(rng):
    data, ws = mlp(rng, dims=(40, 24, 8))
    calib = (rng.standard_normal((16, 40)) * np.linspace(0.1, 3, 40)).astype(np.float32)
    got = pruned_weights(tinyinfer.prune(data, method="wanda", sparsity=0.5, calib=calib).data)
    # Layer 0's input is the graph input: its norms come straight from the calibration data.
    norms = np.sqrt((calib.astype(np.float64) ** 2).sum(0))
    score = np.abs(ws[0]) * norms[None, :]
    drop = np.argsort(score, axis=1, kind="stable")[:, :20]
    expect = ws[0].copy()
    np.put_along_axis(expect, drop, 0, 1)
    np.testing.assert_array_equal(got[0], expect)
    # Layer 1's input is relu(x W0^T + b0) of the parent: its rows keep 12 of 24 each.
    assert ((got[1] == 0).sum(1) == 12).all()


def test_pruned_model_runs_on_the_sparse_kernels_and_is_smaller(rng, tmp_path):
    data, _ = mlp(rng, dims=(512, 512, 10))
    src = tmp_path / "m.tinf"
    src.write_bytes(data)
    r = tinyinfer.prune(str(src), str(tmp_path / "p.tinf"), method="magnitude", sparsity=0.97, scope="layer")
    assert os.path.getsize(tmp_path / "p.tinf") == r.dst_bytes < 0.2 * len(data)
    with tinyinfer.load(str(tmp_path / "p.tinf")) as m:
        assert any(p.startswith("sparse kernel: FullyConnected") for p in m.passes)


@pytest.mark.parametrize("mode", ["int8-dynamic", "int8-static"])
def test_quantizing_a_pruned_model_keeps_its_zeros(rng, tmp_path, mode):
    data, _ = mlp(rng)
    pruned = tinyinfer.prune(data, method="magnitude", sparsity=0.8).data
    zero_masks = [p == 0 for p in pruned_weights(pruned)]
    src = tmp_path / "p.tinf"
    src.write_bytes(pruned)
    calib = rng.standard_normal((8, 64)).astype(np.float32)
    q = tinyinfer.quantize(str(src), mode=mode, calib=calib if mode == "int8-static" else None)
    with tinyinfer.load(q.data) as m:
        # The int8 weights are the constants of the weights' shapes.
        shapes = {mask.shape for mask in zero_masks}
        from tinyinfer.prune import tensor_storage
        int8s = [t for t in m.tensors() if t.kind == "constant" and t.dtype == np.int8 and t.shape in shapes]
        assert len(int8s) == len(zero_masks)
        for t in int8s:
            (mask,) = [z for z in zero_masks if z.shape == t.shape]
            _, _, zeros = tensor_storage(m, t.index)
            assert zeros >= mask.mean() - 1e-12   # every pruned weight is still zero (rounding may add more)


def test_c_function_rejects_bad_arguments(rng):
    data, _ = mlp(rng)
    with tinyinfer.load(data) as m, Pruner(m) as p:
        for s in (1.0, -0.1, float("nan")):
            with pytest.raises(tinyinfer.InvalidArgumentError, match="sparsity"):
                p.magnitude(s)
        with pytest.raises(tinyinfer.InvalidArgumentError, match="out of range"):
            p.magnitude(0.5, layer=7)
        with pytest.raises(tinyinfer.InvalidArgumentError):
            p.nm(4, 2)
        with pytest.raises(tinyinfer.InvalidArgumentError, match="weights"):
            p.set_weights(0, np.zeros(5, np.float32))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="finite"):
            p.set_weights(0, np.full((48, 64), np.inf, np.float32))
        with pytest.raises(tinyinfer.InvalidArgumentError, match="shape"):
            p.observe([np.zeros((1, 63), np.float32)])


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="magnitude", sparsity=1.0), "sparsity"),
    (dict(method="magnitude", sparsity=-0.2), "sparsity"),
    (dict(method="magnitude"), "sparsity"),
    (dict(method="nm", pattern="3:2"), "N:M"),
    (dict(method="nm", pattern="two:four"), "N:M"),
    (dict(method="nm", pattern="2:4", sparsity=0.7), "50%"),
    (dict(method="wanda", sparsity=0.5), "calibration"),
    (dict(method="wanda", sparsity=0.5, calib=np.zeros((4, 17), np.float32)), "calibration"),
    (dict(method="channels", sparsity=0.5), "method"),
    (dict(method="magnitude", sparsity=0.5, scope="row"), "scope"),
])
def test_bad_input_gives_a_clear_error(rng, kwargs, match):
    data, _ = mlp(rng)
    with pytest.raises(tinyinfer.InvalidArgumentError, match=match):
        tinyinfer.prune(data, **kwargs)


def test_quantized_models_are_refused(rng, tmp_path):
    data, _ = mlp(rng)
    src = tmp_path / "m.tinf"
    src.write_bytes(data)
    q = tinyinfer.quantize(str(src), mode="int8-dynamic").data
    with pytest.raises(tinyinfer.InvalidArgumentError, match="float32"):
        tinyinfer.prune(q, method="magnitude", sparsity=0.5)


def test_command_line(rng, tmp_path):
    data, _ = mlp(rng)
    src, dst = tmp_path / "m.tinf", tmp_path / "p.tinf"
    src.write_bytes(data)
    np.save(tmp_path / "calib.npy", rng.standard_normal((10, 64)).astype(np.float32))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    run = lambda *a: subprocess.run([sys.executable, "-m", "tinyinfer", "prune", str(src), *a], env=env,
                                    capture_output=True, text=True)
    r = run("-o", str(dst), "--method", "wanda", "--sparsity", "0.6", "--calib", str(tmp_path / "calib.npy"))
    assert r.returncode == 0, r.stderr
    assert "pruned: wanda" in r.stdout and "check vs the dense parent" in r.stdout
    zeros = sum(int((p == 0).sum()) for p in pruned_weights(dst.read_bytes()))
    assert zeros > 0.59 * (64 * 48 + 48 * 32 + 32 * 10)
    plain = pruned_weights(dst.read_bytes())
    r = run("-o", str(dst), "--method", "wanda", "--sparsity", "0.6", "--calib", str(tmp_path / "calib.npy"),
            "--ls-correction")
    assert r.returncode == 0 and "least-squares correction" in r.stdout, r.stderr
    corrected = pruned_weights(dst.read_bytes())
    assert all(np.array_equal(a == 0, b == 0) for a, b in zip(plain, corrected))   # the same zeros
    assert not all(np.array_equal(a, b) for a, b in zip(plain, corrected))         # other kept values
    r = run("-o", str(dst), "--sparsity", "1.5")
    assert r.returncode == 1 and "sparsity must be >= 0 and < 1" in r.stderr
    r = run("-o", str(dst), "--method", "nm", "--pattern", "2:4")
    assert r.returncode == 0 and "2:4" in r.stdout


def test_profile_names_the_ops_on_sparse_kernels(rng, tmp_path):
    g = tinyinfer.GraphBuilder("pw")
    x = g.input("x", (1, 8, 8, 64))
    w = rng.standard_normal((32, 1, 1, 64)).astype(np.float32)
    h = g.op("Conv2D", x, g.const("w", w), None, activation=1)
    g.output(g.op("Conv2D", h, g.const("w2", rng.standard_normal((16, 1, 1, 32)).astype(np.float32)), None))
    src, dst = tmp_path / "m.tinf", tmp_path / "p.tinf"
    src.write_bytes(g.to_bytes())
    tinyinfer.prune(str(src), str(dst), method="magnitude", sparsity=0.9, scope="layer")
    with tinyinfer.load(str(dst)) as m:
        from tinyinfer.prune import sparse_ops
        assert sparse_ops(m) == {0, 1}
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    r = subprocess.run([sys.executable, "-m", "tinyinfer", "bench", str(dst), "--profile", "--runs", "5"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("sparse kernel") == 2
