"""tinyinfer.distill's trainer, one-call distill and CLI (tiny and fast; skipped without torch, except the
missing-torch message)."""

import os
import sys

import numpy as np
import pytest

import tinyinfer
from tinyinfer import distill


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def np_softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def np_hinton(s, t, y, T, alpha):
    """Hinton et al.: T^2 * KL(softmax(t/T) || softmax(s/T)), batch mean, mixed with cross-entropy (numpy)."""
    pt, ps = np_softmax(t / T), np_softmax(s / T)
    soft = (pt * (np.log(pt) - np.log(ps))).sum(1).mean() * T * T
    if y is None:
        return soft
    hard = -np.log(np_softmax(s)[np.arange(len(y)), y]).mean()
    return alpha * soft + (1 - alpha) * hard


def test_loss_matches_numpy(torch, rng):
    s, t = rng.standard_normal((6, 4)) * 3, rng.standard_normal((6, 4)) * 3
    y = rng.integers(0, 4, 6)
    for T, alpha, labels in [(4.0, 0.7, y), (1.0, 0.3, y), (2.5, 0.7, None)]:
        got = distill._loss(torch, torch.tensor(s), torch.tensor(t), None if labels is None else torch.tensor(labels),
                            T, alpha).item()
        assert got == pytest.approx(np_hinton(s, t, labels, T, alpha), rel=1e-9)


def linear_teacher(rng, n=400, d=8, k=3):
    w = rng.standard_normal((d, k)) * 2
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x, (x @ w).astype(np.float32)


def test_student_learns_teacher_without_labels(torch, rng):
    x, t = linear_teacher(rng)
    student = torch.nn.Linear(8, 3)
    logs = []
    res = distill.train_student(student, x, t, epochs=40, lr=0.05, patience=40, log=logs.append)
    assert len(logs) == len(res.history) == 40
    with torch.no_grad():
        pred = student(torch.from_numpy(x)).numpy()
    agree = (pred.argmax(1) == t.argmax(1)).mean()
    assert agree > 0.95, agree
    assert res.history[-1]["val_accuracy"] is None and res.history[-1]["val_agreement"] > 0.9


def test_deterministic_with_seed(torch, rng):
    x, t = linear_teacher(rng, n=120)
    y = t.argmax(1)
    weights = []
    for _ in range(2):
        torch.manual_seed(99)  # the same initial weights
        student = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        distill.train_student(student, x, t, labels=y, epochs=3, seed=5, progress=False)
        weights.append([p.detach().numpy().copy() for p in student.parameters()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_keeps_best_epoch(torch, rng):
    # random labels and teacher on few items: the student overfits, the validation loss rises
    x = rng.standard_normal((60, 30)).astype(np.float32)
    t = rng.standard_normal((60, 4)).astype(np.float32) * 3
    y = rng.integers(0, 4, 60)
    student = torch.nn.Sequential(torch.nn.Linear(30, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4))
    states = {}
    res = distill.train_student(student, x, t, labels=y, epochs=300, lr=0.01, patience=3, val_split=0.3,
                                log=lambda r: states.__setitem__(r["epoch"], [p.detach().clone()
                                                                                for p in student.parameters()]))
    assert res.stopped_early and len(res.history) == res.best_epoch + 3 < 300
    assert res.best_val_loss == min(h["val_loss"] for h in res.history)
    for p, q in zip(student.parameters(), states[res.best_epoch]):
        assert torch.equal(p, q)


def test_nan_loss_stops_and_keeps_last_good_weights(torch, rng):
    x, t = linear_teacher(rng, n=100)

    class Breaks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 3)
            self.calls = 0

        def forward(self, v):
            out = self.lin(v)
            if self.training:
                self.calls += 1
                if self.calls > 5:  # epoch 3 of 2 batches each
                    out = out * float("nan")
            return out
    student = Breaks()
    states = {}
    with pytest.raises(distill.DistillError, match="the loss became nan at epoch 3.*weights of epoch 2"):
        distill.train_student(student, x, t, epochs=10, batch_size=64, patience=10,
                              log=lambda r: states.__setitem__(r["epoch"], student.lin.weight.detach().clone()))
    assert torch.equal(student.lin.weight, states[2])


def test_bad_input(torch, rng):
    x, t = linear_teacher(rng, n=50)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="teacher outputs have 49 rows but the data has 50"):
        distill.train_student(torch.nn.Linear(8, 3), x, t[:49], progress=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="labels have 10 rows"):
        distill.train_student(torch.nn.Linear(8, 3), x, t, labels=np.zeros(10), progress=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match=r"student gives outputs of shape \[1, 5\].*3 classes"):
        distill.train_student(torch.nn.Linear(8, 5), x, t, progress=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="NaN"):
        distill.train_student(torch.nn.Linear(8, 3), x, np.where(t > 0, t, np.nan), progress=False)


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install tinyinfer\[train\]"):
        distill.train_student(object(), np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ImportError, match=r"pip install tinyinfer\[train\]"):
        tinyinfer.to_torch(b"not read")
    with pytest.raises(ImportError, match=r"pip install tinyinfer\[train\]"):
        distill.shrink(b"not read")


