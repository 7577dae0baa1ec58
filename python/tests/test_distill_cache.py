"""tinyinfer.distill.teacher_outputs: the outputs vs numpy, the on-disk cache (hit, invalidation by model or
data, half-written entries ignored) and bad input."""

import json
import os

import numpy as np
import pytest

import tinyinfer
from tinyinfer import distill


def fc_model(path, w, b):
    """y = x @ w.T + b as a .tinf file (batch 1 in the file; other batch sizes run on their own session)."""
    g = tinyinfer.GraphBuilder("fc")
    x = g.input("x", (1, w.shape[1]))
    g.output(g.op("FullyConnected", x, g.const("w", w.astype(np.float32)), g.const("b", b.astype(np.float32))))
    g.save(str(path))
    return str(path)


@pytest.fixture
def setup(tmp_path, rng):
    w, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    x = rng.standard_normal((37, 5)).astype(np.float32)
    return fc_model(tmp_path / "t.tinf", w, b), w, b, x, tmp_path / "cache"


def ref(x, w, b):
    return x.astype(np.float64) @ w.T + b


class CountingModel:
    """Counts the teacher's runs (wraps Model.run)."""

    def __init__(self, model):
        self.model, self.runs = model, 0
        orig = model.run

        def run(*a, **k):
            self.runs += 1
            return orig(*a, **k)
        model.run = run


def test_outputs_match_numpy_and_second_call_reads_cache(setup):
    path, w, b, x, cache = setup
    with tinyinfer.load(path) as m:
        c = CountingModel(m)
        y = distill.teacher_outputs(m, x, batch_size=8, cache_dir=cache, progress=False)
        assert c.runs == 5  # ceil(37 / 8)
        np.testing.assert_allclose(y, ref(x, w, b), rtol=1e-5, atol=1e-5)
        assert isinstance(y, np.memmap) and y.shape == (37, 3)
        y2 = distill.teacher_outputs(m, x, batch_size=8, cache_dir=cache, progress=False)
        assert c.runs == 5  # the cache answered
        np.testing.assert_array_equal(np.asarray(y2), np.asarray(y))
        # a list of batches with the same data is the same entry (no run either)
        y3 = distill.teacher_outputs(m, [x[:20], x[20:]], cache_dir=cache, progress=False)
        assert c.runs == 5
        np.testing.assert_array_equal(np.asarray(y3), np.asarray(y))
    files = sorted(os.listdir(cache))
    assert len([f for f in files if f.endswith(".json")]) == 1
    index = json.load(open(os.path.join(cache, [f for f in files if f.endswith(".json")][0])))
    assert index["items"] == 37 and index["outputs"][0]["shape"] == [37, 3]


def test_path_and_one_shot_iterator(setup, tmp_path):
    path, w, b, x, cache = setup
    np.save(tmp_path / "x.npy", x)
    y = distill.teacher_outputs(path, str(tmp_path / "x.npy"), batch_size=10, cache_dir=cache, progress=False)
    np.testing.assert_allclose(y, ref(x, w, b), rtol=1e-5, atol=1e-5)
    gen = (x[i:i + 7] for i in range(0, len(x), 7))
    y2 = distill.teacher_outputs(path, gen, cache_dir=cache, progress=False)
    np.testing.assert_allclose(y2, ref(x, w, b), rtol=1e-5, atol=1e-5)


def test_changed_model_or_data_invalidates(setup, tmp_path, rng):
    path, w, b, x, cache = setup
    distill.teacher_outputs(path, x, cache_dir=cache, progress=False)
    w2 = w.copy()
    w2[0, 0] += 1.0
    fc_model(path, w2, b)  # same file name, other bytes
    y = distill.teacher_outputs(path, x, cache_dir=cache, progress=False)
    np.testing.assert_allclose(y, ref(x, w2, b), rtol=1e-5, atol=1e-5)
    x2 = x.copy()
    x2[5, 2] += 1.0
    y2 = distill.teacher_outputs(path, x2, cache_dir=cache, progress=False)
    np.testing.assert_allclose(y2, ref(x2, w2, b), rtol=1e-5, atol=1e-5)
    assert len([f for f in os.listdir(cache) if f.endswith(".json")]) == 3


def test_half_written_entry_is_ignored(setup):
    path, w, b, x, cache = setup
    distill.teacher_outputs(path, x, cache_dir=cache, progress=False)
    (npy,) = [f for f in os.listdir(cache) if f.endswith(".npy")]
    full = os.path.join(cache, npy)
    with open(full, "r+b") as f:  # cut the last rows off, as a crash while writing would
        f.truncate(os.path.getsize(full) - 20)
    with tinyinfer.load(path) as m:
        c = CountingModel(m)
        y = distill.teacher_outputs(m, x, cache_dir=cache, progress=False)
        assert c.runs > 0  # recomputed, not read
        np.testing.assert_allclose(y, ref(x, w, b), rtol=1e-5, atol=1e-5)
        # an index without its data file is not an entry either
        os.unlink(full)
        runs = c.runs
        y = distill.teacher_outputs(m, x, cache_dir=cache, progress=False)
        assert c.runs > runs
        np.testing.assert_allclose(y, ref(x, w, b), rtol=1e-5, atol=1e-5)
        # data without its index (a crash before the index was written): recomputed
        (j,) = [f for f in os.listdir(cache) if f.endswith(".json")]
        os.unlink(os.path.join(cache, j))
        runs = c.runs
        distill.teacher_outputs(m, x, cache_dir=cache, progress=False)
        assert c.runs > runs


def test_failure_leaves_no_entry_and_no_temporary_file(setup):
    path, w, b, x, cache = setup

    def batches():
        yield x[:10]
        raise RuntimeError("the data source failed")
    with pytest.raises(RuntimeError):
        distill.teacher_outputs(path, batches(), cache_dir=cache, progress=False)
    assert os.listdir(cache) == []


def test_bad_input(setup):
    path, w, b, x, cache = setup
    with pytest.raises(tinyinfer.InvalidArgumentError, match="does not match the model input"):
        distill.teacher_outputs(path, x[:, :4], cache_dir=cache, progress=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="no output"):
        distill.teacher_outputs(path, x, outputs="nope", cache_dir=cache, progress=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="empty"):
        distill.teacher_outputs(path, x[:0], cache_dir=cache, progress=False)
    with pytest.raises(tinyinfer.InvalidArgumentError, match="batch_size"):
        distill.teacher_outputs(path, x, batch_size=0, cache_dir=cache, progress=False)
