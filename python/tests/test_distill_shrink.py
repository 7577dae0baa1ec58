"""tinyinfer.distill.shrink (a narrower copy of the teacher), intermediate teacher tensors and the feature (hint)
loss; tiny and fast, skipped without torch."""

import numpy as np
import pytest

import tinyinfer
from tinyinfer import GraphBuilder, Model, distill

torch = pytest.importorskip("torch")


def _w(rng, *shape, scale=0.4):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def teacher_graph(rng, softmax=True) -> bytes:
    """x [1,6,6,2] -> conv 8 (relu, 'c1') -> conv 6 (relu, 'c2') -> mean -> fc 3 -> softmax."""
    g = GraphBuilder("t")
    x = g.input("x", (1, 6, 6, 2))
    c1 = g.op("Conv2D", x, g.const("w1", _w(rng, 8, 3, 3, 2)), g.const("b1", _w(rng, 8)), padding=1,
              activation=1, name="c1")
    c2 = g.op("Conv2D", c1, g.const("w2", _w(rng, 6, 3, 3, 8)), g.const("b2", _w(rng, 6)), padding=1,
              activation=1, name="c2")
    m = g.op("Mean", c2, axes=[1, 2])
    fc = g.op("FullyConnected", m, g.const("wf", _w(rng, 3, 6)), g.const("bf", _w(rng, 3)), name="logits")
    g.output(g.op("Softmax", fc) if softmax else fc)
    try:
        return g.to_bytes()
    finally:
        g.close()


def np_conv_same3(x, w, b):
    """A 3x3 SAME convolution in plain numpy (NHWC, w [Cout,3,3,Cin]) with ReLU."""
    n, h, wd, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, wd, w.shape[0]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,oc->nhwo", xp[:, i:i + h, j:j + wd], w[:, i, j, :])
    return np.maximum(out + b, 0)


def test_shrink_keeps_the_teachers_strongest_channels(rng):
    data = teacher_graph(rng)
    net = distill.shrink(data, width=0.5)
    w = net.weights()
    assert w["w1"].shape == (4, 3, 3, 2) and w["w2"].shape == (3, 3, 3, 4)
    from tinyinfer.prune_structured import _read_tinf
    full = {t.name: t.data for t in _read_tinf(data)[1] if t.data is not None}
    norms = np.linalg.norm(full["w1"].reshape(8, -1), axis=1)
    kept = np.sort(np.argsort(norms)[-4:])
    np.testing.assert_array_equal(w["w1"], full["w1"][kept])               # the 4 largest filters, in order
    np.testing.assert_array_equal(w["w2"][..., :], full["w2"][np.sort(np.argsort(
        np.linalg.norm(full["w2"].reshape(6, -1), axis=1))[-3:])][..., kept])
    # the student computes its own graph: numpy on the kept weights
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    h = np_conv_same3(np_conv_same3(x, w["w1"], w["b1"]), w["w2"], w["b2"]).mean(axis=(1, 2))
    logits = h @ w["wf"].T.astype(np.float64) + w["bf"]
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()                               # logits=True: no softmax
    np.testing.assert_allclose(got, logits, rtol=1e-4, atol=1e-5)
    assert net.shrink_report.layers
    with pytest.raises(tinyinfer.InvalidArgumentError):
        distill.shrink(data, width=0)


def test_intermediates_are_the_graphs_tensors(rng, tmp_path):
    data = teacher_graph(rng)
    x = rng.standard_normal((5, 6, 6, 2)).astype(np.float32)
    got = distill.teacher_outputs(data, x, intermediates=["c1", "logits"], cache_dir=tmp_path, progress=False)
    assert set(got) >= {"c1", "logits"}
    from tinyinfer.prune_structured import _read_tinf
    full = {t.name: t.data for t in _read_tinf(data)[1] if t.data is not None}
    c1 = np_conv_same3(x, full["w1"], full["b1"])
    np.testing.assert_allclose(got["c1"], c1, rtol=1e-4, atol=1e-5)
    with Model(data) as m:
        np.testing.assert_allclose(got[m.outputs[0].name], np.concatenate([m.run(v[None])[0] for v in x]),
                                   rtol=1e-6)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="no tensor"):
        distill.teacher_outputs(data, x, intermediates=["nope"], cache_dir=tmp_path, progress=False)


