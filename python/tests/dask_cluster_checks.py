"""Run by test_dask.py in a fresh Python process (python -m pytest
dask_cluster_checks.py): tinyinfer.dask on a real distributed.LocalCluster (two worker processes):
results equal a single-process run, each worker loads a model once, a failed
task runs again with compute(retries=N), and a worker killed mid-run loses no
results."""

import os
import pickle
import signal

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402

import tinyinfer  # noqa: E402
import tinyinfer.dask as tdask  # noqa: E402
from tinyinfer import batching  # noqa: E402
from batch_helpers import close, mlp, two_input_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dask")
    small, small_ref = mlp()
    (d / "small.tinf").write_bytes(small)
    big, big_ref = mlp(d_in=784, hidden=1024, d_out=10, seed=4)  # about 0.1 ms per item: blocks take a while
    (d / "big.tinf").write_bytes(big)
    return d, small_ref, big_ref


@pytest.fixture(scope="module")
def client(files):
    d = files[0]
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "TINYINFER_CACHE_DIR")}
    os.environ["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + (old["PYTHONPATH"] or "")
    os.environ["TINYINFER_CACHE_DIR"] = str(d / "cache")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=50)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def data(n, d=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_model_ref_pickles_by_hash_and_path_or_bytes(files, tmp_path, monkeypatch):
    d = files[0]
    ref = tdask.ModelRef(str(d / "small.tinf"))
    blob = pickle.dumps(ref)
    assert len(blob) < 1000  # the path and the hash, not the model
    embedded = pickle.dumps(tdask.ModelRef(str(d / "small.tinf"), embed=True))
    assert len(embedded) > os.path.getsize(d / "small.tinf")
    # a "worker" without the file loads the embedded bytes from its cache folder
    monkeypatch.setenv("TINYINFER_CACHE_DIR", str(tmp_path / "worker-cache"))
    monkeypatch.setattr(tdask, "_MODELS", {})
    moved = pickle.loads(embedded)
    moved.path = str(tmp_path / "missing.tinf")
    m = moved.get()
    assert m.path == str(tmp_path / "worker-cache" / "models" / (moved.sha256 + ".tinf"))
    assert moved.get() is m  # loaded once, then reused
    # a file at the path that is not the client's model is refused
    other, _ = mlp(seed=9)
    (tmp_path / "changed.tinf").write_bytes((d / "small.tinf").read_bytes())
    changed = tdask.ModelRef(str(tmp_path / "changed.tinf"))
    (tmp_path / "changed.tinf").write_bytes(other)
    monkeypatch.setattr(tdask, "_MODELS", {})
    monkeypatch.setattr(tdask, "_VERIFIED", {})
    with pytest.raises(tinyinfer.InvalidStateError, match="not the client's model"):
        pickle.loads(pickle.dumps(changed)).get()


def test_array_blocks_equal_a_single_process_run(client, files):
    d, small_ref, _ = files
    x = data(1000)
    with tinyinfer.load(d / "small.tinf") as m:
        single = np.stack(list(m.map(x, batch_size=32, memory_budget=None, progress=False)))
    y = tdask.map_blocks(str(d / "small.tinf"), da.from_array(x, chunks=(128, 32)), batch_size=32,
                         memory_budget=None).compute()
    np.testing.assert_array_equal(y, single)
    close(y, small_ref(x))
    # chunks across the item axis are joined; a memory budget picks the batch on each worker
    y2 = tdask.map(str(d / "small.tinf"), da.from_array(x, chunks=(300, 16)), memory_budget="8MB",
                   measure_ms=50).compute()
    close(y2, small_ref(x))
    loads = client.run(tdask.loads)
    assert len(loads) == 2
    for per_worker in loads.values():
        assert all(v == 1 for v in per_worker.values()), loads  # each worker loaded each model once


def test_bag_and_dataframe_partitions(client, files):
    d, small_ref, _ = files
    x = data(200, seed=1)
    with tinyinfer.load(d / "small.tinf") as m:
        out = tdask.map(m, db.from_sequence(list(x), npartitions=5), batch_size=16, memory_budget=None).compute()
    close(np.stack(out), small_ref(x))
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(32)], index=np.arange(1000, 1200))
    res = tdask.map(str(d / "small.tinf"), dd.from_pandas(frame, npartitions=4), batch_size=16,
                    memory_budget=None).compute()
    assert list(res.index) == list(frame.index) and res.shape == (200, 10)
    close(res.to_numpy(), small_ref(x))
    # two inputs: a bag of tuples; bytes models travel embedded
    two, ref2 = two_input_model()
    a, b = data(30, 8, 2), data(30, 8, 3)
    with tinyinfer.load(two) as m:
        out = tdask.map_partitions(m, db.from_sequence(list(zip(a, b)), npartitions=3), batch_size=4,
                                   memory_budget=None).compute()
    close(np.stack(out), ref2(a, b))


