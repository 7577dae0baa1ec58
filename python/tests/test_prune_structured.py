"""Structured (channel) pruning: tinyinfer.prune(method="structured") and
`python -m tinyinfer prune --method structured`, against numpy references
computed from the parent's weights with the removed channels deleted.

The models give some channels filters 100x smaller than the others (the
same channels on both branches of a residual Add), so which channels an
L1/L2 ranking removes is known without the code under test."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer.model import Model

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference as ref  # noqa: E402


def weak(rng, n, k):
    """A boolean mask of n channels with k False (the weak ones)."""
    keep = np.ones(n, bool)
    keep[rng.choice(n, k, replace=False)] = False
    return keep


def filters(rng, shape, keep):
    w = rng.standard_normal(shape).astype(np.float32)
    w[~keep] *= 0.01
    return w


def consts(model):
    return {t.name: t.shape for t in model.tensors() if t.kind == "constant"}


def mlp_model(rng, batch=2):
    d = (16, 32, 24, 5)
    k1, k2 = weak(rng, 32, 16), weak(rng, 24, 12)
    w = [filters(rng, (32, 16), k1), filters(rng, (24, 32), k2), rng.standard_normal((5, 24)).astype(np.float32)]
    b = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in d[1:]]
    g = tinyinfer.GraphBuilder("mlp")
    h = g.input("x", (batch, 16))
    for i in range(3):
        h = g.op("FullyConnected", h, g.const(f"w{i}", w[i]), g.const(f"b{i}", b[i]), activation=1 if i < 2 else 0)
    g.output(h)
    return g.to_bytes(), w, b, (k1, k2)


def test_mlp_against_numpy_with_channels_deleted(rng):
    data, w, b, (k1, k2) = mlp_model(rng)
    r = tinyinfer.prune(data, method="structured", sparsity=0.5)
    x = rng.standard_normal((2, 16)).astype(np.float32)
    h = ref.fully_connected(x, w[0][k1], b[0][k1], activation=1)
    h = ref.fully_connected(h, w[1][k2][:, k1], b[1][k2], activation=1)
    want = ref.fully_connected(h, w[2][:, k2], b[2])
    with Model(data) as parent, Model(r.data) as pruned:
        got = pruned.run([x])[0]
        assert got.shape == parent.outputs[0].shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert pruned.num_ops == parent.num_ops
        c = consts(pruned)
        assert c["w0"] == (16, 16) and c["w1"] == (12, 16) and c["w2"] == (5, 12)
        assert c["b0"] == (16,) and c["b1"] == (12,) and c["b2"] == (5,)
    assert r.dst_bytes < r.src_bytes / 2
    assert [(l.channels, l.kept) for l in r.layers] == [(32, 16), (24, 12)]
    assert any("w2" in s or "graph output" in s for s in r.skipped)   # the last layer feeds the output
    assert r.check is not None and np.isfinite(r.check.max_rel_error)


def test_l1_criterion_and_ratios(rng):
    data, w, b, (k1, k2) = mlp_model(rng)
    r = tinyinfer.prune(data, method="structured", sparsity=0.25, criterion="l1")
    # 25% of 32 = 8 and of 24 = 6 removed: all weak ones, so every strong channel is kept
    with Model(r.data) as pruned:
        c = consts(pruned)
    assert c["w0"] == (24, 16) and c["w1"] == (18, 24)
    r0 = tinyinfer.prune(data, method="structured", sparsity=0.0)
    with Model(r0.data) as m:
        x = rng.standard_normal((2, 16)).astype(np.float32)
        with Model(data) as parent:
            np.testing.assert_array_equal(m.run([x])[0], parent.run([x])[0])


def test_calibration_ranks_by_activations(rng):
    """Channels whose Relu output is always 0 (large filters, very negative
    bias) go first with calibration data, though their filters are the largest."""
    dead = np.zeros(8, bool)
    dead[[1, 4, 6]] = True
    w1 = rng.standard_normal((8, 6)).astype(np.float32)
    w1[dead] *= 10
    b1 = np.where(dead, -1000.0, 0.5).astype(np.float32)
    w2 = rng.standard_normal((3, 8)).astype(np.float32)
    g = tinyinfer.GraphBuilder("m")
    x = g.input("x", (4, 6))
    h = g.op("FullyConnected", x, g.const("w1", w1), g.const("b1", b1), activation=1)
    g.output(g.op("FullyConnected", h, g.const("w2", w2), None))
    data = g.to_bytes()
    calib = rng.standard_normal((16, 6)).astype(np.float32)
    r = tinyinfer.prune(data, method="structured", sparsity=0.375, calib=calib)
    keep = ~dead
    xs = calib[:4]
    want = ref.fully_connected(ref.fully_connected(xs, w1[keep], b1[keep], activation=1), w2[:, keep])
    with Model(r.data) as m:
        np.testing.assert_allclose(m.run([xs])[0], want, rtol=1e-4, atol=1e-4)
    assert r.check.max_rel_error < 1e-5        # dead channels contribute nothing: same outputs as the parent
    # without calibration data the L2 ranking keeps the large (dead) filters
    r2 = tinyinfer.prune(data, method="structured", sparsity=0.375)
    assert r2.check.max_rel_error > 1e-2


def cnn_model(rng):
    """Conv 3x3 (3->8) relu -> depthwise 3x3 relu -> Conv 1x1 (8->8) -> Add
    (residual with the first conv) -> Relu -> Conv 1x1 (8->6) -> Mean[1,2] -> FC (6->4)."""
    kr, k3 = weak(rng, 8, 4), weak(rng, 6, 3)
    p = {
        "w1": filters(rng, (8, 3, 3, 3), kr), "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
        "wd": rng.standard_normal((1, 3, 3, 8)).astype(np.float32),
        "bd": rng.standard_normal(8).astype(np.float32) * 0.1,
        "w2": filters(rng, (8, 1, 1, 8), kr), "b2": rng.standard_normal(8).astype(np.float32) * 0.1,
        "w3": filters(rng, (6, 1, 1, 8), k3), "b3": rng.standard_normal(6).astype(np.float32) * 0.1,
        "w4": rng.standard_normal((4, 6)).astype(np.float32), "b4": rng.standard_normal(4).astype(np.float32),
    }
    p["b1"][~kr] *= 0.01
    p["b2"][~kr] *= 0.01
    g = tinyinfer.GraphBuilder("cnn")
    c = {k: g.const(k, v) for k, v in p.items()}
    x = g.input("x", (1, 8, 8, 3))
    a = g.op("Conv2D", x, c["w1"], c["b1"], padding=1, activation=1)
    d = g.op("DepthwiseConv2D", a, c["wd"], c["bd"], padding=1, activation=1)
    e = g.op("Conv2D", d, c["w2"], c["b2"])
    s = g.op("Relu", g.op("Add", a, e))
    f = g.op("Conv2D", s, c["w3"], c["b3"], activation=1)
    m = g.op("Mean", f, axes=[1, 2])
    g.output(g.op("FullyConnected", m, c["w4"], c["b4"]))
    return g.to_bytes(), p, kr, k3


def cnn_reference(x, p, kr, k3):
    a = ref.conv2d(x, p["w1"][kr], p["b1"][kr], padding=1, activation=1)
    d = ref.depthwise_conv2d(a, p["wd"][..., kr], p["bd"][kr], padding=1, activation=1)
    e = ref.conv2d(d, p["w2"][kr][..., kr], p["b2"][kr])
    s = np.maximum(a.astype(np.float64) + e, 0).astype(np.float32)
    f = ref.conv2d(s, p["w3"][k3][..., kr], p["b3"][k3], activation=1)
    m = f.astype(np.float64).mean(axis=(1, 2)).astype(np.float32)
    return ref.fully_connected(m, p["w4"][:, k3], p["b4"])


def test_cnn_residual_depthwise_against_numpy(rng):
    data, p, kr, k3 = cnn_model(rng)
    r = tinyinfer.prune(data, method="structured", sparsity=0.5, channel_multiple=1)
    x = rng.standard_normal((1, 8, 8, 3)).astype(np.float32)
    with Model(data) as parent, Model(r.data) as pruned:
        got = pruned.run([x])[0]
        assert got.shape == parent.outputs[0].shape
        np.testing.assert_allclose(got, cnn_reference(x, p, kr, k3), rtol=1e-4, atol=1e-5)
        assert pruned.num_ops == parent.num_ops
        c = consts(pruned)
    assert c["w1"] == (4, 3, 3, 3) and c["wd"] == (1, 3, 3, 4) and c["bd"] == (4,)
    assert c["w2"] == (4, 1, 1, 4) and c["w3"] == (3, 1, 1, 4) and c["w4"] == (4, 3)
    # both branches of the Add were pruned identically: one group of 8 channels, reported once per producer
    assert sorted((l.channels, l.kept) for l in r.layers) == [(6, 3), (8, 4), (8, 4)]


def test_channel_multiple(rng):
    from tinyinfer.prune_structured import kept_channels
    assert kept_channels(48, 0.25) == 36
    assert kept_channels(48, 0.25, 8) == 40        # 36 rounds to the nearest multiple of 8
    assert kept_channels(48, 0.5, 8) == 24
    assert kept_channels(8, 0.75, 8) == 8          # at least one multiple
    assert kept_channels(10, 0.5, 8) == 5          # 10 is not a multiple of 8: exact
    assert kept_channels(4, 0.99) == 1
    # by default the group a depthwise convolution reads keeps a multiple of 8 (all 8 here); the others are exact
    data, p, kr, k3 = cnn_model(rng)
    r = tinyinfer.prune(data, method="structured", sparsity=0.5)
    assert sorted((l.channels, l.kept) for l in r.layers) == [(6, 3), (8, 8), (8, 8)]
    r = tinyinfer.prune(data, method="structured", sparsity=0.5, channel_multiple=4)
    assert sorted((l.channels, l.kept) for l in r.layers) == [(6, 3), (8, 4), (8, 4)]
    for bad in (0, -8, 2.5, True):
        with pytest.raises(tinyinfer.InvalidArgumentError, match="channel_multiple"):
            tinyinfer.prune(data, method="structured", sparsity=0.5, channel_multiple=bad)


def test_channel_concat(rng):
    ka, kb = weak(rng, 4, 2), weak(rng, 6, 3)
    wa, wb = filters(rng, (4, 1, 1, 5), ka), filters(rng, (6, 1, 1, 5), kb)
    wc = rng.standard_normal((3, 1, 1, 10)).astype(np.float32)
    g = tinyinfer.GraphBuilder("cat")
    x = g.input("x", (1, 4, 4, 5))
    a = g.op("Conv2D", x, g.const("wa", wa), None, activation=1)
    b = g.op("Conv2D", x, g.const("wb", wb), None, activation=1)
    g.output(g.op("Conv2D", g.op("Concat", a, b, axis=3), g.const("wc", wc), None))
    r = tinyinfer.prune(g.to_bytes(), method="structured", sparsity=0.5)
    xs = rng.standard_normal((1, 4, 4, 5)).astype(np.float32)
    cat = np.concatenate([ref.conv2d(xs, wa[ka], activation=1), ref.conv2d(xs, wb[kb], activation=1)], axis=3)
    want = ref.conv2d(cat, wc[..., np.concatenate([ka, kb])])
    with Model(r.data) as m:
        np.testing.assert_allclose(m.run([xs])[0], want, rtol=1e-4, atol=1e-5)


def test_residual_with_graph_input_is_skipped_and_reported(rng):
    """x -> convA (8) -> convB (4) -> Add(x): convB's channels are tied to the
    graph input, so it is skipped; convA is still pruned."""
    ka = weak(rng, 8, 4)
    wa = filters(rng, (8, 1, 1, 4), ka)
    wb = rng.standard_normal((4, 1, 1, 8)).astype(np.float32)
    wc = rng.standard_normal((3, 1, 1, 4)).astype(np.float32)
    g = tinyinfer.GraphBuilder("res")
    x = g.input("x", (1, 5, 5, 4))
    a = g.op("Conv2D", x, g.const("wa", wa), None, activation=1)
    bb = g.op("Conv2D", a, g.const("wb", wb), None, name="convB")
    g.output(g.op("Conv2D", g.op("Add", bb, x), g.const("wc", wc), None))
    r = tinyinfer.prune(g.to_bytes(), method="structured", sparsity=0.5)
    assert [(l.channels, l.kept) for l in r.layers] == [(8, 4)]
    assert any("graph input" in s for s in r.skipped)
    xs = rng.standard_normal((1, 5, 5, 4)).astype(np.float32)
    h = ref.conv2d(ref.conv2d(xs, wa[ka], activation=1), wb[..., ka])
    want = ref.conv2d((h.astype(np.float64) + xs).astype(np.float32), wc)
    with Model(r.data) as m:
        np.testing.assert_allclose(m.run([xs])[0], want, rtol=1e-4, atol=1e-5)


def test_bad_input(rng):
    data, *_ = mlp_model(rng)
    for kw, match in [(dict(sparsity=1.0), "sparsity"), (dict(sparsity=-0.1), "sparsity"),
                      (dict(sparsity=None), "sparsity"), (dict(sparsity=0.5, criterion="l3"), "criterion"),
                      (dict(sparsity=0.5, calib=np.zeros((3, 7), np.float32)), "(?i)shape|calib|input")]:
        with pytest.raises(tinyinfer.InvalidArgumentError, match=match):
            tinyinfer.prune(data, method="structured", **kw)
    # nothing to shrink: the only layer feeds the graph output
    g = tinyinfer.GraphBuilder("one")
    x = g.input("x", (1, 4))
    g.output(g.op("FullyConnected", x, g.const("w", np.ones((3, 4), np.float32)), None))
    with pytest.raises(tinyinfer.InvalidArgumentError, match="(?s)no layer it can shrink.*graph output"):
        tinyinfer.prune(g.to_bytes(), method="structured", sparsity=0.5)
    # a Softmax over the hidden channels mixes them: skipped, reported
    g = tinyinfer.GraphBuilder("sm")
    x = g.input("x", (1, 4))
    h = g.op("Softmax", g.op("FullyConnected", x, g.const("w", np.ones((6, 4), np.float32)), None))
    g.output(g.op("FullyConnected", h, g.const("w2", np.ones((2, 6), np.float32)), None))
    with pytest.raises(tinyinfer.InvalidArgumentError, match="Softmax"):
        tinyinfer.prune(g.to_bytes(), method="structured", sparsity=0.5)
    q = tinyinfer.quantize(data, mode="int8-dynamic").data
    with pytest.raises(tinyinfer.InvalidArgumentError, match="quantize"):
        tinyinfer.prune(q, method="structured", sparsity=0.5)


def test_cli(tmp_path, rng):
    data, *_ = mlp_model(rng)
    src = tmp_path / "m.tinf"
    src.write_bytes(data)
    dst = tmp_path / "s.tinf"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    p = subprocess.run([sys.executable, "-m", "tinyinfer", "prune", str(src), "-o", str(dst), "--method",
                        "structured", "--sparsity", "0.5"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "structured" in p.stdout and "skipped" in p.stdout
    with Model(str(dst)) as m:
        assert consts(m)["w0"] == (16, 16)
    p = subprocess.run([sys.executable, "-m", "tinyinfer", "prune", str(src), "-o", str(dst), "--method",
                        "structured", "--sparsity", "1.5"], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "sparsity" in p.stderr


def test_sparse_stored_parent(rng):
    """A parent whose weights are stored sparse in the file (90% zeros, 32 KB)
    is read back exactly: the pruned model matches numpy on the parent's weights."""
    keep = weak(rng, 128, 64)
    w1 = filters(rng, (128, 64), keep)
    w1[rng.random(w1.shape) < 0.9] = 0
    w1[~keep] *= 0.01
    w1[:, :3] = rng.standard_normal((128, 3)) * np.where(keep, 1.0, 1e-4)[:, None]   # no all-zero row
    w2 = rng.standard_normal((4, 128)).astype(np.float32)
    g = tinyinfer.GraphBuilder("sp")
    x = g.input("x", (1, 64))
    h = g.op("FullyConnected", x, g.const("w1", w1.astype(np.float32)), None, activation=1)
    g.output(g.op("FullyConnected", h, g.const("w2", w2), None))
    data = g.to_bytes()
    with Model(data) as m:
        from tinyinfer.prune import tensor_storage
        assert tensor_storage(m, [t.index for t in m.tensors() if t.name == "w1"][0])[0]   # stored sparse
    r = tinyinfer.prune(data, method="structured", sparsity=0.5)
    xs = rng.standard_normal((1, 64)).astype(np.float32)
    want = ref.fully_connected(ref.fully_connected(xs, w1[keep], activation=1), w2[:, keep])
    with Model(r.data) as m:
        np.testing.assert_allclose(m.run([xs])[0], want, rtol=1e-4, atol=1e-5)


def test_then_quantize(rng):
    data, p, kr, k3 = cnn_model(rng)
    r = tinyinfer.prune(data, method="structured", sparsity=0.5, channel_multiple=1)
    q = tinyinfer.quantize(r.data, mode="int8-dynamic")
    x = rng.standard_normal((1, 8, 8, 3)).astype(np.float32)
    want = cnn_reference(x, p, kr, k3)
    with Model(q.data) as m:
        got = m.run([x])[0]
    assert got.shape == want.shape
    assert np.linalg.norm(got - want) <= 0.05 * np.linalg.norm(want)