def test_hint_loss_with_projection_pulls_student_features(rng, tmp_path):
    data = teacher_graph(rng, softmax=False)
    x = rng.standard_normal((120, 6, 6, 2)).astype(np.float32)
    out = distill.teacher_outputs(data, x, intermediates=["c1"], cache_dir=tmp_path, progress=False)
    feats, logits = out["c1"], out["logits"]

    def student():
        torch.manual_seed(0)
        return distill.shrink(data, width=0.5)   # c1 has 4 channels, the teacher's 8: a projection

    def feature_error(net):
        net.capture = {"c1"}
        with torch.no_grad():
            net(torch.from_numpy(x))
        s = net.captured["c1"].numpy()
        # the best linear map of the student's 4 channels onto the teacher's 8 (least squares, numpy)
        a = s.reshape(-1, s.shape[-1])
        b = feats.reshape(-1, feats.shape[-1])
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
        return float(((a @ coef - b) ** 2).mean())

    plain, hinted = student(), student()
    distill.train_student(plain, x, logits, epochs=8, lr=0.01, patience=8, progress=False)
    res = distill.train_student(hinted, x, logits, epochs=8, lr=0.01, patience=8, progress=False,
                                hints={"c1": feats}, hint_weight=5.0)
    assert len(res.history) == 8
    assert feature_error(hinted) < feature_error(plain)


def test_hint_on_a_submodule_and_bad_hints(rng):
    x = rng.standard_normal((40, 4)).astype(np.float32)
    t = rng.standard_normal((40, 3)).astype(np.float32)
    feats = rng.standard_normal((40, 5)).astype(np.float32)
    net = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    res = distill.train_student(net, x, t, epochs=2, progress=False, hints={"0": feats})
    assert len(res.history) == 2
    assert not net[0]._forward_hooks  # removed after training
    with pytest.raises(tinyinfer.InvalidArgumentError, match="rows"):
        distill.train_student(net, x, t, epochs=1, progress=False, hints={"0": feats[:10]})
    with pytest.raises(tinyinfer.InvalidArgumentError, match="neither"):
        distill.train_student(net, x, t, epochs=1, progress=False, hints={"nope": feats})
    with pytest.raises(tinyinfer.InvalidArgumentError, match="last"):
        distill.train_student(net, x, t, epochs=1, progress=False, hints={"0": feats.reshape(40, 5, 1)})


def test_distill_with_a_shrunk_student_writes_the_teachers_graph(rng, tmp_path):
    data = teacher_graph(rng)
    x = rng.standard_normal((60, 6, 6, 2)).astype(np.float32)
    student = distill.shrink(data, width=0.5)
    res, model = distill.distill(data, student, x, dst=tmp_path / "s.tinf", epochs=2, progress=False,
                                 cache_dir=tmp_path)
    with model, Model(str(tmp_path / "s.tinf")) as again:
        assert [o.op for o in again.ops()] == [o.op for o in model.ops()]
        y = again.run(x[:1])[0]
        np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-5)  # the teacher's Softmax is written back
        student.logits = False
        with torch.no_grad():
            np.testing.assert_allclose(y, student(torch.from_numpy(x[:1])).numpy(), rtol=1e-5, atol=1e-6)


def test_cli_shrink_student(rng, tmp_path):
    from tinyinfer.__main__ import main
    (tmp_path / "t.tinf").write_bytes(teacher_graph(rng))
    np.save(tmp_path / "x.npy", rng.standard_normal((40, 6, 6, 2)).astype(np.float32))
    out = tmp_path / "s.tinf"
    assert main(["distill", str(tmp_path / "t.tinf"), "--student", "shrink:0.5", "--data", str(tmp_path / "x.npy"),
                 "-o", str(out), "--epochs", "1", "--no-progress", "--cache-dir", str(tmp_path / "c")]) == 0
    with Model(str(out)) as m:
        convs = [d for d in m.tensors() if d.kind == "constant" and len(d.shape) == 4]
        assert sorted(d.shape[0] for d in convs) == [3, 4]  # 8 -> 4 and 6 -> 3 filters
    assert main(["distill", str(tmp_path / "t.tinf"), "--student", "shrink:2", "--data", str(tmp_path / "x.npy"),
                 "-o", str(out)]) == 1