def _fail_once_per_worker():
    """(run on each worker by client.run) The worker's next model lookup raises once, as a
    transient failure would (a model file on a network share not there yet)."""
    import tinyinfer.dask as t
    real = t.ModelRef.__dict__.get("_real_get", t.ModelRef.get)
    state = {"failed": False}

    def flaky(self):
        if not state["failed"]:
            state["failed"] = True
            raise OSError("injected transient failure")
        return real(self)

    t.ModelRef._real_get = real
    t.ModelRef.get = flaky


def _restore_get():
    import tinyinfer.dask as t
    if "_real_get" in t.ModelRef.__dict__:
        t.ModelRef.get = t.ModelRef._real_get
        del t.ModelRef._real_get


def test_retries_run_a_failed_block_again(client, files):
    d, small_ref, _ = files
    x = data(400, seed=5)
    chunks = da.from_array(x, chunks=(50, 32))
    try:
        # without retries the first failure of a block fails the computation
        client.run(_fail_once_per_worker)
        with pytest.raises(OSError, match="injected transient failure"):
            tdask.map_blocks(str(d / "small.tinf"), chunks, batch_size=16, memory_budget=None).compute()
        client.run(_restore_get)
        # with retries each worker's one failure is run again and the result is whole
        client.run(_fail_once_per_worker)
        y = tdask.map_blocks(str(d / "small.tinf"), chunks, batch_size=16, memory_budget=None).compute(retries=2)
        close(y, small_ref(x))
        client.run(_restore_get)
        client.run(_fail_once_per_worker)
        items = db.from_sequence(list(x), npartitions=8)
        out = dask.compute(tdask.map_partitions(str(d / "small.tinf"), items, batch_size=16, memory_budget=None),
                           retries=2)[0]
        close(np.stack(out), small_ref(x))
        failed = client.run(lambda: __import__("tinyinfer.dask").dask.ModelRef.get.__name__)
        assert set(failed.values()) == {"flaky"}  # the injection was in place on both workers
    finally:
        client.run(_restore_get)


def test_a_killed_worker_loses_no_results(client, files):
    d, _, big_ref = files
    x = data(6000, 784, seed=2)
    np.save(d / "big-x.npy", x)
    with tinyinfer.load(d / "big.tinf") as m:
        single = np.stack(list(m.map(x, batch_size=50, memory_budget=None, progress=False)))
    # the workers read their blocks from the file (the graph does not carry the data)
    blocks = [da.from_delayed(dask.delayed(np.load)(str(d / "big-x.npy"), mmap_mode="r")[i:i + 200],
                              shape=(200, 784), dtype=np.float32) for i in range(0, 6000, 200)]
    y = tdask.map_blocks(str(d / "big.tinf"), da.concatenate(blocks), batch_size=50, memory_budget=None)
    futures = client.compute(list(y.to_delayed().ravel()))
    pids = client.run(os.getpid)
    done = distributed.as_completed(futures)
    for _ in range(4):
        next(done)
    holding = client.has_what()
    victim = max(holding, key=lambda w: len(holding[w]))  # the worker holding the most results
    assert sum(f.done() for f in futures) < len(futures)  # mid-run
    os.kill(pids[victim], signal.SIGKILL)
    parts = client.gather(futures)
    out = np.concatenate(parts)
    np.testing.assert_array_equal(out, single)
    close(out, big_ref(x))
    assert victim not in client.scheduler_info()["workers"]