def softmax_teacher(path, w):
    g = tinyinfer.GraphBuilder("teacher")
    x = g.input("x", (1, w.shape[1]))
    h = g.op("FullyConnected", x, g.const("w", w.astype(np.float32)), g.const("b", np.zeros(w.shape[0], np.float32)))
    g.output(g.op("Softmax", h))
    g.save(str(path))
    return str(path)


def test_distill_one_call_and_cli(torch, rng, tmp_path):
    w = rng.standard_normal((3, 6)) * 2
    teacher = softmax_teacher(tmp_path / "t.tinf", w)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    want = (x @ w.T).argmax(1)
    torch.manual_seed(0)
    student = distill.mlp_student(6, [16], 3)
    res, model = distill.distill(teacher, student, x, dst=tmp_path / "s.tinf", quantize="int8-static", epochs=30,
                                 lr=0.02, cache_dir=tmp_path / "cache", progress=False)
    with model:
        assert any(t.scales is not None for t in model.tensors())  # int8-static: quantized tensors
        (p,) = model.run(x)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=2e-2)  # the teacher's softmax is kept
    assert (p.argmax(1) == want).mean() > 0.9
    assert os.path.getsize(tmp_path / "s.tinf") > 0

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", want)
    from tinyinfer.__main__ import main
    out = tmp_path / "cli.tinf"
    assert main(["distill", teacher, "--student", "mlp:16", "--data", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "-o", str(out), "--epochs", "20", "--lr", "0.02", "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"]) == 0
    with tinyinfer.load(str(out)) as m:
        (p,) = m.run(x)
    assert (p.argmax(1) == want).mean() > 0.9
    assert main(["distill", teacher, "--student", "cnn:3", "--data", str(tmp_path / "x.npy"), "-o", str(out)]) == 1


def test_labels_only_baseline(torch, rng):
    x, t = linear_teacher(rng, n=300)
    y = t.argmax(1)
    student = torch.nn.Linear(8, 3)
    res = distill.train_student(student, x, None, labels=y, epochs=30, lr=0.05, patience=30, progress=False)
    assert res.history[-1]["val_agreement"] is None and res.history[-1]["val_accuracy"] > 0.9
    # with alpha forced to 0, the validation loss is the cross-entropy alone (numpy)
    with torch.no_grad():
        s = student(torch.from_numpy(x)).numpy().astype(np.float64)
    ce = -np.log(np_softmax(s)[np.arange(len(y)), y]).mean()
    assert ce < 0.5
    with pytest.raises(tinyinfer.InvalidArgumentError, match="teacher_logits, labels, or both"):
        distill.train_student(student, x, None, progress=False)


def test_student_with_batchnorm(torch, rng):
    # the output-shape probe runs one item in eval mode (BatchNorm1d in training mode refuses a batch of one)
    x, t = linear_teacher(rng, n=130)
    student = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                  torch.nn.Linear(16, 3))
    res = distill.train_student(student, x, t, epochs=2, batch_size=50, progress=False)
    assert len(res.history) == 2 and student.training  # the caller's mode is restored


def test_cli_student_of_images_runs_any_batch(torch, rng, tmp_path):
    # image-shaped data: the command's MLP flattens with reshape(-1, n), exported batch-dynamic (TorchScript)
    w = rng.standard_normal((3, 12))
    teacher = tmp_path / "t.tinf"
    g = tinyinfer.GraphBuilder("img")
    xin = g.input("x", (1, 2, 3, 2))
    flat = g.op("Reshape", xin, shape=[-1, 12])
    g.output(g.op("FullyConnected", flat, g.const("w", w.astype(np.float32)), g.const("b", np.zeros(3, np.float32))))
    g.save(str(teacher))
    x = rng.standard_normal((200, 2, 3, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    from tinyinfer.__main__ import main
    out = tmp_path / "s.tinf"
    assert main(["distill", str(teacher), "--student", "mlp:8", "--data", str(tmp_path / "x.npy"), "-o", str(out),
                 "--epochs", "3", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 0
    with tinyinfer.load(str(out)) as m:
        (p,) = m.run(x[:50])
    assert p.shape == (50, 3)
